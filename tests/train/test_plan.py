"""Planning: files into shards cut at record boundaries, each record once, local or behind URIs.

(Expanding files, globs and directories is ``tests/data/test_files.py``'s.)
"""

from __future__ import annotations

import gzip
import itertools
import math
import pathlib
import random
from typing import NoReturn

import pyarrow.fs as pafs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.data import files
from shoal.data.batch import Batch
from shoal.data.reader import ReadStats, TextReader, count_lines
from shoal.errors import ConfigError
from shoal.features.spec import FeatureSpec
from shoal.train import plan as plan_module
from shoal.train.plan import Shard, fingerprint, plan
from tests.data.test_files import WHERE, Where, as_path, as_uri

SPEC = FeatureSpec(bits=20, interactions=("ab",))
Row = tuple[int, str, float, str, tuple[int, ...], tuple[float, ...]]


# -- data ------------------------------------------------------------------------------------


def vw_lines(n: int, rng: random.Random) -> list[str]:
    """Records of very different lengths, with weights, tags and two namespaces."""
    out = []
    for i in range(n):
        label = rng.choice(["1", "-1", "0", "1 2.5", "-1 0.5 'tag" + str(i)])
        a = " ".join(
            f"f{rng.randrange(50)}:{rng.randrange(1, 9) / 4}" for _ in range(rng.randrange(1, 30))
        )
        b = " ".join(f"g{rng.randrange(20)}" for _ in range(rng.randrange(0, 4)))
        out.append(f"{label} |a {a} |b {b}")
    return out


def svm_lines(n: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(n):
        feats = sorted(rng.sample(range(1, 200), rng.randrange(1, 25)))
        line = rng.choice(["+1", "-1", "0", "1"]) + "".join(
            f" {j}:{rng.randrange(1, 9) / 8}" for j in feats
        )
        out.append(line + rng.choice(["", "", " # a comment"]))
    return out


def layout(
    lines: list[str], rng: random.Random, *, crlf: bool, blanks: bool, final_newline: bool
) -> bytes:
    """Join records, sprinkling blank (or whitespace, or svmlight comment) lines in between."""
    rows: list[str] = []
    for line in lines:
        if blanks and rng.random() < 0.2:
            rows.append(rng.choice(["", "  ", "\t"]))
        rows.append(line)
    end = "\r\n" if crlf else "\n"
    text = end.join(rows) + (end if final_newline else "")
    return text.encode()


def rows_of(batches: list[Batch]) -> list[Row]:
    """Every row's line number, label, weight, tag and features (labels as text: NaN == NaN)."""
    out: list[Row] = []
    for b in batches:
        for i in range(len(b)):
            lo, hi = int(b.indptr[i]), int(b.indptr[i + 1])
            out.append(
                (
                    int(b.lines[i]),
                    repr(float(b.labels[i])),
                    float(b.weights[i]),
                    b.tag(i),
                    tuple(b.indices[lo:hi].tolist()),
                    tuple(b.values[lo:hi].tolist()),
                )
            )
    return out


def read_shards(shards: list[Shard], fmt: str, block_bytes: int = 1 << 20) -> list[Row]:
    reader = TextReader(spec=SPEC, format=fmt, block_bytes=block_bytes)  # type: ignore[arg-type]
    out: list[Row] = []
    for s in shards:
        out += rows_of(list(reader.read(s.path, start=s.start, end=s.end, first_line=s.first_line)))
    return out


def read_whole(path: pathlib.Path | str, fmt: str) -> list[Row]:
    return rows_of(list(TextReader(spec=SPEC, format=fmt).read(path)))  # type: ignore[arg-type]


def record_start(data: bytes, start: int) -> int:
    """Where the first record that begins at or after byte ``start`` begins."""
    if start <= 0 or data[start - 1 : start] == b"\n":
        return start
    nl = data.find(b"\n", start)
    return len(data) if nl < 0 else nl + 1


def check_covering(shards: list[Shard], data: bytes) -> None:
    """Adjacent ranges over the whole file, each starting at a record with its true line count."""
    assert shards[0].start == 0
    assert shards[-1].end is None
    for prev, nxt in itertools.pairwise(shards):
        assert prev.end == nxt.start
    for s in shards:
        assert s.start == 0 or data[s.start - 1 : s.start] == b"\n"
        assert s.first_line == (0 if s.start == 0 else None)  # not counted ahead
        assert s.lines_before() == data.count(b"\n", 0, s.start)  # counted when asked
        assert s.end is None or s.start < s.end < len(data)


# -- cutting ---------------------------------------------------------------------------------


def test_small_files_stay_whole_and_in_input_order(tmp_path: pathlib.Path) -> None:
    paths = []
    for i in range(3):
        p = tmp_path / f"{2 - i}.vw"
        p.write_text("\n".join(vw_lines(20, random.Random(i))) + "\n")
        paths.append(p)
    shards = plan(paths, 2)
    assert [(s.index, s.path, s.start, s.end, s.first_line) for s in shards] == [
        (i, str(p), 0, None, 0) for i, p in enumerate(paths)
    ]
    assert shards[0].describe() == f"shard 0 ({paths[0]})"


def test_a_big_file_is_cut_into_about_n_shards_at_record_boundaries(tmp_path: pathlib.Path) -> None:
    data = layout(
        vw_lines(2000, random.Random(1)),
        random.Random(2),
        crlf=False,
        blanks=True,
        final_newline=True,
    )
    path = tmp_path / "big.vw"
    path.write_bytes(data)
    longest = max(len(line) for line in data.split(b"\n")) + 1
    for n in (2, 3, 7, 16):
        shards = plan([path], n)
        check_covering(shards, data)
        assert len(shards) == n
        target = math.ceil(len(data) / n)
        # each cut is the first record boundary after a multiple of the target size
        assert all(s.end is None or s.end - s.start <= target + longest for s in shards)
        assert shards[1].describe().endswith(f"bytes {shards[1].start}-{shards[1].end})")


def test_more_shards_than_records_gives_one_record_per_shard(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "few.svm"
    path.write_bytes(("\n".join(svm_lines(5, random.Random(3))) + "\n").encode())
    shards = plan([path], 100)
    check_covering(shards, path.read_bytes())
    assert len(shards) == 5
    assert [len(read_shards([s], "svmlight")) for s in shards] == [1] * 5


def test_planning_reads_only_around_the_cuts(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O(shards), not O(data): a seek and a line's worth of bytes per cut."""
    data = layout(vw_lines(3000, random.Random(8)), random.Random(9), crlf=False, blanks=False,
                  final_newline=True)  # fmt: skip
    path = tmp_path / "big.vw"
    path.write_bytes(data)
    longest = max(len(line) for line in data.split(b"\n")) + 1
    read = [0]
    real_open = files.open_input

    class Counting:
        def __init__(self, f: object) -> None:
            self.f = f

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()  # type: ignore[attr-defined]

        def __getattr__(self, name: str) -> object:  # seek, peek, ...
            return getattr(self.f, name)

        def read(self, n: int = -1) -> bytes:
            out: bytes = self.f.read(n)  # type: ignore[attr-defined]
            read[0] += len(out)
            return out

    monkeypatch.setattr(plan_module, "_SCAN", 64)
    monkeypatch.setattr(plan_module.data_files, "open_input", lambda p: Counting(real_open(p)))
    shards = plan([path], 10)
    assert len(shards) == 10
    assert read[0] <= 9 * (longest + 64)  # 9 cuts
    assert read[0] < len(data) // 20


@pytest.mark.parametrize("scan", [1, 7, 64, 1000])
def test_cut_points_do_not_depend_on_the_scan_chunk(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, scan: int
) -> None:
    """Planning reads the file in chunks; a record crossing a chunk's end is cut all the same."""
    data = layout(
        vw_lines(300, random.Random(4)),
        random.Random(5),
        crlf=True,
        blanks=True,
        final_newline=False,
    )
    path = tmp_path / "scan.vw"
    path.write_bytes(data)
    expected = {n: plan([path], n) for n in (2, 5, 13)}
    monkeypatch.setattr(plan_module, "_SCAN", scan)
    for n, shards in expected.items():
        assert plan([path], n) == shards


@WHERE
def test_gzip_files_stay_whole(tmp_path: pathlib.Path, where: Where) -> None:
    data = ("\n".join(vw_lines(500, random.Random(6))) + "\n").encode()
    plain = tmp_path / "a.vw"
    plain.write_bytes(data)
    gz = tmp_path / "b.vw.gz"
    gz.write_bytes(gzip.compress(data * 8))  # bigger on disk than the plain file
    shards = plan([where(gz), where(plain)], 6)
    assert (shards[0].path, shards[0].start, shards[0].end) == (where(gz), 0, None)
    assert len(shards) > 2
    assert all(s.path == where(plain) for s in shards[1:])
    check_covering(shards[1:], data)
    with pytest.raises(ConfigError, match="gzip"):
        list(TextReader(spec=SPEC).read(where(gz), start=10))


class StreamsOnly:
    """A file system that can only stream its files, as some fsspec-backed ones do."""

    def __init__(self) -> None:
        self.local = pafs.LocalFileSystem()

    def get_file_info(self, path: str) -> pafs.FileInfo:
        return self.local.get_file_info(path)

    def open_input_file(self, path: str) -> NoReturn:
        raise NotImplementedError("no random access here")

    def open_input_stream(self, path: str, compression: str | None = None) -> object:
        return self.local.open_input_stream(path, compression=compression)


def test_files_that_are_only_streamed_stay_whole(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = ("\n".join(vw_lines(500, random.Random(8))) + "\n").encode()
    path = tmp_path / "a.vw"
    path.write_bytes(data)
    uri = as_uri(path)
    monkeypatch.setattr(files, "arrow_filesystem", lambda p: (StreamsOnly(), str(path)))
    assert plan([uri], 6) == [Shard(0, uri)]
    assert read_whole(uri, "vw") == read_whole(path, "vw")
    with pytest.raises(ConfigError, match="only streamed by its file system"):
        list(TextReader(spec=SPEC).read(uri, start=10))


# -- every record exactly once ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["vw", "svmlight"])
@pytest.mark.parametrize(
    ("crlf", "blanks", "final_newline"),
    [
        (False, False, True),
        (False, False, False),
        (True, False, True),
        (False, True, True),
        (True, True, False),
    ],
)
@WHERE
def test_shards_together_read_each_record_exactly_once(
    tmp_path: pathlib.Path, fmt: str, crlf: bool, blanks: bool, final_newline: bool, where: Where
) -> None:
    rng = random.Random(f"{fmt} {crlf} {blanks} {final_newline}")
    lines = vw_lines(400, rng) if fmt == "vw" else svm_lines(400, rng)
    data = layout(lines, rng, crlf=crlf, blanks=blanks, final_newline=final_newline)
    path = tmp_path / f"data.{'vw' if fmt == 'vw' else 'svm'}"
    path.write_bytes(data)
    whole = read_whole(path, fmt)
    assert len(whole) == 400
    for n in (1, 2, 3, 8, 31):
        shards = plan([where(path)], n)
        check_covering(shards, data)
        for block_bytes in (1 << 20, 100):
            assert read_shards(shards, fmt, block_bytes) == whole


def test_several_files_and_shards_read_like_one_stream(tmp_path: pathlib.Path) -> None:
    rng = random.Random(7)
    paths, whole = [], []
    for i, n in enumerate((50, 700, 10, 300)):
        p = tmp_path / f"{i}.vw"
        p.write_bytes(layout(vw_lines(n, rng), rng, crlf=False, blanks=True, final_newline=i != 2))
        paths.append(p)
        whole += read_whole(p, "vw")
    shards = plan([tmp_path], 6)
    assert [s.index for s in shards] == list(range(len(shards)))
    assert read_shards(shards, "vw") == whole


@st.composite
def documents(draw: st.DrawFn) -> tuple[bytes, str]:
    fmt = draw(st.sampled_from(["vw", "svmlight"]))
    seed = draw(st.integers(0, 2**16))
    rng = random.Random(seed)
    n = draw(st.integers(0, 40))
    lines = vw_lines(n, rng) if fmt == "vw" else svm_lines(n, rng)
    data = layout(
        lines,
        rng,
        crlf=draw(st.booleans()),
        blanks=draw(st.booleans()),
        final_newline=draw(st.booleans()),
    )
    return data, fmt


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    doc=documents(),
    cuts=st.lists(st.floats(0, 1.05), max_size=8),
    block=st.sampled_from([1, 13, 64, 1 << 16]),
    where=st.sampled_from([as_path, as_uri]),
)
def test_any_byte_ranges_read_each_record_exactly_once(
    tmp_path_factory: pytest.TempPathFactory,
    doc: tuple[bytes, str],
    cuts: list[float],
    block: int,
    where: Where,
) -> None:
    """Adjacent ranges cut anywhere (inside records, on newlines, past the end, empty ones), of
    a local file or of a URI."""
    data, fmt = doc
    file = tmp_path_factory.mktemp("ranges") / "doc.txt"
    file.write_bytes(data)
    path = where(file)
    offsets = sorted(int(c * len(data)) for c in cuts)
    bounds: list[tuple[int, int | None]] = list(zip([0, *offsets], [*offsets, None], strict=True))
    reader = TextReader(spec=SPEC, format=fmt, block_bytes=block)  # type: ignore[arg-type]
    got: list[Row] = []
    counted: list[Row] = []
    stats = ReadStats()
    for start, end in bounds:
        got += rows_of(list(reader.read(path, stats, start=start, end=end)))
        # the caller may also give the lines before the range's first record (the planner does)
        first = count_lines(path, record_start(data, start))
        counted += rows_of(list(reader.read(path, start=start, end=end, first_line=first)))
    whole = read_whole(path, fmt)
    assert got == whole
    assert counted == whole
    assert stats.rows == len(whole)
    assert stats.bytes_read == len(data)


# -- fingerprints ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 1_500_000, 3_000_000])
def test_fingerprint_changes_when_the_data_changes(tmp_path: pathlib.Path, size: int) -> None:
    """Same data, same print; a changed first or last byte, size, name or plan: another print."""
    rng = random.Random(size)
    data = bytearray(rng.choice(b"abc |:\n") for _ in range(size))
    path = tmp_path / "f.vw"
    path.write_bytes(bytes(data))
    base = fingerprint(plan([path], 3))
    assert fingerprint(plan([path], 3)) == base
    assert fingerprint(plan([path], 4)) != base

    def changed(edit: bytearray, name: str = "f.vw") -> str:
        p = tmp_path / name
        path.unlink(missing_ok=True)
        p.write_bytes(bytes(edit))
        try:
            return fingerprint([Shard(0, str(p))])
        finally:
            p.unlink()

    whole = changed(data)
    for pos in (0, size - 1):
        edit = bytearray(data)
        edit[pos] = ord("z")
        assert changed(edit) != whole
    assert changed(data + b"\n") != whole
    assert changed(data, "g.vw") != whole
    assert changed(data) == whole
