"""Names a package hands on, imported on first use (PEP 562's module ``__getattr__``).

``import shoal`` (and the ``shoal`` command's argument parsing) then costs milliseconds: numba,
the compiled kernels and pyarrow load when a name that needs them is first used, not before.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def export(package: str, table: dict[str, str], name: str) -> Any:
    """``name`` from the module ``table[name]``, kept in ``package`` for the next lookup."""
    module = table.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    setattr(sys.modules[package], name, value)
    return value
