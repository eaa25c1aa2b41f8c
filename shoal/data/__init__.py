"""Records in, hashed sparse batches out."""

from shoal.data.batch import Batch
from shoal.data.frames import (
    batch_from_arrow,
    batch_from_csr,
    batch_from_dicts,
    batch_from_frame,
    batch_from_pandas,
)
from shoal.data.reader import FORMATS, ReadStats, TextReader, guess_format

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
