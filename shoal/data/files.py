"""Where data lives: local files and directories, and URIs that pyarrow's file systems open.

A directory stands for the data files under it (recursively, in sorted order), skipping hidden
names: those starting with ``.`` or ``_`` (``.crc`` files, Spark's ``_SUCCESS`` and
``_metadata``), as Arrow's own dataset discovery does. A URI (``s3://bucket/key``,
``gs://...``, ``hdfs://...``, ``file:///...``) is opened through
``pyarrow.fs.FileSystem.from_uri``, so it works wherever that file system is configured; only
Parquet is read from URIs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shoal.errors import ShoalError


def is_uri(path: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` (a Windows drive letter is not a scheme)."""
    text = str(path)
    head, sep, _ = text.partition("://")
    return bool(sep) and len(head) > 1 and head.replace("+", "").isalnum()


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def arrow_filesystem(path: str | os.PathLike[str]) -> tuple[Any, str]:
    """``(pyarrow FileSystem, path within it)`` for a URI or a local path."""
    import pyarrow.fs as pafs

    text = str(path)
    if not is_uri(text):
        return pafs.LocalFileSystem(), str(Path(text).resolve())
    try:
        return pafs.FileSystem.from_uri(text)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... per file system
        raise ShoalError(f"{text}: cannot open this URI: {exc}") from None


def is_dir(path: str | os.PathLike[str]) -> bool:
    if not is_uri(path):
        return Path(path).is_dir()
    import pyarrow.fs as pafs

    fs, inner = arrow_filesystem(path)
    return bool(fs.get_file_info(inner).type == pafs.FileType.Directory)


def list_dir(path: str | os.PathLike[str]) -> list[str]:
    """The data files under a directory (local or URI), sorted; hidden names are skipped."""
    text = str(path)
    if not is_uri(text):
        root = Path(text)
        files = sorted(
            str(f)
            for f in root.rglob("*")
            if f.is_file() and not any(_hidden(part) for part in f.relative_to(root).parts)
        )
    else:
        import pyarrow.fs as pafs

        fs, inner = arrow_filesystem(text)
        infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
        rel = [i.path[len(inner) :].lstrip("/") for i in infos if i.type == pafs.FileType.File]
        files = sorted(
            text.rstrip("/") + "/" + r
            for r in rel
            if not any(_hidden(part) for part in r.split("/"))
        )
    if not files:
        raise ShoalError(f"{text}: directory holds no files")
    return files


def file_size(path: str | os.PathLike[str]) -> int:
    """Size in bytes of a local file or a URI."""
    if not is_uri(path):
        return os.path.getsize(path)
    fs, inner = arrow_filesystem(path)
    info = fs.get_file_info(inner)
    if info.size is None:
        raise ShoalError(f"{path}: no such file")
    return int(info.size)
