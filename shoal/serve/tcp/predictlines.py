"""Lines parsed and predicted by one compiled call.

Most TCP traffic is lines without labels, often one line per round trip. Through a ``Batch``
such a line costs ~28 us of Python around ~3 us of kernels: the parser's 15 arrays boxed,
a ``Batch`` built, ``Model.predict``'s checks. ``predict_lines`` runs the training parser's
kernel (``textparse.parse_block``) and the prediction kernel (``kernels.predict_margins``) in
one call and returns only what the replies need -- each row's margins, its line, its tag --
and each row's label (NaN: none), which says which lines are learned. The margins are those
``Model.decision_function`` computes, by the same kernel, so ``Model.predictions`` makes of
them exactly what ``Model.predict`` would.

It answers a linear model's VW lines; anything it cannot -- a bad line, an index beyond the
model's weights, an initial prediction for a multiclass model (refused) -- is a code that sends
the block the ``Batch`` way, whose checks name the problem. Without ``labels`` it stops at the
first line that may hold a label (one that does not start with ``|`` or ``'``): the caller
wants only predictions.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from shoal.data import textparse
from shoal.model import kernels

OK, LABELED, BAD_LINE, OUT_OF_RANGE = range(4)
_BAR, _QUOTE, _NL, _CR = 124, 39, 10, 13


@njit(cache=True, nogil=True)
def predict_lines(buf, rules, mask, constant, namespaces, inter_off, inter_ns, w, k, limit, labels):
    """(code, margins and labels (n, k + 1), each row's line in the block from 0, tag offsets,
    tag bytes) of the lines of ``buf``; the arrays are empty unless the code is ``OK``. The
    arguments are ``parse_block``'s (the spec's tables), then the model's weights, its outputs,
    its ``spec.index_limit``, and whether lines with labels are taken (else: ``LABELED``)."""
    none = np.empty(0, dtype=np.int64)
    n = len(buf)
    at_start = True
    for i in range(n):
        c = buf[i]
        if at_start and not labels and c != _BAR and c != _QUOTE and c != _NL and c != _CR:
            return LABELED, np.empty((0, k + 1)), none, none, np.empty(0, dtype=np.uint8)
        at_start = c == _NL
    out = textparse.parse_block(
        buf, n, False, rules, mask, constant, namespaces, inter_off, inter_ns, False
    )
    indptr, indices, values, initial = out[0], out[1], out[2], out[14]
    if out[10] != 0 or (k > 1 and len(initial)):  # its error code; a multiclass initial
        return BAD_LINE, np.empty((0, k + 1)), none, none, np.empty(0, dtype=np.uint8)
    for j in range(len(indices)):
        if indices[j] >= limit:
            return OUT_OF_RANGE, np.empty((0, k + 1)), none, none, np.empty(0, dtype=np.uint8)
    rows = len(indptr) - 1
    margins = np.empty((rows, k + 1))
    kernels.predict_margins(indptr, indices, values, initial, w, k, margins[:, :k])
    margins[:, k] = out[3][:rows]
    return OK, margins, out[7], out[5], out[6]
