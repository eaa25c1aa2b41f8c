"""The shared location where a learner publishes snapshots and read replicas find them: a
directory, or any URI that training inputs may use (``s3://bucket/prefix``, ...), through the
same file-system layer (``shoal.data.files``).

```
URI/LATEST.json                        the newest snapshot: its file, sha256, version, seqs, times
URI/v00000012-0123456789ab.shoal       snapshots (a model file each), the newest K kept
```

A snapshot file is written whole before ``LATEST.json`` names it, and ``LATEST.json`` is
replaced at once (a rename on a local disk, one PUT on an object store), so a reader never
follows a manifest to a file not yet there. A reader checks the file's size and sha256 against
the manifest (and the model file's own CRC when it loads it): a damaged snapshot is refused,
never served.

>>> import tempfile
>>> from shoal import FeatureSpec, Model
>>> shelf = Shelf(tempfile.mkdtemp())
>>> shelf.put(Model(FeatureSpec(bits=4)).to_bytes(), version=3, applied_seq=7, logged_seq=9)
>>> entry = shelf.latest()
>>> entry["version"], entry["applied_seq"], shelf.fetch(entry).spec.bits
(3, 7, 4)
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from shoal.data.files import arrow_filesystem
from shoal.errors import ModelFileError, ShoalError
from shoal.model.model import Model

FORMAT = "shoal-published"
MANIFEST = "LATEST.json"


class DamagedSnapshot(ShoalError):
    """A published snapshot does not match its manifest, or is not a model file."""


class Shelf:
    """Publish to (``put``) and read from (``latest``, ``fetch``) one shared location."""

    def __init__(self, uri: str, keep: int = 5) -> None:
        self.uri = uri.rstrip("/")
        self.keep = keep
        self._fs, self._root = arrow_filesystem(self.uri)

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}"

    def _write(self, name: str, payload: bytes) -> None:
        import pyarrow.fs as pafs

        if isinstance(self._fs, pafs.LocalFileSystem):  # a file: written aside, then renamed
            tmp = self._path(f".{name}.tmp")
            with self._fs.open_output_stream(tmp) as f:
                f.write(payload)
            self._fs.move(tmp, self._path(name))
        else:  # an object: one PUT is atomic
            with self._fs.open_output_stream(self._path(name)) as f:
                f.write(payload)

    def put(
        self, payload: bytes, *, version: int, applied_seq: int, logged_seq: int, name: str = ""
    ) -> None:
        """Publish a snapshot (a model file's bytes), then name it in the manifest."""
        model_name = name  # the served model's name (replicas serve it under the same one)
        digest = hashlib.sha256(payload).hexdigest()
        name = f"v{version:08d}-{digest[:12]}.shoal"
        self._fs.create_dir(self._root, recursive=True)
        self._write(name, payload)
        manifest = {
            "format": FORMAT,
            "name": model_name,
            "file": name,
            "sha256": digest,
            "bytes": len(payload),
            "version": version,
            "applied_seq": applied_seq,
            "logged_seq": logged_seq,
            "published": time.time(),
        }
        self._write(MANIFEST, json.dumps(manifest, indent=1).encode())
        self._prune(name)

    def _prune(self, newest: str) -> None:
        import pyarrow.fs as pafs

        files = sorted(
            info.base_name
            for info in self._fs.get_file_info(pafs.FileSelector(self._root))
            if info.base_name.startswith("v") and info.base_name.endswith(".shoal")
        )
        for name in files[: -self.keep]:
            if name != newest:
                self._fs.delete_file(self._path(name))

    def latest(self) -> dict[str, Any] | None:
        """The manifest of the newest snapshot; None when nothing was published yet."""
        try:
            with self._fs.open_input_stream(self._path(MANIFEST)) as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            if "not found" in str(exc).lower() or "no such" in str(exc).lower():
                return None
            raise
        try:
            manifest = json.loads(data)
            if manifest.get("format") != FORMAT:
                raise ValueError(f"format {manifest.get('format')!r}")
            return dict(manifest)
        except ValueError as exc:
            where = f"{self.uri}/{MANIFEST}"
            raise DamagedSnapshot(f"{where} is not a shoal manifest ({exc})") from None

    def fetch(self, entry: dict[str, Any]) -> Model:
        """The snapshot the manifest ``entry`` names, verified; ``DamagedSnapshot`` if not."""
        where = f"{self.uri}/{entry['file']}"
        try:
            with self._fs.open_input_stream(self._path(str(entry["file"]))) as f:
                payload = f.read()
        except OSError as exc:
            raise DamagedSnapshot(f"{where} cannot be read ({exc})") from None
        if len(payload) != entry["bytes"] or hashlib.sha256(payload).hexdigest() != entry["sha256"]:
            raise DamagedSnapshot(f"{where} does not match its sha256 in {MANIFEST}")
        try:
            return Model.from_bytes(payload, where)
        except ModelFileError as exc:
            raise DamagedSnapshot(str(exc)) from None
