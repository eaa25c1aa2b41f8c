"""Compiled parser of delimited text (CSV, TSV, the Criteo layout) under a column schema.

Each line is split on the schema's delimiter (a field may be wrapped in double quotes, which
are dropped, and may then hold the delimiter; a quote left open, or doubled quotes inside one,
make the line a bad record); every field goes to its column: numeric and
categorical columns become base features, the label, weight and tag columns fill the row.
An empty field is a missing value. The base features are then assembled with the spec's
interactions and constant feature, so the result is the same tuple ``textparse.parse_block``
returns, and the same ``TextReader`` machinery streams it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from shoal.data.columns import CAT, LABEL, NUM, TAG, WEIGHT, assemble, category_hash, transform
from shoal.data.textparse import _F32_LIMIT, _grow, grow_rows, parse_float, row_arrays

# error codes (messages in reader.py)
WRONG_FIELDS = 20
BAD_NUMBER = 21
BAD_CSV_LABEL = 22
BAD_CSV_WEIGHT = 23
BAD_QUOTE = 24
_NL = 10
_CR = 13
_QUOTE = 34


@njit(inline="always", cache=True)
def _field_end(buf, p, n, delim):
    """(start, end) of the field's content and the position of the byte that ends it; start
    -1 for a quoted field that is not closed right before the delimiter or the line's end
    (doubled quotes inside one included: read, they would silently cut the value short)."""
    if p < n and buf[p] == _QUOTE:
        q = p + 1
        while q < n and buf[q] != _QUOTE and buf[q] != _NL:
            q += 1
        if q >= n or buf[q] != _QUOTE:  # never closed on this line
            return -1, p, q
        e = q + 1
        if e < n and buf[e] == _CR:
            e += 1
        if e < n and buf[e] != delim and buf[e] != _NL:  # text after the closing quote
            while e < n and buf[e] != delim and buf[e] != _NL:
                e += 1
            return -1, p, e
        return p + 1, q, e
    e = p
    while e < n and buf[e] != delim and buf[e] != _NL:
        e += 1
    end = e
    if end > p and buf[end - 1] == _CR:
        end -= 1
    return p, end, e


@njit(cache=True, nogil=True)
def parse_delimited(
    buf, n, delim, fieldmap, roles, hashes, letters, log1p, fills, prefix, prefix_off,
    mask, constant, inter_off, inter_ns, self_pairs, skip_bad, codes,
):  # fmt: skip
    """Parse the lines of ``buf[:n]``; ``fieldmap[i]`` is the schema column of field i (-1: none).

    Returns the tuple of ``textparse.parse_block``.
    """
    nfields = len(fieldmap)
    cap_rows = n // 32 + 16
    base_ptr, labels, weights, row_lines, tag_off = row_arrays(cap_rows)
    tag_bytes = np.empty(64, dtype=np.uint8)
    cap = n // 4 + 64
    h32 = np.empty(cap, dtype=np.int64)
    lets = np.empty(cap, dtype=np.uint8)
    vals = np.empty(cap, dtype=np.float32)
    scratch = np.empty(256, dtype=np.uint8)
    r = nb = ntag = line = skipped = 0
    err_code = 0
    err_line = err_s = err_e = -1
    p = 0
    while p < n:
        line_start = p
        if buf[p] == _NL or (buf[p] == _CR and p + 1 < n and buf[p + 1] == _NL):  # blank
            while p < n and buf[p] != _NL:
                p += 1
            line += 1
            p += 1
            continue
        if nb + nfields + 1 > len(h32):
            h32 = _grow(h32, nb + nfields + 1)
            lets = _grow(lets, nb + nfields + 1)
            vals = _grow(vals, nb + nfields + 1)
        label = np.nan
        weight = 1.0
        ts = te = -1
        f = 0
        code = 0
        es = ee = -1
        nb_row = nb
        while True:
            s, e, stop = _field_end(buf, p, n, delim)
            if s < 0:
                code, es, ee = BAD_QUOTE, e, stop
                break
            if f < nfields and fieldmap[f] >= 0:
                c = fieldmap[f]
                role = roles[c]
                if role == NUM:
                    v = fills[c]
                    if e > s:
                        ok, v = parse_float(buf, s, e)
                        if not ok or abs(v) >= _F32_LIMIT:  # values are stored as float32
                            code, es, ee = BAD_NUMBER, s, e
                            break
                    if not np.isnan(v):
                        v = transform(v, log1p[c])
                        if np.float32(v) != 0.0:  # as VW text: what rounds to 0 is dropped
                            h32[nb_row] = hashes[c]
                            lets[nb_row] = letters[c]
                            vals[nb_row] = v
                            nb_row += 1
                elif role == CAT:
                    if e > s:
                        h, scratch = category_hash(
                            prefix, prefix_off[c], prefix_off[c + 1], buf, s, e, hashes[c], scratch
                        )
                        h32[nb_row] = h
                        lets[nb_row] = letters[c]
                        vals[nb_row] = 1.0
                        nb_row += 1
                elif role == LABEL:
                    if e > s:
                        ok, label = parse_float(buf, s, e)
                        if not ok:
                            code, es, ee = BAD_CSV_LABEL, s, e
                            break
                elif role == WEIGHT:
                    if e > s:
                        ok, weight = parse_float(buf, s, e)
                        if not ok or weight < 0.0:
                            code, es, ee = BAD_CSV_WEIGHT, s, e
                            break
                elif role == TAG:
                    ts, te = s, e
            f += 1
            p = stop
            if p >= n or buf[p] == _NL:
                break
            p += 1  # the delimiter
        if code == 0 and f != nfields:
            code, es, ee = WRONG_FIELDS, line_start, p
        while p < n and buf[p] != _NL:
            p += 1
        p += 1
        if code != 0:
            if err_code == 0:
                err_code, err_line, err_s, err_e = code, line, es, ee
            line += 1
            if not skip_bad:
                break
            skipped += 1
            continue
        if r == cap_rows:
            cap_rows, base_ptr, labels, weights, row_lines, tag_off = grow_rows(
                cap_rows, base_ptr, labels, weights, row_lines, tag_off
            )
        labels[r] = label
        weights[r] = weight
        row_lines[r] = line
        if ts >= 0:
            tag_bytes = _grow(tag_bytes, ntag + te - ts)
            for i in range(ts, te):
                tag_bytes[ntag] = buf[i]
                ntag += 1
        tag_off[r + 1] = ntag
        nb = nb_row
        base_ptr[r + 1] = nb
        r += 1
        line += 1
    indptr, indices, values = assemble(
        base_ptr[: r + 1], h32[:nb], lets[:nb], vals[:nb], mask, constant, inter_off, inter_ns,
        self_pairs, codes,
    )  # fmt: skip
    return (
        indptr, indices, values, labels[:r], weights[:r], tag_off[: r + 1], tag_bytes[:ntag],
        row_lines[:r], line, skipped, err_code, err_line, err_s, err_e,
    )  # fmt: skip
