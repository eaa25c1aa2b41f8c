"""Training: in one process, or data-parallel on local worker processes or a Ray cluster."""

from typing import TYPE_CHECKING, Any

from shoal._lazy import export
from shoal.train.single import TrainOptions, TrainReport, train

if TYPE_CHECKING:
    from shoal.train.coordinator import ClusterOptions, ClusterReport, Coordinator, train_cluster

_EXPORTS = dict.fromkeys(
    ("ClusterOptions", "ClusterReport", "Coordinator", "train_cluster"), "shoal.train.coordinator"
)


def __getattr__(name: str) -> Any:
    return export(__name__, _EXPORTS, name)


__all__ = [
    "ClusterOptions",
    "ClusterReport",
    "Coordinator",
    "TrainOptions",
    "TrainReport",
    "train",
    "train_cluster",
]
