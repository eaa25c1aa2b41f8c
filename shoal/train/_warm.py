"""Imported once by the local executor's fork server: load the compiled kernels there.

Workers are forked from that server, so they start with shoal imported and the kernels a task
runs on the common paths (the VW and svmlight parser, the binary learner) already loaded from
numba's cache (numba started without SciPy's linear algebra: ``shoal.startup``): a worker, or
its replacement after a crash, is ready in milliseconds instead of the second an import and
the first kernel calls take.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from shoal.data.checksum import checksum
from shoal.data.reader import TextReader
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.model import Model
from shoal.startup import init_numba


def warm_up() -> None:
    init_numba()
    with tempfile.TemporaryDirectory(prefix="shoal-warm-") as tmp:
        path = Path(tmp) / "warm.vw"
        path.write_text("1 |a x:1 y\n-1 |b z\n")
        model = Model(FeatureSpec(bits=4), LearnerConfig())
        for batch in TextReader(spec=model.spec).read(path):
            model.learn(batch)  # a task never predicts: that kernel is not loaded (~50 ms)
        checksum(np.frombuffer(path.read_bytes(), dtype=np.uint8))  # the binary cache's check


warm_up()
