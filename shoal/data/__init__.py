"""Records in, hashed sparse batches out."""

from typing import TYPE_CHECKING, Any

from shoal._lazy import export
from shoal.data.formats import FORMATS

if TYPE_CHECKING:
    from shoal.data.batch import Batch
    from shoal.data.frames import (
        batch_from_arrow,
        batch_from_csr,
        batch_from_dicts,
        batch_from_frame,
        batch_from_pandas,
    )
    from shoal.data.reader import ReadStats, TextReader, guess_format

_FRAMES = ("batch_from_arrow", "batch_from_csr", "batch_from_dicts", "batch_from_frame")
_EXPORTS = {
    "Batch": "shoal.data.batch",
    **dict.fromkeys((*_FRAMES, "batch_from_pandas"), "shoal.data.frames"),
    **dict.fromkeys(("ReadStats", "TextReader", "guess_format"), "shoal.data.reader"),
}


def __getattr__(name: str) -> Any:
    return export(__name__, _EXPORTS, name)


__all__ = [
    "FORMATS",
    "Batch",
    "ReadStats",
    "TextReader",
    "batch_from_arrow",
    "batch_from_csr",
    "batch_from_dicts",
    "batch_from_frame",
    "batch_from_pandas",
    "guess_format",
]
