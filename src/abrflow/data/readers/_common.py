"""Helpers the text readers share: ear names and strict decoding (the time base is ``data.timebase``)."""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError, DataError

#: Side names seen in clinic exports (English and Turkish), case-folded → ear code.
EAR_NAMES = {"left": "L", "l": "L", "sol": "L", "right": "R", "r": "R", "sağ": "R", "sag": "R"}


def read_text(path: Path, encoding: str, *,
              hint: str = "pass encoding= if the export uses another code page (e.g. 'cp1252')") -> str:
    """A text export decoded strictly: an empty or wrongly encoded file is a DataError naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror or exc})", file=str(path)) from None
    if not data.strip():
        raise DataError("the file is empty", file=str(path))
    try:
        return data.decode(encoding)
    except LookupError:
        raise ConfigError(f"unknown text encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"text is not {encoding} ({exc.reason} at byte {exc.start}); {hint}",
                        file=str(path)) from None
