"""The live weights in shared memory: written by the learner process, read by every front end.

A run directory (on ``/dev/shm`` where it exists, so nothing reaches a disk) holds

```
control      a 64-byte block: which segment is current, the model version and applied seq
w00000007    a segment: a JSON header (spec, config, where each array lies), then the arrays
```

The learner's live model *is* the current segment: ``Publisher.publish`` copies a model's
weights and counters into a new segment once and points the model's arrays at it, so the learner
thread's updates land in shared memory in place, and every front end that maps the segment sees
them at once. The weights exist once in memory however many front ends there are (the
optimizer's state stays private to the learner: predictions do not read it). A factorization
machine's factors are weights like the others (one flat array, ``model/factors.py``): the
header's config, with the model's kind and rank, says how a reader lays them out. A float32 store is
atomic, so a reader sees each weight before or after an update, never torn -- the same argument
that lets a single process predict without a lock (``learner.py``).

A swap (rollback, load, a restarted learner) publishes a new segment and then bumps the
control block's generation; readers check it per batch and map the new segment (``Reader``).
The control block is a seqlock: the writer makes its counter odd, writes, makes it even; a
reader retries until it read the same even counter before and after. (x86-64 and arm64 Linux
both order the stores of one ``memcpy`` call as seen here: fields are written by one
``pack_into``, and the counter by separate ones.)

The files are plain files mapped with ``mmap``, not ``multiprocessing.shared_memory``: that
module's resource tracker is one more process, and its death unlinks segments still in use.

>>> import tempfile
>>> from shoal import FeatureSpec, Model
>>> d = Path(tempfile.mkdtemp())
>>> Control.create(d / "control")
>>> m = Model(FeatureSpec(bits=4))
>>> Publisher(d).publish(m, version=3, applied_seq=9)
>>> m.weights[1] = 0.5  # the learner writes in place...
>>> model, version, applied = Reader(d).current()
>>> float(model.weights[1]), version, applied  # ...and a reader sees it
(0.5, 3, 9)
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path

import numpy as np

from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.model import Model
from shoal.serve.errors import Unavailable

_MAGIC = b"shoalctl"
# magic, seqlock counter, generation, model version, applied seq, learner pid
_CONTROL = struct.Struct("<8sQQQQQ")
_FIELDS = struct.Struct("<QQQQ")  # generation, version, applied seq, pid (after the counter)
_COUNTER_AT = 8
_FIELDS_AT = 16
_ALIGN = 64


class Control:
    """The control block: ``read()`` from any process, ``write()`` from the learner only."""

    def __init__(self, path: Path, *, writable: bool = False) -> None:
        self.path = path
        with open(path, "r+b" if writable else "rb") as f:
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            self._map = mmap.mmap(f.fileno(), _CONTROL.size, access=access)
        if self._map[:8] != _MAGIC:
            raise Unavailable(f"{path} is not a shoal control block")

    @staticmethod
    def create(path: Path) -> None:
        """A fresh block: generation 0 (nothing published yet)."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(_CONTROL.pack(_MAGIC, 0, 0, 0, 0, 0))
        os.replace(tmp, path)

    def read(self) -> tuple[int, int, int, int]:
        """(generation, version, applied seq, learner pid), consistent with each other."""
        for _ in range(100_000):
            before = struct.unpack_from("<Q", self._map, _COUNTER_AT)[0]
            if before % 2:
                continue  # a write is under way (a few hundred nanoseconds)
            fields = _FIELDS.unpack_from(self._map, _FIELDS_AT)
            if struct.unpack_from("<Q", self._map, _COUNTER_AT)[0] == before:
                return fields
        # a learner killed in the middle of a write: the next learner's first write repairs it
        raise Unavailable("the model's control block is being rewritten (the learner restarts)")

    def write(self, generation: int, version: int, applied_seq: int, pid: int) -> None:
        counter = struct.unpack_from("<Q", self._map, _COUNTER_AT)[0]
        counter += counter % 2  # odd: a learner died while writing; start from even again
        struct.pack_into("<Q", self._map, _COUNTER_AT, counter + 1)
        _FIELDS.pack_into(self._map, _FIELDS_AT, generation, version, applied_seq, pid)
        struct.pack_into("<Q", self._map, _COUNTER_AT, counter + 2)


def _segment(directory: Path, generation: int) -> Path:
    return directory / f"w{generation:08d}"


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


class Publisher:
    """The learner's side: ``publish`` after each learned batch and each swap (learner thread)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.control = Control(directory / "control", writable=True)
        self.generation = self.control.read()[0]  # a restarted learner goes on from there
        self._model: Model | None = None

    def publish(self, model: Model, *, version: int, applied_seq: int) -> None:
        """Make ``model`` the one front ends read (a new segment if it is not already), and
        say which version and event it holds."""
        if model is not self._model:
            self._share(model)
        self.control.write(self.generation, version, applied_seq, os.getpid())
        if model is not self._model:
            self._model = model
            self._remove_old()

    def _share(self, model: Model) -> None:
        """Copy the model's weights and counters into a new segment, and point the model at it:
        from now on the learner updates the shared copy in place."""
        generation = self.generation + 1
        header = json.dumps({
            "spec": model.spec.to_json(),
            "config": model.config.to_dict(),
            "weights": len(model.weights),
            "counters": len(model.counters),
        }).encode()  # fmt: skip
        weights_at = _aligned(8 + len(header))
        counters_at = _aligned(weights_at + model.weights.nbytes)
        size = counters_at + model.counters.nbytes
        path = _segment(self.directory, generation)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w+b") as f:
            f.truncate(size)
            shared = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_WRITE)
        shared[:8] = struct.pack("<Q", len(header))
        shared[8 : 8 + len(header)] = header
        weights = np.frombuffer(shared, np.float32, len(model.weights), weights_at)
        counters = np.frombuffer(shared, np.float64, len(model.counters), counters_at)
        weights[:] = model.weights
        counters[:] = model.counters
        os.replace(tmp, path)
        model.weights, model.counters = weights, counters  # the mapping lives as long as they do
        self.generation = generation

    def _remove_old(self) -> None:
        """Unlink the segments before this one (front ends that still map one keep reading it
        until they see the new generation; the memory goes with the last mapping)."""
        current = _segment(self.directory, self.generation).name
        for path in self.directory.glob("w*"):
            if path.name != current:
                path.unlink(missing_ok=True)


class Reader:
    """A front end's side: ``current()`` per batch of predictions."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.control = Control(directory / "control")
        self.generation = 0
        self.model: Model | None = None

    def current(self) -> tuple[Model, int, int]:
        """The shared model, its version and applied seq (mapping a new segment after a swap);
        ``Unavailable`` before the learner first published."""
        while True:
            generation, version, applied, _ = self.control.read()
            if generation == 0:
                raise Unavailable("the model is not published yet (the learner is starting)")
            if generation == self.generation and self.model is not None:
                return self.model, version, applied
            try:
                self.model = _attach(_segment(self.directory, generation))
            except FileNotFoundError:
                continue  # replaced while we looked: read the control block again
            self.generation = generation

    @property
    def pid(self) -> int:
        """The process that published last (0 before the first)."""
        return self.control.read()[3]


def _attach(path: Path) -> Model:
    """A model whose weights and counters are read-only views of the segment at ``path``."""
    with open(path, "rb") as f:
        shared = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    n = struct.unpack_from("<Q", shared, 0)[0]
    header = json.loads(shared[8 : 8 + n])
    weights_at = _aligned(8 + n)
    counters_at = _aligned(weights_at + 4 * header["weights"])
    model = Model.__new__(Model)
    model.spec = FeatureSpec.from_json(header["spec"])
    model.config = LearnerConfig.from_dict(header["config"])
    model.weights = np.frombuffer(shared, np.float32, header["weights"], weights_at)
    model.counters = np.frombuffer(shared, np.float64, header["counters"], counters_at)
    model.state = {}  # the optimizer's state stays with the learner
    return model
