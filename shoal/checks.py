"""Checks of a command's arguments made before any data is read, and the errors of a run that
learned nothing: what ``commands.py`` refuses, with messages that say what to do.

>>> is_file_name("x" * 300)  # too long for a file name: not a file (a --schema text, say)
False
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Sequence
from pathlib import Path

from shoal.data import files as data_files
from shoal.data.formats import SUFFIXES
from shoal.errors import ConfigError, ModelFileError, ShoalError
from shoal.model.model import Model
from shoal.train.single import TrainReport


def is_file_name(text: str) -> bool:
    """Whether ``text`` names an existing file (a text too long for a file name does not)."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # ENAMETOOLONG, or a NUL character
        return False


def output_path(path: str, inputs: Sequence[str], *, replaced: bool = True) -> Path:
    """``-o``, checked before any data is read: a file in a folder that exists and may be
    written, not a directory, and not one of the inputs (it would be overwritten). A file
    ``replaced`` (written under a temporary name, then renamed over the old one) must not be a
    device or a pipe: the rename would put a file in its place."""
    if data_files.is_uri(path):
        raise ConfigError("-o", f"{path}: write the file to a local path (URIs are for inputs)")
    out = Path(path)
    try:
        if out.is_dir():
            raise ConfigError("-o", f"{path} is a directory: name a file")
        if replaced and out.exists() and not out.is_file():
            raise ConfigError("-o", f"{path} is not a regular file (a device or a pipe?)")
        folder = out.parent
        if not folder.is_dir():
            raise ConfigError("-o", f"{path}: the folder {folder} does not exist (create it first)")
        if not os.access(folder, os.W_OK):
            raise ConfigError("-o", f"{path}: the folder {folder} is not writable")
        local = [i for i in inputs if not data_files.is_uri(i)]
        if out.exists() and any(_same(f, out) for f in data_files.expand(local)):
            raise ConfigError("-o", f"{path} is one of the input files: it would be overwritten")
    except OSError as exc:  # a name too long, a folder we may not look into
        raise ConfigError("-o", f"{path}: {exc.strerror or exc}") from None
    return out


def _same(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # an input that does not exist: the reader names it
        return False


def check_inputs(inputs: Sequence[str], output: str) -> None:
    """Local inputs exist before training starts (a typo in the third file would otherwise
    stop the run after the first two were learned), none is a model file, and the output is
    not a data file; URIs are left to the readers."""
    if Path(output).suffix in SUFFIXES and is_file_name(output):
        raise ConfigError(
            "-o", f"{output} is a data file: it would be overwritten by the model (name a "
            "new file, such as model.shoal)",
        )  # fmt: skip
    for item in data_files.expand(inputs):
        if item == "-" or data_files.is_uri(item) or data_files.is_stream(item):
            continue
        try:
            exists = Path(item).exists()
        except (OSError, ValueError) as exc:
            what = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise ShoalError(f"{item[:60]}...: not a usable file name: {what}") from None
        if not exists:
            raise ShoalError(f"{item}: no such file")
        if item.endswith(".shoal") and is_model_file(item):
            raise ShoalError(
                f"{item} is a model file, not data: to continue training it, use "
                f"--initial-model {item}"
            )


def check_label_column(model: Model) -> None:
    """A schema without a label column would train on nothing: say so before reading."""
    schema = model.spec.schema
    if schema is None or schema.index("label") >= 0:
        return
    near = difflib.get_close_matches("label", schema.names, n=1, cutoff=0.6)
    hint = f"; did you mean 'label' for {near[0]!r}?" if near else ""
    raise ConfigError(
        "--schema",
        "no label column, so there is nothing to learn: name the column 'label' or give it "
        f"the role (e.g. 'click:label,...'){hint}",
    )


def nothing_learned(report: TrainReport, inputs: Sequence[str]) -> ShoalError:
    """The error of a run that read no labeled example (``--allow-empty`` writes it anyway)."""
    where = ", ".join(inputs[:3]) + (" ..." if len(inputs) > 3 else "")
    tail = "; no model written (--allow-empty writes the untrained model anyway)"
    if report.skipped:
        return ShoalError(
            f"every record of {where} was skipped as bad ({report.skipped:,}; first: "
            f"{report.first_skipped}){tail}"
        )
    return ShoalError(
        f"no labeled example in {where}: the input is empty, holds only a header, or its "
        f"records have no label{tail}"
    )


def load_model(args: argparse.Namespace) -> tuple[Model, dict[str, str]]:
    """``eval``'s and ``predict``'s MODEL and its extra metadata; a data file there, with a
    model among the data, gets a hint: the arguments are swapped."""
    from shoal.model import modelfile

    try:
        data = modelfile.load(args.model)
        return Model.from_data(data), data.extra
    except ModelFileError as exc:
        swapped = next((d for d in args.data if is_model_file(d)), None)
        if swapped is None:
            raise
        raise ModelFileError(
            args.model,
            f"{exc.problem}; {swapped} is a model file: the model comes first (shoal "
            f"{args.command} {swapped} {args.model} ...)",
        ) from None


def is_model_file(path: str) -> bool:
    if data_files.is_uri(path) or not is_file_name(path):
        return False
    try:
        Model.load(path)
    except ShoalError:
        return False
    return True
