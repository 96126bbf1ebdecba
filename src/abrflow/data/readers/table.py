"""Reader for the clinic's spreadsheet export (DESIGN.md §4): one row per averaged recording.

Layout: ``Patient_ID, Stimulus Side, Age, Intensity, Stimulus Polarity, Stimulus Rate,
Sweeps Measured, Sweeps Rejected, Test Date, Hear Loss - Left, Hear Loss - Right, Hear_Loss,
I Latancy, I Amplitude, III Latancy, III Amplitude, V Latancy, V Amplitude`` (sic), sample
columns ``1…467`` (µV), then ``FMP``. Columns are found by name (surrounding spaces ignored),
never by position; ``.csv`` (``,``/``;``/tab, detected from the header line), ``.tsv`` and
``.xlsx`` are read.

Time base (an assumption: the export itself does not state it). Sample column ``k`` (1-based) is
at ``(k − 1) / fs`` after stimulus onset, i.e. column ``1`` is the onset. The legacy pickle the
original project built from this very export kept columns ``1…200`` and called them 0–10 ms at
20 kHz, so by default the source rate *is* the target rate: the reader takes columns
``1…signal_length`` unchanged (467 columns then span 0–23.3 ms). If the export is known to have
another rate, pass ``source_sampling_rate_hz``: each row is then resampled from onset with
``scipy.signal.resample_poly`` (ratio from ``fractions.Fraction(...).limit_denominator(1000)``)
and cut to ``signal_length``. A row whose leading run of numeric samples cannot cover the window
is an error, never padded.

What was played (``abrflow.data.stimulus``): ``Stimulus Polarity`` → ``extra["stimulus_polarity"]``
as written. The export names neither the stimulus (click or tone burst) nor its frequency nor the
unit of ``Intensity``: nothing is recorded for them, so the type reads "unknown" (never assumed to be
a click) and the unit the clinic formats' default, dB nHL.

Filters (the original kept ``Stimulus Polarity == Alternate`` and ``Sweeps Rejected < 100``) drop
rows without error; the counts are logged and returned with ``return_report=True``. Each dropped
row is counted once, by the first filter that drops it (polarity, then sweeps). Rows that are
dropped are not parsed further, so a malformed cell in a dropped row is not an error.

Row numbers in errors count as a spreadsheet shows them: the header is row 1 and the first data
row is row 2 (also the line number in a CSV file without multi-line cells). Cells pandas reads
as missing (blank, ``NA``, ``N/A``, ``nan``…) are blank.
"""

from __future__ import annotations

import datetime
import difflib
import logging
import math
import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import ConfigError, DataError
from ..records import ABRRecords
from ..schema import class_code
from ..timebase import check_time_base, resampling_ratio, samples_needed, window_from_onset
from ._common import EAR_NAMES

logger = logging.getLogger(__name__)

WAVE_COLUMNS = (("I Latancy", "I Amplitude"), ("III Latancy", "III Amplitude"), ("V Latancy", "V Amplitude"))
TEXT_COLUMNS = ("Patient_ID", "Stimulus Side", "Stimulus Polarity", "Test Date", "Hear Loss - Left",
                "Hear Loss - Right", "Hear_Loss")
REQUIRED_COLUMNS = ("Patient_ID", "Stimulus Side", "Age", "Intensity", "Stimulus Polarity", "Stimulus Rate",
                    "Sweeps Measured", "Sweeps Rejected", "Test Date", "Hear Loss - Left", "Hear Loss - Right",
                    "Hear_Loss", *(c for pair in WAVE_COLUMNS for c in pair), "FMP")
FIRST_DATA_ROW = 2  # spreadsheet numbering: the header is row 1
ROW_NOTE = "rows counted as in a spreadsheet: header = row 1"
# ABRRecords field -> export column, so validation errors point at the cell a clinic engineer can open.
FIELD_COLUMNS = {"age_years": "Age", "intensity_db": "Intensity", "stimulus_rate_hz": "Stimulus Rate",
                 "fmp": "FMP", "v_latency_ms": "V Latancy", "v_present": "V Latancy",
                 "wave_latency_ms": "I/III/V Latancy", "patient_id": "Patient_ID", "ear": "Stimulus Side"}


def _cell_error(file: str, row: int, column: str, reason: str) -> DataError:
    return DataError(f"{reason} ({ROW_NOTE})", file=file, row=int(row), field=column)


# ---------------------------------------------------------------- reading the file


def _column_name(name: object) -> str:
    """Header text without surrounding spaces; Excel's numeric headers 1, 2.0 become '1', '2'."""
    if isinstance(name, float) and name.is_integer():
        return str(int(name))
    return str(name).strip()


def _csv_separator(path: Path, encoding: str) -> str:
    """The header line's most frequent separator among ',', ';' and tab (locale-dependent exports)."""
    with open(path, encoding=encoding, newline="") as fh:
        header = fh.readline()
    return max((",", ";", "\t"), key=header.count)


def _read_workbook(path: Path, sheet: int | str) -> pd.DataFrame:
    """An Excel sheet; a damaged workbook (zip, deflate or XML damage: openpyxl raises BadZipFile,
    zlib.error, ParseError, …) is a DataError naming the file, never a bare traceback."""
    try:
        return pd.read_excel(path, sheet_name=sheet, dtype=object)
    except ImportError:
        raise
    except Exception as exc:
        if isinstance(exc, (ValueError, KeyError)) and "sheet" in str(exc).lower():
            raise DataError(f"no sheet {sheet!r} in the workbook ({exc})", file=str(path)) from None
        raise DataError(f"not a readable Excel workbook, damaged or not .xlsx ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})", file=str(path)) from None


def _read_frame(path: Path, sheet: int | str, encoding: str) -> pd.DataFrame:
    file = str(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xls"):
            # object dtype: cells keep their Excel types, so text ids such as 00123 stay text.
            frame = _read_workbook(path, sheet)
        else:
            sep = "\t" if suffix == ".tsv" else _csv_separator(path, encoding)
            header = pd.read_csv(path, sep=sep, nrows=0, encoding=encoding).columns
            # Text columns stay text, so ids such as 00123 keep their zeros.
            text = {c: str for c in header if _column_name(c) in TEXT_COLUMNS}
            frame = pd.read_csv(path, sep=sep, dtype=text, encoding=encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"text is not {encoding} ({exc.reason} at byte {exc.start}); pass encoding=, "
                        "e.g. 'cp1254' for a Turkish Windows export", file=file) from None
    except ImportError as exc:
        raise DataError(f"cannot read {suffix} files ({exc}); save the sheet as .xlsx or .csv", file=file) from None
    except (OSError, ValueError, pd.errors.ParserError, KeyError) as exc:
        raise DataError(f"cannot read as a table ({type(exc).__name__}: {exc})", file=file) from None
    frame.columns = [_column_name(c) for c in frame.columns]
    return frame


def _sample_columns(columns: list[str], file: str) -> list[str]:
    """Sample columns named 1…K, numbered without gaps (their order in the file does not matter)."""
    numbers = sorted(int(c) for c in columns if c.isdigit())
    if not numbers:
        raise DataError("no sample columns named 1, 2, 3, …", file=file)
    for expected, found in enumerate(numbers, start=1):
        if found != expected:
            raise DataError(f"sample columns must be numbered 1…{numbers[-1]} without gaps; column {expected!r} "
                            "is missing", file=file, field=str(expected))
    return [str(k) for k in numbers]


def _check_columns(frame: pd.DataFrame, file: str) -> list[str]:
    columns = list(frame.columns)
    # pandas renames a repeated header "X" to "X.1"; stripping spaces can also make two names equal.
    mangled = {c.rsplit(".", 1)[0] for c in columns if re.fullmatch(r".+\.\d+", c) and c.rsplit(".", 1)[0] in columns}
    duplicates = sorted({c for c in columns if columns.count(c) > 1} | mangled)
    if duplicates:
        raise DataError(f"column names appear more than once: {duplicates}", file=file, field=duplicates[0])
    for name in REQUIRED_COLUMNS:
        if name not in columns:
            near = difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise DataError(f"missing required column{hint}", file=file, field=name)
    if frame.empty:
        raise DataError("no data rows below the header", file=file)
    return _sample_columns(columns, file)


# ---------------------------------------------------------------- cell parsing


def _text(value: object) -> str:
    """A cell as text; blank for missing; integral floats without '.0'; dates as ISO."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime):
        return value.date().isoformat() if value.time() == datetime.time() else value.isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value).strip()


def _text_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    return np.array([_text(v) for v in frame[column].tolist()], dtype=str)


def _number_block(frame: pd.DataFrame, columns: list[str], file: str, rows: np.ndarray) -> np.ndarray:
    """Float64 [N, len(columns)]; blank → NaN; text in a cell → DataError naming row and column."""
    sub = frame[columns]
    if all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in sub.dtypes):
        return sub.to_numpy(np.float64)
    cells = sub.to_numpy(object)
    numbers = sub.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    for i, j in np.argwhere(pd.notna(cells) & np.isnan(numbers)):  # row-major: the first bad row wins
        if str(cells[i, j]).strip():
            raise _cell_error(file, rows[i], columns[j], f"expected a number, got {cells[i, j]!r}")
    return numbers


def _numeric_column(frame: pd.DataFrame, column: str, file: str, rows: np.ndarray) -> np.ndarray:
    return _number_block(frame, [column], file, rows)[:, 0]


def _ears(frame: pd.DataFrame, file: str, rows: np.ndarray) -> np.ndarray:
    sides = _text_column(frame, "Stimulus Side")
    ears = np.empty(len(sides), dtype="<U1")
    for i, side in enumerate(sides.tolist()):
        ear = EAR_NAMES.get(side.casefold())
        if ear is None:
            raise _cell_error(file, rows[i], "Stimulus Side",
                              f"unknown side {side!r}; expected Left/Right, L/R or Sol/Sağ")
        ears[i] = ear
    return ears


def _hearing_loss(frame: pd.DataFrame, ears: np.ndarray, file: str, rows: np.ndarray) -> np.ndarray:
    """The class of the recorded ear: its own column, else ``Hear_Loss`` when that cell is blank."""
    per_ear = np.where(ears == "L", _text_column(frame, "Hear Loss - Left"),
                       _text_column(frame, "Hear Loss - Right"))
    column = np.where(ears == "L", "Hear Loss - Left", "Hear Loss - Right")
    fallback = per_ear == ""
    per_ear = np.where(fallback, _text_column(frame, "Hear_Loss"), per_ear)
    column = np.where(fallback, "Hear_Loss", column)
    codes = np.full(len(per_ear), -1, np.int8)
    known: dict[str, int] = {}
    for i, value in enumerate(per_ear.tolist()):
        if value == "":
            continue
        if value not in known:
            try:
                known[value] = class_code(value)
            except DataError as exc:
                raise _cell_error(file, rows[i], str(column[i]), exc.reason) from None
        codes[i] = known[value]
    return codes


def _patient_ids(frame: pd.DataFrame, file: str, rows: np.ndarray) -> np.ndarray:
    ids = _text_column(frame, "Patient_ID")
    blank = ids == ""
    if blank.any():
        raise _cell_error(file, rows[int(np.argmax(blank))], "Patient_ID", "blank patient id")
    return ids


# ---------------------------------------------------------------- signals


def _resampling_ratio(sampling_rate_hz: float, source_sampling_rate_hz: float | None) -> Fraction:
    """up/down for resample_poly; 1 when the export already has the target rate."""
    if source_sampling_rate_hz is None:
        return Fraction(1)
    if not np.isfinite(source_sampling_rate_hz) or source_sampling_rate_hz <= 0:
        raise ConfigError(f"source_sampling_rate_hz must be positive, got {source_sampling_rate_hz!r}")
    try:
        return resampling_ratio(sampling_rate_hz, source_sampling_rate_hz)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _signals(frame: pd.DataFrame, sample_columns: list[str], file: str, rows: np.ndarray, *,
             signal_length: int, ratio: Fraction) -> np.ndarray:
    """[N, signal_length] µV from stimulus onset, resampled by ``ratio`` (= target/source rate)."""
    block = _number_block(frame, sample_columns, file, rows)
    n_columns = len(sample_columns)
    # Source samples needed so that the last target sample lies inside the recording.
    needed = samples_needed(signal_length, ratio)
    if n_columns < needed:
        raise DataError(f"the export has {n_columns} sample columns but a {signal_length}-sample window "
                        f"needs {needed} (columns 1…{needed})", file=file, field=str(n_columns + 1))
    finite = np.isfinite(block)
    leading = np.where(finite.all(axis=1), n_columns, np.argmin(finite, axis=1))
    short = leading < needed
    if short.any():
        i = int(np.argmax(short))
        k = int(leading[i])
        what = "blank" if np.isnan(block[i, k]) else f"not finite ({block[i, k]})"
        raise _cell_error(file, rows[i], sample_columns[k],
                          f"sample is {what}: the row covers {k} of the {needed} samples the window needs")
    if ratio == 1:
        return block[:, :signal_length]
    out = np.empty((len(block), signal_length))
    for length in np.unique(leading):  # rows differ only if their trailing cells are blank
        group = leading == length
        out[group] = window_from_onset(block[group, :length], ratio, signal_length)
    return out


# ---------------------------------------------------------------- filters


def _apply_filters(frame: pd.DataFrame, file: str, rows: np.ndarray, polarity: str | None,
                   max_sweeps_rejected: float | None) -> tuple[pd.DataFrame, np.ndarray, dict]:
    report = {"rows_read": len(frame), "dropped_polarity": 0, "dropped_sweeps_rejected": 0}
    if polarity is not None:
        keep = np.char.lower(_text_column(frame, "Stimulus Polarity")) == polarity.strip().lower()
        report["dropped_polarity"] = int((~keep).sum())
        frame, rows = frame[keep], rows[keep]
    if max_sweeps_rejected is not None:
        rejected = _numeric_column(frame, "Sweeps Rejected", file, rows)
        blank = np.isnan(rejected)
        if blank.any():
            raise _cell_error(file, rows[int(np.argmax(blank))], "Sweeps Rejected",
                              "blank, so the max_sweeps_rejected filter cannot decide (pass None to disable it)")
        keep = rejected < max_sweeps_rejected
        report["dropped_sweeps_rejected"] = int((~keep).sum())
        frame, rows = frame[keep], rows[keep]
    report["rows_kept"] = len(frame)
    return frame, rows, report


# ---------------------------------------------------------------- reader


def read_table(path: str | os.PathLike, *, polarity: str | None = "Alternate",
               max_sweeps_rejected: float | None = 100, signal_length: int = 200,
               sampling_rate_hz: float = 20000.0, source_sampling_rate_hz: float | None = None,
               sheet: int | str = 0, encoding: str = "utf-8-sig",
               return_report: bool = False) -> ABRRecords | tuple[ABRRecords, dict]:
    """Read the clinic spreadsheet export into validated records (µV signals, raw static inputs).

    ``polarity`` keeps rows whose ``Stimulus Polarity`` matches (case-insensitive; None keeps all);
    ``max_sweeps_rejected`` keeps rows with ``Sweeps Rejected`` below it (None keeps all).
    ``source_sampling_rate_hz`` is the export's rate when it differs from ``sampling_rate_hz``
    (see the module docstring). ``sheet`` selects the .xlsx sheet; ``encoding`` the CSV text
    encoding. With ``return_report=True`` returns ``(records, report)``, the report counting rows
    read, dropped by each filter and kept.
    """
    signal_length = check_time_base(signal_length, sampling_rate_hz)
    ratio = _resampling_ratio(sampling_rate_hz, source_sampling_rate_hz)
    path = Path(path)
    file = str(path)
    frame = _read_frame(path, sheet, encoding)
    sample_columns = _check_columns(frame, file)
    rows = np.arange(len(frame)) + FIRST_DATA_ROW
    frame, rows, report = _apply_filters(frame, file, rows, polarity, max_sweeps_rejected)
    logger.info("%s: read %d rows, dropped %d by polarity, %d by sweeps rejected; kept %d", path.name,
                report["rows_read"], report["dropped_polarity"], report["dropped_sweeps_rejected"],
                report["rows_kept"])
    if frame.empty:
        raise DataError(f"every row was dropped by the filters (polarity {polarity!r}: "
                        f"{report['dropped_polarity']}, sweeps rejected < {max_sweeps_rejected}: "
                        f"{report['dropped_sweeps_rejected']}); check polarity= and max_sweeps_rejected=",
                        file=file)

    signal = _signals(frame, sample_columns, file, rows, signal_length=int(signal_length), ratio=ratio)
    ears = _ears(frame, file, rows)
    latency = np.column_stack([_numeric_column(frame, lat, file, rows) for lat, _ in WAVE_COLUMNS])
    amplitude = np.column_stack([_numeric_column(frame, amp, file, rows) for _, amp in WAVE_COLUMNS])
    records = ABRRecords(
        signal=signal, sampling_rate_hz=sampling_rate_hz,
        age_years=_numeric_column(frame, "Age", file, rows),
        intensity_db=_numeric_column(frame, "Intensity", file, rows),
        stimulus_rate_hz=_numeric_column(frame, "Stimulus Rate", file, rows),
        fmp=_numeric_column(frame, "FMP", file, rows),
        patient_id=_patient_ids(frame, file, rows), ear=ears,
        session_id=_text_column(frame, "Test Date"),
        v_present=np.isfinite(latency[:, 2]), v_latency_ms=latency[:, 2], v_amplitude_uv=amplitude[:, 2],
        wave_latency_ms=latency, wave_amplitude_uv=amplitude,
        hearing_loss=_hearing_loss(frame, ears, file, rows),
        threshold_db=np.full(len(frame), np.nan, np.float32),
        signal_unit="uV", threshold_source="unknown", source=f"table:{path.name}",
        extra={
            "sweeps_measured": _numeric_column(frame, "Sweeps Measured", file, rows),
            "sweeps_rejected": _numeric_column(frame, "Sweeps Rejected", file, rows),
            "stimulus_polarity": _text_column(frame, "Stimulus Polarity"),
            "test_date": _text_column(frame, "Test Date"),
            "source_row": rows.astype(np.int64),
        },
    )
    try:
        records.validate()
    except DataError as exc:
        if isinstance(exc.row, int):
            column = FIELD_COLUMNS.get(exc.field or "", exc.field or "")
            raise _cell_error(file, rows[exc.row], column, exc.reason) from None
        raise DataError(exc.reason, file=file, field=exc.field) from None
    return (records, report) if return_report else records
