"""Versions of the served model: snapshot files written atomically, the last K kept.

A snapshot is an ordinary model file (``Model.load`` reads it) whose metadata also says which
version it is and the sequence number of the last logged event it contains. Recovery is "the
newest readable snapshot, then the event log after its sequence number". Rolling back or loading
another model writes a new version too, so the newest file is always the live model's base.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shoal.errors import ModelFileError
from shoal.model.model import Model
from shoal.model.modelfile import write_atomic
from shoal.serve.errors import UnknownVersion

log = logging.getLogger("shoal.serve")
_FILE = re.compile(r"v(\d{8,})\.shoal")


@dataclass(frozen=True)
class Version:
    """What a snapshot holds: its number, the last event in it, when and why it was written."""

    version: int
    applied_seq: int
    created: float
    reason: str  # initial, periodic, manual, shutdown, rollback, load
    source: str  # the model file it came from (initial, load) or the version (rollback)
    examples_learned: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _meta(path: Path) -> dict[str, str]:
    """The string metadata of a model file, from its safetensors header alone."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if not 0 < n < 1 << 24:
            raise ValueError("no safetensors header")
        header = json.loads(f.read(n))
    return dict(header.get("__metadata__") or {})


class SnapshotStore:
    """The ``snapshots/`` folder of a state directory.

    >>> import tempfile
    >>> from shoal import FeatureSpec, Model
    >>> store = SnapshotStore(Path(tempfile.mkdtemp()), keep=2)
    >>> v = store.write(Model(FeatureSpec(bits=4)), applied_seq=0, reason="initial")
    >>> [x.version for x in store.versions()], store.latest()[1].version
    ([1], 1)
    """

    def __init__(self, directory: Path, keep: int) -> None:
        self.directory = directory
        self.keep = keep

    def _path(self, version: int) -> Path:
        return self.directory / f"v{version:08d}.shoal"

    def open(self) -> None:
        """Create the folder and remove temporary files that a crash left behind."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for tmp in self.directory.glob(".v*.tmp"):
            tmp.unlink(missing_ok=True)

    def _numbers(self) -> list[int]:
        return sorted(
            int(m.group(1)) for p in self.directory.iterdir() if (m := _FILE.fullmatch(p.name))
        )

    def _describe(self, version: int) -> Version:
        path = self._path(version)
        meta = _meta(path)
        return Version(
            version=version,
            applied_seq=int(meta["x-serve.applied_seq"]),
            created=float(meta["x-serve.created"]),
            reason=meta["x-serve.reason"],
            source=meta.get("x-serve.source", ""),
            examples_learned=int(meta.get("x-serve.examples", "0")),
            bytes=path.stat().st_size,
        )

    def versions(self) -> list[Version]:
        """The kept versions, oldest first (unreadable files are left out)."""
        out = []
        for v in self._numbers():
            try:
                out.append(self._describe(v))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("snapshot %s is unreadable: %s", self._path(v), exc)
        return out

    def write(self, model: Model, *, applied_seq: int, reason: str, source: str = "") -> Version:
        """Write the next version atomically (temp file, fsync, rename), then prune old ones."""
        numbers = self._numbers()
        version = (numbers[-1] if numbers else 0) + 1
        created = time.time()
        extra = {
            "serve.version": str(version),
            "serve.applied_seq": str(applied_seq),
            "serve.created": repr(created),
            "serve.reason": reason,
            "serve.source": source,
            "serve.examples": str(model.examples_learned),
        }
        payload = model.to_bytes(extra)
        write_atomic(self._path(version), payload)
        for old in [*numbers, version][: -self.keep]:
            self._path(old).unlink(missing_ok=True)
        return Version(
            version, applied_seq, created, reason, source, model.examples_learned, len(payload)
        )

    def load(self, version: int) -> tuple[Model, Version]:
        path = self._path(version)
        if not path.exists():
            kept = self._numbers()
            shown = f"{kept[0]}..{kept[-1]}" if kept else "none"
            raise UnknownVersion(f"version {version} is not kept (kept versions: {shown})")
        try:
            info = self._describe(version)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFileError(str(path), f"not a snapshot ({exc})") from None
        return Model.load(path), info

    def latest(self) -> tuple[Model, Version] | None:
        """The newest snapshot that loads; a damaged one is skipped with a warning."""
        for v in reversed(self._numbers()):
            try:
                return self.load(v)
            except ModelFileError as exc:
                log.warning("skipping damaged snapshot: %s", exc)
        return None
