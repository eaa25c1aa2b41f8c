"""Model files written before a change of the hashing rules keep predicting what they did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shoal.cli import main
from shoal.data.reader import TextReader
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.model import Model

DATA = "1 |a x y 12345678901 | 7\n-1 |a y z\n1 |a z x:2 | 7 8\n" * 10


def without_hash_version(path: Path) -> None:
    """Rewrite a model file's spec as a shoal before hash versions wrote it (no such field).
    The tensors and their checksum are untouched."""
    payload = path.read_bytes()
    n = int.from_bytes(payload[:8], "little")
    doc = json.loads(payload[8 : 8 + n])
    spec = json.loads(doc["__metadata__"]["spec"])
    assert spec.pop("hash_version") == 1
    doc["__metadata__"]["spec"] = json.dumps(spec, sort_keys=True)
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + payload[8 + n :])


def predictions(model: Model, path: Path) -> np.ndarray:
    return np.concatenate([model.predict(b) for b in TextReader(spec=model.spec).read(path)])


def test_an_old_model_file_keeps_its_hashing_and_its_predictions(tmp_path: Path, capsys) -> None:
    data = tmp_path / "d.vw"
    data.write_text(DATA)
    # the old rules: -q aa without squares, -q aa aa twice, murmur past 10 digits, seed 3
    old = FeatureSpec(bits=18, seed=3, interactions=("aa", "aa"), hash_version=1)
    model = Model(old, LearnerConfig(loss="logistic", optimizer="sgd", learning_rate=0.5))
    for batch in TextReader(spec=old).read(data):
        model.learn(batch)
    expected = predictions(model, data)
    path = tmp_path / "old.shoal"
    model.save(path)
    without_hash_version(path)

    loaded = Model.load(path)
    assert loaded.spec == old and loaded.spec.interactions == ("aa", "aa")
    assert np.array_equal(predictions(loaded, data), expected)
    assert main(["predict", str(path), str(data)]) == 0
    cli = np.array([float(x) for x in capsys.readouterr().out.split()])
    assert np.array_equal(cli, expected)
    # VW 9's rules would hash these lines elsewhere: the version is what keeps the model right
    new = FeatureSpec(bits=18, seed=3, interactions=("aa", "aa"))
    moved = Model(new, loaded.config)
    moved.weights[:] = loaded.weights
    assert not np.allclose(predictions(moved, data), expected)
