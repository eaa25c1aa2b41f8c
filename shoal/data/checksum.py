"""A fast 64-bit checksum of bytes, computed on several cores: what the binary cache checks.

The cache must notice a changed input and a damaged cache file before it is used, so every
run hashes the input's part and the cache's batches once: at memory speed (a few GB/s per
core), not at the speed of a cryptographic hash. The hash is xxHash64's round (Collet's
xxHash, four independent lanes of multiply-rotate-multiply over 64-bit words), applied to
every 8 MiB chunk; the checksum of a byte string is the hash of its chunks' hashes, so chunks
are hashed on threads (the kernel releases the GIL) and the result does not depend on how many.
It detects accidents — a flipped bit, a truncated or edited file — not an adversary.

>>> data = np.frombuffer(b"some bytes to check" * 1000, dtype=np.uint8)
>>> checksum(data) == checksum(data.copy(), threads=4)
True
>>> checksum(data) == checksum(data[:-1])
False
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

CHUNK = 8 << 20  # bytes hashed by one call of the kernel (one thread's share at a time)
_P1 = np.uint64(11400714785074694791)
_P2 = np.uint64(14029467366897019727)
_P3 = np.uint64(1609587929392839161)


@njit(inline="always", cache=True)
def _rotl(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(inline="always", cache=True)
def _round(acc, w):
    return _rotl(acc + w * _P2, 31) * _P1


@njit(cache=True, nogil=True)
def hash_words(words, tail, length, seed):
    """The 64-bit hash of a byte string given as its 8-byte words (any alignment) and its last
    ``length % 8`` bytes, with the length mixed in at the end."""
    n = len(words)
    a0 = seed + _P1 + _P2
    a1 = seed + _P2
    a2 = seed
    a3 = seed - _P1
    i = 0
    while i + 4 <= n:
        a0 = _round(a0, words[i])
        a1 = _round(a1, words[i + 1])
        a2 = _round(a2, words[i + 2])
        a3 = _round(a3, words[i + 3])
        i += 4
    h = _rotl(a0, 1) + _rotl(a1, 7) + _rotl(a2, 12) + _rotl(a3, 18)
    while i < n:
        h = _round(h, words[i])
        i += 1
    last = np.uint64(0)
    for k in range(len(tail)):
        last = (last << np.uint64(8)) | np.uint64(tail[k])
    h = _round(h ^ np.uint64(length), last)
    h ^= h >> np.uint64(33)
    h *= _P2
    h ^= h >> np.uint64(29)
    h *= _P3
    h ^= h >> np.uint64(32)
    return h


def hash_bytes(buf: np.ndarray, seed: int = 0) -> int:
    """The 64-bit hash of a uint8 array (one call of the kernel)."""
    cut = len(buf) // 8 * 8
    words = buf[:cut].view(np.uint64)  # numpy allows unaligned views; so does the kernel
    return int(hash_words(words, buf[cut:], np.uint64(len(buf)), np.uint64(seed)))


def checksum(buf: np.ndarray, threads: int = 1) -> int:
    """The checksum of a uint8 array (a memory-mapped file's bytes): the hash of the hashes of
    its ``CHUNK``-byte pieces, computed by ``threads`` threads."""
    pieces = [buf[i : i + CHUNK] for i in range(0, len(buf), CHUNK)] or [buf]
    if threads <= 1 or len(pieces) == 1:
        hashes = [hash_bytes(p) for p in pieces]
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="shoal-hash") as pool:
            hashes = list(pool.map(hash_bytes, pieces))
    return combine(hashes, len(buf))


def combine(hashes: list[int], length: int) -> int:
    """The checksum of a byte string from its chunks' hashes, in order."""
    words = np.array([*hashes, length], dtype=np.uint64)
    return hash_bytes(words.view(np.uint8), len(hashes))


def hex64(value: int) -> str:
    """A checksum as 16 hex digits (how the cache's JSON footer stores it)."""
    return f"{value:016x}"
