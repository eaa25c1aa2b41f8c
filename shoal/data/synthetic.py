"""Synthetic click data with a known optimum, written in Vowpal Wabbit text format.

Each row has 26 categorical fields ``a`` .. ``z`` and 9 numeric fields ``i0`` .. ``i8``::

    1 |c a=0 b=3 c=17 ... z=88 |n i0:0.5312 i1:2.1 ... i8:0.07

The label is drawn from a hidden logistic model, ``P(click) = sigmoid(logit)`` with

    logit = bias + sum_f w_f[value_f] + sum_k v_k * x_k

so a linear model on the same tokens can reach the Bayes-optimal log loss, which is the mean
binary entropy of the true click probabilities and is returned as
:attr:`ClickSet.optimal_log_loss`.

* Field ``f`` has a vocabulary of ``V_f`` values (4 .. 200,000, log-spaced) and draws value
  ranks from a truncated continuous Zipf law, ``P(rank >= r) ~ r^(1 - s_f)``, so a few head
  values carry most rows and the tail is long, as in real click logs.
* ``w_f[value] ~ Normal(0, sigma_f)`` is computed on demand from a splitmix64 hash of
  ``(model_seed, f, value)``: a 200,000-value vocabulary costs no memory. ``sigma_f`` falls
  with ``V_f``, so rare values matter less and the model stays learnable from ~10^4 rows.
* ``x_k`` is exponential with scale ``scale_k``, rounded to 4 decimal places; the hidden model
  uses the rounded value, exactly as written. ``v_k ~ Normal(0, 0.3 / scale_k)``.
* ``bias`` is solved on a calibration sample drawn from ``model_seed`` so that the mean click
  probability is 25%. The optimum is then 0.35 .. 0.43 nats depending on ``model_seed``
  (0.42 for seed 0), against 0.56 for the base rate.

**A hidden factorization machine** (``model="fm"``): pairs of features matter. Each row has
12 categorical fields in three namespaces, four each (vocabularies of 10 .. 200 values,
log-spaced: ``u`` has the four smallest, ``c`` the four largest; Zipf draws as above with
``s = 1.5``), and no numeric field::

    -1 |u u0=1 u1=9 u2=0 u3=15 |i i0=0 i1=1 i2=11 i3=1 |c c0=2 c1=0 c2=9 c3=3

    logit = bias + sum_f w_f[value_f] + sum_{f<g} <v_f[value_f], v_g[value_g]>

(Rendle, 2010) with ``w_f ~ Normal(0, sigma_f)`` as above and latent vectors of ``rank``
numbers, each ``Normal(0, tau_f / rank ** 0.25)`` with ``tau_f = 0.5 / sqrt(log10 V_f)``, so
that a pair's term has standard deviation ``tau_f tau_g`` whatever the rank. An FM of at least
that rank can fit it; a linear model cannot, and ``-q`` crosses must learn each pair of values
on its own. The optimum is again the mean binary entropy of the true click probabilities (0.42
for seed 0 and rank 4, against 0.56 for the base rate); the sizes are such that one pass of an
FM over 10^6 rows comes within 1% of it.

The hidden model depends only on ``model_seed`` (and ``rank``) and the rows only on
``data_seed``; rows are drawn one after another from one stream, so a shorter file is a prefix
of a longer one.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
import numpy.typing as npt

from shoal.errors import ConfigError

_FIELDS = 26
_NUMERIC = 9
_VOCAB = np.round(np.geomspace(4, 200_000, _FIELDS)).astype(np.int64)
_ZIPF_S = np.linspace(1.6, 1.3, _FIELDS)  # large vocabularies get the longest tails
_SIGMA = 0.5 / np.log10(_VOCAB)
_NUM_SCALE = np.geomspace(0.05, 20.0, _NUMERIC)
_NUM_SIGMA = 0.3
_TARGET_RATE = 0.25
_CALIBRATION_ROWS = 50_000
_BLOCK = 65_536
_NUMERIC_LINE = 3 + _NUMERIC * 15  # " |n" 9 x " i8:999999.9999"
_MAX_Q = 10**10 - 1  # numeric values are capped just below 10^6 so they fit _MAX_LINE

_FM_SPACES = "uic"
_FM_FIELDS = 4 * len(_FM_SPACES)
# Field f is number f % 4 of namespace _FM_SPACES[f // 4]; vocabularies grow with f.
_FM_VOCAB = np.round(np.geomspace(10, 200, _FM_FIELDS)).astype(np.int64)
_FM_ZIPF_S = np.full(_FM_FIELDS, 1.5)
_FM_SIGMA = 0.5 / np.log10(_FM_VOCAB)
_FM_TAU = 0.5 / np.sqrt(np.log10(_FM_VOCAB))
FM_RANK = 4  # the hidden FM's default rank

_NUMERIC_HEAD = np.frombuffer(b" |n", np.uint8)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True, kw_only=True)
class ClickSet:
    """A written click file and what is known about it.

    ``optimal_log_loss`` is the mean binary entropy (natural log) of the true click
    probabilities of the rows written: no model can have a lower expected log loss on them.
    """

    path: pathlib.Path
    rows: int
    positive_rate: float
    optimal_log_loss: float


@numba.njit(cache=True, inline="always")
def _splitmix(x: np.uint64) -> np.uint64:
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def _hidden_normal(seed: int, field: int, value: int) -> float:
    """A standard normal that is a pure function of (seed, field, value), by Box-Muller."""
    h = _splitmix(_splitmix(_splitmix(np.uint64(seed)) ^ np.uint64(field)) ^ np.uint64(value))
    g = _splitmix(h)
    u1 = (float(h >> np.uint64(11)) + 0.5) * 2.0**-53
    u2 = float(g >> np.uint64(11)) * 2.0**-53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@numba.njit(cache=True, inline="always")
def _zipf_rank(u: float, vocab: int, s: float) -> int:
    """Inverse CDF of the continuous Zipf density ~ x^-s on [1, V + 1), as a rank < V."""
    a = 1.0 - s
    top = 1.0 - (vocab + 1.0) ** a
    x = (1.0 - u * top) ** (1.0 / a)
    return min(int(x) - 1, vocab - 1)


@numba.njit(cache=True)
def _draw(
    uniform: npt.NDArray[np.float64], seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Turn (rows, 36) uniforms into value ranks, numerics x 10^4 and logits without the bias.

    Column 35 (the label's uniform) is not read here.
    """
    rows = uniform.shape[0]
    ranks = np.empty((rows, _FIELDS), np.int64)
    quanta = np.empty((rows, _NUMERIC), np.int64)
    logits = np.zeros(rows)
    weights = np.empty(_NUMERIC)
    for k in range(_NUMERIC):
        weights[k] = _hidden_normal(seed, _FIELDS + k, 0) * _NUM_SIGMA / _NUM_SCALE[k] * 1e-4
    for f in range(_FIELDS):
        for i in range(rows):
            r = _zipf_rank(uniform[i, f], _VOCAB[f], _ZIPF_S[f])
            ranks[i, f] = r
            logits[i] += _SIGMA[f] * _hidden_normal(seed, f, r)
    for k in range(_NUMERIC):
        for i in range(rows):
            x = -np.log1p(-uniform[i, _FIELDS + k]) * _NUM_SCALE[k]
            q = min(int(np.round(x * 1e4)), _MAX_Q)
            quanta[i, k] = q
            logits[i] += weights[k] * q
    return ranks, quanta, logits


@numba.njit(cache=True)
def _fm_tables(seed: int, rank: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The hidden FM's linear weights (V,) and latent vectors (V, rank), V the vocabularies'
    total, field after field."""
    total = _FM_VOCAB.sum()
    linear = np.empty(total)
    vectors = np.empty((total, rank))
    j = 0
    for f in range(_FM_FIELDS):
        scale = _FM_TAU[f] / rank**0.25
        for r in range(_FM_VOCAB[f]):
            linear[j] = _FM_SIGMA[f] * _hidden_normal(seed, f, r)
            for c in range(rank):
                vectors[j, c] = scale * _hidden_normal(seed, _FM_FIELDS + f, r * rank + c)
            j += 1
    return linear, vectors


@numba.njit(cache=True)
def _draw_fm(
    uniform: npt.NDArray[np.float64],
    linear: npt.NDArray[np.float64],
    vectors: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Value ranks, no numerics and the hidden FM's logits without the bias, of (rows, 13)
    uniforms; the pairs by the sum-of-squares identity, in O(rank * fields)."""
    rows = uniform.shape[0]
    rank = vectors.shape[1]
    ranks = np.empty((rows, _FM_FIELDS), np.int64)
    logits = np.zeros(rows)
    total = np.empty(rank)
    for i in range(rows):
        total[:] = 0.0
        squares = 0.0
        j = 0
        for f in range(_FM_FIELDS):
            r = _zipf_rank(uniform[i, f], _FM_VOCAB[f], _FM_ZIPF_S[f])
            ranks[i, f] = r
            logits[i] += linear[j + r]
            for c in range(rank):
                v = vectors[j + r, c]
                total[c] += v
                squares += v * v
            j += _FM_VOCAB[f]
        logits[i] += 0.5 * (np.sum(total * total) - squares)
    return ranks, np.empty((rows, 0), np.int64), logits


@numba.njit(cache=True, inline="always")
def _put_int(buf: npt.NDArray[np.uint8], pos: int, value: int) -> int:
    digits = 1
    while value >= 10**digits:
        digits += 1
    for j in range(digits - 1, -1, -1):
        buf[pos + j] = 48 + value % 10
        value //= 10
    return pos + digits


@numba.njit(cache=True)
def _format(
    labels: npt.NDArray[np.bool_],
    ranks: npt.NDArray[np.int64],
    quanta: npt.NDArray[np.int64],
    prefixes: npt.NDArray[np.uint8],
    max_line: int,
) -> npt.NDArray[np.uint8]:
    """Write the VW text lines of a block into bytes: the label, each field's value after its
    prefix (row f of ``prefixes``, zero-padded: " |c a=", " b=", ...), then the numerics."""
    buf = np.empty(labels.shape[0] * max_line, np.uint8)
    pos = 0
    for i in range(labels.shape[0]):
        if not labels[i]:
            buf[pos] = 45  # '-'
            pos += 1
        buf[pos] = 49  # '1'
        pos += 1
        for f in range(ranks.shape[1]):
            for byte in prefixes[f]:
                if byte == 0:
                    break
                buf[pos] = byte
                pos += 1
            pos = _put_int(buf, pos, ranks[i, f])
        if quanta.shape[1]:
            buf[pos : pos + 3] = _NUMERIC_HEAD
            pos += 3
        for k in range(quanta.shape[1]):
            buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3] = 32, 105, 48 + k, 58  # " i0:"
            pos = _put_int(buf, pos + 4, quanta[i, k] // 10_000)
            frac = quanta[i, k] % 10_000
            if frac:
                buf[pos] = 46  # '.'
                pos += 1
                for scale in (1000, 100, 10, 1):
                    if frac == 0:
                        break
                    buf[pos] = 48 + frac // scale
                    frac %= scale
                    pos += 1
        buf[pos] = 10
        pos += 1
    return buf[:pos]


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


Draw = Callable[
    [npt.NDArray[np.float64]],
    tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]],
]


@dataclass(frozen=True)
class _Hidden:
    """A hidden model and its line layout: ``draw`` turns (rows, ``columns``) uniforms into
    (value ranks, numerics x 10^4, logits without the bias); the last column is the label's."""

    draw: Draw
    columns: int
    prefixes: npt.NDArray[np.uint8]
    max_line: int


def _layout(names: list[str], vocab: npt.NDArray[np.int64], numeric: int) -> tuple[
    npt.NDArray[np.uint8], int
]:  # fmt: skip
    """Each field's prefix, zero-padded, and the longest line: label, fields, numerics."""
    width = max(len(n) for n in names)
    prefixes = np.zeros((len(names), width), np.uint8)
    for f, name in enumerate(names):
        prefixes[f, : len(name)] = np.frombuffer(name.encode(), np.uint8)
    digits = sum(len(str(v - 1)) for v in vocab)
    numerics = _NUMERIC_LINE if numeric else 0
    return prefixes, 2 + sum(len(n) for n in names) + digits + numerics + 1


def _hidden(model: str, model_seed: int, rank: int) -> _Hidden:
    if model == "fm":
        linear, vectors = _fm_tables(model_seed, rank)
        names = [
            (f" |{ns}" if n == 0 else "") + f" {ns}{n}="
            for ns in _FM_SPACES
            for n in range(_FM_FIELDS // len(_FM_SPACES))
        ]
        prefixes, max_line = _layout(names, _FM_VOCAB, 0)
        return _Hidden(lambda u: _draw_fm(u, linear, vectors), _FM_FIELDS + 1, prefixes, max_line)
    names = [(" |c" if f == 0 else "") + f" {chr(97 + f)}=" for f in range(_FIELDS)]
    prefixes, max_line = _layout(names, _VOCAB, _NUMERIC)
    return _Hidden(lambda u: _draw(u, model_seed), _FIELDS + _NUMERIC + 1, prefixes, max_line)


def _bias(model_seed: int, hidden: _Hidden) -> float:
    """Solve mean(sigmoid(bias + logit)) = _TARGET_RATE on a sample drawn from model_seed."""
    rng = np.random.Generator(np.random.PCG64([model_seed, 0xB1A5]))
    logits = hidden.draw(rng.random((_CALIBRATION_ROWS, hidden.columns)))[2]
    lo, hi = -30.0, 30.0
    for _ in range(60):  # the mean is increasing in the bias, so bisection converges
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _sigmoid(logits + mid).mean() < _TARGET_RATE else (lo, mid)
    return 0.5 * (lo + hi)


def generate_clicks(
    path: str | os.PathLike[str],
    rows: int,
    *,
    model_seed: int = 0,
    data_seed: int = 1,
    model: Literal["linear", "fm"] = "linear",
    rank: int = FM_RANK,
) -> ClickSet:
    """Write ``rows`` click rows to ``path``; the same arguments give byte-identical files.

    ``model``: the hidden model, logistic regression (``linear``) or a factorization machine
    of ``rank`` (``fm``). The file is written under a temporary name and renamed, so a reader
    never sees a partial one.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     clicks = generate_clicks(pathlib.Path(d) / "train.vw", 1000)
    >>> clicks.rows, 0.15 < clicks.positive_rate < 0.35, clicks.optimal_log_loss < 0.56
    (1000, True, True)
    """
    if rows < 1:
        raise ConfigError("rows", f"must be at least 1, got {rows}")
    for name, seed in (("model_seed", model_seed), ("data_seed", data_seed)):
        if seed < 0:
            raise ConfigError(name, f"must be a non-negative integer, got {seed}")
    if model not in ("linear", "fm"):
        raise ConfigError("model", f"must be linear or fm, got {model!r}")
    if not 1 <= rank <= 256:
        raise ConfigError("rank", f"must be an integer from 1 to 256, got {rank}")
    path = pathlib.Path(path)
    hidden = _hidden(model, model_seed, rank)
    bias = _bias(model_seed, hidden)
    rng = np.random.Generator(np.random.PCG64(data_seed))
    positives, entropy = 0, 0.0
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as out:
            for start in range(0, rows, _BLOCK):
                n = min(_BLOCK, rows - start)
                # Draw each row's uniforms together so the stream does not depend on _BLOCK.
                uniform = rng.random((n, hidden.columns))
                ranks, quanta, logits = hidden.draw(uniform)
                z = logits + bias
                p = _sigmoid(z)
                labels = uniform[:, -1] < p
                positives += int(labels.sum())
                # Binary entropy of p = sigmoid(z), written so it is finite for any z.
                entropy += float((np.logaddexp(0.0, z) - p * z).sum())
                out.write(
                    _format(labels, ranks, quanta, hidden.prefixes, hidden.max_line).tobytes()
                )
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return ClickSet(
        path=path, rows=rows, positive_rate=positives / rows, optimal_log_loss=entropy / rows
    )
