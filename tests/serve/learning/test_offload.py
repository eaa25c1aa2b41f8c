"""Where a request's work runs: on the event loop when small in records and in bytes."""

from __future__ import annotations

from shoal.serve.learning.offload import INLINE_BYTES, INLINE_RECORDS, inline


def test_a_request_is_small_by_its_records_and_its_bytes() -> None:
    assert inline(["| a"] * INLINE_RECORDS, INLINE_BYTES)
    assert not inline(["| a"] * (INLINE_RECORDS + 1), 100)
    assert not inline(["| a"], INLINE_BYTES + 1)  # one 7 MB record is not small
