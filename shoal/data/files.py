"""Where data lives: local paths, and URIs that pyarrow's file systems (or fsspec's) open.

This module is the one place that finds and opens inputs. A URI (``s3://bucket/key``,
``gs://...``, ``hdfs://...``, ``file:///...``) goes through ``pyarrow.fs.FileSystem.from_uri``,
so it works wherever that file system is built into pyarrow and configured; its options ride
in the URI (``s3://bucket/key?region=eu-west-1&endpoint_override=host:9000&scheme=http``) and
credentials come from the provider's usual environment variables and files. A scheme pyarrow
lacks (``az://``, ``abfs://``, ``http(s)://``, ...) goes through fsspec, when it and its
package for the scheme are installed (``shoal[fsspec]``; adlfs for Azure), seen through
pyarrow's ``FSSpecHandler`` so that the rest is the same. Everything else is a local path.

Inputs are files, directories and glob patterns, local or behind URIs alike (``expand``). A
directory stands for the data files under it (recursively, in sorted order), skipping hidden
names: those starting with ``.`` or ``_`` (``.crc`` files, Spark's ``_SUCCESS`` and
``_metadata``), as Arrow's own dataset discovery does. A pattern (``*``, ``?``, ``[...]``,
``**`` for any depth) skips hidden names too, unless its own part starts with ``.`` or ``_``.
In a URI ``?`` starts the options, so there it is no wildcard.

Errors are one line naming the file: "s3://b/k: no such file".
"""

from __future__ import annotations

import functools
import io
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from shoal.errors import ShoalError

URI_BUFFER = 4 << 20  # one request to an object store per 4 MiB read, whatever the reader asks


def is_uri(path: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` (a Windows drive letter is not a scheme)."""
    text = str(path)
    head, sep, _ = text.partition("://")
    return bool(sep) and len(head) > 1 and head.replace("+", "").isalnum()


def basename(path: str | os.PathLike[str]) -> str:
    """The last part of a path or of a URI's path (without its options)."""
    text = str(path)
    return Path(urlsplit(text).path if is_uri(text) else text).name


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# -- file systems --------------------------------------------------------------------------


def arrow_filesystem(path: str | os.PathLike[str]) -> tuple[Any, str]:
    """``(pyarrow FileSystem, path within it)`` for a URI or a local path."""
    import pyarrow.fs as pafs

    text = str(path)
    if not is_uri(text):
        return pafs.LocalFileSystem(), str(Path(text).resolve())
    return _from_uri(text)


@functools.lru_cache(maxsize=256)
def _from_uri(uri: str) -> tuple[Any, str]:
    """``FileSystem.from_uri``, once per URI: an S3 file system may look up the bucket's region
    over the network, and a file is opened several times (format, header, data)."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    scheme = uri.partition("://")[0].lower()
    try:
        return pafs.FileSystem.from_uri(uri)
    except pa.ArrowNotImplementedError as exc:  # "Got S3 URI but Arrow compiled without S3 ..."
        raise ShoalError(
            f"{uri}: this pyarrow ({pa.__version__}) was built without {scheme}:// support "
            f"({_one_line(exc)}); install pyarrow's wheel from PyPI, which has S3, GCS and "
            "HDFS, or a build with that file system enabled"
        ) from None
    except Exception as exc:  # ArrowInvalid, OSError, ... as each file system raises them
        text = _one_line(exc)
        if text.startswith("Unrecognized filesystem type"):
            return _from_fsspec(uri, scheme)
        if scheme in ("hdfs", "viewfs") and ("libjvm" in text or "libhdfs" in text):
            raise ShoalError(
                f"{uri}: pyarrow cannot load Java's libjvm and Hadoop's libhdfs ({text}); set "
                "JAVA_HOME, HADOOP_HOME and CLASSPATH (hadoop classpath --glob), or "
                "ARROW_LIBHDFS_DIR"
            ) from None
        raise ShoalError(f"{uri}: cannot open this URI: {text}") from None


def _from_fsspec(uri: str, scheme: str) -> tuple[Any, str]:
    """A scheme pyarrow lacks (``az://``, ``abfs://``, ``http(s)://``, ...) through fsspec and
    its implementation of that scheme, wrapped as a pyarrow file system."""
    import pyarrow.fs as pafs

    try:
        import fsspec
    except ImportError:
        raise ShoalError(
            f"{uri}: pyarrow has no file system for {scheme}:// URIs (it has file://, s3://, "
            "gs:// and hdfs://); install fsspec and its package for the scheme (pip install "
            "'shoal[fsspec]', plus e.g. adlfs for az://), or copy the data to a local path"
        ) from None
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except ImportError as exc:  # fsspec knows the scheme; its package is missing
        raise ShoalError(f"{uri}: {_one_line(exc)}") from None
    except ValueError as exc:  # "Protocol not known"
        raise ShoalError(f"{uri}: no file system for {scheme}:// URIs: {_one_line(exc)}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


@contextmanager
def _naming(path: str) -> Iterator[None]:
    """Turns a file system's errors into one line that names the file."""
    try:
        yield
    except FileNotFoundError:
        raise ShoalError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ShoalError(f"{path}: is a directory, not a data file") from None
    except PermissionError:
        raise ShoalError(f"{path}: permission denied") from None
    except OSError as exc:  # pyarrow raises OSError for what S3, GCS or HDFS answer
        text = _one_line(exc)
        if any(word in text for word in ("ACCESS_DENIED", "AccessDenied", "PERMISSION_DENIED")):
            raise ShoalError(f"{path}: permission denied (check the credentials): {text}") from None
        raise ShoalError(f"{path}: cannot read: {text}") from None


def _info(path: str) -> Any:
    import pyarrow.fs as pafs

    fs, inner = arrow_filesystem(path)
    with _naming(path):
        info = fs.get_file_info(inner)
    if info.type == pafs.FileType.NotFound:
        raise ShoalError(f"{path}: no such file")
    return info


def _existing_dir(path: str) -> bool:
    """True for a directory, False for a file; ``ShoalError`` if nothing is there."""
    if not is_uri(path):  # os.stat, not pyarrow: a local run need not import pyarrow
        with _naming(path):
            return stat.S_ISDIR(os.stat(path).st_mode)
    import pyarrow.fs as pafs

    return bool(_info(path).type == pafs.FileType.Directory)


def is_dir(path: str | os.PathLike[str]) -> bool:
    """True for a directory, local or behind a URI; False for a file or nothing there."""
    if not is_uri(path):
        return Path(path).is_dir()
    import pyarrow.fs as pafs

    fs, inner = arrow_filesystem(path)
    with _naming(str(path)):
        return bool(fs.get_file_info(inner).type == pafs.FileType.Directory)


def is_stream(path: str | os.PathLike[str]) -> bool:
    """True for a local pipe or device (``/dev/stdin``, ``<(zcat ...)``): it can be read once,
    from the start, so nothing may look at it before the reader does."""
    if is_uri(path):
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # missing: the reader says so
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def file_size(path: str | os.PathLike[str]) -> int:
    """Size in bytes of a local file or a URI."""
    if not is_uri(path):
        with _naming(str(path)):
            return os.path.getsize(path)
    info = _info(str(path))
    if info.size is None:
        raise ShoalError(f"{path}: is a directory, not a data file")
    return int(info.size)


# -- opening -------------------------------------------------------------------------------


def open_arrow(path: str | os.PathLike[str]) -> Any:
    """A pyarrow random-access file (``NativeFile``), as Parquet's reader wants it."""
    fs, inner = arrow_filesystem(path)
    with _naming(str(path)):
        return fs.open_input_file(inner)


def open_input(path: str | os.PathLike[str]) -> io.BufferedReader:
    """The raw bytes of a local file or a URI, buffered, with ``peek``.

    Seekable (byte ranges) wherever the file system reads at offsets, as every one built into
    pyarrow does; a forward-only stream where that is all a file system offers.
    """
    text = str(path)
    if not is_uri(text):
        with _naming(text):
            return open(text, "rb")  # the caller closes it
    fs, inner = arrow_filesystem(text)
    with _naming(text):
        try:
            raw = fs.open_input_file(inner)
        except NotImplementedError:  # pyarrow's ArrowNotImplementedError derives from it
            raw = fs.open_input_stream(inner, compression=None)
    return io.BufferedReader(raw, buffer_size=URI_BUFFER)


# -- listing -------------------------------------------------------------------------------


def _join(root: str, rel: str) -> str:
    """``rel`` under ``root``, keeping a URI's user, host and options.

    In a URI, a name's spaces, ``%``, ``?``, ``#`` and wildcards are percent-encoded (pyarrow
    decodes them), so that the URI opens that very file and is no pattern.
    """
    if not is_uri(root):
        return os.path.join(root, rel) if root else rel
    parts = urlsplit(root)
    path = parts.path.rstrip("/") + "/" + quote(rel, safe="/=:@!$&'(),;+")
    return urlunsplit(parts._replace(path=path))


def _walk(root: str, recursive: bool) -> list[str]:
    """Paths relative to the directory ``root`` of the files in it (or under it), sorted."""
    import pyarrow.fs as pafs

    fs, inner = arrow_filesystem(root or ".")
    with _naming(root):
        infos = fs.get_file_info(
            pafs.FileSelector(inner, allow_not_found=True, recursive=recursive)
        )
    base = len(inner.rstrip("/")) + 1
    return sorted(i.path[base:] for i in infos if i.type == pafs.FileType.File)


def list_dir(path: str | os.PathLike[str]) -> list[str]:
    """The data files under a directory (local or URI), sorted; hidden names are skipped."""
    text = str(path)
    found = [
        _join(text, rel)
        for rel in _walk(text, recursive=True)
        if not any(_hidden(part) for part in rel.split("/"))
    ]
    if not found:
        raise ShoalError(f"{text}: directory holds no files")
    return found


def _wild(text: str) -> bool:
    """Whether a path has wildcards (in a URI's path only: ``?`` starts its options)."""
    return any(ch in (urlsplit(text).path if is_uri(text) else text) for ch in "*?[")


def _matches(parts: list[str], pattern: list[str]) -> bool:
    """Glob matching by path parts: ``**`` is any number of parts, a hidden name needs a
    pattern part that starts as it does."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(
            _matches(parts[i:], rest)
            for i in range(len(parts) + 1)
            if not any(_hidden(p) for p in parts[:i])
        )
    if not parts or not fnmatchcase(parts[0], head):
        return False
    if _hidden(parts[0]) and not _hidden(head):
        return False
    return _matches(parts[1:], rest)


def glob(pattern: str) -> list[str]:
    """The files a pattern matches, local or behind a URI, sorted.

    The directory before the first part with a wildcard is listed once: only its top level
    for a pattern such as ``data/*.vw``, everything under it otherwise.
    """
    if is_uri(pattern):
        uri = urlsplit(pattern)
        prefix, path = uri.scheme + "://" + uri.netloc, uri.path
        suffix = "?" + uri.query if uri.query else ""
    else:
        prefix, path, suffix = "", pattern, ""
    parts = path.split("/")
    first = next(i for i, p in enumerate(parts) if _wild(p))
    root = prefix + ("/".join(parts[:first]) or ("/" if path.startswith("/") else "")) + suffix
    rest = parts[first:]
    recursive = len(rest) > 1 or "**" in rest
    found = [_join(root, rel) for rel in _walk(root, recursive) if _matches(rel.split("/"), rest)]
    if not found:
        raise ShoalError(f"{pattern}: no file matches this pattern")
    return found


def expand(inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[str]:
    """The files named by paths, globs, directories and URIs, in order (directories and globs:
    their files, sorted)."""
    if isinstance(inputs, str | os.PathLike):  # one path, not a sequence of characters
        inputs = [inputs]
    out: list[str] = []
    for item in inputs:
        text = str(item)
        if _wild(text):
            out.extend(glob(text))
        elif _existing_dir(text):
            out.extend(list_dir(text))
        else:
            out.append(text)
    return out
