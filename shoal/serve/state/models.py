"""Reading a model file that a client named (``POST .../load``): model files in the models
directory only, read with a bound.

A client names a file; the server reads it. So the name must lead to a regular file inside the
directory the operator chose (``--models-dir``, by default the served model's folder; links are
followed, and must stay inside too), opened without blocking (a FIFO or a device is refused
before a byte is read), whose size is what its safetensors header says, and no larger than half
the memory available. Every refusal before the header is read says the same thing, so that a
client learns nothing of the files around: missing, a directory, outside, not a model, a name
that is no file name at all.

>>> import tempfile, pathlib
>>> from shoal import FeatureSpec, Model
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> Model(FeatureSpec(bits=4)).save(d / "m.shoal")
>>> path, payload = read_model_file(d, "m.shoal")
>>> path.name, len(payload) == path.stat().st_size
('m.shoal', True)
>>> read_model_file(d, "/etc/passwd")  # doctest: +ELLIPSIS
Traceback (most recent call last):
shoal.serve.errors.RequestError: path: no model file of that name in the models directory ...
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from shoal.serve.errors import PayloadTooLarge, RequestError

NO_MODEL = "no model file of that name in the models directory (--models-dir)"
_MAX_NAME = 4096  # bytes of a path (PATH_MAX)
_MAX_HEADER = 1 << 24  # bytes of a safetensors header


def _refuse() -> RequestError:
    return RequestError("path", NO_MODEL)


def read_model_file(directory: Path, name: Any) -> tuple[Path, bytes]:
    """The resolved path and bytes of the model file ``name`` (relative to ``directory``, or
    absolute inside it); ``RequestError`` with one message for anything else."""
    if not isinstance(name, str) or not name:
        raise RequestError("path", f"must be the name of a model file: {NO_MODEL}")
    try:
        if "\0" in name or len(name.encode("utf-8")) > _MAX_NAME:
            raise _refuse()
        target = (directory / name).resolve()
    except (UnicodeEncodeError, OSError, RuntimeError, ValueError):  # a lone surrogate, a loop
        raise _refuse() from None
    if not target.is_relative_to(directory) or target == directory:
        raise _refuse()
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        raise _refuse() from None
    try:
        return target, _read(fd)
    finally:
        os.close(fd)


def _read(fd: int) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # a FIFO, a device, a directory: not one byte read
        raise _refuse()
    size = info.st_size
    first = _exactly(fd, 8) if size >= 8 else b""
    n = int.from_bytes(first, "little")
    if not 0 < n <= min(_MAX_HEADER, size - 8):
        raise _refuse()
    head = _exactly(fd, n)
    try:
        header = json.loads(head)
        ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
        raise _refuse() from None
    if not ends or 8 + n + max(ends) != size:  # the header describes the whole file
        raise _refuse()
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if size > available // 2:
        raise PayloadTooLarge(
            f"path: a model file of {size} bytes; this server has {available} bytes of memory "
            "free, and reads a model file of at most half of that"
        )
    return first + head + _exactly(fd, size - 8 - n)


def _exactly(fd: int, n: int) -> bytes:
    """``n`` bytes from ``fd``; the file changed under us if it ends sooner."""
    parts = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 24))
        if not chunk:
            raise _refuse()
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)
