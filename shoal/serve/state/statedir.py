"""The state directory of a served model: its layout, whose it is, and who holds it.

```
DIR/state.json        which model file the directory was made for (path and sha256)
DIR/events.sqlite     the event log (and the features kept for feedback)
DIR/snapshots/        vNNNNNNNN.shoal, the kept versions
DIR/seq               the highest event sequence number ever acknowledged (``seqmark.py``)
DIR/lock              held (flock) by the one server using the directory
```

Running the same command line again finds ``state.json`` and resumes; a directory made for
another model file is refused, and so is one that another live server holds.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoal.errors import ModelFileError
from shoal.model.modelfile import write_atomic
from shoal.serve.errors import StateDirError

FORMAT = "shoal-serve-state"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class StateDir:
    """Open with ``open(model_path)``; ``close()`` releases the lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.events = self.path / "events.sqlite"
        self.snapshots = self.path / "snapshots"
        self.state_file = self.path / "state.json"
        self.seq_file = self.path / "seq"
        self._lock_fd: int | None = None
        self.fresh = False  # True when open() created the directory's state

    def open(self, model_path: str, prepare: Callable[[], None] = lambda: None) -> None:
        """Lock the directory, run ``prepare`` (``serve --new`` writes the model file), and
        check (or record) the model file it belongs to."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateDirError(
                f"cannot create state directory {self.path}: {exc.strerror}"
            ) from None
        if not self.path.is_dir():
            raise StateDirError(f"{self.path} is not a directory")
        self._lock()
        try:
            prepare()
            if self.state_file.exists():
                self._check(model_path, self._read_state())
            else:
                self._create(model_path)
        except OSError as exc:
            self.close()
            raise StateDirError(self.unwritable(exc)) from None
        except BaseException:
            self.close()
            raise

    def unwritable(self, exc: OSError) -> str:
        """The message for a state directory the server cannot write in."""
        where = f" ({exc.filename})" if exc.filename else ""
        return (
            f"cannot use state directory {self.path}{where}: {exc.strerror}; the server needs "
            "to write in it (a writable folder on a disk with free space)"
        )

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _lock(self) -> None:
        try:
            fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateDirError(self.unwritable(exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateDirError(
                f"state directory {self.path} is in use by another shoal serve (pid {holder})"
            ) from None
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            self.close()
            raise StateDirError(self.unwritable(exc)) from None

    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text())
            if state.get("format") != FORMAT:
                raise ValueError(f"format {state.get('format')!r}")
            return dict(state)
        except (OSError, ValueError) as exc:
            raise StateDirError(f"{self.state_file} is not a shoal state file ({exc})") from None

    def _check(self, model_path: str, state: dict[str, Any]) -> None:
        model = Path(model_path)
        if not model.exists():
            return  # the model file is gone (a deployment cleaned it up): the state dir suffices
        digest = file_sha256(model)
        if digest != state.get("model_sha256"):
            raise StateDirError(
                f"state directory {self.path} was made for model file {state.get('model_path')} "
                f"(sha256 {str(state.get('model_sha256'))[:12]}...), and {model_path} is another "
                f"model (sha256 {digest[:12]}...): give another --state-dir, or remove {self.path}"
                " to start over from the model file"
            )

    def _create(self, model_path: str) -> None:
        leftovers = sorted(p.name for p in self.path.iterdir() if p.name not in ("lock", "seq"))
        if leftovers:
            raise StateDirError(
                f"{self.path} is not empty and is not a shoal state directory (it holds "
                f"{', '.join(leftovers[:5])}): give an empty or new --state-dir"
            )
        model = Path(model_path)
        if not model.is_file():
            raise ModelFileError(model_path, "no such file")
        state = {
            "format": FORMAT,
            "format_version": 1,
            "model_path": str(model.resolve()),
            "model_sha256": file_sha256(model),
        }
        write_atomic(self.state_file, json.dumps(state, indent=2).encode() + b"\n")
        self.fresh = True
