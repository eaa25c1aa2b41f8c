"""``TextReader``: Vowpal Wabbit and svmlight text into hashed batches, block by block."""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import pickle
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.data.batch import Batch
from shoal.data.reader import ReadStats, TextReader, guess_format, with_format
from shoal.errors import ConfigError, DataError, ShoalError
from shoal.features.hashing import CONSTANT_HASH, combine, feature_hash
from shoal.features.schema import ColumnSchema
from shoal.features.spec import FeatureSpec
from tests.data.test_files import WHERE, Where

BARE = FeatureSpec(bits=24, constant=False)


@dataclass
class Parsed:
    """The concatenated content of every batch a read yielded."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    tags: list[str]
    lines: np.ndarray
    batches: int
    stats: ReadStats

    def row(self, i: int) -> list[tuple[int, float]]:
        a, b = self.indptr[i], self.indptr[i + 1]
        return list(zip(self.indices[a:b].tolist(), self.values[a:b].tolist(), strict=True))

    def same_rows(self, other: Parsed) -> bool:
        pairs = [
            (self.indptr, other.indptr),
            (self.indices, other.indices),
            (self.values, other.values),
            (self.weights, other.weights),
            (self.lines, other.lines),
        ]
        return (
            all(np.array_equal(a, b) for a, b in pairs)
            and np.array_equal(self.labels, other.labels, equal_nan=True)
            and self.tags == other.tags
        )


def concat(batches: list[Batch], stats: ReadStats) -> Parsed:
    for b in batches:  # every batch is well formed on its own
        assert b.indptr[0] == 0
        assert len(b.indptr) == len(b) + 1
        assert b.nnz == len(b.indices) == len(b.values)
        assert b.indices.dtype == np.uint32
        assert b.values.dtype == np.float32
        assert b.labels.dtype == np.float64
        assert b.weights.dtype == np.float32
    sizes = [np.diff(b.indptr) for b in batches]
    indptr = np.zeros(sum(len(s) for s in sizes) + 1, dtype=np.int64)
    if sizes:
        np.cumsum(np.concatenate(sizes), out=indptr[1:])

    def cat(name: str, dtype: type) -> np.ndarray:
        parts = [getattr(b, name) for b in batches]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    return Parsed(
        indptr=indptr,
        indices=cat("indices", np.uint32),
        values=cat("values", np.float32),
        labels=cat("labels", np.float64),
        weights=cat("weights", np.float32),
        tags=[t for b in batches for t in b.tags()],
        lines=cat("lines", np.int64),
        batches=len(batches),
        stats=stats,
    )


def read(
    path: pathlib.Path | str,
    spec: FeatureSpec = BARE,
    fmt: str | None = None,
    **kwargs: object,
) -> Parsed:
    stats = ReadStats()
    reader = TextReader(spec=spec, format=fmt, **kwargs)  # type: ignore[arg-type]
    return concat(list(reader.read(path, stats)), stats)


@pytest.fixture
def parse(tmp_path: pathlib.Path) -> Callable[..., Parsed]:
    """Write text to a fresh file and read it back."""
    counter = iter(range(1_000_000))

    def parse_text(
        text: str | bytes, fmt: str = "vw", spec: FeatureSpec = BARE, **kwargs: object
    ) -> Parsed:
        path = tmp_path / f"input{next(counter)}.txt"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return read(path, spec, fmt, **kwargs)

    return parse_text


def h(name: str, namespace: str = "", spec: FeatureSpec = BARE) -> int:
    return feature_hash(name, namespace, spec.seed) & spec.mask


# -- Vowpal Wabbit ---------------------------------------------------------------------------


def test_labels_minus_one_one_and_zero_one(parse) -> None:
    got = parse("1 |a x\n-1 |a x\n0 |a x\n+1 |a x\n0.25 |a x\n")
    assert got.labels.tolist() == [1.0, -1.0, 0.0, 1.0, 0.25]
    assert got.stats.rows == 5


def test_unlabeled_lines_have_nan_labels(parse) -> None:
    got = parse("|a x\n'tag |a x\n| x\n1 |a x\n")
    assert np.isnan(got.labels[:3]).all()
    assert got.labels[3] == 1.0
    assert got.tags == ["", "tag", "", ""]


def test_importance_weights(parse) -> None:
    got = parse("1 2.5 |a x\n-1 |a x\n1 0 |a x\n0 1e-3 |a x\n")
    assert got.weights.tolist() == pytest.approx([2.5, 1.0, 0.0, 1e-3])


@pytest.mark.parametrize(
    ("line", "label", "weight", "tag"),
    [
        ("1 'abc |a x", 1.0, 1.0, "abc"),
        ("1 2 'abc |a x", 1.0, 2.0, "abc"),
        ("1 bare |a x", 1.0, 1.0, "bare"),  # shoal's rule: a bare last word is the tag
        ("1 2 bare |a x", 1.0, 2.0, "bare"),
        ("1 2 0 |a x", 1.0, 2.0, ""),  # VW's initial prediction: 0 is read
        ("1 2 3|a x", 1.0, 2.0, "3"),  # against the bar: the tag (VW's rule)
        ("-1 0.5 'user/42|a x", -1.0, 0.5, "user/42"),
        ("'only-a-tag |a x", math.nan, 1.0, "only-a-tag"),
        ("1 '|a x", 1.0, 1.0, ""),
    ],
)
def test_tags(parse, line: str, label: float, weight: float, tag: str) -> None:
    got = parse(line + "\n")
    assert np.array_equal(got.labels, [label], equal_nan=True)
    assert got.weights.tolist() == [weight]
    assert got.tags == [tag]
    assert got.row(0) == [(h("x", "a"), 1.0)]


def test_several_namespaces_hash_the_same_name_differently(parse) -> None:
    got = parse("1 |a x y |bee x |a x\n")
    assert got.row(0) == [
        (h("x", "a"), 1.0),
        (h("y", "a"), 1.0),
        (h("x", "bee"), 1.0),
        (h("x", "a"), 1.0),
    ]
    assert h("x", "a") != h("x", "bee")


def test_features_with_and_without_values(parse) -> None:
    got = parse("1 |a x:2.5 y z:-3e-2 w:+4\n")
    assert got.row(0) == [
        (h("x", "a"), 2.5),
        (h("y", "a"), 1.0),
        (h("z", "a"), pytest.approx(-3e-2)),
        (h("w", "a"), 4.0),
    ]


def test_namespace_scale_multiplies_values(parse) -> None:
    got = parse("1 |a:0.5 x:4 y |b z:3 |a:-2 q\n")
    assert got.row(0) == [
        (h("x", "a"), 2.0),
        (h("y", "a"), 0.5),
        (h("z", "b"), 3.0),  # a new namespace starts unscaled
        (h("q", "a"), -2.0),
    ]


def test_default_namespace(parse) -> None:
    got = parse("1 | a b:2\n1 |\ta\n1 | a |n a | a\n")
    assert got.row(0) == [(h("a"), 1.0), (h("b"), 2.0)]
    assert got.row(1) == [(h("a"), 1.0)]
    assert got.row(2) == [(h("a"), 1.0), (h("a", "n"), 1.0), (h("a"), 1.0)]
    assert h("a") != h("a", "n")


def test_zero_valued_features_are_dropped(parse) -> None:
    got = parse("1 |a x:0 y:0.0 z:-0 w:1 v:0e5\n1 |a:0 x y:3\n")
    assert got.row(0) == [(h("w", "a"), 1.0)]
    assert got.row(1) == []
    assert (got.values != 0).all()


@pytest.mark.parametrize("bits", [4, 18, 30])
def test_constant_feature_follows_the_spec(parse, bits: int) -> None:
    text = "1 |a x:2\n0 |a\n"
    on = parse(text, spec=FeatureSpec(bits=bits))
    mask = (1 << bits) - 1
    assert on.row(0) == [(feature_hash("x", "a") & mask, 2.0), (CONSTANT_HASH & mask, 1.0)]
    assert on.row(1) == [(CONSTANT_HASH & mask, 1.0)]  # a row without features keeps it
    off = parse(text, spec=FeatureSpec(bits=bits, constant=False))
    assert off.row(0) == [(feature_hash("x", "a") & mask, 2.0)]
    assert off.row(1) == []


def test_seed_changes_every_index(parse) -> None:
    text = "1 |a x y |b z\n1 | 5 6\n"
    plain = parse(text)
    seeded = parse(text, spec=FeatureSpec(bits=24, seed=77, constant=False))
    assert plain.indptr.tolist() == seeded.indptr.tolist()
    assert not np.isin(seeded.indices, plain.indices).any()
    assert seeded.row(1)[0][0] == h("5", "", FeatureSpec(bits=24, seed=77))


def test_pair_interaction_has_one_feature_per_pair(parse) -> None:
    spec = FeatureSpec(bits=24, interactions=("ab",), constant=False)
    got = parse("1 |a x:2 y z |b u:3 v\n", spec=spec)
    a = [("x", 2.0), ("y", 1.0), ("z", 1.0)]
    b = [("u", 3.0), ("v", 1.0)]
    base = [(h(n, "a"), v) for n, v in a] + [(h(n, "b"), v) for n, v in b]
    pairs = [
        (combine(feature_hash(na, "a"), feature_hash(nb, "b")) & spec.mask, va * vb)
        for na, va in a
        for nb, vb in b
    ]
    assert got.row(0) == base + pairs
    assert len(pairs) == 3 * 2


def test_interactions_use_the_first_letter_of_the_namespace(parse) -> None:
    spec = FeatureSpec(bits=24, interactions=("ab",), constant=False)
    got = parse("1 |apple x |banana y |cherry z\n", spec=spec)
    pair = combine(feature_hash("x", "apple"), feature_hash("y", "banana")) & spec.mask
    assert got.row(0)[-1] == (pair, 1.0)
    assert len(got.row(0)) == 3 + 1


@pytest.mark.parametrize("n", [0, 1, 2, 4, 7])
def test_self_interaction_takes_each_feature_with_itself_and_those_after_it(parse, n: int) -> None:
    """VW 9's -q aa: every pair i <= j; hash version 1 (older model files): i < j."""
    names = [f"f{i}" for i in range(n)]
    hs = [feature_hash(x, "a") for x in names]
    for version, first in ((2, 0), (1, 1)):
        spec = FeatureSpec(bits=24, interactions=("aa",), constant=False, hash_version=version)
        got = parse(f"1 |a {' '.join(names)} |b q\n", spec=spec)
        expected = [
            combine(hs[i], hs[j]) & spec.mask for i in range(n) for j in range(i + first, n)
        ]
        assert [i for i, _ in got.row(0)[n + 1 :]] == expected
        assert len(expected) == n * (n + 1 - 2 * first) // 2


def test_triple_interaction(parse) -> None:
    spec = FeatureSpec(bits=24, interactions=("abc",), constant=False)
    got = parse("1 |a x y:2 |b u |c p q r:0.5\n", spec=spec)
    a, b, c = [("x", 1.0), ("y", 2.0)], [("u", 1.0)], [("p", 1.0), ("q", 1.0), ("r", 0.5)]
    expected = [
        (
            combine(combine(feature_hash(na, "a"), feature_hash(nb, "b")), feature_hash(nc, "c"))
            & spec.mask,
            va * vb * vc,
        )
        for na, va in a
        for nb, vb in b
        for nc, vc in c
    ]
    assert got.row(0)[6:] == expected
    assert len(expected) == 2 * 1 * 3


@pytest.mark.parametrize(
    ("terms", "count"),
    [
        (("aab",), 6 * 2),  # 6 pairs i <= j of a, times |b| (VW 9)
        (("aba",), 6 * 2),  # the same term once sorted, as in VW
        (("aaa",), 10),  # triples i <= j <= k of 3
        (("ab", "ba"), 3 * 2),  # one interaction: VW drops the second
        (("ab", "ab"), 3 * 2),
        (("ac",), 0),  # no namespace c on the line
        (("  ",), 3),  # the default namespace's letter is a space
    ],
)
def test_interaction_counts(parse, terms: tuple[str, ...], count: int) -> None:
    spec = FeatureSpec(bits=24, interactions=terms, constant=False)
    got = parse("1 |a x y z |b u v | d1 d2\n", spec=spec)
    assert len(got.row(0)) == 7 + count


@pytest.mark.parametrize(
    ("terms", "count"),
    [(("aab",), 3 * 2), (("aaa",), 1), (("ab", "ba"), 3 * 2 * 2), (("  ",), 1)],
)
def test_interaction_counts_of_hash_version_1(parse, terms: tuple[str, ...], count: int) -> None:
    """A model file written before VW 9's rules keeps the interactions it was trained with."""
    spec = FeatureSpec(bits=24, interactions=terms, constant=False, hash_version=1)
    got = parse("1 |a x y z |b u v | d1 d2\n", spec=spec)
    assert len(got.row(0)) == 7 + count


def test_ignore_drops_namespaces_and_their_interactions(parse) -> None:
    spec = FeatureSpec(bits=24, interactions=("ab", "ac"), ignore="b ", constant=False)
    got = parse("1 |a x |b y |c z | d\n", spec=spec)
    pair = combine(feature_hash("x", "a"), feature_hash("z", "c")) & spec.mask
    assert got.row(0) == [(h("x", "a"), 1.0), (h("z", "c"), 1.0), (pair, 1.0)]


def test_tabs_and_repeated_spaces_separate_tokens(parse) -> None:
    tidy = parse("1 2 't |a x:1 y\n")
    messy = parse("  1\t 2  \t't\t|a\tx:1   y \t \n")
    assert messy.same_rows(tidy)


# -- svmlight --------------------------------------------------------------------------------


def test_svmlight_labels(parse) -> None:
    got = parse("-1 3:1 10:0.5\n+1 4:2\n0 1:1\n1 1:1\n", "svmlight")
    assert got.labels.tolist() == [-1.0, 1.0, 0.0, 1.0]
    assert got.row(0) == [(h("3"), 1.0), (h("10"), 0.5)]
    assert got.row(1) == [(h("4"), 2.0)]


def test_svmlight_qid_and_comments_are_ignored(parse) -> None:
    plain = parse("1 3:1 10:0.5\n-1 4:2\n", "svmlight")
    extras = parse("1 qid:7 3:1 10:0.5 # first\n-1 qid:8 4:2 #second\n", "svmlight")
    assert extras.row(0) == plain.row(0)
    assert extras.row(1) == plain.row(1)
    assert extras.labels.tolist() == plain.labels.tolist()


def test_svmlight_comment_lines_are_not_records(parse) -> None:
    # SVMlight's format: "the first lines may contain comments and are ignored if they start
    # with #"; scikit-learn's loader skips them too.
    got = parse("# written by a tool\n  # indented\n1 3:1\n#\n-1 4:1\n", "svmlight")
    assert got.labels.tolist() == [1.0, -1.0]
    assert got.lines.tolist() == [3, 5]
    assert got.stats.skipped == 0


def test_svmlight_zero_values_dropped_and_constant_added(parse) -> None:
    got = parse("1 3:0 4:1\n", "svmlight", spec=FeatureSpec(bits=24))
    assert got.row(0) == [(h("4"), 1.0), (CONSTANT_HASH, 1.0)]


def test_svmlight_line_without_features(parse) -> None:
    got = parse("1\n-1 # nothing\n", "svmlight")
    assert got.labels.tolist() == [1.0, -1.0]
    assert got.indptr.tolist() == [0, 0, 0]


@pytest.mark.parametrize("spec", [BARE, FeatureSpec(bits=18), FeatureSpec(bits=10, seed=5)])
def test_the_same_records_in_vw_and_svmlight_give_identical_batches(parse, spec) -> None:
    vw = parse("1 | 3:1 10:0.5\n-1 | 7:2\n0 | 3:1\n", spec=spec)
    svm = parse("1 3:1 10:0.5\n-1 7:2\n0 3:1\n", "svmlight", spec=spec)
    assert svm.same_rows(vw)
    assert len(vw.labels) == 3


# -- real data -------------------------------------------------------------------------------

# ``data_dir`` (tests/conftest.py) skips with the reason when ../shared/data is absent.


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("relpath", "rows", "labels", "fmt"),
    [
        ("a9a/a9a", 32561, {-1.0, 1.0}, "svmlight"),
        ("w8a/w8a", 49749, {-1.0, 1.0}, "svmlight"),  # ends with an empty line
        ("agaricus/agaricus.txt.train", 6513, {0.0, 1.0}, "svmlight"),
        ("vw_rcv1_small/rcv1_small.train.vw", 1000, {-1.0, 1.0}, "vw"),
    ],
)
def test_real_files(
    data_dir: pathlib.Path, relpath: str, rows: int, labels: set[float], fmt: str
) -> None:
    path = data_dir / relpath
    assert guess_format(path) == fmt  # sniffed: none of these names has a known suffix
    got = read(path, FeatureSpec(bits=24, constant=False))
    text = path.read_bytes()
    assert len(got.labels) == rows == got.stats.rows
    assert got.stats.skipped == 0
    assert got.stats.lines == text.count(b"\n") + (not text.endswith(b"\n"))
    assert set(got.labels.tolist()) == labels
    assert (got.weights == 1.0).all()
    # Every index:value token is one stored feature (none of these files has zero values).
    assert len(got.indices) == len(re.findall(rb"\S:\S", text))
    assert got.lines.tolist() == list(range(1, rows + 1))


@pytest.mark.realdata
def test_real_file_first_row_matches_its_text(data_dir: pathlib.Path) -> None:
    path = data_dir / "vw_rcv1_small" / "rcv1_small.train.vw"
    first = path.read_text().split("\n", 1)[0].split()
    assert first[:2] == ["-1", "|f"]
    got = read(path, FeatureSpec(bits=24, constant=False))
    expected = [
        (h(t.split(":")[0], "f"), float(np.float32(float(t.split(":")[1])))) for t in first[2:]
    ]
    assert got.row(0) == expected


@pytest.mark.realdata
def test_real_file_gzipped_and_in_small_blocks(
    data_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    path = data_dir / "a9a" / "a9a"
    gz = tmp_path / "a9a.gz"
    gz.write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
    plain = read(path)
    assert read(gz).same_rows(plain)
    small = read(path, block_bytes=4096)
    assert small.same_rows(plain)
    assert small.batches > 100


# -- gzip, blocks and line numbers -----------------------------------------------------------

SAMPLE = (
    "1 2 'first |a x:1 y:-2.5 |b z\n"
    "\n"
    "-1 |a:0.5 x:3 w |c q:1e-3\n"
    "   \t \n"
    "0 bare | d1 d2:7\n"
    "|a only\n"
    "1 |verylongnamespace " + " ".join(f"feature{i}:{i}.5" for i in range(40)) + "\n"
    "-1 'last |b z:0.125"
)


@pytest.mark.parametrize("suffix", [".vw.gz", ".gz", ""])
def test_gzip_reads_transparently(tmp_path: pathlib.Path, suffix: str) -> None:
    plain_path = tmp_path / "plain.vw"
    plain_path.write_text(SAMPLE)
    gz = tmp_path / f"packed{suffix}"
    gz.write_bytes(gzip.compress(SAMPLE.encode()))
    assert guess_format(gz) == "vw"
    spec = FeatureSpec(bits=20, interactions=("ab",))
    plain = read(plain_path, spec)
    packed = read(gz, spec)
    assert packed.same_rows(plain)
    assert len(plain.labels) == 6
    assert packed.stats.bytes_read == len(SAMPLE.encode())


GZ = gzip.compress(((SAMPLE + "\n") * 50).encode())


@pytest.mark.parametrize(
    "damaged",
    [
        GZ[:-30],  # truncated
        GZ[:12] + bytes(b ^ 0xFF for b in GZ[12:20]) + GZ[20:],  # corrupt deflate data
        GZ[:-8] + bytes(b ^ 0xFF for b in GZ[-8:-4]) + GZ[-4:],  # wrong CRC
        b"\x1f\x8b",  # nothing after the magic
    ],
    ids=["truncated", "corrupt", "crc", "magic-only"],
)
@pytest.mark.parametrize("name", ["damaged.vw.gz", "damaged"])  # the second one is sniffed
def test_corrupt_gzip_is_a_clear_error(tmp_path: pathlib.Path, damaged: bytes, name: str) -> None:
    gz = tmp_path / name
    gz.write_bytes(damaged)
    with pytest.raises(ShoalError, match=re.escape(f"{gz}: cannot read: ")):
        read(gz, FeatureSpec(bits=18))


@pytest.mark.parametrize("block_bytes", [1, 7, 64, 100])
@pytest.mark.parametrize("crlf", [False, True])
def test_block_size_does_not_change_the_result(
    tmp_path: pathlib.Path, block_bytes: int, crlf: bool
) -> None:
    text = SAMPLE.replace("\n", "\r\n") if crlf else SAMPLE
    path = tmp_path / "sample.vw"
    path.write_text(text, newline="")
    spec = FeatureSpec(bits=20, interactions=("ab", "aa"))
    whole = read(path, spec)
    pieces = read(path, spec, block_bytes=block_bytes)
    assert pieces.same_rows(whole)
    assert pieces.batches > 1
    assert pieces.stats.rows == whole.stats.rows == 6
    assert pieces.stats.lines == whole.stats.lines == 8
    assert pieces.stats.bytes_read == whole.stats.bytes_read == len(text.encode())


def test_crlf_line_endings_read_like_lf(parse) -> None:
    lf = parse(SAMPLE + "\n")
    crlf = parse((SAMPLE + "\n").replace("\n", "\r\n"))
    assert crlf.same_rows(lf)
    assert crlf.tags == ["first", "", "bare", "", "", "last"]
    svm_lf = parse("1 3:1 10:0.5\n-1 4:2 # c\n", "svmlight")
    svm_crlf = parse("1 3:1 10:0.5\r\n-1 4:2 # c\r\n", "svmlight")
    assert svm_crlf.same_rows(svm_lf)


def test_last_line_without_newline(parse) -> None:
    with_nl = parse("1 |a x\n-1 |a y:2\n")
    without = parse("1 |a x\n-1 |a y:2")
    assert without.same_rows(with_nl)
    assert without.row(1) == [(h("y", "a"), 2.0)]


def test_line_numbers_count_blank_lines(parse) -> None:
    text = "\n1 |a x\n\n \n-1 |a y\n\t\n1 |a z\n\n"
    for block_bytes in (3, 1 << 20):
        got = parse(text, block_bytes=block_bytes)
        assert got.lines.tolist() == [2, 5, 7]
        assert got.stats.lines == 8


def test_a_file_of_blank_lines_yields_nothing(parse) -> None:
    got = parse("\n\n  \n\r\n")
    assert got.batches == 0
    assert got.stats.rows == 0
    assert got.stats.lines == 4


@st.composite
def vw_documents(draw: st.DrawFn) -> str:
    token = st.from_regex(r"\A[a-z0-9_]{1,6}(:-?[0-9]{1,3}(\.[0-9]{1,3})?)?\Z")
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        label = draw(st.sampled_from(["", "1 ", "-1 ", "0 ", "1 0.5 ", "1 't "]))
        parts = [
            f"|{draw(st.sampled_from(['', 'a', 'b:2']))} "
            + " ".join(draw(st.lists(token, max_size=4)))
            for _ in range(draw(st.integers(0, 3)))
        ]
        lines.append(draw(st.sampled_from(["", "  "])) if not parts else label + " ".join(parts))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    return end.join(lines) + draw(st.sampled_from(["", end]))


@settings(max_examples=100, deadline=None)
@given(text=vw_documents(), block_bytes=st.integers(1, 80))
def test_block_boundary_invariance_on_generated_documents(
    tmp_path_factory: pytest.TempPathFactory, text: str, block_bytes: int
) -> None:
    path = tmp_path_factory.mktemp("blocks") / "doc.vw"
    path.write_text(text, newline="")
    spec = FeatureSpec(bits=16, interactions=("ab", "aa"))
    whole = read(path, spec)
    assert read(path, spec, block_bytes=block_bytes).same_rows(whole)


# -- format guessing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("train.vw", "vw"),
        ("TRAIN.VW", "vw"),
        ("train.vw.gz", "vw"),
        ("a.svm", "svmlight"),
        ("a.svmlight", "svmlight"),
        ("a.libsvm.gz", "svmlight"),
    ],
)
def test_guess_format_by_suffix_without_reading(
    tmp_path: pathlib.Path, name: str, fmt: str
) -> None:
    assert guess_format(tmp_path / name) == fmt  # the file need not exist


@pytest.mark.parametrize(
    ("content", "fmt"),
    [
        (b"1 |a x\n", "vw"),
        (b"\n\n|a x\n", "vw"),
        (b"1 3:1 10:0.5\n", "svmlight"),
        (b"  \n-1 qid:2 3:1 # note\n", "svmlight"),
        (b"1 'tag |a 3:1\n", "vw"),
    ],
)
def test_guess_format_by_sniffing(tmp_path: pathlib.Path, content: bytes, fmt: str) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(content)
    assert guess_format(path) == fmt
    gz = tmp_path / "data"
    gz.write_bytes(gzip.compress(content))
    assert guess_format(gz) == fmt


@pytest.mark.parametrize("content", [b"", b"\n\n", b"hello world\n", b"1 2 3\n"])
def test_guess_format_gives_up_with_a_config_error(tmp_path: pathlib.Path, content: bytes) -> None:
    path = tmp_path / "mystery.txt"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        guess_format(path)
    assert info.value.field == "format"
    assert str(path) in str(info.value)
    assert "--format" in str(info.value)


def test_reader_guesses_the_format_when_not_given(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("1 3:1 10:0.5\n")
    assert read(path).row(0) == read(path, fmt="svmlight").row(0)


# -- bad records -----------------------------------------------------------------------------

BAD = [
    ("vw", "abc |a x", "abc", "label"),
    ("vw", "1:0.5 |a x", "1:0.5", "label"),
    ("vw", "nan |a x", "nan", "label"),
    ("vw", "1 -2 |a x", "-2", "importance weight"),
    ("vw", "1 abc def |a x", "abc", "importance weight"),
    ("vw", "1 1e39 |a x", "1e39", "importance weight"),  # overflows a float32 weight
    ("vw", "1 2 tag extra |a x", "extra", "unexpected token"),
    ("vw", "1 |a y x:abc", "x:abc", "feature value"),
    ("vw", "1 |a x:nan", "x:nan", "feature value"),
    ("vw", "1 |a x:inf", "x:inf", "feature value"),
    ("vw", "1 |a x:-inf", "x:-inf", "feature value"),
    ("vw", "1 |a x:1e400", "x:1e400", "feature value"),
    ("vw", "1 |a x:1e39", "x:1e39", "feature value"),  # overflows a float32 value
    ("vw", "1 |a:1e30 x:1e30", "x:1e30", "feature value"),  # so does scale * value
    ("vw", "1 |a x:", "x:", "feature value"),
    ("vw", "1 |a x:1:2", "x:1:2", "feature value"),
    ("vw", "1 'abc 2 |a x", "'abc", "importance weight"),  # VW: weight 0, initial 2
    ("vw", "1 2 nan |a x", "nan", "initial prediction"),
    ("vw", "1 2 0 4 |a x", "4", "unexpected token"),
    ("vw", "1 inf |a x", "inf", "importance weight"),  # never a bare tag: VW reads a number
    ("vw", "1 2 1e40 |a x", "1e40", "initial prediction"),
    ("vw", "1e40 |a x", "1e40", "label"),
    ("vw", "1 |a:zz x", "a:zz", "namespace scale"),
    ("vw", "1 |a:nan x", "a:nan", "namespace scale"),
    ("svmlight", "x 3:1", "x", "label"),
    ("svmlight", "1 3:1 7", "7", "not index:value"),
    ("svmlight", "1 3:1 a:1", "a:1", "index"),
    ("svmlight", "1 1.5:1", "1.5:1", "index"),
    ("svmlight", "1 -3:1", "-3:1", "index"),
    ("svmlight", "1 3:abc", "3:abc", "feature value"),
    ("svmlight", "1 3:nan", "3:nan", "feature value"),
    ("svmlight", "1 :1", ":1", "empty name"),
]


@pytest.mark.parametrize(("fmt", "line", "token", "what"), BAD)
@pytest.mark.parametrize("block_bytes", [5, 1 << 20])
@WHERE
def test_bad_record_stops_with_file_line_and_token(
    tmp_path: pathlib.Path,
    fmt: str,
    line: str,
    token: str,
    what: str,
    block_bytes: int,
    where: Where,
) -> None:
    """The message names the file as it was given, a path or a URI."""
    good = "1 | 3:1" if fmt == "vw" else "1 3:1"
    file = tmp_path / "bad.txt"
    file.write_text(f"{good}\n\n{good}\n{line}\n{good}\n")
    path = where(file)
    with pytest.raises(DataError) as info:
        read(path, fmt=fmt, block_bytes=block_bytes)
    err = info.value
    assert (err.path, err.line) == (path, 4)
    message = str(err)
    assert message.startswith(f"line 4 of {path}: ")
    assert f"'{token}'" in message
    assert what in message
    assert "skip" in err.hint


@pytest.mark.parametrize(("fmt", "line", "token", "what"), BAD)
def test_bad_record_skip_policy_counts_and_names_the_first(
    tmp_path: pathlib.Path, fmt: str, line: str, token: str, what: str
) -> None:
    good = "1 | 3:1" if fmt == "vw" else "1 3:1"
    path = tmp_path / "bad.txt"
    path.write_text(f"{good}\n{line}\n{good}\n\n{line}\n{good}\n")
    got = read(path, fmt=fmt, on_bad_record="skip", block_bytes=6)
    assert got.lines.tolist() == [1, 3, 6]
    assert got.stats.rows == 3
    assert got.stats.skipped == 2
    assert got.stats.lines == 6
    assert got.stats.first_skipped.startswith(f"line 2 of {path}: ")
    assert f"'{token}'" in got.stats.first_skipped


def test_long_bad_tokens_are_shortened_in_the_message(parse) -> None:
    with pytest.raises(DataError) as info:
        parse("1 |a x:" + "9" * 20 + "z" * 200 + "\n")
    assert len(str(info.value)) - len(info.value.path) < 200
    assert "...'" in str(info.value)


def test_data_error_pickles(parse) -> None:
    with pytest.raises(DataError) as info:
        parse("1 |a x:abc\n")
    back = pickle.loads(pickle.dumps(info.value))
    assert (back.path, back.line, str(back)) == (info.value.path, 1, str(info.value))


def test_skip_policy_stats_across_files(tmp_path: pathlib.Path) -> None:
    first, second = tmp_path / "a.vw", tmp_path / "b.vw"
    first.write_text("1 |a x\n")
    second.write_text("1 |a x\nbad |a x\n-1 |a y\n")
    stats = ReadStats()
    reader = TextReader(spec=BARE, on_bad_record="skip")
    batches = list(reader.read_all([first, second], stats))
    assert [len(b) for b in batches] == [1, 2]
    assert [b.source for b in batches] == [str(first), str(second)]
    assert batches[1].where(1) == f"line 3 of {second}"
    assert (stats.rows, stats.lines, stats.skipped) == (3, 4, 1)
    assert stats.files == [str(first), str(second)]
    assert stats.first_skipped.startswith(f"line 2 of {second}: label 'bad'")


@pytest.mark.parametrize("fmt", [None, "vw"])
def test_missing_file_and_directory(tmp_path: pathlib.Path, fmt: str | None) -> None:
    missing = tmp_path / "nope.vw"
    with pytest.raises(ShoalError, match=re.escape(f"{missing}: no such file")):
        read(missing, fmt=fmt)
    folder = tmp_path / "folder.vw"
    folder.mkdir()  # a directory stands for its files: here, none
    with pytest.raises(ShoalError, match=re.escape(f"{folder}: directory holds no files")):
        read(folder, fmt=fmt)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"format": "xlsx"}, "format"),
        ({"on_bad_record": "ignore"}, "on_bad_record"),
        ({"block_bytes": 0}, "block_bytes"),
    ],
)
def test_reader_config_is_validated(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        TextReader(spec=BARE, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def _fifo(tmp_path: pathlib.Path, name: str, data: bytes) -> tuple[pathlib.Path, threading.Thread]:
    """A named pipe that a thread fills with ``data`` once a reader opens it."""
    path = tmp_path / name
    os.mkfifo(path)

    def write() -> None:
        with open(path, "wb") as f:
            f.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return path, thread


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_is_read_once_from_its_first_byte(tmp_path: pathlib.Path) -> None:
    """Nothing may peek at a pipe before the reader: the format must be known beforehand."""
    rows = "".join(f"{i % 2} 1:{i} 3:1\n" for i in range(5000)).encode()  # > 64 KiB
    path, writer = _fifo(tmp_path, "stream", rows)
    got = list(TextReader(spec=FeatureSpec(bits=10), format="svmlight").read(path))
    writer.join(5)
    assert sum(len(b) for b in got) == 5000
    path, writer = _fifo(tmp_path, "stream2", rows)
    with pytest.raises(ConfigError, match="is a pipe, which can be read only once"):
        guess_format(path)
    with open(path, "rb") as f:  # let the writer finish
        f.read()
    writer.join(5)


@pytest.mark.parametrize(
    ("name", "text", "schema"),
    [
        ("bom.vw", "1 | a b\n-1 | c\n", None),
        ("bom.csv", "id,click,x\nr1,1,0.5\nr2,0,1.5\n", "id:tag,click:label,x:num"),
        ("nohdr.csv", "r1,1,0.5\nr2,0,1.5\n", "id:tag,click:label,x:num"),
    ],
)
def test_a_utf8_byte_order_mark_is_not_data(
    tmp_path: pathlib.Path, name: str, text: str, schema: str | None
) -> None:
    """Excel and Notepad start UTF-8 files with EF BB BF: the same rows with and without it."""
    from shoal.features.schema import ColumnSchema

    spec = FeatureSpec(bits=10, schema=ColumnSchema.parse(schema) if schema else None)
    plain, marked = tmp_path / name, tmp_path / f"marked-{name}"
    plain.write_text(text)
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode())
    a, b = (Batch.concat(list(TextReader(spec=spec).read(p))) for p in (plain, marked))
    assert len(a) == 2 and a.tags() == b.tags() and a.labels.tolist() == b.labels.tolist()
    assert a.indices.tolist() == b.indices.tolist() and a.values.tolist() == b.values.tolist()


def test_an_interaction_beyond_float32_is_clamped_finite(tmp_path: pathlib.Path) -> None:
    """1e20 x 1e20 overflows float32: the value is clamped, so predictions stay finite and
    learning refuses the row (StepTooLarge) instead of storing an infinity."""
    from shoal.errors import StepTooLarge
    from shoal.model.model import Model

    path = tmp_path / "big.vw"
    path.write_text("1 |x a:1e20 |y b:1e20\n")
    spec = FeatureSpec(bits=10, interactions=("xy",), constant=False)
    (batch,) = TextReader(spec=spec).read(path)
    big, top = float(np.float32(1e20)), float(np.finfo(np.float32).max)
    assert batch.values.tolist() == [big, big, top]
    model = Model(spec)
    assert np.isfinite(model.predict(batch)).all()
    with pytest.raises(StepTooLarge):
        model.learn(batch)


def test_a_schema_model_keeps_its_format_and_reads_names_that_say_none(
    tmp_path: pathlib.Path,
) -> None:
    """A file without an extension is a table under a schema (not VW text), and the format
    training read is kept in the spec, so a TSV model reads such a file as TSV."""
    schema = ColumnSchema.parse("label,n,c:cat", delimiter=",")
    rows = "1\t2\tx\n0\t\ty\n"
    (tmp_path / "data.tsv").write_text(rows)
    (tmp_path / "data").write_text(rows)
    (tmp_path / "commas").write_text("1,2,x\n")
    plain = FeatureSpec(bits=10, schema=schema)
    assert guess_format(tmp_path / "commas", schema) == "csv"  # sniffed: not VW text
    with pytest.raises(ConfigError, match="cannot tell the format"):
        guess_format(tmp_path / "data", None)  # no schema: as before
    spec = with_format(plain, None, [tmp_path / "data.tsv"])
    assert spec.schema is not None and spec.schema.format == "tsv"
    assert FeatureSpec.from_json(spec.to_json()) == spec  # the model file keeps it
    assert with_format(plain, "csv", [tmp_path / "data.tsv"]).schema.format == "csv"  # type: ignore[union-attr]
    assert with_format(FeatureSpec(bits=10), None, [tmp_path / "data.tsv"]).schema is None
    read = [len(b) for b in TextReader(spec=spec).read(tmp_path / "data")]
    assert read == [2]
    with pytest.raises(DataError, match=r"label '1\t2\tx' is not a number"):
        list(TextReader(spec=plain).read(tmp_path / "data"))  # commas: the tabs make 1 field
