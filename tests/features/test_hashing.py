"""MurmurHash3_x86_32 and VW's hashing rules, against known vectors and a plain reference."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.data.reader import TextReader
from shoal.features.hashing import (
    CONSTANT_HASH,
    FNV_PRIME,
    combine,
    feature_hash,
    hash_bytes,
    murmur3_32,
    namespace_hash,
)
from shoal.features.spec import FeatureSpec

M32 = 0xFFFFFFFF


def reference_murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 written from Appleby's reference C++, in plain Python integers."""

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & M32

    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & M32
    nblocks = len(data) // 4
    for i in range(nblocks):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = rotl((k * c1) & M32, 15)
        h ^= (k * c2) & M32
        h = rotl(h, 13)
        h = (h * 5 + 0xE6546B64) & M32
    tail = data[4 * nblocks :]
    if tail:
        k = int.from_bytes(tail, "little")
        k = rotl((k * c1) & M32, 15)
        h ^= (k * c2) & M32
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


# Published MurmurHash3_x86_32 vectors (Appleby's SMHasher verification set and the widely
# used table of small cases): (data, seed, hash).
KNOWN = [
    (b"", 0, 0),
    (b"", 1, 0x514E28B7),
    (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\x00", 0, 0x514E28B7),
    (b"\x00\x00", 0, 0x30F4C306),
    (b"\x00\x00\x00", 0, 0x85F0B427),
    (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"\xff\xff\xff\xff", 0, 0x76293B50),
    (b"!", 0, 0x72661CF4),
    (b"!C", 0, 0xA0F7B07A),
    (b"!Ce", 0, 0x7E4A8634),
    (b"!Ce\x87", 0, 0xF55B516B),
    (b"!Ce\x87", 0x5082EDEE, 0x2362F9DE),
    (b"a", 0x9747B28C, 0x7FA09EA6),
    (b"aa", 0x9747B28C, 0x5D211726),
    (b"aaa", 0x9747B28C, 0x283E0130),
    (b"aaaa", 0x9747B28C, 0x5A97808A),
    (b"ab", 0x9747B28C, 0x74875592),
    (b"abc", 0x9747B28C, 0xC84A62DD),
    (b"abcd", 0x9747B28C, 0xF0478627),
    (b"Hello, world!", 0x9747B28C, 0x24884CBA),
    (b"hello", 0, 613153351),
    (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
]


@pytest.mark.parametrize(("data", "seed", "expected"), KNOWN)
def test_known_vectors(data: bytes, seed: int, expected: int) -> None:
    assert hash_bytes(data, seed) == expected
    assert reference_murmur3_32(data, seed) == expected  # the reference itself is right


@pytest.mark.parametrize("length", range(1, 9))
@pytest.mark.parametrize("seed", [0, 1, 0x9747B28C, 0xFFFFFFFF])
def test_every_tail_length_matches_the_reference(length: int, seed: int) -> None:
    data = bytes((37 * i + 201) & 0xFF for i in range(length))  # high bytes exercise sign bugs
    assert hash_bytes(data, seed) == reference_murmur3_32(data, seed)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=40), seed=st.integers(0, M32))
def test_arbitrary_bytes_match_the_reference(data: bytes, seed: int) -> None:
    assert hash_bytes(data, seed) == reference_murmur3_32(data, seed)


def test_hash_of_a_slice_ignores_the_bytes_around_it() -> None:
    buf = np.frombuffer(b"xxhelloyy", dtype=np.uint8)
    assert murmur3_32(buf, 2, 7, 0) == 613153351


def test_default_namespace_hash_is_murmur_of_nothing_with_the_seed() -> None:
    """VW: ``hash_seed == 0 ? 0 : uniform_hash("", 0, hash_seed)``; version 1: the seed."""
    assert namespace_hash("") == 0 == reference_murmur3_32(b"", 0)
    assert namespace_hash("", seed=12345) == reference_murmur3_32(b"", 12345) != 12345
    assert namespace_hash("", seed=5) == 3423425485  # VW 9 --hash_seed 5, '1 | :1'
    assert namespace_hash("", seed=12345, version=1) == 12345
    assert namespace_hash("ns", seed=7) == reference_murmur3_32(b"ns", 7)
    assert namespace_hash("ns", seed=7, version=1) == reference_murmur3_32(b"ns", 7)


@pytest.mark.parametrize("name", ["0", "7", "42", "007", "123456", "4294967295", "9999999999"])
@pytest.mark.parametrize("namespace", ["", "a", "features"])
def test_all_digit_names_hash_to_their_value_plus_the_namespace_hash(
    name: str, namespace: str
) -> None:
    ns = namespace_hash(namespace, seed=3)
    assert feature_hash(name, namespace, seed=3) == (int(name) + ns) & M32


@pytest.mark.parametrize("name", ["1a", "a1", "-1", "+1", "1.5", "\u00b2", "\u0661"])
def test_other_names_are_murmur_hashed(name: str) -> None:
    # Signs, dots and non-ASCII digits take the murmur path.
    ns = namespace_hash("a")
    assert feature_hash(name, "a") == reference_murmur3_32(name.encode(), ns)


@pytest.mark.parametrize(
    "name", ["12345678901", "1700000000000", "99999999999999999999999", "0" * 30 + "42"]
)
def test_all_digit_names_of_any_length_hash_to_their_number_mod_2_32(name: str) -> None:
    """As VW 9 (millisecond timestamps, long ids); hash version 1 took murmur past 10 digits."""
    ns = namespace_hash("a")
    assert feature_hash(name, "a") == (int(name) + ns) & M32
    assert feature_hash(name, "a", version=1) == reference_murmur3_32(name.encode(), ns)


def test_vw_hashes_a_long_number_as_its_value() -> None:
    assert feature_hash("12345678901") & 0x3FFFF == 7221  # VW 9: '1 | 12345678901', -b 18
    assert feature_hash("99999999999999999999999", "f") & 0x3FFFF == 34874


def test_combine_is_vw_quadratic_rule() -> None:
    assert combine(1, 2) == (FNV_PRIME ^ 2) & M32
    h1, h2 = 0xDEADBEEF, 0x12345678
    assert combine(h1, h2) == ((h1 * FNV_PRIME) ^ h2) & M32
    assert combine(h1, h2) != combine(h2, h1)


NAMES = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Zs", "Cc"), blacklist_characters="|:'#\u0085\u2028\u2029"
    ),
    min_size=1,
    max_size=12,
)


def _read_one(path: pathlib.Path, text: str, spec: FeatureSpec, fmt: str = "vw") -> list[int]:
    path.write_bytes(text.encode())
    batches = list(TextReader(spec=spec, format=fmt).read(path))  # type: ignore[arg-type]
    assert len(batches) == 1
    assert len(batches[0]) == 1
    return batches[0].indices.tolist()


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(NAMES | st.from_regex(r"\A[0-9]{1,12}\Z"), min_size=1, max_size=5),
    namespace=st.sampled_from(["", "a", "features", "\u00e9t\u00e9"]),
    seed=st.integers(0, M32),
    bits=st.integers(1, 30),
)
def test_feature_hash_equals_what_the_parser_writes(
    tmp_path_factory: pytest.TempPathFactory,
    names: list[str],
    namespace: str,
    seed: int,
    bits: int,
) -> None:
    path = tmp_path_factory.mktemp("hash") / "one.vw"
    spec = FeatureSpec(bits=bits, seed=seed, constant=False)
    got = _read_one(path, f"1 |{namespace} {' '.join(names)}\n", spec)
    assert got == [feature_hash(n, namespace, seed) & spec.mask for n in names]


def test_svmlight_indices_hash_like_default_namespace_digits(tmp_path: pathlib.Path) -> None:
    spec = FeatureSpec(bits=30, seed=99, constant=False)
    got = _read_one(tmp_path / "one.svm", "1 3:1 10:0.5 4000000000:2\n", spec, "svmlight")
    assert got == [(i + namespace_hash("", 99)) & spec.mask for i in (3, 10, 4000000000)]
    assert got == [feature_hash(n, "", 99) & spec.mask for n in ("3", "10", "4000000000")]


def test_interaction_and_constant_indices(tmp_path: pathlib.Path) -> None:
    spec = FeatureSpec(bits=22, interactions=("ab",))
    got = _read_one(tmp_path / "one.vw", "1 |a x |b y\n", spec)
    hx, hy = feature_hash("x", "a"), feature_hash("y", "b")
    assert got == [
        hx & spec.mask,
        hy & spec.mask,
        combine(hx, hy) & spec.mask,
        CONSTANT_HASH & spec.mask,
    ]
