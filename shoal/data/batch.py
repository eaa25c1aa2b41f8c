"""``Batch``: the one way records travel through shoal (readers, trainers, the server).

A batch is a block of rows in compressed sparse row (CSR) form, already hashed by a FeatureSpec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Batch:
    """Rows ``indptr[i]:indptr[i+1]`` of ``indices``/``values``, with per-row metadata.

    ``labels`` is NaN where a row has no label; ``lines`` holds each row's 1-based line number in
    ``source`` (for error messages); ``tag(i)`` is row i's tag (VW's ``'tag``) or ``""``.
    ``initial`` holds each row's initial prediction, added to its margin (VW's label's third
    number, for residual learning on another model's output), or is None: all zeros.

    >>> b = Batch.from_rows([([3, 7], [1.0, 0.5])], labels=[1.0])
    >>> len(b), b.nnz, b.indices.tolist()
    (1, 2, [3, 7])
    """

    indptr: np.ndarray  # int64 (n + 1,)
    indices: np.ndarray  # uint32 (nnz,)
    values: np.ndarray  # float32 (nnz,)
    labels: np.ndarray  # float64 (n,)
    weights: np.ndarray  # float32 (n,)
    tag_offsets: np.ndarray  # int64 (n + 1,)
    tag_bytes: np.ndarray  # uint8
    lines: np.ndarray  # int64 (n,)
    source: str = ""
    initial: np.ndarray | None = None  # float64 (n,)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def tag(self, i: int) -> str:
        a, b = self.tag_offsets[i], self.tag_offsets[i + 1]
        return bytes(self.tag_bytes[a:b]).decode("utf-8", errors="replace")

    def tags(self) -> list[str]:
        if not len(self.tag_bytes):
            return [""] * len(self)
        return [self.tag(i) for i in range(len(self))]

    def where(self, i: int) -> str:
        """'line N of FILE' for row i, for error messages."""
        return f"line {int(self.lines[i])} of {self.source or '<input>'}"

    @classmethod
    def from_rows(
        cls,
        rows: list[tuple[list[int], list[float]]],
        labels: list[float] | None = None,
        weights: list[float] | None = None,
        tags: list[str] | None = None,
    ) -> Batch:
        """A batch from already-hashed rows, given as (indices, values) pairs."""
        n = len(rows)
        indptr = np.zeros(n + 1, dtype=np.int64)
        for i, (idx, _) in enumerate(rows):
            indptr[i + 1] = indptr[i] + len(idx)
        indices = np.array([j for idx, _ in rows for j in idx], dtype=np.uint32)
        values = np.array([v for _, val in rows for v in val], dtype=np.float32)
        encoded = [t.encode() for t in (tags or [""] * n)]
        tag_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(t) for t in encoded], out=tag_offsets[1:])
        return cls(
            indptr=indptr,
            indices=indices,
            values=values,
            labels=np.asarray(labels if labels is not None else [np.nan] * n, dtype=np.float64),
            weights=np.asarray(weights if weights is not None else [1.0] * n, dtype=np.float32),
            tag_offsets=tag_offsets,
            tag_bytes=np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(),
            lines=np.arange(1, n + 1, dtype=np.int64),
        )

    @classmethod
    def concat(cls, batches: list[Batch], source: str = "") -> Batch:
        """The rows of ``batches``, one after another, as one batch (line numbers kept).

        >>> a = Batch.from_rows([([1], [1.0])], labels=[1.0], tags=["x"])
        >>> b = Batch.concat([a, Batch.from_rows([([2, 3], [1.0, 2.0])])])
        >>> b.indptr.tolist(), b.indices.tolist(), b.tags()
        ([0, 1, 3], [1, 2, 3], ['x', ''])
        """
        if len(batches) == 1 and batches[0].source == (source or batches[0].source):
            return batches[0]

        def offsets(parts: list[np.ndarray]) -> np.ndarray:
            ends = np.cumsum([0] + [int(p[-1]) for p in parts[:-1]])
            shifted = (p[1:] + e for p, e in zip(parts, ends, strict=True))
            return np.concatenate([parts[0][:1], *shifted])

        return cls(
            indptr=offsets([b.indptr for b in batches]),
            indices=np.concatenate([b.indices for b in batches]),
            values=np.concatenate([b.values for b in batches]),
            labels=np.concatenate([b.labels for b in batches]),
            weights=np.concatenate([b.weights for b in batches]),
            tag_offsets=offsets([b.tag_offsets for b in batches]),
            tag_bytes=np.concatenate([b.tag_bytes for b in batches]),
            lines=np.concatenate([b.lines for b in batches]),
            source=source or batches[0].source,
            initial=None
            if all(b.initial is None for b in batches)
            else np.concatenate([b.initial_margins() for b in batches]),
        )

    def slice(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` as a new batch sharing memory where it can."""
        a, b = int(self.indptr[start]), int(self.indptr[stop])
        ta, tb = int(self.tag_offsets[start]), int(self.tag_offsets[stop])
        return Batch(
            indptr=self.indptr[start : stop + 1] - a,
            indices=self.indices[a:b],
            values=self.values[a:b],
            labels=self.labels[start:stop],
            weights=self.weights[start:stop],
            tag_offsets=self.tag_offsets[start : stop + 1] - ta,
            tag_bytes=self.tag_bytes[ta:tb],
            lines=self.lines[start:stop],
            source=self.source,
            initial=None if self.initial is None else self.initial[start:stop],
        )

    def initial_margins(self) -> np.ndarray:
        """Each row's initial prediction (zeros when the batch has none)."""
        return np.zeros(len(self)) if self.initial is None else self.initial
