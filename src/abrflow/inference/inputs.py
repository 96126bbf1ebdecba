"""Static inputs for inference: validation of (age, intensity, rate, Fmp) and static-input files.

Unknown is allowed (None/NaN: the model has a learned "missing" embedding for each input);
anything else outside the clinical ranges, non-numeric or of the wrong shape is an error that
names the input, the row and the value: a wrong unit (months for years, Hz for /s) must not be
silently fed to the model.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.readers import is_eclipse
from ..data.schema import STATIC_FIELDS, VALID_RANGES
from ..errors import AbrflowError, DataError

#: Accepted range of each static input (raw units, inclusive): the records' own (one table for both).
STATIC_RANGES: dict[str, tuple[float, float]] = {field: VALID_RANGES[field] for field in STATIC_FIELDS}
#: The argument name people use for each field (predict_single's keywords, the CLI's flags).
ARGUMENT_NAMES: dict[str, str] = {"age_years": "age", "intensity_db": "intensity",
                                  "stimulus_rate_hz": "stimulus_rate", "fmp": "fmp"}
_UNITS = {"age_years": "years", "intensity_db": "dB nHL", "stimulus_rate_hz": "stimuli/s", "fmp": ""}
# Column / key spellings accepted in static-input files (compared after lower-casing and removing
# spaces, underscores and hyphens).
_ALIASES = {
    "age_years": ("age", "ageyears", "ageyrs"),
    "intensity_db": ("intensity", "intensitydb", "level", "leveldb"),
    "stimulus_rate_hz": ("rate", "stimulusrate", "stimulusratehz", "stimrate", "ratehz"),
    "fmp": ("fmp",),
}
_ID_KEYS = ("id", "patientid")


def _key(name: object) -> str:
    return str(name).strip().lower().replace(" ", "").replace("_", "").replace("-", "")


_FIELD_OF = {alias: f for f, aliases in _ALIASES.items() for alias in aliases}


def _describe(field: str, row: int | None) -> str:
    where = f"row {row}: " if row is not None else ""
    return f"{where}{ARGUMENT_NAMES[field]} ({field})"


def static_value(field: str, value: object, row: int | None = None) -> float:
    """One static input as a float; None/NaN → NaN (unknown); anything else must be in range."""
    if value is None:
        return math.nan
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise AbrflowError(f"{_describe(field, row)} must be a number (or None for unknown), got {value!r}")
    v = float(value)
    if math.isnan(v):
        return math.nan
    lo, hi = STATIC_RANGES[field]
    if not lo <= v <= hi:
        unit = f" {_UNITS[field]}" if _UNITS[field] else ""
        raise AbrflowError(f"{_describe(field, row)} = {value!r} is outside the accepted range "
                           f"[{lo:g}, {hi:g}]{unit}")
    return v


def static_array(inputs: object) -> np.ndarray:
    """[N, 4] float32 (age, intensity, rate, Fmp) from an array-like [N, 4] (or one row [4]).

    Cells may be None/NaN (unknown); every other cell is range-checked.
    """
    numeric = isinstance(inputs, np.ndarray) and inputs.dtype.kind in "fiu"
    try:
        arr = np.asarray(inputs, dtype=np.float64 if numeric else object)
    except (ValueError, TypeError) as exc:  # ragged rows
        raise AbrflowError(f"static inputs must be an array [N, 4] (age, intensity, rate, fmp): {exc}") from None
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise AbrflowError(f"static inputs must have shape [N, 4] (age, intensity, rate, fmp), got {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise AbrflowError("static inputs hold no rows")
    single = arr.shape[0] == 1
    if not numeric:  # cell by cell: None is unknown, strings and bools are errors
        arr = np.array([[static_value(field, arr[i, j], row=None if single else i) if not _is_number(arr[i, j])
                         else float(arr[i, j]) for j, field in enumerate(STATIC_FIELDS)]
                        for i in range(arr.shape[0])], np.float64)
    for j, field in enumerate(STATIC_FIELDS):  # vectorised range check; the first bad cell is named
        lo, hi = STATIC_RANGES[field]
        col = arr[:, j]
        bad = ~np.isnan(col) & ~((col >= lo) & (col <= hi))
        if bad.any():
            row = int(np.argmax(bad))
            static_value(field, float(col[row]), row=None if single else row)
    return arr.astype(np.float32)


def _is_number(value: object) -> bool:
    return isinstance(value, (numbers.Real, np.number)) and not isinstance(value, (bool, np.bool_))


# --------------------------------------------------------------------------- static-input files


@dataclass
class StaticInputs:
    """Rows of static inputs read from a file, with optional row ids (``id``/``patient_id``)."""

    values: np.ndarray  # [N, 4] raw units, NaN unknown
    ids: list[str] | None
    source: str


def _field_for(name: object, file: str) -> str | None:
    """The static field a column/key names; None for an id column; error for anything else."""
    k = _key(name)
    if k in _ID_KEYS:
        return None
    if k in _FIELD_OF:
        return _FIELD_OF[k]
    raise DataError(f"unknown column {name!r}; static inputs are age, intensity, rate, fmp "
                    "(optionally an id or patient_id column)", file=file)


def _from_columns(columns: dict[str, list], file: str) -> StaticInputs:
    """{column name: values} → StaticInputs (missing static columns are unknown)."""
    n = len(next(iter(columns.values()))) if columns else 0
    values = np.full((n, 4), None, dtype=object)
    ids = None
    found = set()
    for name, col in columns.items():
        field = _field_for(name, file)
        if field is None:
            ids = [str(v) for v in col]
            continue
        if field in found:
            raise DataError(f"two columns name {ARGUMENT_NAMES[field]}", file=file, field=str(name))
        found.add(field)
        values[:, STATIC_FIELDS.index(field)] = list(col)
    if not found:
        raise DataError("no static-input column (age, intensity, rate, fmp) found", file=file)
    try:
        return StaticInputs(static_array(values), ids, file)
    except AbrflowError as exc:
        raise DataError(str(exc), file=file) from None


def _cell(value: object) -> object:
    """A CSV/JSON cell as a number where it is one (empty → unknown); strings stay for the error."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text == "" or text.lower() in ("nan", "na", "none", "null", "unknown"):
            return None
        try:
            return float(text)
        except ValueError:
            return value
    return value


def _read_json(path: Path) -> StaticInputs:
    file = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the file ({exc})", file=file) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg} at line {exc.lineno})", file=file) from None
    except RecursionError:
        raise DataError("not valid JSON for static inputs (nested too deeply)", file=file) from None
    if isinstance(data, dict):
        for key in ("patients", "inputs", "static"):
            if key in data:
                data = data[key]
                break
        else:
            data = [data]
    if not isinstance(data, list) or not data:
        raise DataError("expected a list of rows (objects with age, intensity, rate, fmp, or [age, intensity, "
                        "rate, fmp] lists)", file=file)
    if all(isinstance(row, dict) for row in data):
        names = list(dict.fromkeys(k for row in data for k in row))
        columns = {name: [_cell(row.get(name)) for row in data] for name in names}
        return _from_columns(columns, file)
    if all(isinstance(row, list) for row in data):
        try:
            return StaticInputs(static_array([[_cell(c) for c in row] for row in data]), None, file)
        except AbrflowError as exc:
            raise DataError(str(exc), file=file) from None
    raise DataError("rows must be all objects or all [age, intensity, rate, fmp] lists", file=file)


def _read_csv(path: Path) -> StaticInputs:
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot read as CSV ({exc})", file=str(path)) from None
    columns = {name: [_cell(v) for v in table[name].tolist()] for name in table.columns}
    return _from_columns(columns, str(path))


def _read_npz(path: Path) -> StaticInputs:
    file = str(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataError(f"object arrays are refused: they only load by unpickling, which could run code "
                            f"from the file ({exc}); store numbers", file=file) from None
        raise DataError(f"not a readable .npz file ({exc})", file=file) from None
    except Exception as exc:  # zipfile.BadZipFile, zlib.error, EOFError, OSError: a damaged archive
        raise DataError(f"not a readable .npz file ({type(exc).__name__}: {exc})", file=file) from None
    for key in ("patients", "inputs", "static"):
        if key in arrays:
            arrays = {key: arrays[key]}
            break
    two_d = [k for k, v in arrays.items() if v.ndim == 2]
    if len(arrays) == 1 and two_d:
        try:
            return StaticInputs(static_array(arrays[two_d[0]]), None, file)
        except AbrflowError as exc:
            raise DataError(str(exc), file=file, field=two_d[0]) from None
    columns_1d = all(v.ndim == 1 for v in arrays.values()) and len({len(v) for v in arrays.values()}) == 1
    if not columns_1d:
        raise DataError("expected one [N, 4] array (age, intensity, rate, fmp) or 1-D arrays named age, "
                        f"intensity, rate, fmp; found {[(k, list(v.shape)) for k, v in arrays.items()]}", file=file)
    return _from_columns({k: [_cell(x) for x in v.tolist()] for k, v in arrays.items()}, file)


def is_static_input_file(path: str | os.PathLike) -> bool:
    """True for a file of static inputs only; False for recordings (any ``load_records`` format).

    ``.json`` is always static inputs. ``.npz`` holds recordings when it has a ``signal`` array.
    ``.csv`` holds recordings when it is an Eclipse export or has sample columns (``1``, ``2``…).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        return True
    if not p.is_file():
        return False
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                return "signal" not in z.files
        except Exception:  # let load_records report what is wrong with the file
            return False
    if suffix == ".csv":
        if is_eclipse(p):
            return False
        with open(p, encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
        names = [c.strip().strip('"') for c in header.split(",")]
        return not any(c.isdigit() for c in names)
    return False


def read_static_inputs(path: str | os.PathLike) -> StaticInputs:
    """Static inputs from ``.json``, ``.csv`` or ``.npz`` (see :func:`is_static_input_file`)."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", file=str(p))
    suffix = p.suffix.lower()
    if suffix == ".json":
        return _read_json(p)
    if suffix == ".csv":
        return _read_csv(p)
    if suffix == ".npz":
        return _read_npz(p)
    raise DataError(f"static inputs are read from .json, .csv or .npz, not {suffix!r}", file=str(p))
