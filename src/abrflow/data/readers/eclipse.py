"""Reader for Interacoustics Eclipse CSV exports (DESIGN.md §4): one row per averaged waveform.

Layout: a preamble of ``Key: value`` lines and blank lines, then a header row (the first line with
a ``Mod No`` column; names padded with spaces, strings quoted), then the data rows. Columns are found by
their stripped names, never by position; ``Samples`` sample values in µV stand in the columns
named ``0, 1, 2, …``. A UTF-8 byte-order mark, CRLF line ends, quoted commas and a trailing comma
are all read.

Mapping to ``ABRRecords`` (decisions where the export is silent are marked *assumed*):

- Time base: ``Sampl Interval`` (ms) and ``Sweep Delay`` (ms, negative = samples before the
  stimulus) put sample k at ``Sweep Delay + k × Sampl Interval``. The window starts at onset
  (sample ``−Sweep Delay / Sampl Interval``, which must be a whole sample) and is resampled to the
  model's rate with ``resample_poly``. A positive delay (recording starts after the stimulus) or
  a row too short for the window is an error, never padded.
- Waves: ``Mark1/3/5`` are waves I/III/V (``wave_latency_ms[:, 0/1/2]``, ``Lat`` in ms,
  ``Ampl`` in µV); V is present when ``Mark5 Lat`` is filled. *Assumed*: mark latencies are
  measured from stimulus onset (as clinicians read them), not from the first sample.
  ``Mark2/4/6/7/8`` go to ``extra["markK_latency_ms"]``/``["markK_amplitude_uv"]``.
- ``Output`` → ear (Left/Right/L/R, or a phrase naming one side; Both/Binaural → ``?``),
  ``Set Intensity`` → ``intensity_db``, ``Stim Rate`` → ``stimulus_rate_hz``;
  ``Accepted``/``Rejected`` → ``extra["sweeps_accepted"]``/``["sweeps_rejected"]``. Fmp is not
  exported: NaN.
- What was played (``abrflow.data.stimulus``): ``Stimulus`` → ``extra["stimulus_type"]``
  ("Click", "Tone Burst", "CE-Chirp"…; a blank, unrecognised wording or no such column →
  "unknown"); ``Polarity`` → ``extra["stimulus_polarity"]`` as written. The frequency
  (``stimulus_frequency_khz``, tone bursts and chirps only) is the one the ``Stimulus`` cell writes
  with its unit ("TB 2000 Hz", "4 kHz") or else a ``Stim Freq``/``Stim Frequency``/``Frequency``
  column, *assumed* Hz when ≥ 100 and kHz when ≤ 20 (between: an error; a unit written in the cell
  decides). ``level_unit``: dB nHL, the format's documented unit of ``Set Intensity``, unless a
  preamble line whose key names a unit, intensity or level says dB peSPL or dB SPL (any other dB
  unit there is an error, never read as dB nHL).
- Patient: the first non-blank preamble value among ``PATIENT_ID_KEYS`` (``Patient ID`` before
  ``Name``: an id is stable, a name is not and is personal data), else the file stem.
  ``session_id`` is the date part of ``Date Time`` as written (the first word; the export's date
  format is not converted, so ``04.03.2021`` and ``2021-03-04`` stay as they are).
- No diagnosis in the export: ``hearing_loss`` −1, ``threshold_db`` NaN.

Errors name the file, the line (1-based, as an editor shows it) and the column.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..records import ABRRecords
from ..schema import DEFAULT_LEVEL_UNIT, empty_rows
from ..stimulus import (
    FREQUENCY_RANGE_KHZ,
    LEVEL_UNITS,
    TYPES_WITH_FREQUENCY,
    frequency_khz_in,
    parse_level_unit,
    parse_stimulus_type,
)
from ..timebase import check_time_base, resampling_ratio, samples_needed, window_from_onset
from ._common import EAR_NAMES, read_text

HEADER_START = "Mod No"
#: Preamble keys tried for the patient id, in order (case-insensitive, spaces ignored).
PATIENT_ID_KEYS = ("Patient ID", "PatientID", "Patient No", "Patient Number", "ID", "Patient Name", "Name")
WAVE_MARKS = (1, 3, 5)             # Mark1/3/5 = waves I, III, V
OTHER_MARKS = (2, 4, 6, 7, 8)      # kept in extra
MARK_COLUMNS = tuple(c for k in range(1, 9) for c in (f"Mark{k} Lat", f"Mark{k} Ampl"))
REQUIRED_COLUMNS = ("Date Time", "Accepted", "Rejected", "Stim Rate", "Set Intensity", "Polarity", "Output",
                    *MARK_COLUMNS, "Sweep Delay", "Sampl Interval", "Samples")
FREQUENCY_COLUMNS = ("Stim Freq", "Stim Frequency", "Frequency")  # optional; the first non-blank is read
BOTH_EARS = {"both", "binaural", "b", "bilateral"}
ONSET_TOLERANCE_SAMPLES = 1e-3     # rounding in exported ms values; more is an onset between samples
MAX_COUNT = 2**53                  # counts (sweeps, samples) above this are damage, not a count (int64, exact floats)
# ABRRecords field -> export column, so validation errors point at the cell to open.
FIELD_COLUMNS = {"intensity_db": "Set Intensity", "stimulus_rate_hz": "Stim Rate", "v_latency_ms": "Mark5 Lat",
                 "v_present": "Mark5 Lat", "wave_latency_ms": "Mark1/3/5 Lat", "patient_id": "Patient ID",
                 "ear": "Output"}


@dataclass
class _Row:
    """One data row: its cells by column name and the line it ends on."""

    line: int
    cells: dict[str, str]


# ---------------------------------------------------------------- file structure


def _preamble_key(text: str) -> str:
    return re.sub(r"\s+", "", text).casefold()


def _split_preamble(lines: list[str], file: str) -> tuple[dict[str, str], int]:
    """``Key: value`` pairs before the header row, and the header row's index."""
    preamble: dict[str, str] = {}
    for index, text in enumerate(lines):
        if not text.strip():
            continue
        if HEADER_START in (f.strip() for f in next(csv.reader([text]), [])):
            return preamble, index
        key, colon, value = text.partition(":")
        if not colon or not key.strip():
            raise DataError(f"expected a 'Key: value' preamble line or the header row with a "
                            f"{HEADER_START!r} column, got {text.strip()[:60]!r}", file=file, row=f"line {index + 1}")
        # Some exports write the preamble CSV-style ("Key:,value,,"): drop the separators and quotes.
        preamble.setdefault(_preamble_key(key), value.strip().strip(",").strip().strip('"').strip())
    raise DataError(f"no header row with a {HEADER_START!r} column: not an Eclipse export, or it is cut off",
                    file=file)


def _header(names: list[str], file: str, line: int) -> list[str]:
    """Stripped column names; blank names only at the end (a trailing comma); no repeats."""
    names = [n.strip() for n in names]
    while names and not names[-1]:
        names.pop()
    blank = [i + 1 for i, n in enumerate(names) if not n]
    if blank:
        raise DataError(f"column {blank[0]} has no name", file=file, row=f"line {line}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"column names appear more than once: {repeated}", file=file, row=f"line {line}",
                        field=repeated[0])
    for name in REQUIRED_COLUMNS:
        if name not in names:
            near = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise DataError(f"missing required column{hint}", file=file, row=f"line {line}", field=name)
    return names


def _sample_count(names: list[str], file: str, line: int) -> int:
    """How many sample columns (named 0…K−1, in any order, without gaps) the header has."""
    numbers = sorted(int(n) for n in names if n.isdigit())
    if not numbers:
        raise DataError("no sample columns named 0, 1, 2, …", file=file, row=f"line {line}")
    for expected, found in enumerate(numbers):
        if found != expected:
            raise DataError(f"sample columns must be numbered 0…{numbers[-1]} without gaps; column {expected} is "
                            "missing", file=file, row=f"line {line}", field=str(expected))
    return len(numbers)


def _rows(lines: list[str], header_index: int, file: str) -> tuple[list[str], list[_Row]]:
    text = "\n".join(lines[header_index:])
    reader = csv.reader(io.StringIO(text))
    names = _header(next(reader), file, header_index + 1)
    rows = []
    for fields in reader:
        line = header_index + reader.line_num
        if not any(f.strip() for f in fields):
            continue  # a blank line carries no recording
        extra = [f for f in fields[len(names):] if f.strip()]
        if extra:
            raise DataError(f"{len(fields)} fields but the header names {len(names)} columns (extra value "
                            f"{extra[0].strip()!r})", file=file, row=f"line {line}")
        cells = dict(zip(names, (f.strip() for f in fields), strict=False))
        rows.append(_Row(line, cells))
    if not rows:
        raise DataError("no data rows below the header", file=file, row=f"line {header_index + 1}")
    return names, rows


# ---------------------------------------------------------------- cells


def _number(row: _Row, column: str, file: str, *, required: bool = True) -> float:
    text = row.cells.get(column, "")
    if not text:
        if required:
            raise DataError("blank cell, expected a number", file=file, row=f"line {row.line}", field=column)
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"expected a number, got {text!r}", file=file, row=f"line {row.line}", field=column) from None
    if not np.isfinite(value):
        raise DataError(f"expected a finite number, got {text!r}", file=file, row=f"line {row.line}", field=column)
    return value


def _count(row: _Row, column: str, file: str) -> int:
    value = _number(row, column, file)
    if not value.is_integer() or not 0 <= value < MAX_COUNT:
        raise DataError(f"expected a whole count, got {row.cells[column]!r}", file=file, row=f"line {row.line}",
                        field=column)
    return int(value)


def _text(row: _Row, column: str, file: str) -> str:
    text = row.cells.get(column, "")
    if not text:
        raise DataError("blank cell", file=file, row=f"line {row.line}", field=column)
    return text


def _ear(row: _Row, file: str) -> str:
    text = _text(row, "Output", file)
    folded = text.casefold()
    if folded in EAR_NAMES:
        return EAR_NAMES[folded]
    if folded in BOTH_EARS:
        return "?"
    words = set(re.findall(r"[a-z]+", folded))
    sides = {EAR_NAMES[w] for w in words & {"left", "right"}} | ({"?"} if words & BOTH_EARS else set())
    if len(sides) != 1:
        raise DataError(f"cannot tell the ear from {text!r}; expected Left/Right, L/R or Both", file=file,
                        row=f"line {row.line}", field="Output")
    return sides.pop()


def _mark(row: _Row, k: int, file: str) -> tuple[float, float]:
    """(latency ms, amplitude µV) of MarkK; both NaN when unmarked; an amplitude needs a latency."""
    latency = _number(row, f"Mark{k} Lat", file, required=False)
    amplitude = _number(row, f"Mark{k} Ampl", file, required=False)
    if np.isnan(latency) and not np.isnan(amplitude):
        raise DataError(f"Mark{k} has an amplitude but no latency", file=file, row=f"line {row.line}",
                        field=f"Mark{k} Lat")
    return latency, amplitude


def _window(row: _Row, n_columns: int, file: str, *, signal_length: int, sampling_rate_hz: float) -> np.ndarray:
    """The row's samples from stimulus onset, resampled to the model's window [signal_length]."""
    where = f"line {row.line}"
    n_samples = _count(row, "Samples", file)
    if n_samples > n_columns:
        raise DataError(f"Samples is {n_samples} but the header has {n_columns} sample columns", file=file,
                        row=where, field="Samples")
    for k in range(n_samples, n_columns):
        if row.cells.get(str(k), ""):
            raise DataError(f"a value beyond the row's {n_samples} samples (Samples)", file=file, row=where,
                            field=str(k))
    values = np.array([_number(row, str(k), file) for k in range(n_samples)])
    interval_ms = _number(row, "Sampl Interval", file)
    try:
        ratio = resampling_ratio(sampling_rate_hz, 1000.0 / interval_ms if interval_ms > 0 else float("nan"))
    except ValueError as exc:
        raise DataError(f"sample interval {interval_ms} ms: {exc}", file=file, row=where,
                        field="Sampl Interval") from None
    delay_ms = _number(row, "Sweep Delay", file)
    onset_exact = -delay_ms / interval_ms
    if not np.isfinite(onset_exact):
        raise DataError(f"sweep delay {delay_ms} ms is not a usable number of {interval_ms} ms samples", file=file,
                        row=where, field="Sweep Delay")
    onset = round(onset_exact)
    if abs(onset_exact - onset) > ONSET_TOLERANCE_SAMPLES:
        raise DataError(f"sweep delay {delay_ms} ms is not a whole number of {interval_ms} ms samples, so the "
                        "stimulus onset falls between samples", file=file, row=where, field="Sweep Delay")
    if onset < 0:
        raise DataError(f"the recording starts {delay_ms} ms after the stimulus: the window from onset is not "
                        "recorded", file=file, row=where, field="Sweep Delay")
    needed = samples_needed(signal_length, ratio)
    if n_samples - onset < needed:
        raise DataError(f"{n_samples - onset} samples after onset at {interval_ms} ms cannot cover "
                        f"{signal_length} samples at {sampling_rate_hz:g} Hz (need {needed})", file=file,
                        row=where, field="Samples")
    return window_from_onset(values[onset:], ratio, signal_length)


# ---------------------------------------------------------------- what was played


def _stimulus(row: _Row, file: str) -> tuple[str, float]:
    """(stimulus type, frequency kHz) of one row; see the module docstring."""
    text = row.cells.get("Stimulus", "")
    kind = parse_stimulus_type(text)
    if kind not in TYPES_WITH_FREQUENCY:
        return kind, np.nan
    khz, column = frequency_khz_in(text), "Stimulus"
    if np.isnan(khz):
        column = next((c for c in FREQUENCY_COLUMNS if row.cells.get(c, "")), "")
        cell = row.cells.get(column, "")
        khz = frequency_khz_in(cell)
        if np.isnan(khz) and cell:
            value = _number(row, column, file)
            khz = value / 1000.0 if value >= 100 else value if value <= 20 else np.inf
    if np.isfinite(khz) and FREQUENCY_RANGE_KHZ[0] < khz <= FREQUENCY_RANGE_KHZ[1]:
        return kind, khz
    if np.isnan(khz):
        return kind, khz
    raise DataError("not a stimulus frequency (Hz ≥ 100 or kHz ≤ 20, or written with its unit)", file=file,
                    row=f"line {row.line}", field=column)


def _level_unit(preamble: dict[str, str], file: str) -> str:
    """The unit of ``Set Intensity``: dB nHL unless a preamble line about the level's unit names another."""
    named = set()
    for key, value in preamble.items():
        if any(word in key for word in ("unit", "intensity", "level")) and "db" in value.casefold():
            unit = parse_level_unit(value)
            if unit is None:
                raise DataError(f"level unit {value!r} is not one of {list(LEVEL_UNITS)}", file=file, row="preamble",
                                field=key)
            named.add(unit)
    if len(named) > 1:
        raise DataError(f"names more than one level unit: {sorted(named)}", file=file, row="preamble")
    return named.pop() if named else DEFAULT_LEVEL_UNIT


# ---------------------------------------------------------------- reader


def _patient_id(preamble: dict[str, str], path: Path) -> str:
    for key in PATIENT_ID_KEYS:
        value = preamble.get(_preamble_key(key), "")
        if value:
            return value
    return path.stem


def read_eclipse(path: str | os.PathLike, *, signal_length: int = 200, sampling_rate_hz: float = 20000.0,
                 encoding: str = "utf-8-sig") -> ABRRecords:
    """Read an Interacoustics Eclipse CSV export into validated records (µV, model time base).

    ``encoding`` is the text encoding (``utf-8-sig`` reads UTF-8 with or without a BOM; pass
    ``cp1252`` for an export saved in a Windows code page).
    """
    signal_length = check_time_base(signal_length, sampling_rate_hz)
    path = Path(path)
    file = str(path)
    if not path.exists():
        raise DataError("file not found", file=file)
    lines = read_text(path, encoding).splitlines()
    preamble, header_index = _split_preamble(lines, file)
    names, rows = _rows(lines, header_index, file)
    n_columns = _sample_count(names, file, header_index + 1)
    n = len(rows)

    signal = np.stack([_window(r, n_columns, file, signal_length=signal_length, sampling_rate_hz=sampling_rate_hz)
                       for r in rows])
    marks = {k: np.array([_mark(r, k, file) for r in rows]).reshape(n, 2) for k in range(1, 9)}
    latency = np.column_stack([marks[k][:, 0] for k in WAVE_MARKS])
    amplitude = np.column_stack([marks[k][:, 1] for k in WAVE_MARKS])
    fields = empty_rows(n)
    fields.update(
        patient_id=np.full(n, _patient_id(preamble, path)),
        session_id=np.array([_text(r, "Date Time", file).split()[0] for r in rows]),
        ear=np.array([_ear(r, file) for r in rows]),
        intensity_db=np.array([_number(r, "Set Intensity", file) for r in rows]),
        stimulus_rate_hz=np.array([_number(r, "Stim Rate", file) for r in rows]),
        v_present=np.isfinite(latency[:, 2]), v_latency_ms=latency[:, 2], v_amplitude_uv=amplitude[:, 2],
        wave_latency_ms=latency, wave_amplitude_uv=amplitude)
    stimuli = [_stimulus(r, file) for r in rows]
    extra = {
        "sweeps_accepted": np.array([_count(r, "Accepted", file) for r in rows], np.int64),
        "sweeps_rejected": np.array([_count(r, "Rejected", file) for r in rows], np.int64),
        "stimulus_polarity": np.array([r.cells.get("Polarity", "") for r in rows]),
        "stimulus_type": np.array([kind for kind, _ in stimuli]),
        "stimulus_frequency_khz": np.array([khz for _, khz in stimuli], np.float32),
        "level_unit": np.full(n, _level_unit(preamble, file)),
        "sample_interval_ms": np.array([_number(r, "Sampl Interval", file) for r in rows], np.float32),
        "source_line": np.array([r.line for r in rows], np.int64),
    }
    for k in OTHER_MARKS:
        extra[f"mark{k}_latency_ms"] = marks[k][:, 0].astype(np.float32)
        extra[f"mark{k}_amplitude_uv"] = marks[k][:, 1].astype(np.float32)
    records = ABRRecords(signal=signal, sampling_rate_hz=sampling_rate_hz, signal_unit="uV",
                         threshold_source="unknown", source=f"eclipse:{path.name}", extra=extra, **fields)
    try:
        return records.validate()
    except DataError as exc:
        column = FIELD_COLUMNS.get(exc.field or "", exc.field)
        row = f"line {rows[exc.row].line}" if isinstance(exc.row, int) else None
        raise DataError(exc.reason, file=file, row=row, field=column) from None
