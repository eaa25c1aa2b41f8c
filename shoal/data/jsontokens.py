"""JSON tokens for the compiled JSON-lines reader, read exactly as Python's ``json`` reads them.

Each reader takes a uint8 buffer and a position and either reads its token exactly as
``json.loads`` would or refuses it (a negative end), in which case the caller hands the line to
Python. Refused are strings with a control character, bytes that are not well-formed UTF-8 (an
encoded surrogate included), an escape JSON does not have or a lone surrogate (``\\ud800``, which
has no UTF-8), keys with any escape, and numbers the kernel cannot round as Python's ``float``
does for sure. A string's escapes are decoded to UTF-8 (``unescaped``) as ``json`` decodes them.

Numbers: a mantissa of up to 18 significant digits times an exact power of ten rounds once when
both are exact doubles (Clinger's fast path); anything else is scaled in double-double
arithmetic with ``textparse``'s table of powers (error ~2**-103) and kept only when the result
is not within 2**-30 ulp of a rounding tie, not subnormal and finite.

The functions are plain (not numba-inlined) ``njit`` functions: LLVM inlines them where it
pays, and the caller's loop is then free of the reference counting that numba's own inlining
adds around every array argument. numba's on-disk cache of ``jsonparse`` holds these functions
as they were when it was compiled and does not notice edits here: after changing this file,
delete ``shoal/data/__pycache__/jsonparse.*.nb*``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from shoal.data.textparse import _P10, _P10_HIGH, _P10_LO, _P10_LOW, _P10_SHIFT, _two_product

_MIN_NORMAL = 2.2250738585072014e-308
_FNV_BASIS = 2166136261
_FNV_PRIME = 16777619


@njit(cache=True)
def ws(buf, p, n):
    """Past JSON whitespace (a newline ends the line, so it is not whitespace here)."""
    while p < n and (buf[p] == 32 or buf[p] == 9 or buf[p] == 13):
        p += 1
    return p


@njit(cache=True)
def is_word(buf, s, e, word) -> bool:
    """``buf[s:e] == word``."""
    i = 0
    while i < len(word) and s + i < e and buf[s + i] == word[i]:
        i += 1
    return i == len(word) and e - s == i


@njit(cache=True)
def _utf8_len(buf, p, n):
    """Length of the well-formed UTF-8 sequence of a byte >= 0x80 at p; 0 if ill-formed."""
    c = buf[p]
    lo, hi = 0x80, 0xBF
    if 0xC2 <= c <= 0xDF:
        k = 1
    elif c == 0xE0:
        k, lo = 2, 0xA0  # no overlong forms
    elif c == 0xED:
        k, hi = 2, 0x9F  # no surrogates
    elif 0xE1 <= c <= 0xEF:
        k = 2
    elif c == 0xF0:
        k, lo = 3, 0x90
    elif 0xF1 <= c <= 0xF3:
        k = 3
    elif c == 0xF4:
        k, hi = 3, 0x8F  # nothing above U+10FFFF
    else:
        return 0
    if p + k >= n or not (lo <= buf[p + 1] <= hi):
        return 0
    for i in range(p + 2, p + k + 1):
        if not (0x80 <= buf[i] <= 0xBF):
            return 0
    return k + 1


@njit(cache=True)
def _hex4(buf, p, n):
    """The code unit of the 4 hex digits at p, or -1."""
    if p + 4 > n:
        return -1
    u = 0
    for i in range(p, p + 4):
        c = buf[i]
        if 48 <= c <= 57:
            d = c - 48
        elif 97 <= c <= 102 or 65 <= c <= 70:
            d = (c | 32) - 87
        else:
            return -1
        u = u * 16 + d
    return u


@njit(cache=True)
def _escape(buf, p, n):
    """The code point of the escape at p (just past the backslash) and its end; -1 if it is
    not one of JSON's, or is a lone surrogate (which has no UTF-8)."""
    if p >= n:
        return -1, p
    c = buf[p]
    if c == 117:  # 'u'
        u = _hex4(buf, p + 1, n)
        if 0xD800 <= u <= 0xDBFF and p + 6 < n and buf[p + 5] == 92 and buf[p + 6] == 117:
            low = _hex4(buf, p + 7, n)
            if 0xDC00 <= low <= 0xDFFF:
                return 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00), p + 11
        if u < 0 or 0xD800 <= u <= 0xDFFF:
            return -1, p
        return u, p + 5
    if c == 34 or c == 92 or c == 47:  # '"', '\\', '/'
        return c, p + 1
    if c == 98:
        return 8, p + 1
    if c == 102:
        return 12, p + 1
    if c == 110:
        return 10, p + 1
    if c == 114:
        return 13, p + 1
    if c == 116:
        return 9, p + 1
    return -1, p


@njit(cache=True)
def _escaped_rest(buf, p, n):
    """``string`` on from the backslash at p: apart from the common case, so that the caller's
    loop stays small enough to inline."""
    while p < n:
        c = buf[p]
        if c == 34:
            return p
        if c < 128:
            if c < 32:
                return -1
            if c == 92:
                cp, p = _escape(buf, p + 1, n)
                if cp < 0:
                    return -1
            else:
                p += 1
        else:
            k = _utf8_len(buf, p, n)
            if k == 0:
                return -1
            p += k
    return -1


@njit(cache=True)
def string(buf, p, n):
    """(end, escaped) of the string whose text starts at p: ``end`` is its closing quote, -1 if
    it holds a control character (a newline included), ill-formed UTF-8, an escape JSON does
    not have or a lone surrogate, or does not end."""
    while p < n:
        c = buf[p]
        if c == 34:
            return p, False
        if c < 128:
            if c < 32:
                return -1, False
            if c == 92:
                return _escaped_rest(buf, p, n), True
            p += 1
        else:
            k = _utf8_len(buf, p, n)
            if k == 0:
                return -1, False
            p += k
    return -1, False


@njit(cache=True)
def unescaped(buf, s, e, out, o):
    """Write the text of a string ``buf[s:e]`` (read by ``string``) to ``out[o:]`` as UTF-8,
    escapes decoded; returns the end in ``out``. The text never grows."""
    p = s
    while p < e:
        c = buf[p]
        if c != 92:
            out[o] = c
            o += 1
            p += 1
            continue
        cp, p = _escape(buf, p + 1, e)
        if cp < 0x80:
            out[o] = cp
            o += 1
        elif cp < 0x800:
            out[o] = 0xC0 | (cp >> 6)
            out[o + 1] = 0x80 | (cp & 0x3F)
            o += 2
        elif cp < 0x10000:
            out[o] = 0xE0 | (cp >> 12)
            out[o + 1] = 0x80 | ((cp >> 6) & 0x3F)
            out[o + 2] = 0x80 | (cp & 0x3F)
            o += 3
        else:
            out[o] = 0xF0 | (cp >> 18)
            out[o + 1] = 0x80 | ((cp >> 12) & 0x3F)
            out[o + 2] = 0x80 | ((cp >> 6) & 0x3F)
            out[o + 3] = 0x80 | (cp & 0x3F)
            o += 4
    return o


@njit(cache=True)
def key(buf, p, n):
    """The closing quote of an object's key that starts at p (-1 if ``string`` refuses it, or it
    has an escape) and a 32-bit FNV-1a hash of its bytes."""
    e, escaped = string(buf, p, n)
    if escaped:
        e = -1
    h = np.int64(_FNV_BASIS)
    for i in range(p, e):
        h = ((h ^ buf[i]) * _FNV_PRIME) & 0xFFFFFFFF
    return e, h


@njit(cache=True)
def _exact_scaled(mant, exp10):
    """``mant * 10**exp10`` as Python's float() rounds it, or NaN when the double-double
    product lies too near a rounding tie to tell (or the result is subnormal or infinite)."""
    i = exp10 - _P10_LO
    mh = float(mant)
    ml = float(mant - np.int64(mh))
    p, err = _two_product(mh, _P10_HIGH[i])
    tail = err + (mh * _P10_LOW[i] + ml * _P10_HIGH[i])  # within ~2**-103 of the true rest
    s = p + tail
    lost = tail - (s - p)  # exact (Fast2Sum): what rounding s dropped
    _m, ex = math.frexp(s)
    ulp = math.ldexp(1.0, ex - 53)
    slack = ulp * 2.0**-30
    if abs(abs(lost) - 0.5 * ulp) < slack or abs(abs(lost) - 0.25 * ulp) < slack:
        return np.nan  # a tie, or the tie below a power of two
    v = math.ldexp(s, _P10_SHIFT[i])
    if not np.isfinite(v) or v < _MIN_NORMAL:
        return np.nan
    return v


@njit(inline="always", cache=True)
def _digit(mant, nd, zeros, d):
    """One more decimal digit: trailing zeros wait until a nonzero digit follows; mant -1 once
    there are more than 18 significant digits."""
    if d == 0:
        return mant, nd, zeros + (mant > 0)
    nd += zeros + 1
    if nd > 18:
        return np.int64(-1), nd, zeros
    for _ in range(zeros):
        mant *= 10
    return mant * 10 + d, nd, 0


@njit(cache=True)
def number(buf, p, n):
    """The JSON number at p: (end, value, is_integer); end -1 if not read exactly here.

    An integer literal ``-0`` is Python's int 0, so +0.0; a float literal ``-0.0`` is -0.0.
    """
    neg = buf[p] == 45
    if neg:
        p += 1
    if p >= n or not (48 <= buf[p] <= 57):
        return -1, 0.0, False
    mant = np.int64(0)
    nd = 0  # significant digits in mant
    zeros = 0  # zeros after the last nonzero digit, not yet in mant
    exp10 = 0
    is_int = True
    if buf[p] == 48:  # a leading 0 stands alone
        p += 1
    else:
        while p < n and 48 <= buf[p] <= 57:
            mant, nd, zeros = _digit(mant, nd, zeros, buf[p] - 48)
            p += 1
    if p < n and buf[p] == 46:  # '.'
        is_int = False
        p += 1
        start = p
        while p < n and 48 <= buf[p] <= 57:
            mant, nd, zeros = _digit(mant, nd, zeros, buf[p] - 48)
            exp10 -= 1
            p += 1
        if p == start:
            return -1, 0.0, False
    if mant < 0:
        return -1, 0.0, False  # more than 18 significant digits
    if p < n and (buf[p] == 101 or buf[p] == 69):  # 'e' / 'E'
        is_int = False
        p += 1
        eneg = False
        if p < n and (buf[p] == 45 or buf[p] == 43):
            eneg = buf[p] == 45
            p += 1
        start = p
        ev = 0
        while p < n and 48 <= buf[p] <= 57:
            if ev < 100000:
                ev = ev * 10 + (buf[p] - 48)
            p += 1
        if p == start:
            return -1, 0.0, False
        exp10 += -ev if eneg else ev
    if mant == 0:
        return p, (-0.0 if neg and not is_int else 0.0), is_int
    exp10 += zeros
    if mant <= 2**53 and 0 <= exp10 <= 22:
        v = float(mant) * _P10[exp10]
    elif mant <= 2**53 and -22 <= exp10 < 0:
        v = float(mant) / _P10[-exp10]
    elif exp10 == 0:
        v = float(mant)  # one rounding of an int64
    elif exp10 < _P10_LO or exp10 > 308:
        return -1, 0.0, False
    else:
        v = _exact_scaled(mant, exp10)
        if np.isnan(v):
            return -1, 0.0, False
    return p, (-v if neg else v), is_int
