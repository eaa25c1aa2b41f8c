"""The input formats and their file suffixes: names the command line needs before any reader."""

from __future__ import annotations

from typing import Literal

Format = Literal["vw", "svmlight", "csv", "tsv", "jsonl", "parquet"]
FORMATS: tuple[str, ...] = ("vw", "svmlight", "csv", "tsv", "jsonl", "parquet")
BadRecordPolicy = Literal["stop", "skip"]

SUFFIXES: dict[str, Format] = {
    ".vw": "vw",
    ".svm": "svmlight",
    ".svmlight": "svmlight",
    ".libsvm": "svmlight",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
