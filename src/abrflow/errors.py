"""abrflow's own error types: every bad input surfaces as one of these, naming what and where.

The CLI turns any ``AbrflowError`` into a one-line message and exit code 2.
"""

from __future__ import annotations


class AbrflowError(Exception):
    """Base class for errors caused by the user's input (files, configs, arguments)."""


class ConfigError(AbrflowError, ValueError):
    """A configuration key, type or value is invalid."""


class DataError(AbrflowError, ValueError):
    """A data file or records container is malformed.

    ``where`` names the file and, when known, the row/line and field, so the message alone
    tells a clinic engineer which cell of which export to look at.
    """

    def __init__(self, message: str, *, file: str | None = None, row: int | str | None = None,
                 field: str | None = None):
        parts = []
        if file is not None:
            parts.append(str(file))
        if row is not None:
            parts.append(f"row {row}" if isinstance(row, int) else str(row))
        if field is not None:
            parts.append(f"field {field!r}")
        self.file, self.row, self.field = file, row, field
        self.reason = message
        super().__init__(f"{': '.join(parts)}: {message}" if parts else message)


class CheckpointError(AbrflowError):
    """A checkpoint is missing, corrupted, unsafe or from an incompatible version."""


class NonFiniteLossError(AbrflowError):
    """Training met a NaN/inf loss (``training.nonfinite_loss: stop``); the message names the step and term."""
