"""Start-up: numba without scipy.linalg (shoal.startup), names imported on first use."""

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


def run_python(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return out.stdout.strip()


def test_init_numba_skips_scipy_linalg_and_kernels_still_run() -> None:
    prediction, norm = run_python(SCRIPT).split()
    assert 0.5 < float(prediction) < 1.0
    assert float(norm) == 5.0


def test_import_and_argument_parsing_load_neither_numba_nor_pyarrow() -> None:
    code = (
        "import sys, shoal, shoal.cli; shoal.cli._parser().parse_args(['train', 'x', '-o', 'm']);"
        "print(sorted(m for m in ('numba', 'pyarrow', 'shoal.commands') if m in sys.modules))"
    )
    assert run_python(code) == "[]"


def test_names_load_on_first_use_and_train_stays_the_function() -> None:
    code = (
        "import shoal.train.coordinator, shoal; from shoal import train;"
        "print(callable(train), callable(shoal.train), shoal.Model.__name__,"
        " shoal.train_cluster.__module__)"
    )
    assert run_python(code) == "True True Model shoal.train.coordinator"
