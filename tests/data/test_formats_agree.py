"""The same records in every format give identical batches, hence identical models.

VW text is the reference: a numeric value ``x`` of ``NAME`` in namespace ``NS`` is ``|NS
NAME:x``, a categorical value ``v`` is ``|NS NAME=v``. svmlight, CSV under a schema, Parquet
(with a schema or inferring one), JSON lines (schemaless or under the schema), Arrow tables,
pandas DataFrames, dicts and scipy matrices must all agree with it bit for bit.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp

from shoal.cli import main
from shoal.data import frames
from shoal.data.batch import Batch
from shoal.data.cache import CachedReader
from shoal.data.reader import TextReader, guess_format
from shoal.features.schema import ColumnSchema
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.model import Model
from shoal.train.coordinator import ClusterOptions, Coordinator
from shoal.train.local import LocalExecutor
from shoal.train.single import TrainOptions
from tests.data import same_records as sr
from tests.data.test_files import as_uri

SPEC = FeatureSpec(bits=18, interactions=("u ", "  "))  # user x default, default x default
WITH_SCHEMA = dataclasses.replace(SPEC, schema=sr.SCHEMA)
RECORDS = sr.make_records(200)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("formats")
    out = {
        "vw": d / "r.vw",
        "csv": d / "r.csv",
        "jsonl": d / "r.jsonl",
        "parquet": d / "r.parquet",
    }
    out["vw"].write_text(sr.vw_text(RECORDS))
    out["csv"].write_text(sr.csv_text(RECORDS))
    out["jsonl"].write_text(sr.jsonl_text(RECORDS))
    sr.write_parquet(out["parquet"], sr.arrow_table(RECORDS), row_group_size=37)
    return out


def read(path: Path | str, spec: FeatureSpec, **kw: object) -> list:
    return list(TextReader(spec=spec, block_bytes=1500, **kw).read(path))  # type: ignore[arg-type]


MODELS = {  # a model of each kind over the records (explicit settings: whatever the defaults)
    "linear": lambda: Model(WITH_SCHEMA, LearnerConfig(loss="logistic", optimizer="adagrad")),
    "fm": lambda: Model(
        WITH_SCHEMA,
        LearnerConfig(optimizer="adagrad", model="fm", rank=3, factor_rate=0.05, init_scale=0.1),
    ),
    "ffm": lambda: Model(
        dataclasses.replace(WITH_SCHEMA, interactions=(), fields=(" ", "u")),
        LearnerConfig(optimizer="adagrad", model="ffm", rank=3, factor_rate=0.05, init_scale=0.1),
    ),
}


def learn(batches: list, kind: str = "linear") -> bytes:
    model = MODELS[kind]()
    for _ in range(2):
        for b in batches:
            model.learn(b)
    return model.to_bytes()


def test_every_file_format_gives_the_batches_of_vw_text(paths: dict[str, Path]) -> None:
    vw = read(paths["vw"], SPEC)
    ref = sr.concat(vw)
    assert len(ref["labels"]) == 200 and len(set(ref["indices"].tolist())) > 100
    variants = {
        "csv": read(paths["csv"], WITH_SCHEMA),
        "jsonl": read(paths["jsonl"], SPEC),
        "jsonl+schema": read(paths["jsonl"], WITH_SCHEMA),
        "parquet+schema": read(paths["parquet"], WITH_SCHEMA),
        "parquet+schema, 1 row a batch": read(paths["parquet"], WITH_SCHEMA, batch_rows=1),
    }
    for name, batches in variants.items():
        got = sr.concat(batches)
        sr.assert_same(ref, got, lines=name != "csv")
        if name == "csv":  # the header is line 1
            assert (got["lines"] == ref["lines"] + 1).all()
        assert learn(batches) == learn(vw), name


def svmlight_text(records: list[sr.Record]) -> str:
    """The records' numeric features I1..I3 as svmlight's columns 1..3."""
    return "".join(
        f"{r.label} "
        + " ".join(f"{j}:{r.values[n]}" for j, n in enumerate(sr.DEFAULT_NS[:3], 1)
                   if r.values[n] is not None)
        + "\n"
        for r in records
    )  # fmt: skip


TEXTS = {  # name: (text, spec, the format sniffed from the text; CSV is never guessed)
    "r.vw": (sr.vw_text, SPEC, "vw"),
    "r.svm": (svmlight_text, SPEC, "svmlight"),
    "r.csv": (sr.csv_text, WITH_SCHEMA, None),
    "r.tsv": (lambda records: sr.csv_text(records).replace(",", "\t"), WITH_SCHEMA, None),
    "r.jsonl": (sr.jsonl_text, SPEC, "jsonl"),
}


@pytest.mark.parametrize("name", TEXTS)
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_a_file_uri_reads_as_its_path(tmp_path: Path, name: str, gz: bool) -> None:
    """Through pyarrow's file system, the same bytes: blocks, CSV headers, gzip, line numbers."""
    text, spec, sniffed = TEXTS[name]
    data = text(RECORDS).encode()
    path = tmp_path / (name + ".gz" if gz else name)
    path.write_bytes(gzip.compress(data) if gz else data)
    local = read(path, spec)
    assert sum(len(b) for b in local) == 200 and len(local) > 1
    sr.assert_same(sr.concat(local), sr.concat(read(as_uri(path), spec)))
    if sniffed:
        mystery = path.with_name("records")  # no suffix: the format is told by the bytes
        mystery.write_bytes(path.read_bytes())
        assert guess_format(as_uri(mystery)) == guess_format(mystery) == sniffed


def test_inferred_parquet_schema_equals_vw_text(tmp_path: Path) -> None:
    """Without a schema, Parquet's column types decide; every column is in the default
    namespace, as VW's ``| ``."""
    vw = tmp_path / "r.vw"
    vw.write_text(sr.vw_text(RECORDS, user=False))
    pq_path = sr.write_parquet(tmp_path / "r.parquet", sr.arrow_table(RECORDS, user=False))
    ref = sr.concat(read(vw, SPEC))
    sr.assert_same(ref, sr.concat(read(pq_path, SPEC)))


@pytest.mark.parametrize(
    "spec", [SPEC, FeatureSpec(bits=18, fields=(" ",))], ids=["-q", "ffm of the default namespace"]
)
def test_svmlight_csv_parquet_jsonl_and_a_matrix_agree(tmp_path: Path, spec: FeatureSpec) -> None:
    """Numeric features named by column numbers: svmlight's ``j:x`` is ``| j:x`` in VW (its
    field, the default namespace's)."""
    rng = random.Random(11)
    rows = [
        (rng.choice([1, -1]), {j: round(rng.uniform(-2, 2), 2) for j in rng.sample(range(1, 5), 3)})
        for _ in range(200)
    ]
    svm = tmp_path / "r.svm"
    svm.write_text("".join(f"{y} " + " ".join(f"{j}:{v}" for j, v in sorted(f.items())) + "\n"
                           for y, f in rows))  # fmt: skip
    csv = tmp_path / "r.csv"
    csv.write_text("".join(f"{y}," + ",".join(str(f.get(j, "")) for j in range(1, 5)) + "\n"
                           for y, f in rows))  # fmt: skip
    table = pa.table({"label": [y for y, _ in rows]}
                     | {str(j): [f.get(j) for _, f in rows] for j in range(1, 5)})  # fmt: skip
    pq_path = sr.write_parquet(tmp_path / "r.parquet", table)
    jl = tmp_path / "r.jsonl"
    jl.write_text("".join(
        json.dumps({"label": y} | {str(j): v for j, v in sorted(f.items())}) + "\n"
        for y, f in rows
    ))  # fmt: skip
    schema_spec = dataclasses.replace(spec, schema=ColumnSchema.parse("label,1..4"))
    ref = sr.concat(read(svm, spec))
    if spec.fields:  # the features in field 0, the constant in none
        assert set((ref["indices"] >> spec.bits).tolist()) == {0, 1}
    for name, batches in {
        "csv": read(csv, schema_spec),
        "parquet": read(pq_path, spec),
        "jsonl": read(jl, spec),
    }.items():
        sr.assert_same(ref, sr.concat(batches), lines=True), name
    dense = np.zeros((len(rows), 5))
    for i, (_, f) in enumerate(rows):
        for j, v in f.items():
            dense[i, j] = v
    m = frames.batch_from_csr(sp.csr_matrix(dense), spec, labels=[y for y, _ in rows])
    sr.assert_same(ref, sr.concat([m]), lines=True)


def test_tables_frames_and_dicts_equal_the_parquet_file(paths: dict[str, Path]) -> None:
    want = sr.concat(read(paths["parquet"], WITH_SCHEMA))
    table = sr.arrow_table(RECORDS)
    df = table.to_pandas()
    assert isinstance(df, pd.DataFrame) and df["city"].dtype == "category"
    variants = {
        "table": frames.batch_from_arrow(table, WITH_SCHEMA),
        "record batch": frames.batch_from_arrow(table.to_batches()[0], WITH_SCHEMA),
        "chunked table": frames.batch_from_arrow(
            pa.concat_tables([table[:50], table[50:]]), WITH_SCHEMA
        ),
        "pandas": frames.batch_from_pandas(df, WITH_SCHEMA),
    }
    for name, batch in variants.items():
        sr.assert_same(want, sr.concat([batch])), name
    labels = [r.label for r in RECORDS]
    weights = [r.weight for r in RECORDS]
    for spec in (SPEC, WITH_SCHEMA):  # River's namespaced dicts, with or without the schema
        got = sr.concat([frames.batch_from_dicts(sr.dicts(RECORDS), spec, labels, weights)])
        for k in ("indices", "values", "lens", "labels", "weights", "lines"):
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"dicts: {k}")


def test_a_dataframe_infers_its_schema_as_parquet_does(tmp_path: Path) -> None:
    vw = tmp_path / "r.vw"
    vw.write_text(sr.vw_text(RECORDS, user=False))
    df = sr.arrow_table(RECORDS, user=False).to_pandas()
    sr.assert_same(sr.concat(read(vw, SPEC)), sr.concat([frames.batch_from_pandas(df, SPEC)]))


@pytest.mark.parametrize("kind", MODELS)
def test_learn_one_and_learn_frame_equal_learning_the_file(
    paths: dict[str, Path], kind: str
) -> None:
    one, frame, table = (MODELS[kind]() for _ in range(3))
    reference = learn(read(paths["parquet"], one.spec), kind)
    df = sr.arrow_table(RECORDS).to_pandas()
    bare = sr.arrow_table(RECORDS).drop_columns(["label", "weight"])
    labels, weights = df["label"].to_numpy(), df["weight"].to_numpy()
    for _ in range(2):
        for r, x in zip(RECORDS, sr.dicts(RECORDS), strict=True):
            one.learn_one(x, r.label, r.weight)
        frame.learn_frame(df)
        table.learn_frame(bare, labels, weights)  # labels and weights given, not in the table
    assert one.to_bytes() == reference
    assert frame.to_bytes() == reference
    assert table.to_bytes() == reference
    p = frame.predict_frame(df)
    assert p.shape == (200,) and 0 <= p.min() < p.max() <= 1 and len(np.unique(p)) > 100
    assert frame.predict_one(sr.dicts(RECORDS)[5]) == p[5]


def test_the_cli_trains_the_same_model_from_vw_jsonl_and_parquet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "r.vw").write_text(sr.vw_text(RECORDS, user=False))
    (tmp_path / "r.txt").write_text(sr.jsonl_text(RECORDS, user=False))  # --format says
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    table = sr.arrow_table(RECORDS, user=False)
    sr.write_parquet(pq_dir / "part-0.parquet", table[:120], row_group_size=50)
    sr.write_parquet(pq_dir / "part-1.parquet", table[120:], row_group_size=50)
    (pq_dir / "_SUCCESS").write_text("")  # as Spark leaves it: hidden, not data
    models = {}
    for name, data in {"vw": "r.vw", "jsonl": "r.txt", "parquet": "pq"}.items():
        out = tmp_path / f"{name}.shoal"
        args = ["train", str(tmp_path / data), "-o", str(out), "-q", "  ", "--passes", "2"]
        assert main([*args, "--format", name] if name == "jsonl" else args) == 0
        models[name] = out.read_bytes()
    assert models["jsonl"] == models["vw"]
    assert models["parquet"] == models["vw"]
    pred = tmp_path / "pred.txt"
    assert main(["predict", str(tmp_path / "vw.shoal"), str(pq_dir), "-o", str(pred)]) == 0
    assert len(pred.read_text().split()) == 200
    capsys.readouterr()
    for data in (str(pq_dir), str(tmp_path / "r.vw")):
        assert main(["eval", str(tmp_path / "vw.shoal"), data, "--json"]) == 0
    a, b = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert a == b and a["examples"] == 200


def test_distributed_training_reads_parquet_and_jsonl_as_vw(tmp_path: Path) -> None:
    """Workers read Parquet shards (whole files or row groups) and JSON-lines byte ranges."""
    table = sr.arrow_table(RECORDS, user=False)
    half = {"vw": [], "jsonl": [], "parquet": []}  # type: dict[str, list[Path]]
    for i, part in enumerate((RECORDS[:100], RECORDS[100:])):
        for fmt, text in (("vw", sr.vw_text), ("jsonl", sr.jsonl_text)):
            p = tmp_path / f"{i}.{fmt}"
            p.write_text(text(part, user=False))
            half[fmt].append(p)
        half["parquet"].append(
            sr.write_parquet(tmp_path / f"{i}.parquet", table[100 * i : 100 * i + 100])
        )
    opts = TrainOptions(passes=2)
    cluster = ClusterOptions(workers=1, shards=1)  # each file whole: the same plan in every format
    out = {}
    for fmt, files in half.items():
        model = Model(SPEC, LearnerConfig(loss="logistic"))
        coord = Coordinator(model, files, opts, cluster, executor=LocalExecutor(1))
        out[fmt] = coord.run()[0].to_bytes()
        assert [s.end for s in coord.shards] == [None, None]
    assert out["jsonl"] == out["vw"]
    assert out["parquet"] == out["vw"]


def test_ignored_and_non_ascii_namespaces_agree(tmp_path: Path) -> None:
    """A namespace's letter is the first byte of its name; ``ignore`` drops it everywhere."""
    schema = ColumnSchema.parse("label,x:num:ns=été,c:cat:ns=été,y:num:ns=b")
    rows = [(1, 0.5, "p", 2.0), (-1, 1.5, "q", 3.0)]
    vw = tmp_path / "r.vw"
    vw.write_text("".join(f"{a} |été x:{b} c={c} |b y:{d}\n" for a, b, c, d in rows))
    csv = tmp_path / "r.csv"
    csv.write_text("".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows))
    jl = tmp_path / "r.jsonl"
    jl.write_text("".join(
        json.dumps({"label": a, "été": {"x": b, "c": c}, "b": {"y": d}}) + "\n"
        for a, b, c, d in rows
    ))  # fmt: skip
    pq_path = sr.write_parquet(
        tmp_path / "r.parquet",
        pa.table({k: [r[i] for r in rows] for i, k in enumerate(("label", "x", "c", "y"))}),
    )
    specs = [FeatureSpec(bits=18, ignore=i, fields=f) for i in ("", "b") for f in ((), ("b",))]
    for spec in specs:  # with an FFM whose one field is b: été is in none (linear only)
        with_schema = dataclasses.replace(spec, schema=schema)
        ref = sr.concat(read(vw, spec))
        assert ref["lens"].tolist() == ([4, 4] if not spec.ignore else [3, 3])
        if spec.fields:
            fields = [1, 1, 0, 1] if not spec.ignore else [1, 1, 1]  # été x, c, b y, constant
            assert (ref["indices"] >> 18).tolist() == fields * 2
        for path, s in ((csv, with_schema), (jl, spec), (jl, with_schema), (pq_path, with_schema)):
            sr.assert_same(ref, sr.concat(read(path, s)), lines=False), path


FFM_FIELDS = {"a field each": (" ", "u"), "user only": ("u",), "one field of both": (" u",)}


def ffm(spec: FeatureSpec) -> Model:
    cfg = LearnerConfig(model="ffm", optimizer="adagrad", rank=3, factor_rate=0.05)
    return Model(spec, cfg)


@pytest.mark.parametrize("fields", FFM_FIELDS.values(), ids=list(FFM_FIELDS))
def test_every_reader_gives_an_ffm_the_fields_of_vw_text(
    paths: dict[str, Path], tmp_path: Path, fields: tuple[str, ...]
) -> None:
    """A feature's field is its namespace's in every format (a schema column's: its ``ns=``,
    else the default namespace, ' '), the cache keeps it, and so every reader trains the same
    FFM and predicts the same."""
    spec = FeatureSpec(bits=18, fields=fields)
    with_schema = dataclasses.replace(spec, schema=sr.SCHEMA)
    ref = sr.concat(read(paths["vw"], spec))
    # what the fields must be: ' ' features first in each row, then 'u' ones, the constant last
    plain = sr.concat(read(paths["vw"], FeatureSpec(bits=18)))
    no_user = sr.concat(read(paths["vw"], FeatureSpec(bits=18, ignore="u")))
    codes = spec.field_codes() >> 18
    want = np.concatenate([
        [codes[ord(" ")]] * (d - 1) + [codes[ord("u")]] * (n - d) + [codes[256]]
        for n, d in zip(plain["lens"], no_user["lens"], strict=True)
    ])  # fmt: skip
    np.testing.assert_array_equal(ref["indices"] >> 18, want)
    np.testing.assert_array_equal(ref["indices"] & spec.mask, plain["indices"])
    assert set(want.tolist()) == set(range(len(fields) + 1))  # every field, and none

    tsv = tmp_path / "r.tsv"
    tsv.write_text(sr.csv_text(RECORDS).replace(",", "\t"))
    cache = CachedReader(reader=TextReader(spec=spec, block_bytes=1500), directory=tmp_path / "c")
    linear_cache = CachedReader(
        reader=TextReader(spec=FeatureSpec(bits=18), block_bytes=1500), directory=tmp_path / "c"
    )
    assert sr.concat(list(linear_cache.read(paths["vw"])))["indices"].max() < spec.size
    labels, weights = [r.label for r in RECORDS], [r.weight for r in RECORDS]
    variants = {
        "csv": read(paths["csv"], with_schema),
        "tsv": read(tsv, with_schema),
        "jsonl": read(paths["jsonl"], spec),
        "jsonl+schema": read(paths["jsonl"], with_schema),
        "parquet+schema": read(paths["parquet"], with_schema),
        "cache, written": list(cache.read(paths["vw"])),  # not the linear spec's file
        "cache, read": list(cache.read(paths["vw"])),
        "table": [frames.batch_from_arrow(sr.arrow_table(RECORDS), with_schema)],
        "dicts": [frames.batch_from_dicts(sr.dicts(RECORDS), spec, labels, weights)],
    }
    assert cache.stats.written == 1 and cache.stats.reads == 1
    reference = ffm(with_schema)
    for b in read(paths["vw"], spec):
        reference.learn(b)
    predictions = reference.predict(Batch.concat(read(paths["vw"], spec)))
    assert np.std(predictions) > 0.01
    for name, batches in variants.items():
        got = sr.concat(batches)
        for k in ("indices", "values", "lens", "labels", "weights"):
            np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{name}: {k}")
        model = ffm(with_schema)
        for b in batches:
            model.learn(b)
        assert model.to_bytes() == reference.to_bytes(), name
        assert np.array_equal(model.predict(Batch.concat(batches)), predictions), name


def test_the_cli_trains_one_ffm_from_vw_csv_parquet_and_its_cache(
    paths: dict[str, Path], tmp_path: Path
) -> None:
    """``--fields ' ,u'``: the default namespace and ``user``, whatever the format; with
    ``--cache`` the second pass and the second run read the cache, and the model is the same."""
    flags = ["--model", "ffm", "--fields", " ,u", "--rank", "2", "--factor-rate", "0.05",
             "--passes", "2", "--bits", "16"]  # fmt: skip
    schema = ["--schema", sr.SCHEMA_TEXT]
    runs = {
        "vw": [str(paths["vw"])],
        "csv": [str(paths["csv"]), *schema],
        "parquet": [str(paths["parquet"]), *schema],
        "jsonl": [str(paths["jsonl"])],
        "vw, cache": [str(paths["vw"]), "--cache", str(tmp_path / "cache")],
        "vw, cache again": [str(paths["vw"]), "--cache", str(tmp_path / "cache")],
    }
    out = {}
    for name, args in runs.items():
        path = tmp_path / f"{name}.shoal"
        assert main(["train", *args, "-o", str(path), *flags]) == 0, name
        out[name] = Model.load(path)
    vw = out.pop("vw")
    assert vw.config.model == "ffm" and vw.spec.fields == (" ", "u")
    for name, model in out.items():
        assert np.array_equal(model.weights, vw.weights), name
        assert np.array_equal(model.counters, vw.counters), name
