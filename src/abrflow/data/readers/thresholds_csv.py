"""Reader for experts' thresholds per ear: a small CSV ``patient_id, ear, threshold_db[, rater][, session_id]``.

One row per rating: an ear rated by three experts has three rows, each naming its rater. Column
names are matched case-insensitively with spaces, underscores and hyphens ignored (``Patient ID``,
``patient_id`` and ``PatientID`` are one column); any other column is an error naming it. The
delimiter is a comma (a semicolon or tab when the header holds no comma).

- ``ear``: ``L``, ``R`` or ``?`` (unknown), or a side name of ``EAR_NAMES`` (``left``, ``right``…).
- ``threshold_db``: a number inside ``VALID_RANGES["threshold_db"]``, or ``inf``, ``none``, ``NR`` or
  ``no response`` for an ear with no response at any level tested (+inf).
- ``rater``: optional; without the column every row is ``"rater 1"``. A rater rates an ear once.
- ``session_id``: optional (default ``""``); it makes the key match ``ABRRecords.series_key``.

The result maps each ear's series key ``"patient|ear|session"`` to its ratings ``[(rater, dB), …]``
in file order. The file is UTF-8 (a byte-order mark is allowed); a bad cell is a ``DataError``
naming the file, its 1-based line and the column.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from ...errors import DataError
from ..schema import VALID_RANGES
from ._common import EAR_NAMES, read_text

REQUIRED = ("patient_id", "ear", "threshold_db")
OPTIONAL = ("rater", "session_id")
DEFAULT_RATER = "rater 1"
NO_RESPONSE = {"inf", "+inf", "infinity", "none", "no response", "noresponse", "nr"}
EAR_CODES = {"l": "L", "r": "R", "?": "?"}


def _column(name: str) -> str:
    """A header cell reduced for matching: case-folded, without spaces, underscores and hyphens."""
    return "".join(ch for ch in name.strip().casefold() if ch not in " _-")


_KNOWN = {_column(name): name for name in REQUIRED + OPTIONAL}


def _delimiter(header_line: str) -> str:
    if "," in header_line:
        return ","
    return ";" if ";" in header_line else ("\t" if "\t" in header_line else ",")


def _header(fields: list[str], file: str, line: int) -> dict[str, int]:
    """Canonical column name → field index; unknown, repeated and missing columns are errors."""
    columns: dict[str, int] = {}
    extra = []
    for index, cell in enumerate(fields):
        name = _KNOWN.get(_column(cell))
        if name is None:
            extra.append(cell.strip())
        elif name in columns:
            raise DataError(f"column {name!r} appears twice in the header", file=file, row=line, field=cell.strip())
        else:
            columns[name] = index
    if extra:
        raise DataError(f"unknown column(s) {extra}; expected {list(REQUIRED)} and optionally {list(OPTIONAL)}",
                        file=file, row=line, field=extra[0])
    for name in REQUIRED:
        if name not in columns:
            raise DataError(f"missing required column {name!r}; the header has {[f.strip() for f in fields]}",
                            file=file, row=line, field=name)
    return columns


def _ear(text: str, file: str, line: int) -> str:
    key = text.strip().casefold()
    ear = EAR_CODES.get(key) or EAR_NAMES.get(key)
    if ear is None:
        raise DataError(f"unknown ear {text.strip()!r}; expected L, R, ? or left/right", file=file, row=line,
                        field="ear")
    return ear


def _threshold(text: str, file: str, line: int) -> float:
    cell = " ".join(text.strip().casefold().split())
    if cell in NO_RESPONSE:
        return math.inf
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"expected a threshold in dB or 'no response', got {text.strip()!r}", file=file, row=line,
                        field="threshold_db") from None
    low, high = VALID_RANGES["threshold_db"]
    if math.isnan(value) or not low <= value <= high:  # 1e400 overflows to inf: a damaged cell, not "no response"
        raise DataError(f"threshold {text.strip()!r} dB is outside [{low:g}, {high:g}] dB "
                        "(write 'no response' for none)", file=file, row=line, field="threshold_db")
    return value


def _name(fields: list[str], columns: dict[str, int], name: str, file: str, line: int) -> str:
    """A required text cell (patient id, rater): empty is an error."""
    value = fields[columns[name]].strip()
    if not value:
        hint = " (leave the column out when every ear has one rating)" if name == "rater" else ""
        raise DataError(f"{name} is empty{hint}", file=file, row=line, field=name)
    if "|" in value and name != "rater":
        raise DataError(f"{name} {value!r} holds '|', the series key's separator", file=file, row=line, field=name)
    return value


def read_thresholds_csv(path: str | os.PathLike, *, encoding: str = "utf-8-sig") -> dict[str, list[tuple[str, float]]]:
    """Experts' thresholds per ear: ``{"patient|ear|session": [(rater, threshold_db), …]}`` (+inf: no response)."""
    p = Path(path)
    file = str(p)
    if not p.exists():
        raise DataError("file not found", file=file)
    text = read_text(p, encoding, hint="save the file as UTF-8")
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip())  # read_text rejected an all-blank file
    delimiter = _delimiter(lines[first])
    reader = csv.reader(lines[first:], delimiter=delimiter)
    columns = _header(next(reader), file, first + 1)
    has_session = "session_id" in columns
    ratings: dict[str, list[tuple[str, float]]] = {}
    seen: dict[tuple[str, str], int] = {}
    for fields in reader:
        line = first + reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(columns):
            raise DataError(f"expected {len(columns)} fields (the header's), got {len(fields)}", file=file, row=line)
        patient = _name(fields, columns, "patient_id", file, line)
        ear = _ear(fields[columns["ear"]], file, line)
        threshold = _threshold(fields[columns["threshold_db"]], file, line)
        rater = _name(fields, columns, "rater", file, line) if "rater" in columns else DEFAULT_RATER
        session = fields[columns["session_id"]].strip() if has_session else ""
        if "|" in session:
            raise DataError(f"session_id {session!r} holds '|', the series key's separator", file=file, row=line,
                            field="session_id")
        key = f"{patient}|{ear}|{session}"
        if (key, rater) in seen:
            raise DataError(f"duplicate rating: {rater!r} already rated ear {key!r} on line {seen[key, rater]}",
                            file=file, row=line, field="rater" if "rater" in columns else "patient_id")
        seen[key, rater] = line
        ratings.setdefault(key, []).append((rater, threshold))
    if not ratings:
        raise DataError("no threshold rows after the header", file=file)
    return ratings
