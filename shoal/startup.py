"""Start-up of the processes shoal owns (the ``shoal`` command, the local workers' fork server).

Before its first compiled call, numba loads every one of its typing and lowering registries
once per process. One of them, ``numba.np.arraymath``, checks for BLAS by importing
``scipy.linalg`` when SciPy is installed: 0.15 s of a 0.3 s start, for linear algebra that
no shoal kernel uses. ``init_numba`` loads the registries with ``scipy.linalg`` out of
sight, so numba records "no BLAS" and ``np.dot`` and friends are unavailable to compiled code
in *this* process; ``scipy.linalg`` itself imports normally afterwards. Library code never
calls it: a user's process keeps numba's defaults.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _HideSciPy(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "scipy.linalg" or fullname.startswith("scipy.linalg."):
            raise ImportError(f"{fullname} is hidden while numba starts")
        return None


def init_numba() -> None:
    """Load numba's registries now, without importing SciPy (see the module docstring)."""
    if "scipy.linalg" in sys.modules or "numba.np.arraymath" in sys.modules:
        return  # already paid for, or numba has started
    from numba.core.registry import cpu_target

    finder = _HideSciPy()
    sys.meta_path.insert(0, finder)
    try:
        cpu_target.target_context.refresh()
    finally:
        sys.meta_path.remove(finder)
