"""Records in, hashed sparse batches out."""

from shoal.data.batch import Batch
from shoal.data.reader import FORMATS, ReadStats, TextReader, guess_format

__all__ = ["FORMATS", "Batch", "ReadStats", "TextReader", "guess_format"]
