"""The cache's checksum: independent of threads and alignment, sensitive to every byte."""

from __future__ import annotations

import numpy as np
import pytest

from shoal.data.checksum import CHUNK, checksum, hash_bytes


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, 2 * CHUNK + 12345, dtype=np.uint8)


def test_threads_and_alignment_do_not_change_it(data: np.ndarray) -> None:
    one = checksum(data[3:])
    assert checksum(data[3:].copy(), threads=3) == one  # another address, three threads
    assert checksum(data[3:], threads=8) == one


def test_every_flipped_bit_and_every_length_changes_it(data: np.ndarray) -> None:
    base = checksum(data)
    rng = np.random.default_rng(1)
    for pos in [0, 7, 8, CHUNK - 1, CHUNK, len(data) - 1, *rng.integers(0, len(data), 20)]:
        flipped = data.copy()
        flipped[pos] ^= np.uint8(1 << int(rng.integers(0, 8)))
        assert checksum(flipped) != base, pos
    assert checksum(data[:-1]) != base
    assert checksum(np.concatenate([data, np.zeros(1, np.uint8)])) != base
    short = [hash_bytes(np.zeros(n, dtype=np.uint8)) for n in range(20)]
    assert len(set(short)) == 20  # zeros of each length differ: the length is mixed in
