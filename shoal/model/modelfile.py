"""The model file: tensors in safetensors, metadata (spec, config, versions) as JSON inside it.

Never pickle. Loading checks everything it reads (the tensors against a CRC-32 kept in the
metadata) and refuses a malformed, truncated, damaged or foreign file with a
``ModelFileError`` that says what is wrong. Writing is atomic: a temporary file is
written, flushed, fsynced and renamed over the target.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from shoal._version import __version__
from shoal.errors import ModelFileError, ShoalError
from shoal.features.spec import FeatureSpec
from shoal.model.config import LearnerConfig
from shoal.model.factors import field_count, slot_width
from shoal.model.kernels import N_COUNTERS
from shoal.model.optimizers import state_tensors

FORMAT = "shoal-model"
FORMAT_VERSION = "1"


@dataclass(frozen=True, kw_only=True)
class ModelData:
    """Everything a model file holds."""

    spec: FeatureSpec
    config: LearnerConfig
    weights: np.ndarray  # float32 (size * outputs,)
    state: dict[str, np.ndarray]  # optimizer state, same shape as weights
    counters: np.ndarray  # float64 (N_COUNTERS,)
    extra: dict[str, str] = field(default_factory=dict)  # e.g. a checkpoint's progress


def to_bytes(data: ModelData) -> bytes:
    shape = (data.spec.size, slot_width(data.spec, data.config))
    tensors = {"weights": data.weights.reshape(shape), "counters": data.counters}
    tensors.update({k: v.reshape(shape) for k, v in data.state.items()})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "shoal_version": __version__,
        "spec": data.spec.to_json(),
        "config": json.dumps(data.config.to_dict(), sort_keys=True),
    }
    meta.update({f"x-{k}": v for k, v in data.extra.items()})
    return _canonical(st_save(tensors, metadata=meta))


def _canonical(payload: bytes) -> bytes:
    """The same file with its JSON header's keys sorted and the data section's CRC-32 added.

    safetensors writes the header's keys in hash-map order, which changes from call to call;
    sorting them makes equal models equal bytes (checkpoints, and tests of determinism, compare
    bytes). Offsets in the header point into the data section, which is left untouched. The
    CRC (``data_crc32`` in the metadata) lets loading tell a damaged tensor from a model:
    safetensors has no checksum of its own.
    """
    n = int.from_bytes(payload[:8], "little")
    doc = json.loads(payload[8 : 8 + n])
    doc["__metadata__"]["data_crc32"] = str(zlib.crc32(payload[8 + n :]))
    header = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    raw = header.encode()
    raw += b" " * (-len(raw) % 8)  # safetensors aligns the data section to 8 bytes
    return len(raw).to_bytes(8, "little") + raw + payload[8 + n :]


def write_atomic(path: str | os.PathLike[str], payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that a crash leaves the old file or the new one."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ShoalError(f"cannot write {target}: it is a directory (name a file in it)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ShoalError(f"cannot write {target}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, target)
        except OSError as exc:  # made a directory meanwhile, or a read-only file system
            raise ShoalError(f"cannot write {target}: {exc.strerror}") from None
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _layout(spec: FeatureSpec, config: LearnerConfig) -> str:
    """What the expected shape of a model's tensors comes from, for a factorization machine."""
    if not config.factorized:
        return ""
    fields = field_count(spec, config)
    of = f" and {fields} fields" if config.model == "ffm" else ""
    return (
        f" (2**{spec.bits} slots of 1 + {fields} x {config.rank} numbers: its metadata says "
        f"{config.model} of rank {config.rank}{of})"
    )


def save(path: str | os.PathLike[str], data: ModelData) -> None:
    write_atomic(path, to_bytes(data))


def from_bytes(payload: bytes, name: str) -> ModelData:
    """Parse and validate a model file's bytes; ``name`` is used in error messages."""
    try:
        tensors = st_load(payload)
        header_len = int.from_bytes(payload[:8], "little")
        header = json.loads(payload[8 : 8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(name, f"not a readable safetensors file ({exc})") from None
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise ModelFileError(name, "not a shoal model (no shoal metadata in the file)")
    crc = meta.get("data_crc32")  # files of shoal 0.1 before it have none
    if crc is not None and crc != str(zlib.crc32(memoryview(payload)[8 + header_len :])):
        raise ModelFileError(name, "damaged: its tensors do not match their checksum")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            name,
            f"format version {meta.get('format_version')!r}; this shoal reads {FORMAT_VERSION}",
        )
    try:
        spec = FeatureSpec.from_json(meta["spec"])
        config = LearnerConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError, ShoalError) as exc:
        raise ModelFileError(name, f"invalid metadata: {exc}") from None
    shape = (spec.size, slot_width(spec, config))
    names = state_tensors(config.optimizer, config.factorized)
    expected = {"weights", "counters", *names}
    if set(tensors) != expected:
        raise ModelFileError(
            name, f"tensors {sorted(tensors)} do not match the expected {sorted(expected)}"
        )
    for key in ("weights", *names):
        t = tensors[key]
        if t.dtype != np.float32 or t.shape != shape:
            raise ModelFileError(
                name,
                f"tensor {key!r} is {t.dtype}{list(t.shape)}, expected float32{list(shape)}"
                + _layout(spec, config),
            )
        if not np.isfinite(t).all():
            raise ModelFileError(name, f"tensor {key!r} holds NaN or infinite values")
    c = tensors["counters"]
    if c.dtype != np.float64 or c.ndim != 1 or not 2 <= len(c) <= N_COUNTERS:
        raise ModelFileError(name, f"tensor 'counters' is {c.dtype}{list(c.shape)}")
    if len(c) < N_COUNTERS:  # files before the normalized optimizer kept two counters
        c = np.concatenate([c, np.zeros(N_COUNTERS - len(c))])
    return ModelData(
        spec=spec,
        config=config,
        weights=tensors["weights"].reshape(-1).copy(),
        state={k: tensors[k].reshape(-1).copy() for k in names},
        counters=c.copy(),
        extra={k[2:]: v for k, v in meta.items() if k.startswith("x-")},
    )


def load(path: str | os.PathLike[str]) -> ModelData:
    try:
        payload = Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelFileError(str(path), "no such file") from None
    except IsADirectoryError:
        raise ModelFileError(str(path), "is a directory") from None
    except PermissionError:
        raise ModelFileError(str(path), "permission denied") from None
    return from_bytes(payload, str(path))
