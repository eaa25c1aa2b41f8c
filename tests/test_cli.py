"""The command line, end to end: train, eval, predict, inspect, and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shoal.cli import main
from shoal.data.reader import TextReader
from shoal.features.spec import FeatureSpec
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


def test_repeated_q_flags_add_up_as_in_vw(files: dict[str, Path]) -> None:
    d = files["dir"]
    argv = ["train", str(files["a"]), "-o", str(d / "q.shoal"), "-q", "uv", "-q", "uu", "vv"]
    assert main(argv) == 0
    assert Model.load(d / "q.shoal").spec.interactions == ("uv", "uu", "vv")


def test_eval_and_inspect(files: dict[str, Path], capsys) -> None:
    model = files["dir"] / "m.shoal"
    # no holdout (3 passes hold out 1 row in 10 by default): every row learned 3 times
    main(["train", str(files["train"]), "-o", str(model), "--passes", "3", "--holdout", "0"])
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


# -- honest exits (issue 14, items 5-7 and 10) ---------------------------------------------


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``main(argv)``'s exit status, stdout and stderr (argparse's own exits included)."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    ("name", "text", "extra", "message"),
    [
        ("empty", "", ["--schema", "label,a:num"], "no labeled example in"),
        ("header only", "label,a\n", ["--schema", "label,a:num"], "no labeled example in"),
        ("misspelled label", "1,3\n0,4\n", ["--schema", "lable,a:num"], "did you mean 'label'"),
        ("all skipped", "x,3\ny,4\n", ["--schema", "label,a:num", "--on-bad-record", "skip"],
         "every record of"),
        ("unlabeled vw", "|f a\n|f b\n", ["--format", "vw"], "no labeled example in"),
    ],
)  # fmt: skip
def test_learning_nothing_is_an_error_and_writes_no_model(
    tmp_path: Path, capsys, name: str, text: str, extra: list[str], message: str
) -> None:
    data = tmp_path / "d.csv"
    data.write_text(text)
    model = tmp_path / "m.shoal"
    rc, _, err = _run(["train", str(data), "-o", str(model), *extra], capsys)
    assert rc == 2, err
    assert message in err and "internal error" not in err
    assert not model.exists()
    if name != "misspelled label":  # asked for explicitly, the untrained model is written
        rc, _, err = _run(["train", str(data), "-o", str(model), *extra, "--allow-empty"], capsys)
        assert rc == 0 and model.exists()
        assert "nothing was learned" in err


def test_the_output_path_is_checked_before_any_data_is_read(tmp_path: Path, capsys) -> None:
    data = tmp_path / "bad.vw"
    data.write_text("not-a-label |f a\n")  # reading it would fail at line 1
    rc, _, err = _run(["train", str(data), "-o", str(tmp_path / "nodir/sub/m.shoal")], capsys)
    assert rc == 2
    assert "the folder" in err and "does not exist" in err and "line 1" not in err
    rc, _, err = _run(["train", str(data), str(tmp_path / "nosuch.vw"), "-o",
                       str(tmp_path / "m.shoal")], capsys)  # fmt: skip
    assert rc == 2 and "nosuch.vw: no such file" in err and "line 1" not in err


def test_a_schema_longer_than_a_file_name_is_a_schema(tmp_path: Path, capsys) -> None:
    names = [f"I{i}" for i in range(300)]
    data = tmp_path / "d.csv"
    data.write_text(",".join(["1", *["0.5"] * 300]) + "\n" + ",".join(["0", *["2"] * 300]) + "\n")
    schema = "label," + ",".join(f"{n}:num" for n in names)
    assert len(schema) > 255
    model = tmp_path / "m.shoal"
    rc, out, err = _run(["train", str(data), "--schema", schema, "-o", str(model)], capsys)
    assert rc == 0, err
    assert "trained on 2 examples" in out
    assert Model.load(model).spec.schema is not None


def test_swapped_arguments_get_a_hint(files: dict[str, Path], capsys) -> None:
    model = files["dir"] / "m.shoal"
    _run(["train", str(files["train"]), "-o", str(model)], capsys)
    for command in ("eval", "predict"):
        rc, _, err = _run([command, str(files["train"]), str(model)], capsys)
        assert rc == 2
        assert f"{model} is a model file: the model comes first" in err


def test_eval_json_counts_are_integers_and_the_summary_names_each_pass(
    files: dict[str, Path], capsys
) -> None:
    model = files["dir"] / "m.shoal"
    rc, out, _ = _run(["train", str(files["train"]), "-o", str(model), "--passes", "2"], capsys)
    assert rc == 0
    assert "(pass 1; pass 2: " in out
    _run(["eval", str(model), str(files["train"]), "--json"], capsys)
    rc, out, _ = _run(["eval", str(model), str(files["train"]), "--json"], capsys)
    assert json.loads(out)["examples"] == 400
    assert type(json.loads(out)["examples"]) is int


def test_each_pass_shows_its_own_speed() -> None:
    from shoal.commands import _ProgressView
    from shoal.data.reader import ReadStats
    from shoal.model import kernels
    from shoal.model.model import Progress

    view = _ProgressView(1000, 2)
    prog = Progress()
    prog.stats[kernels.LEARNED] = prog.stats[kernels.WEIGHT_SUM] = 10
    prog.stats[kernels.LOSS_SUM] = 5
    for pass_index in (0, 1):
        view(pass_index, prog, ReadStats())
        text = view.postfix(pass_index, prog)
        assert f"pass {pass_index + 1} ex/s " in text and "nan" not in text
    view.close()


# A command line a user could type, and what the one-line error says; none is an internal
# error, none writes a file, none reads data before its arguments are checked.
LONG = "x" * 300
BAD_COMMAND_LINES = [
    (["train", "missing.vw", "-o", "m.shoal"], "missing.vw: no such file"),
    (["train", f"{LONG}.vw", "-o", "m.shoal"], "File name too long"),
    (["train", "data.vw", "-o", f"{LONG}.shoal"], "File name too long"),
    (["train", "data.vw", "-o", "nodir/m.shoal"], "does not exist"),
    (["train", "data.vw", "-o", "."], "is a directory"),
    (["train", "data.vw", "-o", "data.vw"], "one of the input files"),
    (["train", "data.vw", "-o", "s3://bucket/m.shoal"], "local path"),
    (["train", "data.vw", "-o", "m.shoal", "--passes", "0"], "passes"),
    (["train", "data.vw", "-o", "fifo"], "not a regular file"),
    (["train", "data.vw", "-o", "unlabeled.vw"], "is a data file"),
    (["train", "m.shoal", "-o", "m2.shoal"], "--initial-model m.shoal"),
    (
        [
            "train",
            "data.vw",
            "-o",
            "m.shoal",
            "--bits",
            "30",
            "--loss",
            "multiclass",
            "--classes",
            "100000",
        ],
        "out of memory",
    ),
    (["train", "data.vw", "-o", "m.shoal", "--holdout", "1.5"], "holdout"),
    (["train", "data.vw", "-o", "m.shoal", "--holdout", "nan"], "holdout"),
    (["train", "data.vw", "-o", "m.shoal", "--bits", "0"], "bits"),
    (["train", "data.vw", "-o", "m.shoal", "--seed", "-1"], "seed"),
    (["train", "data.vw", "-o", "m.shoal", "--learning-rate", "-1"], "learning_rate"),
    (["train", "data.vw", "-o", "m.shoal", "--learning-rate", "inf"], "learning_rate"),
    (["train", "data.vw", "-o", "m.shoal", "--l1", "-0.5"], "l1"),
    (["train", "data.vw", "-o", "m.shoal", "--classes", "3"], "classes"),
    (["train", "data.vw", "-o", "m.shoal", "--parse-threads", "-2"], "parse_threads"),
    (["train", "data.vw", "-o", "m.shoal", "--schema", "label,a:bogus"], "bogus"),
    (["train", "data.vw", "-o", "m.shoal", "--schema", ","], "no columns"),
    (["train", "data.vw", "-o", "m.shoal", "--schema", "conf/schema.txt"], "no such schema"),
    (["train", "data.vw", "-o", "m.shoal", "--schema", "label,a:num", "--delimiter", "ab"], ""),
    (["train", "data.vw", "-o", "m.shoal", "--initial-model", "nosuch.shoal"], "no such file"),
    (["train", "data.vw", "-o", "m.shoal", "--initial-model", "data.vw"], "safetensors"),
    (["train", "data.vw", "-o", "m.shoal", "--shards", "3"], "distributed training"),
    (["train", "data.vw", "-o", "m.shoal", "--workers", "0"], "at least 1"),
    (["train", "data.vw", "-o", "m.shoal", "--format", "csv"], ""),
    (["train", "data.vw", "-o", "m.shoal", "-q", ""], ""),
    (["train", "nomatch*.vw", "-o", "m.shoal"], ""),
    (["train", "emptydir", "-o", "m.shoal"], ""),
    (["eval", "data.vw", "m.shoal"], "the model comes first"),
    (["eval", "nosuch.shoal", "data.vw"], "no such file"),
    (["eval", "emptydir", "data.vw"], ""),
    (["eval", "m.shoal", "unlabeled.vw"], "no labeled examples"),
    (["eval", "m.shoal", "missing.vw"], "no such file"),
    (["eval", "m.shoal", "data.vw", "--report", "nodir/r.html"], "does not exist"),
    (["eval", "m.shoal", "data.vw", "--report", "fifo"], "not a regular file"),
    (["generate", "-o", "fifo"], "not a regular file"),
    (["predict", "m.shoal", "data.vw", "-o", "nodir/p.txt"], "does not exist"),
    (["predict", "m.shoal", "data.vw", "-o", "data.vw"], "one of the input files"),
    (["predict", f"{LONG}.shoal", "data.vw"], ""),
    (["inspect", "data.vw"], "safetensors"),
    (["inspect", "emptydir"], ""),
    (["generate", "-o", "nodir/x.vw"], "does not exist"),
    (["generate", "-o", "x.vw", "--rows", "0"], "rows"),
    (["generate", "-o", "emptydir"], "is a directory"),
    (["generate", "-o", "x.vw", "--rank", "4"], "--model fm"),
    (["generate", "-o", "x.vw", "--model", "fm", "--rank", "0"], "rank"),
    (["generate", "-o", "x.vw", "--model", "ffm"], "invalid choice"),
    (["demo", "--rows", "0"], "rows"),
    (["demo", "--dir", "data.vw"], "is a file"),
    (["nosuch"], "invalid choice"),
    (["train", "data.vw"], "required"),
    (["train", "data.vw", "-o", "m.shoal", "--bits", "many"], "invalid int"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_COMMAND_LINES, ids=lambda v: str(v)[:60])
def test_bad_command_lines_get_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, argv: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("data.vw").write_text("1 |f a\n-1 |f b\n")
    Path("unlabeled.vw").write_text("|f a\n")
    Path("emptydir").mkdir()
    os.mkfifo("fifo")  # renaming a model over it would replace the pipe with a file
    Model(FeatureSpec(bits=8)).save("m.shoal")
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, _, err = _run(argv, capsys)
    assert rc == 2, err
    assert "internal error" not in err and "Traceback" not in err
    assert message in err
    assert err.count("shoal: error:") <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


SERVE_BAD = [
    (["--http", "nonsense"], "expected HOST:PORT"),
    (["--http", "127.0.0.1:99999"], "port"),
    (["--tcp", "127.0.0.1:x"], "expected HOST:PORT"),
    (["--keep-versions", "0"], "--keep-versions"),
    (["--snapshot-every-events", "0"], "--snapshot-every-events"),
    (["--max-body-bytes", "0"], "--max-body-bytes"),
    (["--http", "0.0.0.0:0"], "token"),
    (["--bits", "12"], "add --new"),
]


@pytest.mark.parametrize(("extra", "message"), SERVE_BAD, ids=lambda v: str(v)[:40])
def test_serve_refuses_bad_settings_and_leaves_no_state_dir(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    Model(FeatureSpec(bits=8)).save(tmp_path / "m.shoal")
    proc = subprocess.run(
        [sys.executable, "-m", "shoal.cli", "serve", "m.shoal", "--state-dir", "state", *extra],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "internal error" not in proc.stderr
    assert not (tmp_path / "state").exists()


def test_a_failed_serve_start_removes_the_state_dir_it_made(tmp_path: Path) -> None:
    import socket

    Model(FeatureSpec(bits=8)).save(tmp_path / "m.shoal")
    with socket.socket() as taken:  # the port is in use: binding fails after the state is made
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "shoal.cli", "serve", "m.shoal", "--state-dir", "state",
             "--http", f"127.0.0.1:{port}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "internal error" not in proc.stderr
    assert not (tmp_path / "state").exists()
    kept = tmp_path / "kept"
    kept.mkdir()  # a state dir the user made is theirs: it stays
    proc = subprocess.run(
        [sys.executable, "-m", "shoal.cli", "serve", "m.shoal", "--state-dir", "kept",
         "--http", "nonsense"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and kept.is_dir()


def test_training_speed_starts_at_the_first_learned_batch() -> None:
    """What comes before the first batch (numba compiling the kernels) is not training time."""
    from shoal.commands import _ProgressView
    from shoal.data.reader import ReadStats
    from shoal.model import kernels
    from shoal.model.model import Progress
    from shoal.train.single import TrainReport

    view = _ProgressView(1000, 1)
    prog = Progress()
    prog.stats[kernels.LEARNED] = 1000
    view(0, prog, ReadStats())  # the first batch: 1,000 examples, after the kernels are ready
    prog.stats[kernels.LEARNED] = 5000
    view(0, prog, ReadStats())
    view.close()
    assert view.first_at is not None and view.end >= view.first_at
    # the run took 60 s by the wall clock, nearly all of it before the first batch
    report = TrainReport(examples=5000, passes=1, seconds=60.0)
    seconds, rate = view.speed(report)
    assert seconds == max(1e-9, view.end - view.first_at) and seconds < 60.0
    assert rate == 4000 / seconds
    one_batch = TrainReport(examples=1000, passes=1, seconds=2.0)  # nothing after the first
    assert view.speed(one_batch) == (2.0, 500.0)
    view.compiled = 1.5  # of those 2 s, numba compiled for 1.5
    assert view.speed(one_batch) == (0.5, 2000.0)


def test_every_help_screen_shows_defaults_and_examples(capsys) -> None:
    import argparse

    from shoal.cli import _parser

    top = _parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    assert "hashed sparse features" in top.format_help().split("positional")[0]  # for users
    for name, parser in {"": top, **sub.choices}.items():
        text = parser.format_help()
        assert "examples:\n  shoal " in text, name
        for action in parser._actions:
            default = action.default
            if not action.option_strings or default is None or isinstance(default, bool):
                continue
            if default == argparse.SUPPRESS:
                continue
            assert "default" in parser._get_formatter()._get_help_string(action), (
                name,
                action.dest,
            )
    for name, flags in {"train": ("--learning-rate", "--l1", "--l2"), "serve": ("--keep-versions",
                        "--learning-rate", "--workers")}.items():  # fmt: skip
        text = " ".join(sub.choices[name].format_help().split())
        for flag in flags:
            if flag == "--workers" and name == "serve":
                continue
            described = text.split(f" {flag} ", 1)[1].split(" --", 1)[0]
            assert "default" in described, (name, flag, described)


def test_several_passes_report_the_best_pass_in_one_process_and_on_workers(
    files: dict[str, Path], capsys
) -> None:
    d = files["dir"]
    for workers in ([], ["--workers", "1"]):
        rc = main(["train", str(files["train"]), "-o", str(d / "p.shoal"), "--passes", "4",
                   "--early-stop", "2", *workers])  # fmt: skip
        assert rc == 0
        out = capsys.readouterr().out
        assert "holdout loss" in out and "the best: its model is kept" in out, workers
