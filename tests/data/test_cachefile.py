"""The cache file: batches round-trip bit for bit; a truncated, bit-flipped or foreign file is
refused with a reason, never read; a discarded writer leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shoal.data.batch import Batch
from shoal.data.cachefile import END, MAGIC, TABLE, CacheFile, CacheInvalid, CacheWriter
from shoal.errors import ShoalError

META = {"key": {"input": "x"}, "read": {"rows": 3}}


def batches() -> list[Batch]:
    a = Batch.from_rows([([1, 5], [1.0, 0.5]), ([7], [2.0])], labels=[1.0, -1.0], tags=["t", ""])
    b = Batch.from_rows([([2, 3, 4], [1.0, 1.0, 3.0])], labels=[float("nan")], weights=[2.5])
    return [a, b]


def write(path: Path, items: list[Batch]) -> int:
    with CacheWriter(path) as w:
        for i, b in enumerate(items):
            w.append(b, (i + 1, 2 * (i + 1), 0, 100 * (i + 1)))
        return w.commit(META)


def same(x: Batch, y: Batch) -> bool:
    names = ("indptr", "indices", "values", "labels", "weights", "tag_offsets", "tag_bytes")
    return (
        all(
            getattr(x, n).dtype == getattr(y, n).dtype
            and getattr(x, n).tobytes() == getattr(y, n).tobytes()
            for n in (*names, "lines")
        )
        and x.tags() == y.tags()
    )


def test_batches_come_back_bit_for_bit(tmp_path: Path) -> None:
    path = tmp_path / "a.cache"
    size = write(path, batches())
    cf = CacheFile.open(str(path), threads=2)
    assert cf.size == size == path.stat().st_size
    assert cf.meta["key"] == META["key"] and cf.meta["batches"] == 2
    assert [int(r) for r in cf.table["read_bytes"]] == [100, 200]
    for i, want in enumerate(batches()):
        got = cf.batch(i, "src.vw")
        assert same(got, want) and got.source == "src.vw"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_an_empty_part_is_a_valid_file(tmp_path: Path) -> None:
    write(tmp_path / "e.cache", [])
    assert len(CacheFile.open(str(tmp_path / "e.cache"))) == 0


def test_a_discarded_or_failed_writer_leaves_nothing(tmp_path: Path) -> None:
    with CacheWriter(tmp_path / "d.cache") as w:
        w.append(batches()[0], (2, 2, 0, 10))
        w.discard()
    with pytest.raises(RuntimeError), CacheWriter(tmp_path / "f.cache") as w:
        w.append(batches()[0], (2, 2, 0, 10))
        raise RuntimeError("the learner failed")
    assert list(tmp_path.iterdir()) == []


def refused(path: Path) -> str:
    with pytest.raises(CacheInvalid) as info:
        CacheFile.open(str(path))
    assert isinstance(info.value, ShoalError) and str(path) in str(info.value)
    return info.value.reason


def test_a_truncated_file_is_refused_wherever_it_was_cut(tmp_path: Path) -> None:
    path = tmp_path / "t.cache"
    write(path, batches())
    whole = path.read_bytes()
    for keep in (0, 10, 64, 200, len(whole) // 2, len(whole) - 40, len(whole) - 1):
        path.write_bytes(whole[:keep])
        assert refused(path).startswith("damaged: truncated"), keep


def test_a_flipped_bit_anywhere_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.cache"
    write(path, batches())
    whole = path.read_bytes()
    cf = CacheFile.open(str(path))
    table_at = cf.meta["table_offset"]
    footer_at = len(whole) - 32 - len(__import__("json").dumps(cf.meta, sort_keys=True))
    del cf
    spots = {
        "magic": 2,
        "version": len(MAGIC),
        "first batch": 64 + 9,
        "second batch's values": int(np.frombuffer(whole, TABLE, 2, table_at)["offset"][1]) + 40,
        "table": table_at + 3,
        "footer": footer_at + 5,
        "trailer": len(whole) - 20,
        "end marker": len(whole) - len(END) + 1,
    }
    for what, pos in spots.items():
        damaged = bytearray(whole)
        damaged[pos] ^= 0x10
        path.write_bytes(bytes(damaged))
        assert refused(path), what


def test_a_file_that_is_no_cache_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "n.cache"
    path.write_bytes(b"1 |a x\n" * 100)
    assert refused(path) == "not a shoal cache file (no magic number)"
