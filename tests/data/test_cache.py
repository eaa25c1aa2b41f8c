"""The binary cache's reader: the same batches and counts as the text, and a stale, foreign or
damaged cache file rebuilt, never used."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from shoal.data.batch import Batch
from shoal.data.cache import CachedReader
from shoal.data.reader import ReadStats, TextReader
from shoal.data.synthetic import generate_clicks
from shoal.errors import ConfigError, DataError
from shoal.features.spec import FeatureSpec
from shoal.train.plan import plan

SPEC = FeatureSpec(bits=16)


def text_reader(spec: FeatureSpec = SPEC, **kw: object) -> TextReader:
    return TextReader(spec=spec, block_bytes=1 << 14, threads=2, **kw)  # many small batches


def cached(directory: Path, spec: FeatureSpec = SPEC, **kw: object) -> CachedReader:
    """A reader of a new run (its own session: every file it opens is checked)."""
    return CachedReader(reader=text_reader(spec, **kw), directory=directory)


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cache") / "clicks.vw"
    generate_clicks(path, 3000)
    return path


@pytest.fixture
def data(clicks: Path, tmp_path: Path) -> Path:
    """A private copy of the click file, free to change."""
    return Path(shutil.copy(clicks, tmp_path / "clicks.vw"))


def everything(reader: TextReader | CachedReader, path: Path, **kw: object) -> tuple:
    stats = ReadStats()
    batches = list(reader.read(path, stats, **kw))  # type: ignore[arg-type]
    return batches, stats


def same_batches(a: list[Batch], b: list[Batch]) -> bool:
    fields = ("indptr", "indices", "values", "labels", "weights", "lines", "tag_offsets")
    return len(a) == len(b) and all(
        x.source == y.source
        and all(getattr(x, f).tobytes() == getattr(y, f).tobytes() for f in fields)
        and x.tags() == y.tags()
        for x, y in zip(a, b, strict=True)
    )


def test_the_cache_gives_the_text_readers_batches_and_counts(data: Path, tmp_path: Path) -> None:
    lines = data.read_text().splitlines(keepends=True)
    lines[100] = "1 |a x:notanumber\n"  # bad lines, skipped and counted
    lines[2500] = "oops |\n"
    data.write_text("".join(lines[:-1]) + "1 'tagged |a y\n")
    want, want_stats = everything(text_reader(on_bad_record="skip"), data)
    assert len(want) > 20 and want_stats.skipped == 2
    first = cached(tmp_path / "c", on_bad_record="skip")
    assert len(list(first.read(data))) == len(want)  # written as it is read
    assert (first.stats.written, first.stats.reads, len(first.stats.files)) == (1, 0, 1)
    again = cached(tmp_path / "c", on_bad_record="skip")
    got, got_stats = everything(again, data)
    assert (again.stats.written, again.stats.reads) == (0, 1)
    assert again.stats.bytes == next((tmp_path / "c").glob("*.cache")).stat().st_size
    assert same_batches(got, want)
    assert got_stats == want_stats


def test_shards_are_cached_one_by_one(data: Path, tmp_path: Path) -> None:
    shards = plan([data], 3)
    assert len(shards) == 3 and shards[1].start > 0
    for s in shards:
        kw = {"start": s.start, "end": s.end, "first_line": s.first_line}
        want, want_stats = everything(text_reader(), data, **kw)
        everything(cached(tmp_path / "c"), data, **kw)  # writes it
        reader = cached(tmp_path / "c")
        got, got_stats = everything(reader, data, **kw)
        assert reader.stats.reads == 1
        assert same_batches(got, want) and got_stats == want_stats
    assert len(list((tmp_path / "c").glob("*.cache"))) == 3


def rebuilt_once(directory: Path, path: Path, why: str, **kw: object) -> None:
    """A new run refuses the cache file (saying ``why``), reads the text and writes it anew."""
    reader = cached(directory, **kw)  # type: ignore[arg-type]
    got, _ = everything(reader, path)
    want, _ = everything(text_reader(**kw), path)  # type: ignore[arg-type]
    assert same_batches(got, want)
    assert (reader.stats.rebuilt, reader.stats.reads, reader.stats.written) == (1, 0, 1)
    assert why in reader.stats.first_rebuilt
    after = cached(directory, **kw)  # type: ignore[arg-type]
    everything(after, path)
    assert (after.stats.rebuilt, after.stats.reads) == (0, 1)


def test_a_changed_input_is_noticed_even_with_the_same_size_and_time(
    data: Path, tmp_path: Path
) -> None:
    first = cached(tmp_path / "c")
    everything(first, data)  # written, and kept mapped for its session
    everything(first, data)
    assert (first.stats.written, first.stats.reads) == (1, 1)
    info = data.stat()
    text = data.read_bytes()
    at = text.index(b"\n1 ") + 1  # a label +1 becomes -1: one byte, same size
    data.write_bytes(text[:at] + b"0" + text[at + 1 :])
    os.utime(data, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert (data.stat().st_size, data.stat().st_mtime_ns) == (info.st_size, info.st_mtime_ns)
    rebuilt_once(tmp_path / "c", data, "content changed (checksum)")
    with data.open("ab") as f:
        f.write(b"1 |a appended\n")
    rebuilt_once(tmp_path / "c", data, "changed (size or modification time)")


def test_another_spec_or_policy_never_reads_the_cache(data: Path, tmp_path: Path) -> None:
    everything(cached(tmp_path / "c"), data)
    for spec, kw in (
        (FeatureSpec(bits=15), {}),
        (FeatureSpec(bits=16, seed=1), {}),
        (FeatureSpec(bits=16, interactions=("ab",)), {}),
        (SPEC, {"on_bad_record": "skip"}),
    ):
        reader = cached(tmp_path / "c", spec, **kw)
        got, _ = everything(reader, data)
        assert reader.stats.reads == 0 and reader.stats.written == 1
        assert same_batches(got, everything(text_reader(spec, **kw), data)[0])
    assert len(list((tmp_path / "c").glob("*.cache"))) == 5


def test_a_foreign_file_under_the_name_is_refused(data: Path, tmp_path: Path) -> None:
    a, b = cached(tmp_path / "c"), cached(tmp_path / "c", FeatureSpec(bits=15))
    everything(a, data)
    everything(b, data)
    name_a, name_b = next(iter(a.stats.files)), next(iter(b.stats.files))
    shutil.copy(tmp_path / "c" / name_a, tmp_path / "c" / name_b)  # 16-bit batches, 15-bit name
    rebuilt_once(tmp_path / "c", data, "foreign", spec=FeatureSpec(bits=15))


def test_a_truncated_or_bit_flipped_cache_is_rebuilt(data: Path, tmp_path: Path) -> None:
    reader = cached(tmp_path / "c")
    everything(reader, data)
    path = tmp_path / "c" / next(iter(reader.stats.files))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 3])
    rebuilt_once(tmp_path / "c", data, "damaged: truncated")
    for pos in (100, len(whole) // 2, len(whole) - 100):
        damaged = bytearray(path.read_bytes())
        damaged[pos] ^= 0x04
        path.write_bytes(bytes(damaged))
        rebuilt_once(tmp_path / "c", data, "damaged")


def test_a_failed_read_leaves_no_cache_file(data: Path, tmp_path: Path) -> None:
    with data.open("a") as f:
        f.write("1 |a x:bad\n")  # stops the read at the last line
    with pytest.raises(Exception, match="line 3001"):
        everything(cached(tmp_path / "c"), data)
    assert list((tmp_path / "c").iterdir()) == []


def test_initial_predictions_are_refused_rather_than_dropped(data: Path, tmp_path: Path) -> None:
    """The format keeps no initial predictions: caching a file that has them stops, naming the
    line, and leaves no cache (a cache without them would train another model)."""
    with data.open("a") as f:
        f.write("1 1 0.5 |a x\n")
    with pytest.raises(DataError, match=r"line 3001 .*initial predictions"):
        everything(cached(tmp_path / "c"), data)
    assert list((tmp_path / "c").iterdir()) == []


def test_a_dead_writers_temporary_file_is_removed(data: Path, tmp_path: Path) -> None:
    import socket

    (tmp_path / "c").mkdir()
    host = socket.gethostname().replace(".", "_")
    dead = tmp_path / "c" / f".clicks.vw.x.cache.{host}.{2**22 + 1}.abcd.tmp"  # no such pid
    mine = tmp_path / "c" / f".clicks.vw.x.cache.{host}.{os.getpid()}.abcd.tmp"
    dead.write_bytes(b"half")
    mine.write_bytes(b"in progress")
    everything(cached(tmp_path / "c"), data)
    assert not dead.exists() and mine.exists()


def test_unusable_settings_are_refused_in_one_line(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inside the input directory"):
        everything(cached(data.parent / "cache"), data.parent)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot make"):
        everything(cached(blocker / "c"), data)
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(ConfigError, match="is a pipe"):
        everything(cached(tmp_path / "c", format="vw"), Path(f"/dev/fd/{r}"))
    os.close(r)


def test_a_shard_notices_a_change_in_its_last_record_past_its_end(
    data: Path, tmp_path: Path
) -> None:
    text = data.read_bytes()
    cut = text.index(b"\n", len(text) // 2) + 1
    end = cut - 10  # inside the last record of the range: the reader reads it to its newline
    kw = {"start": 0, "end": end, "first_line": 0}
    everything(cached(tmp_path / "c"), data, **kw)
    info = data.stat()
    digit = text[cut - 3 : cut - 2]  # a digit of the record's last value, after byte `end`
    assert digit.isdigit()
    changed = text[: cut - 3] + (b"1" if digit != b"1" else b"2") + text[cut - 2 :]
    data.write_bytes(changed)
    os.utime(data, ns=(info.st_atime_ns, info.st_mtime_ns))
    reader = cached(tmp_path / "c")
    got, _ = everything(reader, data, **kw)
    assert reader.stats.rebuilt == 1 and "checksum" in reader.stats.first_rebuilt
    assert same_batches(got, everything(text_reader(), data, **kw)[0])


@pytest.mark.parametrize("fmt", ["vw", "csv", "jsonl", "parquet", "vw.gz"])
def test_every_format_comes_back_with_its_dtypes_and_tags(fmt: str, tmp_path: Path) -> None:
    import dataclasses
    import gzip

    from tests.data import same_records as sr

    records = sr.make_records(300)
    path = tmp_path / f"r.{fmt}"
    if fmt == "parquet":
        sr.write_parquet(path, sr.arrow_table(records), row_group_size=37)
    else:
        maker = {"vw": sr.vw_text, "csv": sr.csv_text, "jsonl": sr.jsonl_text}
        raw = maker[fmt.removesuffix(".gz")](records).encode()
        path.write_bytes(gzip.compress(raw) if fmt.endswith(".gz") else raw)
    spec = dataclasses.replace(SPEC, schema=sr.SCHEMA) if fmt == "csv" else SPEC
    want, want_stats = everything(text_reader(spec, batch_rows=50), path)
    assert any(len(b.tag_bytes) for b in want)
    everything(cached(tmp_path / "c", spec, batch_rows=50), path)
    reader = cached(tmp_path / "c", spec, batch_rows=50)
    got, got_stats = everything(reader, path)
    assert reader.stats.reads == 1 and got_stats == want_stats
    assert same_batches(got, want)
    for g, w in zip(got, want, strict=True):
        assert all(getattr(g, f).dtype == getattr(w, f).dtype for f in ("indptr", "values"))


def test_a_csv_shard_notices_a_changed_header(tmp_path: Path) -> None:
    import dataclasses

    from tests.data import same_records as sr

    path = tmp_path / "r.csv"
    path.write_text(sr.csv_text(sr.make_records(400)))
    spec = dataclasses.replace(SPEC, schema=sr.SCHEMA)
    shard = plan([path], 3)[2]
    kw = {"start": shard.start, "end": shard.end, "first_line": shard.first_line}
    everything(cached(tmp_path / "c", spec), path, **kw)
    info = path.stat()
    text = path.read_bytes()
    header = text[: text.index(b"\n")]
    names = header.split(b",")
    assert b"I1" in names and b"I2" in names  # two numeric columns of the same width: swapped
    swapped = [b"I2" if n == b"I1" else b"I1" if n == b"I2" else n for n in names]
    path.write_bytes(b",".join(swapped) + text[len(header) :])
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    reader = cached(tmp_path / "c", spec)
    got, _ = everything(reader, path, **kw)
    assert reader.stats.rebuilt == 1 and "checksum" in reader.stats.first_rebuilt
    assert same_batches(got, everything(text_reader(spec), path, **kw)[0])


def test_a_full_disk_stops_the_read_with_one_line_and_leaves_nothing(
    data: Path, tmp_path: Path
) -> None:
    import resource
    import signal

    reader = cached(tmp_path / "c")
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, old_limit[1]))  # files end at 200 kB
    try:
        with pytest.raises(ConfigError, match=r"cannot write .*: File too large"):
            everything(reader, data)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert list((tmp_path / "c").iterdir()) == []
