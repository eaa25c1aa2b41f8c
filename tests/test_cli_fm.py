"""Factorization machines from the command line: predict and eval are the model's, inspect
lists the linear weights and the largest latent vectors, and names both, for FM and FFM."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from shoal.cli import main
from shoal.data.reader import TextReader
from shoal.model.model import Model

KINDS = {"fm": ["--model", "fm", "--rank", "4"], "ffm": ["--model", "ffm", "--fields", "u,v,w"]}


@pytest.fixture(scope="module")
def xor_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The label is the XOR of a feature of u (p or q) and one of v (r or s): no linear model
    learns it, an FM does through the pairs; w holds noise features."""
    rng = random.Random(0)
    rows = []
    for _ in range(600):
        u, v = rng.choice("pq"), rng.choice("rs")
        noise = " ".join(f"n{rng.randrange(20)}" for _ in range(3))
        rows.append(f"{1 if (u == 'p') == (v == 'r') else -1} |u {u} |v {v} |w {noise}\n")
    path = tmp_path_factory.mktemp("xor") / "xor.vw"
    path.write_text("".join(rows))
    return path


@pytest.fixture(scope="module")
def trained(xor_data: Path) -> dict[str, Path]:
    out = {}
    for kind, flags in KINDS.items():
        out[kind] = xor_data.parent / f"{kind}.shoal"
        argv = ["train", str(xor_data), "-o", str(out[kind]), "--passes", "5", "--holdout", "0"]
        assert main([*argv, *flags]) == 0
    return out


def model_predictions(model: Path, data: Path) -> np.ndarray:
    m = Model.load(model)
    return np.concatenate([m.predict(b) for b in TextReader(spec=m.spec).read(data)])


@pytest.mark.parametrize("kind", KINDS)
def test_predict_and_eval_are_the_models(
    kind: str, trained: dict[str, Path], xor_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = trained[kind]
    assert Model.load(model).config.model == kind
    out = xor_data.parent / f"{kind}.pred"
    assert main(["predict", str(model), str(xor_data), "-o", str(out)]) == 0
    cli = np.array([float(x) for x in out.read_text().split()])
    api = model_predictions(model, xor_data)
    assert len(cli) == 600 and np.array_equal(cli, api)
    capsys.readouterr()
    assert main(["eval", str(model), str(xor_data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    y = np.array([line.split()[0] == "1" for line in xor_data.read_text().splitlines()])
    log_loss = -np.mean(np.log(np.where(y, api, 1.0 - api)))
    assert result["examples"] == 600
    assert result["log_loss"] == pytest.approx(log_loss, rel=1e-9)
    assert result["accuracy"] == 1.0  # the pairs are learned: a linear model stays near 0.5


@pytest.mark.parametrize("kind", KINDS)
def test_inspect_lists_linear_weights_and_largest_vectors(
    kind: str, trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    m = Model.load(trained[kind])
    capsys.readouterr()
    assert main(["inspect", str(trained[kind]), "--top", "6", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == kind and info["rank"] == m.config.rank
    assert info.get("fields") == (["u", "v", "w"] if kind == "ffm" else None)
    lin = m.linear_weights
    assert info["nonzero_weights"] == np.count_nonzero(lin)
    # the largest weights are linear weights, by slot, the largest there are
    top = info["top_weights"]
    assert len(top) == 6
    assert [t["weight"] for t in top] == [float(lin[t["index"]]) for t in top]
    assert sorted(abs(t["weight"]) for t in top) == sorted(np.sort(np.abs(lin))[-6:].tolist())
    # the vectors: each slot's norm, largest first, the largest there are
    v = m.weights.reshape(m.spec.size, m.width)[:, 1:].astype(np.float64)
    norms = np.linalg.norm(v, axis=1)
    vectors = info["top_factors"]
    assert [t["norm"] for t in vectors] == pytest.approx(norms[[t["index"] for t in vectors]])
    assert [t["norm"] for t in vectors] == pytest.approx(np.sort(norms)[::-1][:6])
    assert info["start_norm"] == pytest.approx(0.01 * np.sqrt(v.shape[1]))


@pytest.mark.parametrize("kind", KINDS)
def test_inspect_names_the_features_whose_vectors_are_largest(
    kind: str, trained: dict[str, Path], xor_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The four features of the XOR pairs have the largest vectors, named through the hash
    (an FFM's indices carry their field above the slot: names go by slot); an FFM's feature of
    u pairs with v through its vector for field v, and the reverse."""
    capsys.readouterr()
    argv = ["inspect", str(trained[kind]), "--names", str(xor_data), "--top", "5"]
    assert main([*argv, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    vectors = info["top_factors"]
    assert {t["names"][0] for t in vectors[:4]} == {"u^p", "u^q", "v^r", "v^s"}
    assert vectors[4]["norm"] < vectors[3]["norm"] / 2  # then the noise
    assert all(t["names"] for t in info["top_weights"])
    if kind == "ffm":
        for t in vectors[:4]:
            other = "v" if t["names"][0].startswith("u") else "u"
            own = other.translate(str.maketrans("uv", "vu"))
            assert t["fields"][other] > 10 * t["fields"][own], t
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"kind       {kind}, rank {info['rank']}" in text
    assert "largest latent vectors" in text
    assert all(name in text for name in ("u^p", "u^q", "v^r", "v^s"))
