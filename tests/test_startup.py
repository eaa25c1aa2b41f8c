"""shoal.startup: numba starts without importing scipy.linalg, and nothing else changes."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from shoal.startup import init_numba
init_numba()
assert "numba.np.arraymath" in sys.modules, "numba's registries are loaded"
assert "scipy.linalg" not in sys.modules, "without scipy.linalg"
from shoal import Batch, FeatureSpec, Model
model = Model(FeatureSpec(bits=8))
model.learn(Batch.from_rows([([1, 2], [1.0, 1.0])], labels=[1]))
print(float(model.predict(Batch.from_rows([([1], [1.0])]))[0]))
import scipy.linalg  # still importable afterwards
print(scipy.linalg.norm([3.0, 4.0]))
"""


def test_init_numba_skips_scipy_linalg_and_kernels_still_run() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=True
    )
    prediction, norm = out.stdout.split()
    assert 0.5 < float(prediction) < 1.0
    assert float(norm) == 5.0
