"""shoal's exceptions: one base class, a few typed children that carry their fields.

Every exception here pickles (``__reduce__``), because errors raised in worker processes travel
back to the coordinator.
"""

from __future__ import annotations


class ShoalError(Exception):
    """Base of every error shoal raises on purpose; its message says what to do."""


class ConfigError(ShoalError):
    """A configuration value is invalid: names the field and the allowed values."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self):
        return (type(self), (self.field, self.message))


class DataError(ShoalError):
    """A record could not be read: names the file, the line and the problem."""

    def __init__(self, path: str, line: int, problem: str, hint: str = "") -> None:
        text = f"line {line} of {path}: {problem}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)
        self.path = path
        self.line = line
        self.problem = problem
        self.hint = hint

    def __reduce__(self):
        return (type(self), (self.path, self.line, self.problem, self.hint))


class StepTooLarge(DataError):
    """Learning the example at batch row ``row`` would take a step too large for the weights
    (the learning diverged, or a feature value is far too large); rows before it were learned,
    it and the rows after it were not."""

    def __init__(self, path: str, line: int, problem: str, hint: str = "", row: int = 0) -> None:
        super().__init__(path, line, problem, hint)
        self.row = row

    def __reduce__(self):
        return (type(self), (self.path, self.line, self.problem, self.hint, self.row))


class ModelFileError(ShoalError):
    """A model file is missing, malformed, truncated or of another kind than expected."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"model file {path}: {problem}")
        self.path = path
        self.problem = problem

    def __reduce__(self):
        return (type(self), (self.path, self.problem))
