"""Compiled parser of text records (Vowpal Wabbit format and svmlight/libsvm) into hashed CSR.

One numba kernel reads a block of whole lines and writes the rows of a ``Batch``: labels,
importance weights, tags, and the hashed indices and values of every feature, the constant
feature and the interactions. Nothing runs per token in the interpreter.

Vowpal Wabbit lines: ``[label] [importance] ['tag] |ns[:scale] name[:value] ... |ns2 ...``,
read as VW 9 reads them (``docs/formats/vw.md`` lists what shoal refuses instead).
svmlight lines: ``label index:value ... [# comment]`` (a ``qid:`` token is ignored).
Blank lines are skipped. A bad line stops the block with an error code and the offending
token's position, or is skipped and counted, as the caller's policy says.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from shoal.features.hashing import CONSTANT_HASH, FNV_PRIME, murmur3_32

# Error codes returned by the kernel; messages live in ``reader.py``.
OK = 0
BAD_LABEL = 1
BAD_WEIGHT = 2
BAD_VALUE = 3
EMPTY_NAME = 4
BAD_SCALE = 5
BAD_LABEL_TOKEN = 6
SVM_NO_COLON = 7
SVM_BAD_INDEX = 8
BAD_INITIAL = 9
NEED_ROOM = 99  # internal: grow the output arrays and parse the line again
# What each code means, for messages ("{tok}" is the offending token).
PROBLEMS = {
    BAD_LABEL: "label '{tok}' is not a number (a finite 32-bit float)",
    BAD_WEIGHT: "importance weight '{tok}' is not a non-negative number",
    BAD_VALUE: "feature value in '{tok}' is not a finite number",
    EMPTY_NAME: "feature '{tok}' has an empty name",
    BAD_SCALE: "namespace scale in '{tok}' is not a finite number",
    BAD_LABEL_TOKEN: "unexpected token '{tok}' before the first '|'",
    SVM_NO_COLON: "svmlight feature '{tok}' is not index:value",
    SVM_BAD_INDEX: "svmlight feature index in '{tok}' is not a non-negative integer",
    BAD_INITIAL: "initial prediction '{tok}' (the label's third number) is not a number",
}
# The hashing rules a spec hands the kernels (``FeatureSpec.hash_rules``), by position.
RULE_SEED, RULE_DEFAULT_HASH, RULE_DIGITS, RULE_SELF_PAIRS = range(4)

_MANT_MAX = 100_000_000_000_000_000  # 10**17: more digits would overflow int64
_P10 = np.array([10.0**i for i in range(23)], dtype=np.float64)


def _pow10_table(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``10**k ~= (high + low) * 2**shift`` for k in [lo, hi], to about 106 bits.

    ``high`` is the significand of 10**k rounded to a double in [1, 2] and ``low`` the rounded
    remainder (a double-double), so no power underflows, even where 10**k is subnormal. Exact
    integer arithmetic: Python's int / int division rounds correctly.
    """
    n = hi - lo + 1
    high, low, shift = np.empty(n), np.empty(n), np.empty(n, dtype=np.int64)
    for i in range(n):
        k = lo + i
        num, den = (10**k, 1) if k >= 0 else (1, 10**-k)
        e = num.bit_length() - den.bit_length()
        num, den = (num, den << e) if e >= 0 else (num << -e, den)
        if num < den:  # num / den in [1/2, 1): double it
            num, e = num << 1, e - 1
        high[i] = num / den
        h52 = int(high[i] * 2**52)  # high == h52 / 2**52 exactly
        low[i] = (num * 2**52 - h52 * den) / (den * 2**52)
        shift[i] = e
    return high, low, shift


# mant < 10**18, so 10**exp10 with exp10 < _P10_LO gives less than half the least subnormal (0)
# and exp10 > _P10_HI gives at least 1e309 (not finite).
_P10_LO, _P10_HI = -345, 308
_P10_HIGH, _P10_LOW, _P10_SHIFT = _pow10_table(_P10_LO, _P10_HI)
_SPACE = 32
_TAB = 9
_BAR = 124
_COLON = 58
_QUOTE = 39
_HASH = 35
_NL = 10
# float64 values from here up round to an infinite float32 (float32's max plus half an ulp)
_F32_LIMIT = float(np.finfo(np.float32).max) + 2.0**103
_F32_MAX = float(np.finfo(np.float32).max)


@njit(inline="always", cache=True)
def _is_blank(c: int) -> bool:
    return c == _SPACE or c == _TAB or c == 13


@njit(inline="always", cache=True)
def _two_product(a: float, b: float) -> tuple[float, float]:
    """``p + err == a * b`` exactly (Dekker's product with Veltkamp's split, no FMA needed)."""
    p = a * b
    t = 134217729.0 * a
    ah = t - (t - a)
    al = a - ah
    t = 134217729.0 * b
    bh = t - (t - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@njit(inline="always", cache=True)
def _scale_pow10(mant: np.int64, exp10: int) -> float:
    """``mant * 10**exp10`` (0 < mant < 10**18) rounded once from a ~106-bit product.

    ``float(mant) * 10.0**exp10`` would round the mantissa, the power (numba raises to an
    integer power by repeated squaring) and the product: several ulps off Python's float().
    """
    i = exp10 - _P10_LO
    mh = float(mant)
    ml = float(mant - np.int64(mh))  # exact: mant == mh + ml
    p, err = _two_product(mh, _P10_HIGH[i])
    tail = err + (mh * _P10_LOW[i] + ml * _P10_HIGH[i])
    return math.ldexp(p + tail, _P10_SHIFT[i])


@njit(inline="always", cache=True, nogil=True)
def parse_float(buf: np.ndarray, s: int, e: int) -> tuple[bool, float]:
    """Parse ``buf[s:e]`` as a finite decimal number; (False, 0) if it is not exactly one.

    Up to 18 significant digits go into an integer mantissa (further digits are dropped;
    Python's ``repr`` writes at most 17). A mantissa below 2**53 times an exact power of ten
    rounds once (Clinger's fast path); any other is scaled in double-double arithmetic and
    rounded once. Either way the result is Python's ``float()`` of the text, except for inputs
    within about 2**-100 of a halfway point, subnormal results and over 18 digits (1 ulp).
    """
    p = s
    if p >= e:
        return False, 0.0
    neg = False
    if buf[p] == 45 or buf[p] == 43:  # '-' or '+'
        neg = buf[p] == 45
        p += 1
    mant = np.int64(0)
    exp10 = 0
    ndigits = 0
    while p < e and 48 <= buf[p] <= 57:
        if mant < _MANT_MAX:
            mant = mant * 10 + (buf[p] - 48)
        else:
            exp10 += 1
        ndigits += 1
        p += 1
    if p < e and buf[p] == 46:  # '.'
        p += 1
        while p < e and 48 <= buf[p] <= 57:
            if mant < _MANT_MAX:
                mant = mant * 10 + (buf[p] - 48)
                exp10 -= 1
            ndigits += 1
            p += 1
    if ndigits == 0:
        return False, 0.0
    if p < e and (buf[p] == 101 or buf[p] == 69):  # 'e' / 'E'
        p += 1
        eneg = False
        if p < e and (buf[p] == 45 or buf[p] == 43):
            eneg = buf[p] == 45
            p += 1
        ed = 0
        ev = 0
        while p < e and 48 <= buf[p] <= 57:
            if ev < 100000:
                ev = ev * 10 + (buf[p] - 48)
            ed += 1
            p += 1
        if ed == 0:
            return False, 0.0
        exp10 += -ev if eneg else ev
    if p != e:
        return False, 0.0
    if mant == 0:
        v = 0.0
    elif mant <= 2**53 and 0 <= exp10 <= 22:
        v = float(mant) * _P10[exp10]
    elif mant <= 2**53 and -22 <= exp10 < 0:
        v = float(mant) / _P10[-exp10]
    elif exp10 > _P10_HI:
        return False, 0.0
    elif exp10 < _P10_LO:
        v = 0.0
    else:
        v = _scale_pow10(mant, exp10)
    if not np.isfinite(v):
        return False, 0.0
    return True, -v if neg else v


@njit(inline="always", cache=True)
def _feature_hash(buf, s, e, ns_hash, digit_limit):  # numba-typed
    """VW's rule: an all-digit name (of at most ``digit_limit`` digits) hashes to its number
    plus the namespace hash, modulo 2**32; any other name to its MurmurHash3."""
    if e - s <= digit_limit:
        v = np.int64(0)
        digits = True
        for i in range(s, e):
            c = buf[i]
            if c < 48 or c > 57:
                digits = False
                break
            v = (v * 10 + (c - 48)) & 0xFFFFFFFF  # VW's 64-bit sum, taken modulo 2**32
        if digits:
            return (v + ns_hash) & 0xFFFFFFFF
    return murmur3_32(buf, s, e, ns_hash)


@njit(inline="always", cache=True)
def _looks_numeric(buf, s, e) -> bool:
    """Whether ``buf[s:e]`` is meant as a number (VW would read it as one): a digit or '.'
    after an optional sign, or inf, infinity or nan in any case. Such a token is never taken
    for a bare tag."""
    if s < e and (buf[s] == 43 or buf[s] == 45):
        s += 1
    if s < e and (48 <= buf[s] <= 57 or buf[s] == 46):
        return True
    n = e - s
    if n != 3 and n != 8:
        return False
    word = np.int64(0)  # the token's letters, lower case, packed little-endian
    for i in range(n):
        word |= np.int64(buf[s + i] | 32) << (8 * i)
    return word == _INF or word == _NAN or word == _INFINITY


_INF = int.from_bytes(b"inf", "little")
_NAN = int.from_bytes(b"nan", "little")
_INFINITY = int.from_bytes(b"infinity", "little")


@njit(inline="always", cache=True)
def _token(buf: np.ndarray, p: int, n: int, stop_at_bar: bool) -> tuple[int, int]:
    """End of the token starting at p, and the position of its first ':' (the end if none)."""
    colon = -1
    while p < n:
        c = buf[p]
        if c == _SPACE or c == _TAB or c == _NL or c == 13 or (stop_at_bar and c == _BAR):
            break
        if c == _COLON and colon < 0:
            colon = p
        p += 1
    return p, (p if colon < 0 else colon)


@njit(inline="always", cache=True)
def _skip_blanks(buf: np.ndarray, p: int, n: int) -> int:
    while p < n and _is_blank(buf[p]):
        p += 1
    return p


@njit(cache=True, nogil=True)
def _parse_line(
    buf,
    s,
    n,
    svmlight,
    rules,
    mask,
    namespaces,
    indices,
    values,
    nnz,
    keep_row,
    row_h,
    row_ns,
    row_v,
):
    """Parse the non-blank line starting at ``s`` (it ends at the next newline or at ``n``).

    Base features go to ``indices/values[nnz:]``; ``row_h``, ``row_ns``, ``row_v`` receive each
    kept feature's 32-bit hash, namespace letter and value when ``keep_row`` (for the
    interactions). Returns (code,
    new_nnz, n_base, label, weight, tag_s, tag_e, err_s, err_e, end, initial prediction):
    ``end`` is the position of the newline (or n). ``NEED_ROOM`` asks the caller to grow the
    arrays and call again.
    """
    label = np.nan
    weight = 1.0
    init = 0.0
    tag_s = -1
    tag_e = -1
    nb = 0
    p = s
    seed = rules[RULE_SEED]
    default_hash = rules[RULE_DEFAULT_HASH]
    digit_limit = rules[RULE_DIGITS]
    # --- label section: up to the first '|' (VW) or the first 'index:value' token (svmlight)
    if svmlight:
        p = _skip_blanks(buf, p, n)
        te, colon = _token(buf, p, n, False)
        if p < n and buf[p] != _NL and colon == te:  # the label is a single token
            ok, v = parse_float(buf, p, te)
            if not ok:
                return BAD_LABEL, nnz, 0, label, weight, tag_s, tag_e, p, te, -1, init
            label = v
            p = te
    else:
        # VW's rule: the last token is the tag if it starts with ' or touches the '|'; the
        # others are the label, importance weight, initial prediction. (VW also takes the last
        # token of a line without '|' for its tag; shoal reads such a line like any other.)
        k = 0
        last_s = last_e = q = p
        extra_s = extra_e = -1  # the fourth token
        while True:
            q = _skip_blanks(buf, q, n)
            if q >= n or buf[q] == _NL or buf[q] == _BAR:
                break
            last_s = q
            last_e, colon = _token(buf, q, n, True)
            q = last_e
            k += 1
            if k == 4:
                extra_s, extra_e = last_s, last_e
        if k > 0 and (buf[last_s] == _QUOTE or (last_e == q and q < n and buf[q] == _BAR)):
            tag_s, tag_e = last_s + 1 if buf[last_s] == _QUOTE else last_s, last_e
            k -= 1
        if k > 3:
            return BAD_LABEL_TOKEN, nnz, 0, label, weight, tag_s, tag_e, extra_s, extra_e, -1, init
        for i in range(k):
            p = _skip_blanks(buf, p, n)
            te, colon = _token(buf, p, n, True)
            ok, v = parse_float(buf, p, te)
            ok = ok and abs(v) < _F32_LIMIT  # VW stores these as float32
            # shoal's own rule: a last token that is no number at all is a tag (VW: a bad 0)
            bare_tag = 0 < i <= 2 and i == k - 1 and tag_s < 0 and not _looks_numeric(buf, p, te)
            if bare_tag:
                tag_s, tag_e = p, te
            elif i == 0 and ok:
                label = v
            elif i == 0:
                return BAD_LABEL, nnz, 0, label, weight, tag_s, tag_e, p, te, -1, init
            elif i == 1 and ok and v >= 0.0:
                weight = v
            elif i == 1:
                return BAD_WEIGHT, nnz, 0, label, weight, tag_s, tag_e, p, te, -1, init
            elif i == 2 and ok:
                init = v
            elif i == 2:
                return BAD_INITIAL, nnz, 0, label, weight, tag_s, tag_e, p, te, -1, init
            p = te
        p = q
    # --- features
    ns_letter = _SPACE
    ns_hash = default_hash
    anon = 0  # anonymous features (':value') so far in this namespace
    scale = 1.0
    cap = len(indices)
    cap_row = len(row_h)
    while p < n:
        c = buf[p]
        if c == _NL:
            break
        if _is_blank(c):
            p += 1
            continue
        if svmlight and c == _HASH:
            while p < n and buf[p] != _NL:  # a comment runs to the end of the line
                p += 1
            break
        if not svmlight and c == _BAR:
            p += 1
            anon = 0
            if p < n and not _is_blank(buf[p]) and buf[p] != _BAR and buf[p] != _NL:
                ne, colon = _token(buf, p, n, True)
                ns_letter = buf[p]
                ns_hash = murmur3_32(buf, p, colon, seed)
                scale = 1.0
                if colon < ne:
                    ok, scale = parse_float(buf, colon + 1, ne)
                    if not ok:
                        return BAD_SCALE, nnz, 0, label, weight, tag_s, tag_e, p, ne, -1, init
                p = ne
            else:
                ns_letter = _SPACE
                ns_hash = default_hash
                scale = 1.0
            continue
        te, colon = _token(buf, p, n, not svmlight)
        v = 1.0
        if colon < te:
            ok, v = parse_float(buf, colon + 1, te)
            if not ok:
                return BAD_VALUE, nnz, 0, label, weight, tag_s, tag_e, p, te, -1, init
        elif svmlight:
            return SVM_NO_COLON, nnz, 0, label, weight, tag_s, tag_e, p, te, -1, init
        if colon == p and svmlight:
            return EMPTY_NAME, nnz, 0, label, weight, tag_s, tag_e, p, te, -1, init
        if svmlight:
            if colon - p == 3 and buf[p] == 113 and buf[p + 1] == 105 and buf[p + 2] == 100:
                p = te  # 'qid:N' names a query group, not a feature
                continue
            for i in range(p, colon):
                if buf[i] < 48 or buf[i] > 57:
                    return SVM_BAD_INDEX, nnz, 0, label, weight, tag_s, tag_e, p, te, -1, init
        v *= scale
        if abs(v) >= _F32_LIMIT:  # values are stored as float32
            return BAD_VALUE, nnz, 0, label, weight, tag_s, tag_e, p, te, -1, init
        v32 = np.float32(v)
        if colon == p:  # anonymous: VW's namespace hash plus its position (zeros count too)
            h = (ns_hash + anon) & 0xFFFFFFFF
            anon += 1
        else:
            h = -1
        if v32 != 0.0 and namespaces[ns_letter] >= 0:
            if nnz >= cap or nb >= cap_row:
                return NEED_ROOM, nnz, 0, label, weight, tag_s, tag_e, -1, -1, -1, init
            if h < 0:
                h = _feature_hash(buf, p, colon, ns_hash, digit_limit)
            indices[nnz] = (h & mask) | namespaces[ns_letter]
            values[nnz] = v32
            if keep_row:
                row_h[nb] = h
                row_ns[nb] = ns_letter
                row_v[nb] = v32
                nb += 1
            nnz += 1
        p = te
    return OK, nnz, nb, label, weight, tag_s, tag_e, -1, -1, p, init


@njit(inline="always", cache=True)
def _term_ok(row_ns, letters, a, m, i, j, k, self_pairs) -> bool:
    """Positions i, j, k match the term's letters; a repeated letter takes positions at or
    after its earlier one's (VW 9: a feature with itself too), or after them without
    ``self_pairs`` (hash version 1)."""
    s = 0 if self_pairs else 1
    if row_ns[i] != letters[a]:
        return False
    if m >= 2 and (row_ns[j] != letters[a + 1] or (letters[a + 1] == letters[a] and j < i + s)):
        return False
    if m == 3:
        if row_ns[k] != letters[a + 2]:
            return False
        if letters[a + 2] == letters[a + 1] and k < j + s:
            return False
        if letters[a + 2] == letters[a] and k < i + s:
            return False
    return True


@njit(inline="always", cache=True)
def _f32_range(x: float) -> float:
    """``x`` clamped to float32's finite range: an interaction of two large (finite) values
    may overflow it. Such a value is absurd either way; clamped, every prediction stays finite,
    and learning refuses it (``kernels.MAX_STEP``) instead of storing an infinity."""
    return max(-_F32_MAX, min(_F32_MAX, x))


_SORT_FROM = 64  # rows with more features visit them by namespace (``_interactions``)


@njit(cache=True, nogil=True)
def _interactions(
    row_h, row_ns, row_v, nb, inter_off, inter_ns, mask, indices, values, nnz, emit, self_pairs
):
    """Count (emit=False) or write (emit=True) the interaction features of one row.

    A long row visits its features by namespace: each term then costs the products it makes, not
    the square of the row's length (a 20,000-feature line in one namespace took 9 s to parse
    under an interaction of that namespace with another). Short rows scan the row directly
    (sorting would cost them more); both visit pairs in the same order, so the output is equal.
    """
    if nb > _SORT_FROM:
        return _interactions_sorted(
            row_h, row_ns, row_v, nb, inter_off, inter_ns, mask, indices, values, nnz, emit,
            self_pairs,
        )  # fmt: skip
    count = 0
    for t in range(len(inter_off) - 1):
        a = inter_off[t]
        m = inter_off[t + 1] - a
        for i in range(nb):
            if row_ns[i] != inter_ns[a]:
                continue
            for j in range(nb):
                if not _term_ok(row_ns, inter_ns, a, 2, i, j, 0, self_pairs):
                    continue
                h2 = ((row_h[i] * FNV_PRIME) ^ row_h[j]) & 0xFFFFFFFF
                if m == 2:
                    if emit:
                        indices[nnz + count] = h2 & mask
                        values[nnz + count] = _f32_range(row_v[i] * row_v[j])
                    count += 1
                    continue
                for k in range(nb):
                    if not _term_ok(row_ns, inter_ns, a, 3, i, j, k, self_pairs):
                        continue
                    if emit:
                        h3 = ((h2 * FNV_PRIME) ^ row_h[k]) & 0xFFFFFFFF
                        indices[nnz + count] = h3 & mask
                        values[nnz + count] = _f32_range(row_v[i] * row_v[j] * row_v[k])
                    count += 1
    return count


@njit(cache=True, nogil=True)
def _interactions_sorted(
    row_h, row_ns, row_v, nb, inter_off, inter_ns, mask, indices, values, nnz, emit, self_pairs
):
    """``_interactions`` over the row's positions sorted (stably) by namespace."""
    ns = row_ns[:nb]
    order = np.argsort(ns, kind="mergesort")  # stable: each namespace's positions ascend
    by_ns = ns[order]
    count = 0
    for t in range(len(inter_off) - 1):
        a = inter_off[t]
        m = inter_off[t + 1] - a
        lo0 = np.searchsorted(by_ns, inter_ns[a], side="left")
        hi0 = np.searchsorted(by_ns, inter_ns[a], side="right")
        lo1 = np.searchsorted(by_ns, inter_ns[a + 1], side="left")
        hi1 = np.searchsorted(by_ns, inter_ns[a + 1], side="right")
        lo2, hi2 = lo1, lo1
        if m == 3:
            lo2 = np.searchsorted(by_ns, inter_ns[a + 2], side="left")
            hi2 = np.searchsorted(by_ns, inter_ns[a + 2], side="right")
        for p in range(lo0, hi0):
            i = order[p]
            for q in range(lo1, hi1):
                j = order[q]
                if not _term_ok(row_ns, inter_ns, a, 2, i, j, 0, self_pairs):
                    continue
                h2 = ((row_h[i] * FNV_PRIME) ^ row_h[j]) & 0xFFFFFFFF
                if m == 2:
                    if emit:
                        indices[nnz + count] = h2 & mask
                        values[nnz + count] = _f32_range(row_v[i] * row_v[j])
                    count += 1
                    continue
                for r in range(lo2, hi2):
                    k = order[r]
                    if not _term_ok(row_ns, inter_ns, a, 3, i, j, k, self_pairs):
                        continue
                    if emit:
                        h3 = ((h2 * FNV_PRIME) ^ row_h[k]) & 0xFFFFFFFF
                        indices[nnz + count] = h3 & mask
                        values[nnz + count] = _f32_range(row_v[i] * row_v[j] * row_v[k])
                    count += 1
    return count


@njit(cache=True)
def _grow(a, need):
    if need <= len(a):
        return a
    out = np.empty(max(need, 2 * len(a)), dtype=a.dtype)
    out[: len(a)] = a
    return out


@njit(cache=True)
def row_arrays(cap):  # numba-typed
    """Room for ``cap`` rows: (row pointer, labels, weights, line numbers, tag offsets)."""
    return (
        np.zeros(cap + 1, dtype=np.int64),
        np.empty(cap, dtype=np.float64),
        np.empty(cap, dtype=np.float32),
        np.empty(cap, dtype=np.int64),
        np.zeros(cap + 1, dtype=np.int64),
    )


@njit(cache=True)
def grow_rows(cap, ptr, labels, weights, lines, tag_off):  # numba-typed
    """The ``row_arrays`` of a parser whose ``cap`` rows are full, with twice the room."""
    cap *= 2
    return (
        cap,
        _grow(ptr, cap + 1),
        _grow(labels, cap),
        _grow(weights, cap),
        _grow(lines, cap),
        _grow(tag_off, cap + 1),
    )


@njit(cache=True, nogil=True)
def parse_block(buf, n, svmlight, rules, mask, constant, namespaces, inter_off, inter_ns, skip_bad):
    """Parse the lines of ``buf[:n]`` (whole lines; the last may lack its newline).

    ``rules`` are the spec's ``hash_rules()``, ``namespaces`` its ``namespace_table()`` (what
    to add to the index of each namespace letter's features, -1 to drop them).

    Returns ``(indptr, indices, values, labels, weights, tag_offsets, tag_bytes, row_lines,
    n_lines, n_skipped, err_code, err_line, err_s, err_e, initial)``: row_lines are 0-based line
    numbers within the block; the err_* fields describe the first bad line (code 0 if none);
    ``initial`` holds each row's initial prediction (VW's label's third number), or is empty
    when no row has one.
    With ``skip_bad`` false, parsing stops at the first bad line.
    """
    cap_rows = n // 32 + 16
    indptr, labels, weights, row_lines, tag_off = row_arrays(cap_rows)
    tag_bytes = np.empty(64, dtype=np.uint8)
    initial = np.zeros(cap_rows, dtype=np.float64)
    any_initial = False
    cap_nnz = n // 6 + 64
    indices = np.empty(cap_nnz, dtype=np.uint32)
    values = np.empty(cap_nnz, dtype=np.float32)
    row_h = np.empty(64, dtype=np.int64)
    row_ns = np.empty(64, dtype=np.uint8)
    row_v = np.empty(64, dtype=np.float64)
    has_inter = len(inter_off) > 1
    self_pairs = rules[RULE_SELF_PAIRS] != 0
    r = 0
    nnz = 0
    ntag = 0
    line = 0
    skipped = 0
    err_code = 0
    err_line = -1
    err_s = -1
    err_e = -1
    p = 0
    while p < n:
        s = _skip_blanks(buf, p, n)
        if svmlight and s < n and buf[s] == _HASH:  # an svmlight comment line is blank
            while s < n and buf[s] != _NL:
                s += 1
        if s >= n or buf[s] == _NL:
            line += 1
            p = s + 1
            continue
        if len(indices) - nnz < 4096:
            indices = _grow(indices, nnz + 4096)
            values = _grow(values, nnz + 4096)
        while True:
            code, nnz2, nb, lab, wt, ts, te, es, ee, end, init = _parse_line(
                buf, s, n, svmlight, rules, mask, namespaces, indices, values, nnz, has_inter,
                row_h, row_ns, row_v,
            )  # fmt: skip
            if code != NEED_ROOM:
                break
            if nnz2 >= len(indices):  # grow only what ran out: growing both for either made
                indices = _grow(indices, 2 * len(indices))  # a line of 80,000 features in a
                values = _grow(values, 2 * len(values))  # model with interactions allocate
            else:  # 2 GB and take seconds
                row_h = _grow(row_h, 2 * len(row_h))
                row_ns = _grow(row_ns, 2 * len(row_ns))
                row_v = _grow(row_v, 2 * len(row_v))
        if code != OK:
            if err_code == 0:
                err_code, err_line, err_s, err_e = code, line, es, ee
            if not skip_bad:
                break
            skipped += 1
            end = ee
            while end < n and buf[end] != _NL:
                end += 1
        else:
            if has_inter:
                extra = _interactions(
                    row_h, row_ns, row_v, nb, inter_off, inter_ns, mask, indices, values, 0,
                    False, self_pairs,
                )  # fmt: skip
                indices = _grow(indices, nnz2 + extra + 1)
                values = _grow(values, nnz2 + extra + 1)
                _interactions(
                    row_h, row_ns, row_v, nb, inter_off, inter_ns, mask, indices, values, nnz2,
                    True, self_pairs,
                )  # fmt: skip
                nnz2 += extra
            if constant:
                if nnz2 >= len(indices):
                    indices = _grow(indices, nnz2 + 1)
                    values = _grow(values, nnz2 + 1)
                indices[nnz2] = (CONSTANT_HASH & mask) | namespaces[256]
                values[nnz2] = 1.0
                nnz2 += 1
            if r == cap_rows:
                cap_rows, indptr, labels, weights, row_lines, tag_off = grow_rows(
                    cap_rows, indptr, labels, weights, row_lines, tag_off
                )
            labels[r] = lab
            weights[r] = wt
            row_lines[r] = line
            initial = _grow(initial, r + 1)
            initial[r] = init
            any_initial = any_initial or init != 0.0
            if ts >= 0:
                tag_bytes = _grow(tag_bytes, ntag + te - ts)
                for i in range(ts, te):
                    tag_bytes[ntag] = buf[i]
                    ntag += 1
            tag_off[r + 1] = ntag
            nnz = nnz2
            indptr[r + 1] = nnz
            r += 1
        line += 1
        p = end + 1
    return (
        indptr[: r + 1],
        indices[:nnz],
        values[:nnz],
        labels[:r],
        weights[:r],
        tag_off[: r + 1],
        tag_bytes[:ntag],
        row_lines[:r],
        line,
        skipped,
        err_code,
        err_line,
        err_s,
        err_e,
        initial[:r] if any_initial else initial[:0],
    )
