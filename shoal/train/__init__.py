"""Training: in one process, or data-parallel on local worker processes or a Ray cluster."""

from shoal.train.coordinator import ClusterOptions, ClusterReport, Coordinator, train_cluster
from shoal.train.single import TrainOptions, TrainReport, train

__all__ = [
    "ClusterOptions",
    "ClusterReport",
    "Coordinator",
    "TrainOptions",
    "TrainReport",
    "train",
    "train_cluster",
]
