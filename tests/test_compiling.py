"""The notice printed while numba compiles, and its absence when nothing compiles."""

from __future__ import annotations

import io

from numba import njit

from shoal.compiling import MESSAGE, compile_notice, seconds_compiling


def test_a_compilation_is_announced_once_and_timed() -> None:
    @njit(cache=False)
    def twice(x: int) -> int:
        return 2 * x

    stream = io.StringIO()
    with compile_notice(stream) as notice:
        assert twice(3) == 6  # compiles for int
        assert twice(2.5) == 5.0  # and again for float: still one notice
        assert seconds_compiling() == notice.seconds  # what training subtracts from its time
    text = stream.getvalue()
    assert text.count(MESSAGE) == 1
    assert notice.compiled and notice.seconds > 0
    assert seconds_compiling() == 0.0  # no notice in force
    assert "shoal: kernels compiled in " in text


def test_nothing_is_said_when_nothing_compiles() -> None:
    @njit(cache=False)
    def three(x: int) -> int:
        return 3 * x

    three(1)  # compiled before the notice listens
    stream = io.StringIO()
    with compile_notice(stream) as notice:
        assert three(2) == 6
    assert stream.getvalue() == "" and not notice.compiled
