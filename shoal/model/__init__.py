"""Learning: losses, optimizers, kernels, metrics, model files."""

from typing import TYPE_CHECKING, Any

from shoal._lazy import export
from shoal.model.config import LearnerConfig

if TYPE_CHECKING:
    from shoal.model.model import Model, Progress

_EXPORTS = {"Model": "shoal.model.model", "Progress": "shoal.model.model"}


def __getattr__(name: str) -> Any:
    return export(__name__, _EXPORTS, name)


__all__ = ["LearnerConfig", "Model", "Progress"]
