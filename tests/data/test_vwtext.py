"""VW text read exactly as Vowpal Wabbit 9 reads it (issue #11), line by line.

The expected numbers were printed by VW 9.11 itself (``vw.parse`` and ``--audit``, ``-b 18
--noconstant``); the tests at the end ask a live VW when the ``vowpalwabbit`` package is
installed, on these lines and on VW's own test files (``../shared/data/vw_rcv1_small``).
"""

from __future__ import annotations

import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from shoal.data.batch import Batch
from shoal.data.reader import TextReader
from shoal.errors import DataError
from shoal.features.spec import FeatureSpec
from shoal.model.model import Model

DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data" / "vw_rcv1_small"


def read_line(tmp_path: pathlib.Path, line: str, **spec: object) -> Batch:
    """The one example of ``line``, at 18 bits without the constant (VW's -b 18 --noconstant)."""
    path = tmp_path / "one.vw"
    path.write_text(line + "\n")
    reader = TextReader(spec=FeatureSpec(constant=False, **spec), format="vw")  # type: ignore[arg-type]
    (batch,) = list(reader.read(path))
    assert len(batch) == 1
    return batch


def indices(batch: Batch) -> list[int]:
    return batch.indices.tolist()


# -- the label section -------------------------------------------------------------------------

TAGS = [
    # line, label (nan: unlabeled), weight, tag, indices (VW 9)
    ("1 0| a b", 1.0, 1.0, "0", [92594, 163331]),  # the tag touches the bar: weight stays 1
    ("1 2| a", 1.0, 1.0, "2", [92594]),
    (" unlabeled/2| a b c", math.nan, 1.0, "unlabeled/2", [92594, 163331, 185951]),
    ("1 2 'a| x", 1.0, 2.0, "a", [170779]),
    ("'t| x", math.nan, 1.0, "t", [170779]),
    ("2.5 0| x", 2.5, 1.0, "0", [170779]),
    ("1 2 | x", 1.0, 2.0, "", [170779]),  # a blank before the bar: a weight
    ("1 2 'a", 1.0, 2.0, "a", []),  # no bar, no features
    ("1", 1.0, 1.0, "", []),  # VW: unlabeled, tagged 1 (shoal: no bar, no touching)
    ("1 2 ad1", 1.0, 2.0, "ad1", []),
    ("0 1 0 'tag | a", 0.0, 1.0, "tag", [92594]),  # an initial prediction of 0 changes nothing
]


@pytest.mark.parametrize(("line", "label", "weight", "tag", "expected"), TAGS)
def test_label_weight_and_tag_as_vw(
    tmp_path: pathlib.Path, line: str, label: float, weight: float, tag: str, expected: list[int]
) -> None:
    got = read_line(tmp_path, line)
    assert np.array_equal(got.labels, [label], equal_nan=True)
    assert got.weights.tolist() == [weight]
    assert got.tags() == [tag]
    assert indices(got) == expected


@pytest.mark.parametrize(
    ("line", "initial", "tag"),
    [
        ("0 1 0.5 'tag | a", 0.5, "tag"),  # VW: initial prediction 0.5; never the tag
        ("0 1 0.5 | a", 0.5, ""),
        ("1 2 -3 | a", -3.0, ""),
        ("1 2 3", 3.0, ""),  # VW: tag 3 (a line without '|'); shoal: as with features
    ],
)
def test_an_initial_prediction_is_read_and_starts_the_margin(
    tmp_path: pathlib.Path, line: str, initial: float, tag: str
) -> None:
    """VW's initial prediction (the label's third number) is added to the row's margin, in
    prediction as in learning; rows without one start at 0."""
    path = tmp_path / "init.vw"
    path.write_text(f"1 | a\n{line}\n")
    (batch,) = TextReader(spec=FeatureSpec()).read(path)
    assert batch.initial is not None and batch.initial.tolist() == [0.0, initial]
    assert batch.tags() == ["", tag]
    margins = Model(FeatureSpec()).decision_function(batch)
    assert margins.tolist() == [0.0, initial]  # a new model's weights are all 0
    plain = tmp_path / "plain.vw"
    plain.write_text("1 | a\n0 1 0 | a\n")
    assert next(iter(TextReader(spec=FeatureSpec()).read(plain))).initial is None


@pytest.mark.parametrize(
    ("line", "token", "what"),
    [
        ("1 nan | x", "nan", "importance weight"),  # VW: weight 0
        ("1 1e40 | x", "1e40", "importance weight"),  # VW: weight inf
        ("1 -2 | x", "-2", "importance weight"),  # VW: weight -2
        ("inf | x", "inf", "label"),  # VW: label inf
        ("1 'a 2 | x", "'a", "importance weight"),  # VW: weight 0, initial 2
        ("1 2 3 4 | x", "4", "unexpected token"),  # VW: too many tokens, unlabeled
        ("x:y", "x:y", "label"),  # VW: an unlabeled example tagged x:y
        ("1 | x:1e40", "x:1e40", "feature value"),  # VW: value inf
        ("1 | x:nan", "x:nan", "feature value"),
    ],
)
def test_what_shoal_refuses_is_named_with_its_line(
    tmp_path: pathlib.Path, line: str, token: str, what: str
) -> None:
    path = tmp_path / "bad.vw"
    path.write_text(f"1 | a\n\n{line}\n")
    with pytest.raises(DataError) as info:
        list(TextReader(spec=FeatureSpec()).read(path))
    assert info.value.line == 3
    assert what in str(info.value) and f"'{token}'" in str(info.value)


def test_a_bare_word_as_weight_is_a_tag_in_shoal(tmp_path: pathlib.Path) -> None:
    """``1 ad1 |a x``: VW reads ``ad1`` as a bad weight (0, with a warning, so the example is
    never learned); shoal takes a last word that is no number at all for the tag."""
    got = read_line(tmp_path, "1 ad1 |a x")
    assert (got.labels[0], got.weights[0], got.tags()) == (1.0, 1.0, ["ad1"])
    assert indices(got) == [55432]  # VW's hash of x in namespace a
    for word in ("news", "info", "nano", "i", "n", "-x", "Infinite", "nan2"):
        assert read_line(tmp_path, f"1 2 {word} |a x").tags() == [word]


@pytest.mark.parametrize("word", ["inf", "-INF", "NaN", "+nan", "Infinity", "-.5", "1e", "5.x"])
def test_a_word_vw_reads_as_a_number_is_never_a_bare_tag(tmp_path: pathlib.Path, word: str) -> None:
    path = tmp_path / "w.vw"
    path.write_text(f"1 {word} |a x\n")
    with pytest.raises(DataError, match="importance weight"):
        list(TextReader(spec=FeatureSpec()).read(path))


# -- features ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("1 | 12345678901", [7221]),  # digits of any length: the number mod 2**32
        ("1 |f 99999999999999999999999:2", [34874]),
        ("1 |f 0000000000000000000000000042 -3 +3", [34917, 12089, 159209]),
    ],
)
def test_all_digit_names_hash_as_vw(tmp_path: pathlib.Path, line: str, expected: list[int]) -> None:
    assert indices(read_line(tmp_path, line)) == expected


def test_a_long_number_hashed_with_the_old_rule_under_hash_version_1(
    tmp_path: pathlib.Path,
) -> None:
    """A model file written before stays with murmur past 10 digits (what it was trained on)."""
    assert indices(read_line(tmp_path, "1 | 12345678901", hash_version=1)) == [95184]


@pytest.mark.parametrize(
    ("line", "expected", "values"),
    [
        ("3 | :1", [0], [1.0]),
        (
            "3 |f :1 :2 x :3 |g :1 | :5 :6",  # the position counts anonymous features only
            [34875, 34876, 76460, 34877, 189462, 0, 1],
            [1.0, 2.0, 1.0, 3.0, 1.0, 5.0, 6.0],
        ),
        ("1 |f a:1 :2 |f :3", [14355, 34875, 34875], [1.0, 2.0, 3.0]),  # each |f starts over
        ("1 |f :0 :2 a:0 :3", [34876, 34877], [2.0, 3.0]),  # a zero counts, though dropped
        ("1 |f:2 :1", [34875], [2.0]),  # the namespace's scale applies
    ],
)
def test_anonymous_features_are_the_namespace_hash_plus_their_position(
    tmp_path: pathlib.Path, line: str, expected: list[int], values: list[float]
) -> None:
    got = read_line(tmp_path, line)
    assert indices(got) == expected
    assert got.values.tolist() == values


def test_the_seed_hashes_the_default_namespace_as_vw(tmp_path: pathlib.Path) -> None:
    """VW --hash_seed 5: the default namespace hashes to MurmurHash3("", 5), not to 5."""
    got = read_line(tmp_path, "3 |f :1 :2 x :3 |g :1 | :5 :6 12", seed=5)
    vw = [2172521005, 2172521006, 198341, 2172521007, 2129174499, 3423425485, 3423425486, 87001]
    assert indices(got) == [h & 0x3FFFF for h in vw]


# -- interactions --------------------------------------------------------------------------------

AB = "1 |A a b |B x y"
BASE_AB = [239656, 149189, 100887, 122473]


@pytest.mark.parametrize(
    ("line", "terms", "expected"),
    [
        # -q ff: every pair i <= j, a feature with itself too
        ("1 |f a b c", ("ff",), [32250, 161933, 236105, 39176, 97228, 186176]),
        (AB, ("AB", "AB"), [15599, 26769, 57864, 46710]),  # -q AB -q AB: one interaction
        (AB, ("AB", "BA"), [15599, 26769, 57864, 46710]),  # -q AB -q BA: one too
        (AB, ("BA",), [248349, 140528, 178019, 219534]),  # -q BA alone keeps its order
        (AB, ("AAB",), [199527, 220953, 178704, 192110, 215865, 204615]),
        (AB, ("BAB",), [157226, 143956, 82474, 153743, 134385, 189867]),  # sorted: ABB
        (AB, ("ABA",), [199527, 220953, 178704, 192110, 215865, 204615]),  # sorted: AAB
        (
            "1 |f a b c",
            ("fff",),
            [157853, 28138, 102190, 129171, 6743, 16203, 187132, 211000, 146820, 198240],
        ),
    ],
)
def test_interactions_as_vw_9(
    tmp_path: pathlib.Path, line: str, terms: tuple[str, ...], expected: list[int]
) -> None:
    got = indices(read_line(tmp_path, line, interactions=terms))
    n_base = 3 if line.startswith("1 |f") else 4
    assert got[:n_base] == ([14355, 146788, 253856] if n_base == 3 else BASE_AB)
    assert got[n_base:] == expected


# -- against a live VW -------------------------------------------------------------------------

VW_SCRIPT = r"""
import json, sys
from vowpalwabbit import pyvw

vw = pyvw.Workspace(sys.argv[1])
out = []
for line in open(sys.argv[2]).read().splitlines():
    ex = vw.parse(line)
    feats = []
    for i in range(ex.num_namespaces()):
        ns = ex.get_ns(i)
        for j in range(ex.num_features_in(ns)):
            feats.append([ex.feature(ns, j), ex.feature_weight(ns, j)])
    label = ex.get_simplelabel_label()
    out.append({
        "label": None if label > 3e38 else label, "weight": ex.get_simplelabel_weight(),
        "initial": ex.get_simplelabel_initial(), "tag": ex.get_tag(), "features": feats,
    })
    vw.finish_example(ex)
vw.finish()
json.dump(out, sys.stdout)
"""


def vw_parse(path: pathlib.Path, args: str) -> list[dict]:
    """VW 9's own reading of every line of ``path`` (in a child process: VW writes to the
    process's stdout and stderr)."""
    pytest.importorskip("vowpalwabbit")
    import json

    done = subprocess.run(
        [sys.executable, "-c", VW_SCRIPT, f"--quiet --noconstant {args}", str(path)],
        capture_output=True,
        check=True,
        timeout=300,
    )
    return json.loads(done.stdout)


def assert_same_as_vw(path: pathlib.Path, spec: FeatureSpec, args: str) -> tuple[int, int]:
    """Every line of ``path``: shoal's label, weight, initial prediction, tag and indices equal
    VW's, its values are within ``MAX_ULPS``. Returns the number of lines and the largest
    difference in ulps."""
    expected = vw_parse(path, args)
    batches = list(TextReader(spec=spec, format="vw").read(path))
    rows = [(b, i) for b in batches for i in range(len(b))]
    assert len(rows) == len(expected)
    worst = 0
    for (b, i), vw in zip(rows, expected, strict=True):
        where = b.where(i)
        label = math.nan if vw["label"] is None else vw["label"]
        assert np.array_equal([b.labels[i]], [label], equal_nan=True), where
        got = (b.weights[i], b.tag(i), b.initial_margins()[i])
        assert got == (vw["weight"], vw["tag"], vw["initial"]), where
        s, e = b.indptr[i], b.indptr[i + 1]
        assert b.indices[s:e].tolist() == [h & spec.mask for h, _ in vw["features"]], where
        values = np.array([v for _, v in vw["features"]], dtype=np.float32)
        ulps = float32_ulps(b.values[s:e], values)
        assert ulps.max(initial=0) <= MAX_ULPS, where
        worst = max(worst, int(ulps.max(initial=0)))
    return len(rows), worst


# VW's own decimal parser is not correctly rounded: '9.5842101e-02' is 2 float32 ulps below
# the nearest float32, which shoal (like Python's float()) gives.
MAX_ULPS = 4


def float32_ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many float32 values lie between a and b (same signs assumed, as here)."""
    ia = a.astype(np.float32).view(np.int32).astype(np.int64)
    ib = b.astype(np.float32).view(np.int32).astype(np.int64)
    return np.abs(ia - ib)


def test_the_issue_lines_read_as_a_live_vw_reads_them(tmp_path: pathlib.Path) -> None:
    lines = [line for line, *_ in TAGS if "|" in line] + [
        "1 | 12345678901",
        "1 |f 99999999999999999999999:2 0000000000000000000000000042 -3 +3",
        "3 |f :1 :2 x :3 |g :1 | :5 :6",
        "1 |f a:1 :2 |f :3",
        "1 |f :0 :2 a:0 :3",
        "1 |f:2 :1 |user id=7 age:0.31 |ad campaign=3 price:2.5",
        "0 1 0.5 'tag | a",
        "0 1 0.5 | a",
        "1 2 -3 | a",
    ]
    path = tmp_path / "issue.vw"
    path.write_text("\n".join(lines) + "\n")
    for seed in (0, 5):
        spec = FeatureSpec(bits=18, seed=seed, constant=False)
        assert assert_same_as_vw(path, spec, f"-b 18 --hash_seed {seed}") == (len(lines), 0)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name", ["0001.train.vw", "0001.test.vw", "rcv1_small.train.vw", "rcv1_small.test.vw"]
)
def test_vw_test_files_read_as_vw_reads_them(name: str) -> None:
    """VW's own test sets, line by line: labels, weights, tags, hashes and values."""
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/data)")
    n, worst = assert_same_as_vw(path, FeatureSpec(bits=24, constant=False), "-b 24")
    assert n > 0 and worst <= MAX_ULPS


AUDIT_SCRIPT = r"""
import sys
from vowpalwabbit import pyvw

vw = pyvw.Workspace(sys.argv[1])
for line in open(sys.argv[2]).read().splitlines():
    vw.predict(line)
vw.finish()
"""


def vw_audit(path: pathlib.Path, args: str) -> list[list[int]]:
    """The indices VW 9's ``--audit`` prints for each line of ``path``, interactions included."""
    pytest.importorskip("vowpalwabbit")
    done = subprocess.run(
        [sys.executable, "-c", AUDIT_SCRIPT, f"--quiet --audit {args}", str(path)],
        capture_output=True,
        check=True,
        timeout=300,
        text=True,
    )
    rows = []
    for line in done.stdout.splitlines():
        if line.startswith("\t"):  # name:index:value:weight@offset, tab separated
            rows.append([int(item.rsplit(":", 3)[1]) for item in line.split("\t")[1:]])
    return rows


@pytest.mark.realdata
@pytest.mark.parametrize(("terms", "args"), [(("ff",), "-q ff"), (("fff",), "--cubic fff")])
def test_interactions_on_vw_test_files_as_vw_audit(
    tmp_path: pathlib.Path, terms: tuple[str, ...], args: str
) -> None:
    """-q ff and --cubic fff on the first lines of VW's own test set, against VW's --audit."""
    src = DATA / "0001.train.vw"
    if not src.exists():
        pytest.skip(f"{src} is absent (../shared/data)")
    lines = [line.split(" ", 1)[0] + " |f" + line.split("|features", 1)[1][:150].rsplit(" ", 1)[0]
             for line in src.read_text().splitlines()[:20]]  # fmt: skip
    path = tmp_path / "head.vw"
    path.write_text("\n".join(lines) + "\n")
    expected = vw_audit(path, f"-b 24 {args}")
    spec = FeatureSpec(bits=24, interactions=terms)
    batches = list(TextReader(spec=spec).read(path))
    got = [
        b.indices[b.indptr[i] : b.indptr[i + 1]].tolist() for b in batches for i in range(len(b))
    ]
    assert len(got) == len(expected) == len(lines)
    for line, mine, vw in zip(lines, got, expected, strict=True):
        assert sorted(mine) == sorted(vw), line
        assert len(mine) > 20
