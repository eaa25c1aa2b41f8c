"""Compiled reader of JSON lines into hashed base features, for specs without a column schema.

One numba kernel scans a block of whole lines and gives, per record, what ``jsonl.py``'s Python
path (``json.loads``, then ``RecordEncoder``) gives: the label, weight and tag, and each
feature's 32-bit hash, namespace letter and float32 value in the same order (zeros dropped),
ready for ``columns.assemble``. It reads the subset of JSON that it can read exactly; a line
outside it is not guessed at but handed back ("to do"), and the Python path reads it, or
reports it if it is a bad record. A line is handed back when it holds:

- a key with a backslash escape; a string with a control character, bytes that are not
  well-formed UTF-8 or a lone surrogate (``\\ud800``); a byte above 0x7f outside a string;
  anything that is not strict JSON (``NaN``, ``Infinity``, a leading ``+``, a trailing comma,
  a byte-order mark...);
- a key twice in an object, or a key both at the top level and in ``features`` (the Python
  path's dicts keep the first one's place and the last one's value);
- a number with more than 18 significant digits, beyond float64's normal range, or too near a
  rounding tie to be sure of Python's rounding (``jsontokens``);
- what the Python path calls a bad record: a line that is not an object, a label, weight or tag
  of the wrong kind, a list, an object nested deeper than a namespace, an empty feature name,
  a value beyond float32 (and an integer tag ``-0``, which Python writes "0");
- more than 2048 keys in one object (the size of the table that finds repeated keys).

The special keys are ``label``, ``weight`` and ``tag``: the names ``jsonl.special_keys`` gives
without a schema.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from shoal.data.jsontokens import is_word, key, number, string, unescaped, ws
from shoal.data.textparse import (
    _F32_LIMIT,
    RULE_DEFAULT_HASH,
    RULE_DIGITS,
    RULE_SEED,
    _feature_hash,
    _grow,
    grow_rows,
    row_arrays,
)
from shoal.features.hashing import murmur3_32

_TABLE = 4096  # slots of the repeated-key table, per scope (top level + features; a namespace)
_MAX_KEYS = _TABLE // 2
_LABEL = np.frombuffer(b"label", dtype=np.uint8)
_WEIGHT = np.frombuffer(b"weight", dtype=np.uint8)
_TAG = np.frombuffer(b"tag", dtype=np.uint8)
_FEATURES = np.frombuffer(b"features", dtype=np.uint8)
_TRUE = np.frombuffer(b"true", dtype=np.uint8)
_FALSE = np.frombuffer(b"false", dtype=np.uint8)
_NULL = np.frombuffer(b"null", dtype=np.uint8)
_TOP, _FEATS, _NS = 0, 1, 2  # the kind of object a key is in
_NOT_SPECIAL, _IS_LABEL, _IS_WEIGHT, _IS_TAG, _IS_FEATURES = range(5)
_OK, _TODO, _ROOM = 0, 1, 2  # a line read; left to the Python path; read again with more room


@njit(cache=True)
def _strip(c) -> bool:
    """``bytes.strip``'s whitespace except the newline, which ends the line."""
    return c == 32 or c == 9 or c == 11 or c == 12 or c == 13


@njit(cache=True)
def _seen(table, base, scope, h) -> bool:
    """Whether hash ``h`` is already in ``scope`` of the table at ``base``; adds it. A slot holds
    ``scope << 32 | h``: slots of earlier scopes are free, so the table is never cleared."""
    i = h & (_TABLE - 1)
    while table[base + i] >> 32 == scope:
        if table[base + i] & 0xFFFFFFFF == h:
            return True
        i = (i + 1) & (_TABLE - 1)
    table[base + i] = (scope << 32) | h
    return False


@njit(cache=True)
def _special(buf, s, e):
    """Which special key of the top level ``buf[s:e]`` is (the names without a schema)."""
    if is_word(buf, s, e, _LABEL):
        return _IS_LABEL
    if is_word(buf, s, e, _WEIGHT):
        return _IS_WEIGHT
    if is_word(buf, s, e, _TAG):
        return _IS_TAG
    if is_word(buf, s, e, _FEATURES):
        return _IS_FEATURES
    return _NOT_SPECIAL


@njit(cache=True, nogil=True)
def _line(buf, s, n, rules, ignore, oh, ol, ov, nb, dh, dl, dv, scratch, table, scope):
    """Read the record of the line that starts at ``s`` (not blank) if it is in the subset.

    Features of the top level go to ``oh/ol/ov[nb:]``, those under ``features`` to
    ``dh/dl/dv[0:]`` (the Python path puts them after the top level's). Returns (code, nb, nd,
    label, weight, tag_s, tag_e, scope, end): ``end`` is the line's newline (or n) for _OK, a
    position in the line for _TODO.
    """
    fail = _TODO
    nb0 = nb
    label, weight, tag_s, tag_e = np.nan, 1.0, -1, -1
    nd = 0
    depth = 0
    feats_open = False  # depth 1 is the "features" object (else a namespace)
    seed, default_hash = rules[RULE_SEED], rules[RULE_DEFAULT_HASH]
    digit_limit = rules[RULE_DIGITS]
    ns_letter, ns_hash = 32, default_hash
    scope += 1
    top_scope, ns_scope = scope, 0
    n_top, n_ns = 0, 0
    if buf[s] != 123:  # '{'
        return _TODO, nb0, 0, np.nan, 1.0, -1, -1, scope, s
    p = ws(buf, s + 1, n)
    member = p < n and buf[p] == 34
    while p < n:
        if member:  # "key": value
            ks = p + 1
            ke, kh = key(buf, ks, n)
            if ke < 0:
                break
            kind = _TOP if depth == 0 else (_FEATS if depth == 1 and feats_open else _NS)
            if kind == _NS:
                n_ns += 1
                if n_ns > _MAX_KEYS or _seen(table, _TABLE, ns_scope, kh):
                    break
            else:
                n_top += 1
                if n_top > _MAX_KEYS or _seen(table, 0, top_scope, kh):
                    break
            p = ws(buf, ke + 1, n)
            if p >= n or buf[p] != 58:  # ':'
                break
            p = ws(buf, p + 1, n)
            if p >= n:
                break
            c = buf[p]
            special = _special(buf, ks, ke) if kind == _TOP else _NOT_SPECIAL
            is_null = c == 110 and is_word(buf, p, min(p + 4, n), _NULL)
            is_num = c == 45 or 48 <= c <= 57
            if special != _NOT_SPECIAL:
                if is_null:
                    p += 4
                elif special == _IS_FEATURES and c == 123:
                    depth, feats_open = 1, True
                    p = ws(buf, p + 1, n)
                    member = p < n and buf[p] == 34
                    continue
                elif special == _IS_TAG and c == 34:
                    tag_s = p + 1
                    tag_e, _escaped = string(buf, tag_s, n)
                    if tag_e < 0:
                        break
                    p = tag_e + 1
                elif is_num and special != _IS_FEATURES:
                    end, v, is_int = number(buf, p, n)
                    if end < 0:
                        break
                    if special == _IS_LABEL:
                        label = v
                    elif special == _IS_WEIGHT:
                        if not (0.0 <= v < _F32_LIMIT):
                            break
                        weight = v
                    else:  # an integer tag is its decimal text; "-0" would be "0"
                        if not is_int or (v == 0.0 and c == 45):
                            break
                        tag_s, tag_e = p, end
                    p = end
                else:
                    break
            elif c == 123:  # a namespace
                if kind == _NS:
                    break
                depth += 1
                scope += 1
                ns_scope, n_ns = scope, 0
                ns_letter = buf[ks] if ke > ks else 32
                ns_hash = murmur3_32(buf, ks, ke, seed) if ke > ks else default_hash
                p = ws(buf, p + 1, n)
                member = p < n and buf[p] == 34
                continue
            else:  # a feature
                if ke == ks:
                    break  # an empty name
                v = 1.0
                vs = ve = -1
                if c == 34:
                    vs = p + 1
                    ve, _escaped = string(buf, vs, n)
                    if ve < 0:
                        break
                    p = ve + 1
                    if ve == vs:
                        v = 0.0  # "" is missing
                elif is_null:
                    p += 4
                    v = 0.0
                elif c == 116 and is_word(buf, p, min(p + 4, n), _TRUE):
                    p += 4
                elif c == 102 and is_word(buf, p, min(p + 5, n), _FALSE):
                    p += 5
                    v = 0.0
                elif is_num:
                    end, v, _int = number(buf, p, n)
                    if end < 0 or abs(v) >= _F32_LIMIT:
                        break
                    p = end
                else:
                    break  # a list, or not JSON
                letter = ns_letter if kind == _NS else 32
                v32 = np.float32(v)
                if v32 != 0.0 and not ignore[letter]:
                    if nb >= len(oh) or nd >= len(dh):
                        fail = _ROOM
                        break
                    nsh = ns_hash if kind == _NS else default_hash
                    if vs >= 0:  # NAME=value
                        k = ke - ks + 1 + ve - vs
                        if k > len(scratch):
                            fail = _ROOM
                            break
                        for i in range(ks, ke):
                            scratch[i - ks] = buf[i]
                        scratch[ke - ks] = 61  # '='
                        k = unescaped(buf, vs, ve, scratch, ke - ks + 1)
                        h = _feature_hash(scratch, 0, k, nsh, digit_limit)
                    else:
                        h = _feature_hash(buf, ks, ke, nsh, digit_limit)
                    if feats_open:
                        dh[nd], dl[nd], dv[nd] = h, letter, v32
                        nd += 1
                    else:
                        oh[nb], ol[nb], ov[nb] = h, letter, v32
                        nb += 1
        # after a value, or at the "}" of an empty object: "," and the next key, or "}"
        p = ws(buf, p, n)
        if p >= n:
            break
        if buf[p] == 44:  # ','
            p = ws(buf, p + 1, n)
            if p >= n or buf[p] != 34:
                break
            member = True
            continue
        if buf[p] != 125:  # '}'
            break
        p += 1
        if depth == 0:  # the record's end: only blanks may follow on the line
            while p < n and _strip(buf[p]):
                p += 1
            if p == n or buf[p] == 10:
                return _OK, nb, nd, label, weight, tag_s, tag_e, scope, p
            break
        if depth == 1:
            feats_open = False
        depth -= 1
        member = False
    return fail, nb0, 0, np.nan, 1.0, -1, -1, scope, p


@njit(cache=True, nogil=True)
def parse_block(buf, n, rules, ignore):
    """Read the JSON lines of ``buf[:n]`` (whole lines; the last may lack its newline).

    Returns ``(base_ptr, h32, letters, values, labels, weights, tag_offsets, tag_bytes, lines,
    todo_rows, todo_starts, todo_ends, n_lines)``. Every non-blank line is a row (``lines``: its
    0-based line number in the block); a row in ``todo_rows`` is one the kernel left to the
    Python path: it has no features, and its line is ``buf[todo_starts[i]:todo_ends[i]]``.
    """
    cap_rows = n // 64 + 16
    base_ptr, labels, weights, lines, tag_off = row_arrays(cap_rows)
    tag_bytes = np.empty(64, dtype=np.uint8)
    cap = n // 8 + 64
    h32 = np.empty(cap, dtype=np.int64)
    lets = np.empty(cap, dtype=np.uint8)
    vals = np.empty(cap, dtype=np.float32)
    dh = np.empty(64, dtype=np.int64)
    dl = np.empty(64, dtype=np.uint8)
    dv = np.empty(64, dtype=np.float32)
    scratch = np.empty(256, dtype=np.uint8)
    todo = np.empty(16, dtype=np.int64)
    todo_s = np.empty(16, dtype=np.int64)
    todo_e = np.empty(16, dtype=np.int64)
    table = np.zeros(2 * _TABLE, dtype=np.int64)
    scope = 0
    r = nb = ntag = nt = 0
    line = 0
    p = 0
    while p < n:
        s = p
        while s < n and _strip(buf[s]):
            s += 1
        end = s
        if s < n and buf[s] != 10:
            if scope > 2**30:  # scopes must fit in 31 bits: start the table afresh
                table[:] = 0
                scope = 0
            while True:
                code, nb2, nd, lab, wt, ts, te, scope, end = _line(
                    buf, s, n, rules, ignore, h32, lets, vals, nb, dh, dl, dv, scratch, table, scope
                )
                if code != _ROOM:
                    break
                h32 = _grow(h32, 2 * len(h32))
                lets = _grow(lets, 2 * len(lets))
                vals = _grow(vals, 2 * len(vals))
                dh = _grow(dh, 2 * len(dh))
                dl = _grow(dl, 2 * len(dl))
                dv = _grow(dv, 2 * len(dv))
                scratch = _grow(scratch, 2 * len(scratch))
            if r == cap_rows:
                cap_rows, base_ptr, labels, weights, lines, tag_off = grow_rows(
                    cap_rows, base_ptr, labels, weights, lines, tag_off
                )
            if code == _OK:
                if nb2 + nd > len(h32):
                    h32 = _grow(h32, nb2 + nd)
                    lets = _grow(lets, nb2 + nd)
                    vals = _grow(vals, nb2 + nd)
                for i in range(nd):
                    h32[nb2], lets[nb2], vals[nb2] = dh[i], dl[i], dv[i]
                    nb2 += 1
                if te > ts:
                    tag_bytes = _grow(tag_bytes, ntag + te - ts)
                    ntag = unescaped(buf, ts, te, tag_bytes, ntag)
            else:
                while end < n and buf[end] != 10:
                    end += 1
                if nt == len(todo):
                    todo = _grow(todo, 2 * nt)
                    todo_s = _grow(todo_s, 2 * nt)
                    todo_e = _grow(todo_e, 2 * nt)
                todo[nt], todo_s[nt], todo_e[nt] = r, p, end
                nt += 1
            labels[r] = lab
            weights[r] = wt
            lines[r] = line
            tag_off[r + 1] = ntag
            nb = nb2
            base_ptr[r + 1] = nb
            r += 1
        line += 1
        p = end + 1
    return (
        base_ptr[: r + 1],
        h32[:nb],
        lets[:nb],
        vals[:nb],
        labels[:r],
        weights[:r],
        tag_off[: r + 1],
        tag_bytes[:ntag],
        lines[:r],
        todo[:nt],
        todo_s[:nt],
        todo_e[:nt],
        line,
    )
