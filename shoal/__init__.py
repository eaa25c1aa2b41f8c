"""shoal: distributed and online learning of hashed sparse linear models.

Names are imported on first use (``shoal._lazy``): ``import shoal`` is quick.

>>> import shoal
>>> model = shoal.Model(shoal.FeatureSpec(bits=18), shoal.LearnerConfig(loss="logistic"))
"""

from typing import TYPE_CHECKING, Any

from shoal._lazy import export
from shoal._version import __version__
from shoal.errors import ConfigError, DataError, ModelFileError, ShoalError

# Imported now, so that ``shoal.train`` is this function and not the subpackage of that name.
from shoal.train.single import TrainOptions, TrainReport, train

if TYPE_CHECKING:
    from shoal.data.batch import Batch
    from shoal.data.reader import ReadStats, TextReader
    from shoal.features.schema import Column, ColumnSchema
    from shoal.features.spec import FeatureSpec
    from shoal.model.config import LearnerConfig
    from shoal.model.evaluate import evaluate
    from shoal.model.model import Model, Progress
    from shoal.train.coordinator import ClusterOptions, ClusterReport, train_cluster

_EXPORTS = {
    "Batch": "shoal.data.batch",
    "ReadStats": "shoal.data.reader",
    "TextReader": "shoal.data.reader",
    "Column": "shoal.features.schema",
    "ColumnSchema": "shoal.features.schema",
    "FeatureSpec": "shoal.features.spec",
    "LearnerConfig": "shoal.model.config",
    "evaluate": "shoal.model.evaluate",
    "Model": "shoal.model.model",
    "Progress": "shoal.model.model",
    "ClusterOptions": "shoal.train.coordinator",
    "ClusterReport": "shoal.train.coordinator",
    "train_cluster": "shoal.train.coordinator",
}


def __getattr__(name: str) -> Any:
    return export(__name__, _EXPORTS, name)


__all__ = [
    "Batch",
    "ClusterOptions",
    "ClusterReport",
    "Column",
    "ColumnSchema",
    "ConfigError",
    "DataError",
    "FeatureSpec",
    "LearnerConfig",
    "Model",
    "ModelFileError",
    "Progress",
    "ReadStats",
    "ShoalError",
    "TextReader",
    "TrainOptions",
    "TrainReport",
    "__version__",
    "evaluate",
    "train",
    "train_cluster",
]
