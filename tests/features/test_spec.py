"""``FeatureSpec``: validation names the bad field, and the JSON form round-trips."""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.errors import ConfigError
from shoal.features.spec import MAX_BITS, FeatureSpec


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"bits": 0}, "bits"),
        ({"bits": 31}, "bits"),
        ({"bits": -1}, "bits"),
        ({"bits": 18.0}, "bits"),
        ({"bits": "18"}, "bits"),
        ({"bits": True}, "bits"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"seed": "0"}, "seed"),
        ({"seed": False}, "seed"),
        ({"interactions": ("a",)}, "interactions"),
        ({"interactions": ("abcd",)}, "interactions"),
        ({"interactions": ("",)}, "interactions"),
        ({"interactions": ("ab", "\u00e9b")}, "interactions"),
        ({"interactions": (12,)}, "interactions"),
        ({"interactions": "ab cd"}, "interactions"),  # a bare string is one term: this is not
        ({"ignore": "\u00e9"}, "ignore"),
        ({"ignore": 5}, "ignore"),
        ({"constant": "false"}, "constant"),
        ({"constant": 1}, "constant"),
        ({"hash_version": 0}, "hash_version"),
        ({"hash_version": 3}, "hash_version"),
        ({"hash_version": "2"}, "hash_version"),
        ({"hash_version": True}, "hash_version"),
    ],
)
def test_invalid_values_raise_config_error_naming_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        FeatureSpec(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize("bits", [1, 18, MAX_BITS])
def test_valid_bits_give_size_and_mask(bits: int) -> None:
    spec = FeatureSpec(bits=bits)
    assert spec.size == 2**bits
    assert spec.mask == 2**bits - 1


def test_defaults() -> None:
    spec = FeatureSpec()
    assert (spec.bits, spec.seed, spec.interactions, spec.constant, spec.ignore) == (
        18,
        0,
        (),
        True,
        "",
    )


def test_interactions_given_as_a_list_become_a_hashable_tuple() -> None:
    spec = FeatureSpec(interactions=["ab", "ccc"])  # type: ignore[arg-type]
    assert spec.interactions == ("ab", "ccc")
    assert hash(spec) == hash(FeatureSpec(interactions=("ab", "ccc")))


def test_a_lone_string_is_one_interaction_term() -> None:
    assert FeatureSpec(interactions="ab").interactions == ("ab",)


def test_the_spec_is_frozen_and_keyword_only() -> None:
    spec = FeatureSpec()
    with pytest.raises(AttributeError):
        spec.bits = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        FeatureSpec(18)  # type: ignore[misc]


def test_interaction_arrays_flatten_the_terms() -> None:
    offsets, letters = FeatureSpec(interactions=("ab", "  ", "abc")).interaction_arrays()
    assert offsets.tolist() == [0, 2, 4, 7]
    assert bytes(letters).decode() == "ab  abc"
    offsets, letters = FeatureSpec().interaction_arrays()
    assert offsets.tolist() == [0]
    assert len(letters) >= 1  # never an empty array: numba needs a typed buffer


def test_ignore_array_marks_the_letters() -> None:
    table = FeatureSpec(ignore="a ").ignore_array()
    assert table.shape == (256,)
    assert np.flatnonzero(table).tolist() == [ord(" "), ord("a")]


SPECS = st.builds(
    FeatureSpec,
    bits=st.integers(1, MAX_BITS),
    seed=st.integers(0, 2**32 - 1),
    interactions=st.lists(st.text(alphabet="ab f\x7f", min_size=2, max_size=3), max_size=4).map(
        tuple
    ),
    constant=st.booleans(),
    ignore=st.text(alphabet="abz ", max_size=3),
    hash_version=st.sampled_from([1, 2]),
)


@settings(max_examples=200, deadline=None)
@given(spec=SPECS)
def test_json_round_trip(spec: FeatureSpec) -> None:
    text = spec.to_json()
    assert json.loads(text)["interactions"] == list(spec.interactions)
    back = FeatureSpec.from_json(text)
    assert back == spec
    assert back.to_json() == text
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(ConfigError) as info:
        FeatureSpec.from_dict({"bits": 18, "hash_bits": 20})
    assert info.value.field == "spec"
    assert "hash_bits" in str(info.value)


def test_from_json_validates_like_the_constructor() -> None:
    with pytest.raises(ConfigError) as info:
        FeatureSpec.from_json('{"bits": 40}')
    assert info.value.field == "bits"


def test_from_dict_fills_missing_fields_with_defaults() -> None:
    """A spec stored without ``hash_version`` was written before VW 9's rules: version 1."""
    assert FeatureSpec.from_dict({"bits": 12}) == FeatureSpec(bits=12, hash_version=1)
    assert FeatureSpec.from_dict(FeatureSpec(bits=12).to_dict()) == FeatureSpec(bits=12)


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        (("ab", "ab"), ("ab",)),  # VW 9: -q ab -q ab is one interaction
        (("ab", "ba"), ("ab",)),  # equal up to order: the first is kept
        (("ba",), ("ba",)),  # no repeated letter: the order stays (it changes the hashes)
        (("BAB",), ("ABB",)),  # a repeated letter: sorted, as VW reorders --cubic BAB
        (("ABA", "AAB", "ab"), ("AAB", "ab")),
        (("ff", "fff", "ff"), ("ff", "fff")),
    ],
)
def test_interactions_are_sorted_and_deduplicated_as_vw_9(
    terms: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert FeatureSpec(interactions=terms).interactions == expected
    # hash version 1 (model files written before) keeps its terms as they were
    assert FeatureSpec(interactions=terms, hash_version=1).interactions == terms


def test_a_spec_stored_before_hash_versions_keeps_its_rules() -> None:
    """The spec of a model file written by an older shoal (no ``hash_version``) reads as
    version 1: its interactions, digit names and seed keep hashing as they did."""
    old = '{"bits": 18, "constant": true, "ignore": "", "interactions": ["ab", "ab"], "seed": 7}'
    spec = FeatureSpec.from_json(old)
    assert spec.hash_version == 1 and spec.interactions == ("ab", "ab")
    assert (spec.default_hash, spec.self_pairs) == (7, False)
    assert spec.hash_rules().tolist() == [7, 7, 10, 0]
    assert json.loads(spec.to_json())["hash_version"] == 1  # and stays so when saved again
    new = FeatureSpec(seed=7)
    assert new.hash_version == 2 and new.self_pairs
    assert new.default_hash == 415870660  # VW 9 --hash_seed 7: "1 | :1" hashes to it


def test_config_error_pickles() -> None:
    with pytest.raises(ConfigError) as info:
        FeatureSpec(bits=0)
    back = pickle.loads(pickle.dumps(info.value))
    assert (back.field, str(back)) == ("bits", str(info.value))
