"""Versions of the served model: snapshot files written atomically, the last K kept.

A snapshot is an ordinary model file (``Model.load`` reads it) whose metadata also says which
version it is and the sequence number of the last logged event it contains. Recovery is "the
newest valid snapshot, then the event log after its sequence number". Rolling back or loading
another model writes a new version too, so the newest file is always the live model's base.

A snapshot is chosen by what it holds, not by its name: its metadata carries a CRC-32 of all the
rest of the metadata (the model file's ``data_crc32`` covers the tensors), and the version it
states must be the one its name says. A file whose sequence number was altered, or an old
snapshot copied under a newer name, is skipped with a warning, so events are never applied twice
or left out.
"""

from __future__ import annotations

import json
import logging
import re
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shoal.errors import ModelFileError, ShoalError
from shoal.model.model import Model
from shoal.model.modelfile import write_atomic
from shoal.serve.errors import StorageError, UnknownVersion

log = logging.getLogger("shoal.serve")
_FILE = re.compile(r"v(\d{8,})\.shoal")
_SEAL = "x-serve.meta_crc32"  # the CRC-32 of the rest of the metadata


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Version:
        """A version as ``to_dict`` made it (it crossed a process or a machine as JSON)."""
        return cls(**data)


def _meta_crc(meta: dict[str, str]) -> str:
    rest = {k: v for k, v in meta.items() if k != _SEAL}
    return str(zlib.crc32(json.dumps(rest, sort_keys=True).encode()))


def _sealed(payload: bytes) -> bytes:
    """A model file's bytes with the CRC of its metadata added (the header is rewritten as
    ``modelfile`` writes it: sorted keys, padded to 8 bytes; the tensors are unchanged)."""
    n = int.from_bytes(payload[:8], "little")
    doc = json.loads(payload[8 : 8 + n])
    doc["__metadata__"][_SEAL] = _meta_crc(doc["__metadata__"])
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + payload[8 + n :]


def _meta(path: Path) -> dict[str, str]:
    """The string metadata of a snapshot, from its safetensors header alone, checked against
    its CRC (snapshots of shoal 0.1 before it have none)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if not 0 < n < 1 << 24:
            raise ValueError("no safetensors header")
        header = json.loads(f.read(n))
    meta = dict(header.get("__metadata__") or {})
    if _SEAL in meta and meta[_SEAL] != _meta_crc(meta):
        raise ValueError("its metadata does not match their checksum (altered or damaged)")
    return meta


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
        stated = int(meta.get("x-serve.version", version))
        if stated != version:
            raise ValueError(f"it holds version {stated}, not the {version} of its name (a copy?)")
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
        payload = _sealed(model.to_bytes(extra))
        path = self._path(version)
        try:
            write_atomic(path, payload)
        except (OSError, ShoalError) as exc:  # a full disk, a read-only folder
            why = exc.strerror if isinstance(exc, OSError) else str(exc).rpartition(": ")[2]
            raise StorageError(
                f"cannot write snapshot {path.name}: {why}; the server goes on serving and "
                "learning (every event stays in the event log), and the write can be tried again"
            ) from None
        for old in [*numbers, version][: -self.keep]:
            try:
                self._path(old).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot remove old snapshot %s: %s", self._path(old), exc.strerror)
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
