"""Training: one process now; the distributed coordinator builds on it."""

from shoal.train.single import TrainOptions, TrainReport, train

__all__ = ["TrainOptions", "TrainReport", "train"]
