"""Property tests of the text parser: garbage never crashes it, valid numbers are never altered."""

from __future__ import annotations

import math
import pathlib
import re
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from shoal.data.reader import ReadStats, TextReader
from shoal.data.textparse import parse_block, parse_float
from shoal.errors import DataError
from shoal.features.hashing import feature_hash
from shoal.features.spec import FeatureSpec

SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SPEC = FeatureSpec(bits=30, interactions=("ab", "aa", "ab "))
FORMATS = st.sampled_from(["vw", "svmlight"])


def write(directory: pathlib.Path, data: bytes) -> pathlib.Path:
    path = directory / "fuzz.txt"
    path.write_bytes(data)
    return path


def read_all(path: pathlib.Path, fmt: str, **kwargs: object) -> tuple[list, ReadStats]:
    stats = ReadStats()
    reader = TextReader(spec=SPEC, format=fmt, **kwargs)  # type: ignore[arg-type]
    return list(reader.read(path, stats)), stats


def record_lines(data: bytes, fmt: str) -> int:
    """Lines that are records: not blank (space, tab, CR) and, in svmlight, not a comment (a
    UTF-8 byte-order mark at the very start is not data)."""
    lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the text after the last newline is a line only if it is not empty
    kept = [line.strip(b" \t\r") for line in lines]
    return sum(1 for k in kept if k and not (fmt == "svmlight" and k.startswith(b"#")))


SEPARATORS = [b"|", b":", b"'", b"#", b" ", b"\t", b"\r", b"\n"]
ODD_BYTES = [b"\x00", b"\xff", b"\xc3", b"\xe2\x82", b"\xef\xbb\xbf"]  # NUL, broken UTF-8, a BOM
NUMBERISH = [b"0", b"1", b"-1", b"+", b".", b"e", b"E", b"5.", b".5", b"1e5", b"nan", b"inf"]
WORDS = [b"qid", b"a", b"b", b"ab", b"x:1", b"3:0.5", b"|a", b"| ", b"|b:2", b"1 |a x", b"-1 3:1"]
GARBAGE_PIECES = st.sampled_from([*SEPARATORS, *ODD_BYTES, *NUMBERISH, *WORDS])
GARBAGE = st.lists(GARBAGE_PIECES, max_size=60).map(b"".join)
# Bytes that begin with gzip's magic are read as gzip: see test_corrupt_gzip_* in test_reader.
ANY_BYTES = st.binary(max_size=300).filter(lambda b: not b.startswith(b"\x1f\x8b"))


def check_never_crashes(directory: pathlib.Path, data: bytes, fmt: str, block: int) -> None:
    path = write(directory, data)
    expected_records = record_lines(data, fmt)

    # Skip policy: never raises; every record line is a row or a skipped line.
    batches, stats = read_all(path, fmt, on_bad_record="skip")
    rows = sum(len(b) for b in batches)
    assert rows == stats.rows
    assert rows + stats.skipped == expected_records
    for b in batches:
        assert b.indptr[-1] == len(b.indices) == len(b.values)
        assert (np.diff(b.indptr) >= 0).all()
        assert (b.indices < SPEC.size).all()
        assert np.isfinite(b.values).all()
        assert (b.values != 0).all()
        assert np.isfinite(b.weights).all()
        assert (b.weights >= 0).all()
    lines = [int(n) for b in batches for n in b.lines]
    assert lines == sorted(set(lines))

    # The same answer whatever the block size.
    small, small_stats = read_all(path, fmt, on_bad_record="skip", block_bytes=block)
    assert [int(n) for b in small for n in b.lines] == lines
    assert (small_stats.skipped, small_stats.first_skipped) == (stats.skipped, stats.first_skipped)
    got = np.concatenate([b.indices for b in small]) if small else np.zeros(0, np.uint32)
    want = np.concatenate([b.indices for b in batches]) if batches else np.zeros(0, np.uint32)
    assert np.array_equal(got, want)

    # Stop policy: yields the same rows, or raises DataError at the first skipped line.
    try:
        stopped, _ = read_all(path, fmt, block_bytes=block)
    except DataError as err:
        assert stats.skipped > 0
        assert stats.first_skipped.startswith(f"line {err.line} of {path}: {err.problem}")
    else:
        assert stats.skipped == 0
        assert [int(n) for b in stopped for n in b.lines] == lines


@SETTINGS
@given(data=ANY_BYTES, fmt=FORMATS, block=st.integers(1, 64))
def test_arbitrary_bytes_never_crash_the_reader(
    tmp_path: pathlib.Path, data: bytes, fmt: str, block: int
) -> None:
    check_never_crashes(tmp_path, data, fmt, block)


@SETTINGS
@given(data=GARBAGE, fmt=FORMATS, block=st.integers(1, 64))
@example(data=b"1 |a x:1\r\n\r\n:1\n'\n|\n#\n", fmt="vw", block=3)
@example(data=b"# c\n1 3:1 # x\n  #\n1 qid:1\n:\n", fmt="svmlight", block=2)
def test_line_structured_garbage_never_crashes_the_reader(
    tmp_path: pathlib.Path, data: bytes, fmt: str, block: int
) -> None:
    check_never_crashes(tmp_path, data, fmt, block)


# -- no silent wrong number ------------------------------------------------------------------

NAMES = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.\-]{0,8}\Z")
FLOATS = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e38, max_value=1e38)
FLOAT32S = st.floats(allow_nan=False, allow_infinity=False, width=32)
FORMATTERS = st.sampled_from([repr, "{:.6g}".format, "{:.9g}".format, "{:.17e}".format])


def ulps_apart(a: float, b: float) -> int:
    return abs(int(np.float64(a).view(np.int64)) - int(np.float64(b).view(np.int64)))


@st.composite
def valid_records(draw: st.DrawFn) -> tuple[str, list[tuple[str, float, float, list]]]:
    """VW lines with random labels, weights and features, and what each should parse to."""
    lines, expected = [], []
    for _ in range(draw(st.integers(1, 8))):
        label_text = draw(FORMATTERS)(draw(FLOATS | FLOAT32S))
        weight_text = draw(FORMATTERS)(draw(st.floats(0, 1e30)))
        feats = draw(st.lists(st.tuples(NAMES, FLOATS | FLOAT32S, FORMATTERS), max_size=6))
        texts = [(name, fmt(value)) for name, value, fmt in feats]
        ns = draw(st.sampled_from(["", "a", "feat"]))
        lines.append(f"{label_text} {weight_text} |{ns} " + " ".join(f"{n}:{v}" for n, v in texts))
        want = [
            (feature_hash(n, ns), np.float32(float(v))) for n, v in texts if np.float32(float(v))
        ]
        expected.append((label_text, float(label_text), float(weight_text), want))
    return "\n".join(lines) + "\n", expected


@SETTINGS
@given(records=valid_records())
def test_valid_numbers_parse_like_python_float(tmp_path: pathlib.Path, records) -> None:
    text, expected = records
    spec = FeatureSpec(bits=30, constant=False)
    path = tmp_path / "valid.vw"
    path.write_text(text)
    (batch,) = TextReader(spec=spec).read(path)
    assert len(batch) == len(expected)
    for i, (label_text, label, weight, feats) in enumerate(expected):
        got = float(batch.labels[i])
        assert ulps_apart(got, label) <= 1, (label_text, got, label)
        assert batch.weights[i] == np.float32(weight)
        a, b = batch.indptr[i], batch.indptr[i + 1]
        assert batch.indices[a:b].tolist() == [h & spec.mask for h, _ in feats]
        # float32 of Python's float(): exact, no tolerance.
        assert batch.values[a:b].tolist() == [float(v) for _, v in feats]


# -- parse_float against Python's float() ----------------------------------------------------


def parse(text: str) -> tuple[bool, float]:
    buf = np.frombuffer(text.encode(), dtype=np.uint8)
    return parse_float(buf, 0, len(buf))


def significant_digits(text: str) -> str:
    mantissa = re.split("[eE]", text.lstrip("+-"))[0].replace(".", "")
    return mantissa.lstrip("0").rstrip("0")


def check_agrees_with_python(text: str) -> None:
    try:
        want = float(text)
    except ValueError:
        want = None
    ok, got = parse(text)
    if want is None or not math.isfinite(want):
        assert not ok, (text, got)
        return
    assert ok, text
    assert math.copysign(1.0, got) == math.copysign(1.0, want), (text, got)
    if len(significant_digits(text)) <= 18 and (want == 0 or abs(want) >= 2.2250738585072014e-308):
        assert got == want, (text, got, want)  # correctly rounded
    else:  # over 18 significant digits, or a subnormal result: within one ulp
        assert ulps_apart(got, want) <= 1, (text, got, want)


DIGITS = st.text(alphabet="0123456789", max_size=20)


@st.composite
def numeric_strings(draw: st.DrawFn) -> str:
    sign = draw(st.sampled_from(["", "+", "-"]))
    whole, frac = draw(DIGITS), draw(DIGITS)
    dot = draw(st.sampled_from(["", "."]))
    assume(whole or (dot and frac))
    mantissa = whole + (dot + frac if dot else "")
    exponent = ""
    if draw(st.booleans()):
        e = draw(st.integers(-400, 400))
        exponent = draw(st.sampled_from(["e", "E"])) + draw(
            st.sampled_from([str(e), f"{e:+d}", f"{e:+04d}"])
        )
    return sign + mantissa + exponent


@settings(max_examples=300, deadline=None)
@given(text=numeric_strings())
@example(text="5.")
@example(text=".5")
@example(text="+.5")
@example(text="-0")
@example(text="-0.0e-500")
@example(text="1e-400")
@example(text="4.9406564584124654e-324")
@example(text="2.2250738585072014e-308")
@example(text="1.7976931348623157e308")
@example(text="0.1")
@example(text="0.30000000000000004")
@example(text="9007199254740993")  # 2**53 + 1: a tie, rounds to even
@example(text="123456789012345678901234567890")
@example(text="2.45408e-32")
@example(text="-2.2396777155513698e-17")
@example(text="-999493.5802135497")
def test_parse_float_agrees_with_python_float(text: str) -> None:
    check_agrees_with_python(text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="0123456789.+-eE", max_size=24))
def test_parse_float_accepts_exactly_what_python_accepts(text: str) -> None:
    # On this alphabet Python's float() grammar and the parser's are the same.
    check_agrees_with_python(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1e",
        "1e+",
        "e5",
        ".",
        "-",
        "+",
        "--1",
        "+-1",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1.2.3",
        "1e5.5",
        "1_000",
        " 1",
        "1 ",
        "0x10",
        "1,5",
        "1e309",
        "-2e308",
        "1" * 400,
        "\u0661",  # ARABIC-INDIC DIGIT ONE: float() takes it, the parser reads ASCII only
    ],
)
def test_parse_float_rejects(text: str) -> None:
    ok, value = parse(text)
    assert not ok
    assert value == 0.0


def test_parse_float_reads_a_slice_of_the_buffer() -> None:
    buf = np.frombuffer(b"x:12.5e-1|", dtype=np.uint8)
    assert parse_float(buf, 2, 9) == (True, 1.25)
    assert parse_float(buf, 2, 2) == (False, 0.0)


@pytest.mark.parametrize("self_pairs", [True, False])
@pytest.mark.parametrize("terms", [["uv"], ["uu", "uvw"], ["uuv", "vu"]])
def test_long_rows_visit_interactions_by_namespace_with_the_same_output(
    terms: list[str], self_pairs: bool
) -> None:
    """Rows past ``_SORT_FROM`` features take the sorted path: the same features, in the same
    order, as the direct scan of a short row."""
    from shoal.data.textparse import _interactions, _interactions_sorted

    rng = np.random.default_rng(7)
    nb = 60  # a short row: ``_interactions`` scans it directly
    row_ns = rng.choice(np.frombuffer(b"uvwx", np.uint8), nb).astype(np.uint8)
    row_h = rng.integers(0, 2**32, nb, dtype=np.int64)
    row_v = rng.random(nb)
    inter_ns = np.frombuffer("".join(terms).encode(), np.uint8).copy()
    inter_off = np.cumsum([0, *map(len, terms)]).astype(np.int64)
    out = []
    for interact in (_interactions, _interactions_sorted):
        idx, val = np.zeros(0, np.uint32), np.zeros(0, np.float32)
        n = interact(row_h, row_ns, row_v, nb, inter_off, inter_ns, 1023, idx, val, 0, False,
                     self_pairs)  # fmt: skip
        idx, val = np.zeros(n, np.uint32), np.zeros(n, np.float32)
        interact(row_h, row_ns, row_v, nb, inter_off, inter_ns, 1023, idx, val, 0, True,
                 self_pairs)  # fmt: skip
        out.append((idx, val))
    assert len(out[0][0]) > 100
    assert np.array_equal(out[0][0], out[1][0]) and np.array_equal(out[0][1], out[1][1])


def test_a_long_line_under_interactions_grows_only_what_ran_out() -> None:
    """The row arrays (kept for interactions) and the output grew together whenever either ran
    out: a line of 80,000 features doubled the output eleven times (2 GB) and took seconds."""
    spec = FeatureSpec(bits=10, interactions=("uv",))
    offsets, letters = spec.interaction_arrays()

    def parse(text: str) -> Any:
        buf = np.frombuffer(text.encode(), np.uint8)
        return parse_block(buf, len(buf), False, spec.hash_rules(), spec.mask, spec.constant,
                           spec.ignore_array(), offsets, letters, False)  # fmt: skip

    parse("|u a |v b")  # compiled before measuring
    tracemalloc.start()
    try:
        out = parse("|u " + " ".join(f"f{i}" for i in range(80_000)) + " |v a b")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    indptr = out[0]
    assert indptr[1] == 80_000 + 2 + 2 * 80_000 + 1  # features, interactions, constant
    assert peak < 64 << 20, peak
