"""The compiled JSON-lines kernel against the Python path: the same batches, the same errors.

Generated lines cover keys of every kind (special, digits, empty, unicode, escaped, repeated),
every value type, nesting, whitespace, numbers at the edges of exact parsing, bad lines and
invalid bytes. Whatever the kernel reads must match the Python path bit for bit; whatever it
hands back, the Python path reads, so the block's outcome (rows, skips, the first problem)
is the same either way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shoal.data import jsonl, jsonparse, jsontokens
from shoal.data.blocks import Parsed
from shoal.data.reader import ReadStats, TextReader
from shoal.errors import DataError
from shoal.features.schema import ColumnSchema
from shoal.features.spec import FeatureSpec
from tests.data import same_records as sr

SPECS = [
    FeatureSpec(bits=18),
    FeatureSpec(bits=20, seed=7, ignore="u", interactions=("uv", " u")),
    FeatureSpec(bits=12, constant=False, ignore=" "),
]


def assert_same(got: Parsed, want: Parsed) -> None:
    """Every field equal, dtypes included; floats bit for bit (NaN == NaN, -0.0 != 0.0)."""
    for name in Parsed._fields:
        a, b = getattr(got, name), getattr(want, name)
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype, name
            if b.dtype.kind == "f":
                a, b = a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}")
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert a == b, name


def check(block: bytes, spec: FeatureSpec = SPECS[0]) -> None:
    for skip in (False, True):
        assert_same(jsonl.parse_block(block, spec, skip), jsonl.python_block(block, spec, skip))


def todo_lines(block: bytes, spec: FeatureSpec = SPECS[0]) -> list[int]:
    """0-based numbers of the lines the kernel hands to the Python path."""
    buf = np.frombuffer(block, dtype=np.uint8)
    out = jsonparse.parse_block(buf, len(buf), spec.hash_rules(), spec.ignore_array())
    return out[8][out[9]].tolist()


# --- generated lines

WS = st.sampled_from(["", "", "", " ", "  ", "\t", "\r", " \t "])
PLAIN_KEYS = st.sampled_from(
    ["label", "weight", "tag", "features", "x", "y", "u", "v", "7", "0123", "", "é", "日本", "a b",
     "😀", "x=y", "\x7f", "i0", "i1", "c", "city", "user", "1234567890123"]
)  # fmt: skip
KEYS = st.one_of(PLAIN_KEYS, PLAIN_KEYS, PLAIN_KEYS, st.text(max_size=5))  # text: any code point
COMMON_NUMBERS = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(-1e6, 1e6).map(lambda f: repr(round(f, 4))),
    st.floats(width=64, allow_nan=False, allow_infinity=False).map(repr),
)
# at the edges of exact parsing (ties, subnormals, overflow, 18 digits) and of the grammar
EDGE_NUMBERS = [
    "-0", "-0.0", "0e0", "-0e-5", "1e-400", "1e400", "1e-310", "0.1e-320", "4503599627370496.5",
    "1E+2", "1e308", "3.4028235677973366e38", "3.4028235e38", "9007199254740993",
    "123456789012345678", "1234567890123456789", "100000000000000000000000",
    "1.000000000000000000000", "+1", "01", "1.", ".5", "-", "1e",
]  # fmt: skip
NUMBERS = st.one_of(
    COMMON_NUMBERS,
    COMMON_NUMBERS,
    st.integers(-(10**21), 10**21).map(str),
    st.floats(width=64).map(json.dumps),  # repr: up to 17 digits; NaN, Infinity, -Infinity
    st.floats(width=32).map(lambda f: json.dumps(float(f))),
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?\Z"),
    st.sampled_from(EDGE_NUMBERS),
)
STRINGS = st.one_of(
    st.sampled_from(['""', '"a"', '"Paris"', '"x y"', '"é"', '"\\u00e9"', '"a\\"b"', '"\\ud800"']),
    st.builds(json.dumps, st.text(max_size=6), ensure_ascii=st.booleans()),
    st.builds(json.dumps, st.text("abcé日 =😀", max_size=6), ensure_ascii=st.just(False)),
)
LITERALS = st.sampled_from(["true", "false", "null", "null", "True", "nul"])
SCALARS = st.one_of(NUMBERS, NUMBERS, STRINGS, STRINGS, LITERALS)


@st.composite
def objects(draw: st.DrawFn, values: st.SearchStrategy[str]) -> str:
    pairs = st.tuples(KEYS, values)
    members = draw(
        st.lists(pairs, max_size=6, unique_by=lambda kv: kv[0]) | st.lists(pairs, max_size=3)
    )
    sep = draw(WS) + "," + draw(WS)
    colon = draw(WS) + ":" + draw(WS)
    ascii_keys = draw(st.integers(0, 4)) == 0
    text = sep.join(f"{json.dumps(k, ensure_ascii=ascii_keys)}{colon}{v}" for k, v in members)
    return "{" + draw(WS) + text + draw(WS) + "}"


@st.composite
def arrays(draw: st.DrawFn, values: st.SearchStrategy[str]) -> str:
    return "[" + ", ".join(draw(st.lists(values, max_size=3))) + "]"


VALUES = st.recursive(SCALARS, lambda inner: st.one_of(objects(inner), arrays(inner)), max_leaves=8)
NAMESPACES = objects(SCALARS)
FIELDS = st.one_of(SCALARS, SCALARS, SCALARS, SCALARS, NAMESPACES, objects(NAMESPACES), VALUES)
RECORDS = objects(FIELDS)
CLEAN_TEXT = st.text(
    st.characters(exclude_categories=("Cs", "Cc"), exclude_characters='"\\'), max_size=6
)
NAMES = st.one_of(
    st.sampled_from(["x", "y", "u", "v", "7", "0123", "é", "日本", "a b", "😀", "x=y", "i0", "c"]),
    CLEAN_TEXT.filter(bool),
)
TEXT_VALUES = st.builds(json.dumps, st.text(max_size=6), ensure_ascii=st.booleans())  # escapes
CLEAN_SCALARS = st.one_of(
    COMMON_NUMBERS,
    TEXT_VALUES,
    st.sampled_from(["true", "false", "null", "0", "-0.0", '""']),
)


@st.composite
def clean_records(draw: st.DrawFn) -> str:
    """Records the kernel reads itself (bar a rare number): no escaped or repeated keys."""

    def members(names: list[str], namespaces: bool) -> list[tuple[str, str]]:
        out = []
        for name in names:
            if namespaces and draw(st.integers(0, 4)) == 0:
                keys = draw(st.lists(NAMES, max_size=4, unique=True))
                inner = ", ".join(
                    f"{json.dumps(k, ensure_ascii=False)}: {draw(CLEAN_SCALARS)}" for k in keys
                )
                out.append((name, "{" + inner + "}"))
            else:
                out.append((name, draw(CLEAN_SCALARS)))
        return out

    names = draw(st.lists(NAMES, max_size=10, unique=True))
    cut = draw(st.integers(0, len(names)))
    top = members(names[:cut], True)
    nested = members(names[cut:], True)
    specials = [
        ("label", draw(COMMON_NUMBERS | st.just("null"))),
        ("weight", draw(st.sampled_from(["1", "0.5", "2e1", "0", "null", "1.25"]))),
        (
            "tag",
            draw(TEXT_VALUES | st.integers(0, 10**9).map(str) | st.just("null")),
        ),
    ]
    if nested or draw(st.booleans()):
        ws = draw(WS)
        inner = f",{ws}".join(f"{json.dumps(k, ensure_ascii=False)}:{ws}{v}" for k, v in nested)
        specials.append(("features", "{" + inner + "}"))
    chosen = draw(st.lists(st.sampled_from(specials), unique_by=lambda kv: kv[0]))
    fields = draw(st.permutations(top + chosen))
    sep = draw(WS) + "," + draw(WS)
    colon = draw(WS) + ":" + draw(WS)
    text = sep.join(f"{json.dumps(k, ensure_ascii=False)}{colon}{v}" for k, v in fields)
    return "{" + draw(WS) + text + draw(WS) + "}"


EDGES = st.sampled_from(["", "", "", " ", "\t", "\r", "\x0b", "\x0c", "\ufeff"])


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    CLEAN = clean_records()
    text = draw(
        st.one_of(CLEAN, CLEAN, CLEAN, RECORDS, RECORDS, VALUES, st.text(max_size=20), EDGES)
    )
    raw = (draw(EDGES) + text + draw(EDGES)).encode("utf-8", "surrogatepass")
    if raw and draw(st.integers(0, 29)) == 0:  # a byte that is not UTF-8, or a surrogate's
        i = draw(st.integers(0, len(raw) - 1))
        raw = (
            raw[:i] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) + raw[i:]
        )
    return raw


BLOCKS = st.builds(
    lambda ls, end: b"\n".join(ls) + end,
    st.lists(lines(), max_size=12),
    st.sampled_from([b"", b"\n"]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block=BLOCKS, spec=st.sampled_from(SPECS))
@example(block=b'{"label": 1, "x": 2}\n', spec=SPECS[0])
def test_generated_blocks_read_as_the_python_path_reads_them(
    block: bytes, spec: FeatureSpec
) -> None:
    check(block, spec)


@settings(max_examples=300, deadline=None)
@given(text=NUMBERS)
def test_numbers_the_kernel_reads_are_pythons_floats(text: str) -> None:
    buf = np.frombuffer(text.encode(), dtype=np.uint8)
    end, value, is_int = jsontokens.number(buf, 0, len(buf))
    if end != len(buf):
        return  # not a JSON number, or handed back
    want = float(json.loads(text))
    assert np.float64(value).view(np.uint64) == np.float64(want).view(np.uint64)
    assert is_int == isinstance(json.loads(text), int)


# --- the common lines take the fast path


def test_plain_records_are_read_by_the_kernel() -> None:
    block = (
        '{"label": 1, "weight": 0.5, "tag": "r1", "a": "0", "i0": 0.039, "n": 12, "t": true}\n'
        '\r\n{"label":-1,"features":{"user":{"id":"u5","é":"日本"},"x":1e-3},"tag":17,"z":null}\r\n'
        '  {"": {"y": 2}, "u": {}, "features": null, "s": "", "f": false, "w": -0.0}\n'
    ).encode()
    assert todo_lines(block) == []
    check(block)
    got = jsonl.parse_block(block, SPECS[0], False)
    assert got.lines.tolist() == [0, 2, 3] and got.n_lines == 4
    assert bytes(got.tag_bytes) == b"r117"


def test_escaped_values_and_tags_are_read_by_the_kernel() -> None:
    """json.dumps writes non-ASCII text as \\u escapes by default: the kernel decodes them."""
    records = [
        {"label": 1, "city": "Zürich", "tag": "Zoë", "u": {"name": "日本", "e": "😀"}},
        {"q": 'a "quoted" \\ back/slash', "c": "\x00\x01\b\f\n\r\t", "features": {"s": "ß"}},
        {"tag": "\u2028", "x": "\ud7ff\ue000\uffff"},
    ]
    text = "".join(json.dumps(r) + "\n" for r in records)
    block = (text + text.replace("\\u00fc", "\\u00FC") + '{"slash": "\\/"}\n').encode()
    assert "\\u00fc" in text and "\\ud83d\\ude00" in text
    assert todo_lines(block) == []
    check(block)
    check(block, SPECS[1])
    got = jsonl.parse_block(block, SPECS[0], False)
    assert got.batch("t", 1).tags()[:3] == ["Zoë", "", "\u2028"]


def test_the_bench_file_is_read_by_the_kernel() -> None:
    records = sr.make_records(300)
    block = sr.jsonl_text(records).encode()
    assert todo_lines(block) == []
    check(block)


# --- each reason to hand a line back, and the Python path's answer for it

HANDED_BACK = [
    '{"x\\u00e9": 1}',  # an escaped key
    '{"u": {"\\"": 1}}',
    '{"x": "\\x"}',  # escapes JSON does not have
    '{"x": "\\u12"}',
    '{"x": "\\u12g4"}',
    '{"x": "\\udc00\\ud800"}',  # lone surrogates: no UTF-8 for them
    '{"x": "\\ud800\\u0041"}',
    '{"x": NaN}',  # not strict JSON
    '{"x": Infinity}',
    '{"x": -Infinity}',
    '{"x": 1, "x": 2}',  # a key twice
    '{"u": {"a": 1, "a": 2}}',
    '{"x": 1, "features": {"x": 2}}',
    '{"label": 1, "features": {"label": 2}}',
    '{"x": 12345678901234567890}',  # more than 18 digits
    '{"x": 1e400}',
    '{"label": 1e-400}',
    '{"label": 1e-310}',  # subnormal
    '{"label": 4503599627370496.5}',  # a tie: 2**52 + 1/2
    "\ufeff{}",  # a byte-order mark
    '{"x": 1} 2',
    '{"x": [1]}',  # bad records
    '{"u": {"a": {"b": 1}}}',
    '{"features": {"u": {"a": {}}}}',
    '{"features": 3}',
    '{"label": "1"}',
    '{"label": true}',
    '{"weight": -1}',
    '{"weight": 1e39}',
    '{"tag": 1.5}',
    '{"tag": -0}',
    '{"tag": [1]}',
    '{"": 1}',
    '{"u": {"": 1}}',
    '{"x": 1e39}',
    "[1, 2]",
    "17",
    '{"x": 1,}',
    '{"x" 1}',
    '{"x": 01}',
    '{"x": +1}',
    '{"x": tru}',
    '{"x": "\\ud800"}',
    '{"\\udfff": {"a": 1}}',
    '{"tag": "\\ud800"}',
]


@pytest.mark.parametrize("line", HANDED_BACK)
def test_each_line_outside_the_kernels_subset_goes_to_the_python_path(line: str) -> None:
    block = f'{{"label": 1, "x": 1}}\n{line}\n{{"label": -1, "y": "b"}}\n'.encode()
    assert todo_lines(block) == [1]
    check(block)
    check(block, SPECS[1])


@pytest.mark.parametrize(
    "raw",
    [b'{"x": "\xff"}', b'{"x": "\xc3("}', b'{"x": "\xed\xa0\x80"}', b'{"x": "\xc0\xaf"}',
     b'{"x": "\xf4\x90\x80\x80"}', b'{"x": "a\x01"}', b'{"x":\x0b1}', b'{"x": 1}\x00',
     b'{\xc3\xa9: 1}'],
)  # fmt: skip
def test_invalid_bytes_go_to_the_python_path(raw: bytes) -> None:
    block = b'{"x": 1}\n' + raw + b"\n"
    assert todo_lines(block) == [1]
    check(block)


def test_a_lone_surrogate_is_a_bad_record_not_a_crash() -> None:
    got = jsonl.parse_block(b'{"x": 1}\n{"a": {"k\\ud800": 1}}\n', SPECS[0], True)
    assert got.skipped == 1 and got.err_line == 1
    assert "is not valid Unicode text" in got.problem


def test_objects_of_many_keys_go_to_the_python_path() -> None:
    wide = json.dumps({f"k{i}": i for i in range(3000)})
    narrow = json.dumps({f"k{i}": i for i in range(2000)})
    block = f"{narrow}\n{wide}\n".encode()
    assert todo_lines(block) == [1]
    check(block)


def test_long_records_grow_the_kernels_arrays() -> None:
    dense = {f"n{i}": {str(k): 1 for k in range(10)} for i in range(400)}  # ~7 bytes a feature
    deferred = {"features": {f"f{i}": i + 1 for i in range(200)}}
    long_value = {"c": "v" * 1000}
    records = (dense, deferred, long_value)
    block = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
    assert len(block) // 8 < 4000  # more features than the kernel first makes room for
    assert todo_lines(block) == []
    check(block)
    assert np.diff(jsonl.parse_block(block, SPECS[0], False).indptr).tolist() == [4001, 201, 2]


def test_handed_back_lines_keep_their_place_among_the_kernels() -> None:
    """Rows, tags and features of lines read by either path are merged in line order."""
    good = '{"label": %d, "tag": "k%d", "x": %d, "features": {"u": {"v": "w%d"}}}'
    back = '{"label": %d, "tag": "p\\u00e9%d", "x": %d, "u": {"v": "w%d", "z": NaN}}'
    bad = '{"label": %d, "tag": "b%d", "x": [%d], "y": %d}'
    rows = [(good, back, bad)[i % 3 if i % 7 else 1] % (i, i, i, i) for i in range(60)]
    block = ("\n".join(rows) + "\n\n").encode()
    assert 0 < len(todo_lines(block)) < 60
    for spec in SPECS:
        check(block, spec)


def test_under_a_schema_the_python_path_reads_every_line() -> None:
    spec = FeatureSpec(bits=18, schema=ColumnSchema.parse("label,x:num,c:cat"))
    block = b'{"label": 1, "x": 2, "c": 3}\n{"label": 0, "x": "a"}\n'
    assert_same(jsonl.parse_block(block, spec, True), jsonl.python_block(block, spec, True))


# --- through the reader: threads, errors and skips as before


def write_lines(path: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        if i % 97 == 5:
            rows.append('{"label": 1, "x": [1]}')  # bad
        elif i % 31 == 3:
            rows.append(f'{{"label": 1, "s": "\\u00e9t\\u00e9", "n": {i}}}')  # handed back
        else:
            rows.append(json.dumps({"label": i % 2, "tag": i, "c": f"v{i % 13}", "x": i / 7}))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_threads_give_the_same_batches_and_skips(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", 3000)
    spec = FeatureSpec(bits=18)
    got = []
    for threads in (1, 4):
        stats = ReadStats()
        reader = TextReader(spec=spec, on_bad_record="skip", block_bytes=4096, threads=threads)
        got.append((sr.concat(list(reader.read(path, stats))), stats))
    sr.assert_same(got[0][0], got[1][0])
    assert got[0][1] == got[1][1]
    assert (got[0][1].rows, got[0][1].skipped) == (3000 - 31, 31)
    assert got[0][1].first_skipped == f"line 6 of {path}: feature 'x': list value where " + (
        "a number, a string, a boolean or null is expected"
    )


def test_the_first_bad_line_stops_the_read(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", 300)
    with pytest.raises(DataError) as info:
        list(TextReader(spec=FeatureSpec(bits=18), block_bytes=1000, threads=2).read(path))
    assert info.value.line == 6
    assert info.value.problem.startswith("feature 'x': list value where")
