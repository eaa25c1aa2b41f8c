"""An input part's identity: the bytes its reader depends on, hashed alike from a path or a URI."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.data.identity import Part, hash_local, hash_stream
from shoal.data.synthetic import generate_clicks


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("identity") / "clicks.vw"
    generate_clicks(path, 3000)
    return path


def test_a_uri_part_hashes_as_the_local_file(data: Path) -> None:
    size = data.stat().st_size
    for start, end in ((0, None), (1000, 50_000), (size // 2, None), (77, size - 3)):
        ranged = start > 0 or end is not None
        local = hash_local(str(data), start, end, ranged, threads=2)
        assert hash_stream(str(data), start, end, ranged) == local
        assert Part(data.as_uri(), "vw", start, end).hash(threads=1) == local


def test_a_range_covers_the_byte_before_it_and_its_last_record(data: Path) -> None:
    text = data.read_bytes()
    nl = text.index(b"\n", 5000)
    a, b, _ = Part(str(data), "vw", 100, nl - 5).hash(threads=1)
    assert (a, b) == (99, nl + 1)  # the record crossing the end is read to its newline
    assert Part(str(data), "vw", 0, None).hash(threads=1)[:2] == (0, len(text))
    assert Part(str(data), "parquet", 100, 200).hash(threads=1)[:2] == (0, len(text))
