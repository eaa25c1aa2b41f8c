"""Factorization machines from the command line: predict and eval are the model's, inspect
lists the linear weights and the largest latent vectors, and names both, for FM and FFM; model
files continue exactly (every optimizer's state kept), a file of the wrong shape is refused, and
flags that make no model get one clear error."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from shoal.cli import main
from shoal.data.reader import TextReader
from shoal.errors import ModelFileError
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.model import Model, Progress
from tests.model.test_factors import examples, spec_of, to_batch

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


def click_text(n: int = 600, seed: int = 4) -> str:
    """Users, items and contexts whose label follows a user x item interaction."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        u, it, c = rng.randrange(12), rng.randrange(15), rng.randrange(4)
        y = 1 if (u % 3 == it % 3) != (rng.random() < 0.15) else -1
        lines.append(f"{y} {rng.choice(['1', '0.5', '2'])} 'r{i} |u id{u} |i id{it} x:{it / 10}"
                     f" |c hour{c}")  # fmt: skip
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fm") / "clicks.vw"
    path.write_text(click_text())
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``main(argv)``'s exit status and stderr (argparse's own exits included)."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = int(exc.code or 0)
    return rc, capsys.readouterr().err


RUNS = {
    "fm adagrad": ["--model", "fm", "--optimizer", "adagrad"],
    "fm ftrl": ["--model", "fm", "--optimizer", "ftrl", "--l2-factors", "0.001"],
    "ffm normalized": ["--model", "ffm", "--fields", "u,i,c"],
    "ffm sgd, 2 fields": ["--model", "ffm", "--fields", "ui,c", "--optimizer", "sgd"],
}
EXPLICIT = ["--bits", "12", "--rank", "3", "--factor-rate", "0.05"]  # whatever the defaults


@pytest.mark.parametrize("holdout", ["0", "0.1"])
@pytest.mark.parametrize("kind", RUNS)
def test_two_passes_equal_one_pass_and_one_more_from_the_file(
    data: Path, tmp_path: Path, kind: str, holdout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--passes 2`` is ``--passes 1`` then ``--initial-model`` for one more, to the bit. The
    holdout is given to every run: by default one pass holds out nothing and two passes one row
    in ten; --early-stop 0 keeps the last pass (by default, the best on the holdout)."""
    flags = [*RUNS[kind], *EXPLICIT]
    same = ["--holdout", holdout, "--early-stop", "0"]
    two, one, more = (str(tmp_path / f"{n}.shoal") for n in ("two", "one", "more"))
    assert main(["train", str(data), "-o", two, "--passes", "2", *flags, *same]) == 0
    assert main(["train", str(data), "-o", one, *flags, *same]) == 0
    assert main(["train", str(data), "-o", more, "--initial-model", one, *same]) == 0
    assert Path(more).read_bytes() == Path(two).read_bytes()
    assert Path(one).read_bytes() != Path(two).read_bytes()
    m = Model.load(two)
    assert m.config.model == RUNS[kind][1] and m.config.rank == 3
    assert m.examples_learned == (1200 if holdout == "0" else 2 * (600 - held(m, data)))
    # repeating the model's own flags with --initial-model is allowed, another rank is not
    again = str(tmp_path / "again.shoal")
    assert main(["train", str(data), "-o", again, "--initial-model", one, *flags, *same]) == 0
    assert Path(again).read_bytes() == Path(two).read_bytes()
    rc, err = run(["train", str(data), "-o", again, "--initial-model", one, "--rank", "4"], capsys)
    assert rc == 2 and "--rank" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["fm ftrl", "ffm normalized"])
def test_training_on_a_then_b_equals_training_on_both(
    data: Path, tmp_path: Path, kind: str
) -> None:
    lines = data.read_text().splitlines(keepends=True)
    a, b = tmp_path / "a.vw", tmp_path / "b.vw"
    a.write_text("".join(lines[:250]))
    b.write_text("".join(lines[250:]))
    both, first, then = (str(tmp_path / f"{n}.shoal") for n in ("both", "first", "then"))
    flags = [*RUNS[kind], *EXPLICIT]
    assert main(["train", str(a), str(b), "-o", both, *flags]) == 0
    assert main(["train", str(a), "-o", first, *flags]) == 0
    assert main(["train", str(b), "-o", then, "--initial-model", first]) == 0
    assert Path(then).read_bytes() == Path(both).read_bytes()


def test_a_linear_model_continues_with_model_linear_given(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--model linear agrees with a linear file (whose config does not write its kind), and
    --model fm does not."""
    first, more = str(tmp_path / "lin.shoal"), str(tmp_path / "more.shoal")
    assert main(["train", str(data), "-o", first, "--bits", "12"]) == 0
    assert (
        main(["train", str(data), "-o", more, "--initial-model", first, "--model", "linear"]) == 0
    )
    rc, err = run(
        ["train", str(data), "-o", more, "--initial-model", first, "--model", "fm"], capsys
    )
    assert rc == 2 and "--model: 'fm' differs from the initial model's 'linear'" in err


def held(model: Model, data: Path) -> int:
    """How many rows of ``data`` a run with --holdout 0.1 holds out."""
    prog = Progress()
    for b in TextReader(spec=model.spec).read(data):
        model.score_holdout(b, 10, prog)
    return prog.holdout_examples


OPTIMIZERS = ["sgd", "adagrad", "ftrl", "normalized"]


@pytest.mark.parametrize("kind", ["fm", "ffm"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizers_state_survives_the_file(
    tmp_path: Path, kind: str, optimizer: str
) -> None:
    """Weights, every state array, counters, spec and config come back as saved, and the
    loaded model goes on learning as the one in memory does."""
    cfg = LearnerConfig(model=kind, optimizer=optimizer, rank=2, factor_rate=0.05,  # type: ignore[arg-type]
                        l2_factors=0.001, init_scale=0.05)  # fmt: skip
    model = Model(spec_of(kind), cfg)
    first, second = examples(kind, "logistic", 3), examples(kind, "logistic", 4)
    model.learn(to_batch(kind, first))
    assert all(np.count_nonzero(s) for s in model.state.values())
    model.save(tmp_path / "m.shoal")
    back = Model.load(tmp_path / "m.shoal")
    assert (back.spec, back.config) == (model.spec, model.config)
    assert sorted(back.state) == sorted(model.state)
    for name in ("weights", "counters"):
        assert np.array_equal(getattr(back, name), getattr(model, name)), name
    for name, arr in model.state.items():
        assert np.array_equal(back.state[name], arr), name
    model.learn(to_batch(kind, second))
    back.learn(to_batch(kind, second))
    assert back.to_bytes() == model.to_bytes()


def _with_metadata(payload: bytes, key: str, **changes: object) -> bytes:
    """The model file with keys of its spec or config metadata changed, tensors untouched."""
    n = int.from_bytes(payload[:8], "little")
    doc = json.loads(payload[8 : 8 + n])
    meta = json.loads(doc["__metadata__"][key])
    meta.update(changes)
    doc["__metadata__"][key] = json.dumps(meta)
    raw = json.dumps(doc).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + payload[8 + n :]


def _fm_file(kind: str) -> bytes:
    cfg = LearnerConfig(model=kind, optimizer="adagrad", rank=2)  # type: ignore[arg-type]
    return Model(FeatureSpec(bits=8, fields=("a", "b") if kind == "ffm" else ()), cfg).to_bytes()


WRONG_WIDTH = {  # the metadata says one width, the weights tensor has another
    "fm rank 2 read as rank 3": (_fm_file, "fm", "config", {"rank": 3}),
    "ffm of 2 fields read as 3": (_fm_file, "ffm", "spec", {"fields": ["a", "b", "c"]}),
    "ffm read as fm": (_fm_file, "ffm", "config", {"model": "fm"}),
}


@pytest.mark.parametrize("case", WRONG_WIDTH)
def test_a_weights_tensor_of_the_wrong_width_is_refused(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make, kind, key, changes = WRONG_WIDTH[case]
    if case == "ffm read as fm":  # an fm has no fields: drop them too, or the spec is refused
        payload = _with_metadata(make(kind), "spec", fields=[])
    else:
        payload = make(kind)
    bad = _with_metadata(payload, key, **changes)
    with pytest.raises(ModelFileError, match=r"tensor 'weights' is float32\[256, \d+\], expected"):
        Model.from_bytes(bad, "bad.shoal")
    path = tmp_path / "bad.shoal"
    path.write_bytes(bad)
    (tmp_path / "d.vw").write_text("1 |a x |b y\n")
    rc, err = run(["predict", str(path), str(tmp_path / "d.vw")], capsys)
    assert rc == 2 and "bad.shoal" in err and "'weights'" in err and "Traceback" not in err


BAD_FLAGS = [
    (["--model", "ffm"], "--fields"),
    (["--fields", "ab"], "are for --model ffm, not linear"),
    (["--model", "fm", "--fields", "ab"], "are for --model ffm, not fm"),
    (["--model", "fm", "--loss", "multiclass", "--classes", "3"], "multiclass models are linear"),
    (["--model", "ffm", "--fields", "ab", "-q", "ab"], "drop the interactions"),
    (["--model", "ffm", "--fields", "ab,bc"], "namespace 'b' is in two fields"),
    (["--model", "fm", "--rank", "0"], "--rank: must be at least 1"),
    (["--model", "fm", "--rank", "-1"], "--rank: must be at least 1"),
    (["--model", "fm", "--rank", "1000"], "rank: must be an integer from 1 to 256"),
    (["--model", "fm", "--factor-rate", "0"], "factor_rate: must be a positive number"),
    (["--model", "fm", "--factor-rate", "nan"], "factor_rate: must be a positive number"),
    (["--model", "fm", "--l2-factors", "-1"], "l2_factors: must be a non-negative number"),
    (["--rank", "4"], "are for --model fm or ffm"),
    (["--factor-rate", "0.1"], "are for --model fm or ffm"),
    (["--model", "ffm", "--fields", "abcd", "--bits", "30"], "lower --bits"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_FLAGS, ids=lambda v: str(v)[:50])
def test_flags_that_make_no_model_get_one_clear_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("d.vw").write_text("1 |a x |b y\n-1 |a z |b w\n")
    rc, err = run(["train", "d.vw", "-o", "m.shoal", *flags], capsys)
    assert rc == 2, err
    assert message in err
    assert "Traceback" not in err and "internal error" not in err
    assert err.count("error:") == 1
    assert not Path("m.shoal").exists()
