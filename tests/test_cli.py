"""The command line, end to end: train, eval, predict, inspect, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shoal.cli import main
from shoal.data.reader import TextReader
from shoal.model.model import Model

TRAIN = "".join(
    f"{1 if i % 13 < 5 else -1} 1.0 'r{i} |u id{i % 13} d{i % 3} |v x:{(i % 11) / 10:.1f}\n"
    for i in range(400)
)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    train = tmp_path / "train.vw"
    train.write_text(TRAIN)
    a = tmp_path / "a.vw"
    b = tmp_path / "b.vw"
    lines = TRAIN.splitlines(keepends=True)
    a.write_text("".join(lines[:150]))
    b.write_text("".join(lines[150:]))
    return {"train": train, "a": a, "b": b, "dir": tmp_path}


def test_cli_predictions_equal_python_api(files: dict[str, Path], capsys) -> None:
    model = files["dir"] / "m.shoal"
    assert main(["train", str(files["train"]), "-o", str(model), "-q", "uv", "--passes", "2"]) == 0
    out = files["dir"] / "pred.txt"
    assert main(["predict", str(model), str(files["train"]), "-o", str(out)]) == 0
    cli = np.array([float(x) for x in out.read_text().split()])
    m = Model.load(model)
    api = np.concatenate([m.predict(b) for b in TextReader(spec=m.spec).read(files["train"])])
    assert len(cli) == 400
    assert np.array_equal(cli, api)
    assert 0 < cli.min() < cli.max() < 1


def test_predict_with_tags(files: dict[str, Path], capsys) -> None:
    model = files["dir"] / "m.shoal"
    main(["train", str(files["train"]), "-o", str(model)])
    capsys.readouterr()
    assert main(["predict", str(model), str(files["train"]), "--tags"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split()[1] == "r3"


def test_continue_training_from_the_cli_equals_one_run(files: dict[str, Path]) -> None:
    d = files["dir"]
    main(["train", str(files["a"]), str(files["b"]), "-o", str(d / "one.shoal")])
    main(["train", str(files["a"]), "-o", str(d / "a.shoal")])
    main(
        ["train", str(files["b"]), "--initial-model", str(d / "a.shoal"), "-o", str(d / "ab.shoal")]
    )
    one, ab = Model.load(d / "one.shoal"), Model.load(d / "ab.shoal")
    assert np.array_equal(one.weights, ab.weights)
    for k in one.state:
        assert np.array_equal(one.state[k], ab.state[k])
    assert np.array_equal(one.counters, ab.counters)


def test_train_eval_predict_read_file_uris_and_globs_as_paths(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d = files["dir"]
    runs = {
        "path": [str(files["train"])],
        "uri": [f"file://{files['train']}"],
        "parts": [str(files["a"]), str(files["b"])],
        "uri glob": [f"file://{d}/[ab].vw"],  # a.vw then b.vw: train.vw's lines, in order
    }
    for name, data in runs.items():
        assert main(["train", *data, "-o", str(d / f"{name}.shoal"), "-q", "uv"]) == 0
        assert main(["predict", str(d / "path.shoal"), *data, "-o", str(d / f"{name}.txt")]) == 0
        assert main(["eval", str(d / "path.shoal"), *data, "--json"]) == 0
    model = (d / "path.shoal").read_bytes()
    predictions = (d / "path.txt").read_text()
    assert len(predictions.split()) == 400
    for name in runs:
        assert (d / f"{name}.shoal").read_bytes() == model, name
        assert (d / f"{name}.txt").read_text() == predictions, name
    metrics = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(metrics) == 4 and len(set(metrics)) == 1


def test_initial_model_refuses_conflicting_flags(files: dict[str, Path], capsys) -> None:
    d = files["dir"]
    main(["train", str(files["a"]), "-o", str(d / "a.shoal"), "--bits", "12"])
    rc = main(["train", str(files["b"]), "--initial-model", str(d / "a.shoal"), "--bits", "14",
               "-o", str(d / "x.shoal")])  # fmt: skip
    assert rc == 2
    assert "--bits" in capsys.readouterr().err


def test_initial_model_takes_interactions_as_its_spec_did(files: dict[str, Path]) -> None:
    d = files["dir"]
    assert main(["train", str(files["a"]), "-o", str(d / "a.shoal"), "-q", "uv", "vu"]) == 0
    assert Model.load(d / "a.shoal").spec.interactions == ("uv",)  # VW 9: one interaction
    rc = main(["train", str(files["b"]), "--initial-model", str(d / "a.shoal"), "-q", "uv", "uv",
               "-o", str(d / "ab.shoal")])  # fmt: skip
    assert rc == 0


def test_eval_and_inspect(files: dict[str, Path], capsys) -> None:
    model = files["dir"] / "m.shoal"
    main(["train", str(files["train"]), "-o", str(model), "--passes", "3"])
    capsys.readouterr()
    assert main(["eval", str(model), str(files["train"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 400
    assert result["accuracy"] > 0.6 and 0 < result["log_loss"] < 0.69
    assert main(["inspect", str(model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["counters"]["examples"] == 1200
    assert info["spec"]["bits"] == 18 and info["config"]["loss"] == "logistic"
    assert len(info["top_weights"]) == 10


def test_inspect_names_the_largest_weights(tmp_path: Path, capsys) -> None:
    """VW's --invert_hash: the names (and interactions) of DATA that hash to the top weights."""
    data = tmp_path / "known.vw"
    rows = [
        f"{1 if i % 2 else -1} |u {'good' if i % 2 else 'bad'} n{i % 5} |v c{i % 3}"
        for i in range(200)
    ]
    data.write_text("\n".join(rows) + "\n")
    model = tmp_path / "known.shoal"
    assert main(["train", str(data), "-o", str(model), "-q", "uv", "--passes", "3"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(model), "--names", str(data), "--top", "4", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["top_weights"]
    assert {top[0]["names"][0], top[1]["names"][0]} == {"u^good", "u^bad"}
    assert top[0]["weight"] * top[1]["weight"] < 0
    assert all(t["names"] for t in top)
    assert main(["inspect", str(model), "--names", str(data), "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert "u^good" in text and "u^bad" in text
    # an index no line of DATA reaches is said to be so
    other = tmp_path / "other.vw"
    other.write_text("1 |z nothing\n")
    assert main(["inspect", str(model), "--names", str(other), "--top", "1"]) == 0
    assert "(not in the data)" in capsys.readouterr().out


def test_inspect_names_of_a_multiclass_model(tmp_path: Path, capsys) -> None:
    data = tmp_path / "mc.vw"
    data.write_text("".join(f"{i % 3 + 1} |f c{i % 3} n{i % 7}\n" for i in range(300)))
    model = tmp_path / "mc.shoal"
    main(["train", str(data), "--loss", "multiclass", "--classes", "3", "-o", str(model)])
    capsys.readouterr()
    assert main(["inspect", str(model), "--names", str(data), "--top", "30", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["top_weights"]
    # each class's largest positive weight is its own indicator feature
    best = {}
    for t in top:
        if t["weight"] > best.get(t["class"], (0.0, ""))[0]:
            best[t["class"]] = (t["weight"], t["names"])
    assert {c: names for c, (_, names) in best.items()} == {
        1: ["f^c0"],
        2: ["f^c1"],
        3: ["f^c2"],
    }


@pytest.mark.realdata
def test_inspect_names_on_real_data(tmp_path: Path, capsys) -> None:
    from shoal.data.names import line_names

    data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vw_rcv1_small"
    train = data / "rcv1_small.train.vw"
    if not train.exists():
        pytest.skip(f"{train} is absent (../shared/data)")
    model = tmp_path / "rcv1.shoal"
    assert main(["train", str(train), "-o", str(model)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(model), "--names", str(train), "--top", "8", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    spec = Model.load(model).spec
    for t in info["top_weights"]:
        assert t["names"], t  # every large weight was learned from some feature of the data
        for name in t["names"]:  # and each name hashes to it
            line = "1 | x" if name == "Constant" else "1 |" + name.replace("^", " ", 1)
            assert t["index"] in [i for i, _ in line_names(line, spec)], name


def test_multiclass_and_squared_from_the_cli(tmp_path: Path, capsys) -> None:
    data = tmp_path / "mc.vw"
    data.write_text("".join(f"{i % 3 + 1} |f c{i % 3} n{i % 7}\n" for i in range(300)))
    model = tmp_path / "mc.shoal"
    assert (
        main(["train", str(data), "--loss", "multiclass", "--classes", "3", "-o", str(model)]) == 0
    )
    capsys.readouterr()
    main(["predict", str(model), str(data)])
    assert capsys.readouterr().out.split()[:6] == ["1", "2", "3", "1", "2", "3"]
    main(["eval", str(model), str(data), "--json"])
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0
    reg = tmp_path / "r.vw"
    reg.write_text("".join(f"{(i % 5) * 0.5} |f x:{i % 5}\n" for i in range(500)))
    main(["train", str(reg), "--loss", "squared", "--passes", "5", "-o", str(model)])
    capsys.readouterr()
    main(["eval", str(model), str(reg), "--json"])
    assert json.loads(capsys.readouterr().out)["rmse"] < 0.1


def test_bad_record_policies(tmp_path: Path, capsys) -> None:
    data = tmp_path / "bad.vw"
    data.write_text("1 |f a b\n\n-1 |f c:zz\n1 |f d\n")
    model = tmp_path / "m.shoal"
    assert main(["train", str(data), "-o", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"line 3 of {data}" in err and "c:zz" in err and "--on-bad-record skip" in err
    assert not model.exists()
    assert main(["train", str(data), "-o", str(model), "--on-bad-record", "skip"]) == 0
    out = capsys.readouterr().out
    assert "trained on 2 examples" in out and "skipped 1 bad line" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "missing.shoal", "x.vw"], "no such file"),
        (["train", "missing.vw", "-o", "m.shoal"], "no such file"),
        (["train", "file:///missing/x.vw", "-o", "m.shoal"], "file:///missing/x.vw: no such"),
        (["train", "foo://bucket/x.vw", "-o", "m.shoal"], "no file system for foo:// URIs"),
        (["train", "data.vw", "-o", "m.shoal", "--bits", "40"], "bits"),
        (
            ["train", "data.vw", "-o", "m.shoal", "--loss", "multiclass", "--classes", "1"],
            "classes",
        ),
        (["train", "data.vw", "-o", "m.shoal", "--passes", "0"], "passes"),
        (["eval", "data.vw", "data.vw"], "not a readable safetensors"),
    ],
)
def test_errors_are_one_line_without_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "data.vw").write_text("1 |f a\n")
    proc = subprocess.run(
        [sys.executable, "-m", "shoal.cli", *args], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert message in proc.stderr
