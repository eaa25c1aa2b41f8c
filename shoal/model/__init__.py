"""Learning: losses, optimizers, kernels, metrics, model files."""

from shoal.model.config import LearnerConfig
from shoal.model.model import Model, Progress

__all__ = ["LearnerConfig", "Model", "Progress"]
