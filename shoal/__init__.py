"""shoal: distributed and online learning of hashed sparse linear models.

>>> import shoal
>>> model = shoal.Model(shoal.FeatureSpec(bits=18), shoal.LearnerConfig(loss="logistic"))
"""

from shoal._version import __version__
from shoal.data.batch import Batch
from shoal.data.reader import ReadStats, TextReader
from shoal.errors import ConfigError, DataError, ModelFileError, ShoalError
from shoal.features.schema import Column, ColumnSchema
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.evaluate import evaluate
from shoal.model.model import Model, Progress
from shoal.train.coordinator import ClusterOptions, ClusterReport, train_cluster
from shoal.train.single import TrainOptions, TrainReport, train

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
