"""Reader for Intelligent Hearing Systems (IHS) SmartEP text exports (``*.TXT``), shared/real/README.md.

Layout: header rows ``Key:,value,,,,,,value,…`` (``Stim. Freq.`` has no colon, rows end with a
comma), a ``Data Pnt:`` row naming the columns, then one row per data point: the point number
(1-based) and, per recording, six columns ``Average, Average(uV), Buffer1, Buffer1(uV), Buffer2,
Buffer2(uV)``. A recording's header values stand in the field above its ``Average`` column, so
values and columns are matched by position in the row, and the columns inside a recording by
their names. Every file seen holds 1024 data points (the device's buffer, whatever the sample
period); fewer rows mean a truncated export and are an error.

Each recording becomes one row:

- ``signal`` = ``Average(uV)`` (the mean of the two buffers in µV; the integer ``Average`` is
  their sum in counts and is not used), cut from the recording's own stimulus onset (``Zero
  Position``, 1-based; sample k lies at (k − zero) × ``Smp. Period``) and resampled to the
  model's rate when the period differs (25 µs recordings in P6 55 dB). Cutting from onset also
  drops P3's all-zero pre-stimulus samples.
- ``extra["half_a"]``, ``extra["half_b"]`` = ``Buffer1(uV)``, ``Buffer2(uV)`` in the same time
  base; ``extra["split_half_r"]`` = their Pearson r over 1–10 ms after onset (see
  ``abrflow.data.split_half_r``): near 1 for a replicating response, near 0 for noise alone.
- ``intensity_db`` from ``Intensity`` (never from the file name), ``stimulus_rate_hz`` from
  ``Stim. Rate``, ``ear`` from ``Ear``; ``Sweeps``, ``Artifacts``, the sample period and onset go
  to ``extra``. Fmp is not exported: NaN.
- What was played (``abrflow.data.stimulus``): ``Stim. Freq.`` in Hz > 0 → ``stimulus_type``
  "tone_burst" at that frequency (``stimulus_frequency_khz``); 0 → "click" when ``Stimulus`` is
  code 1 (the code of every click export seen), "unknown" for any other code (undocumented: no
  click is assumed); rows missing or blank → "unknown". ``Stim. Mode`` is an undocumented code
  (0 in every file seen; it may be the polarity): kept as text, ``stimulus_polarity`` =
  "Stim. Mode 0". ``level_unit`` is dB nHL, the device's unit for clicks. The export names no unit:
  for tone bursts dB nHL is the default, not something the file says.
- No labels: ``hearing_loss`` −1, ``threshold_db`` NaN, ``v_present`` False. The experts'
  thresholds of the published data set are read by ``read_smartep_expert_thresholds``.
- ``patient_id``: the subject folder's name (e.g. ``P3``) when a folder is read, the
  ``Identifier`` header when a single file is read. ``session_id`` is the ``Identifier`` (the
  device's test id), so a folder of one subject's files is one level series.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..halves import split_half_r
from ..records import ABRRecords
from ..schema import DEFAULT_LEVEL_UNIT, empty_rows
from ..stimulus import FREQUENCY_RANGE_KHZ, UNKNOWN
from ..timebase import check_time_base, resampling_ratio, samples_needed, window_from_onset
from ._common import EAR_NAMES, read_text

DATA_KEY = "Data Pnt"
RECORDING_COLUMNS = ("Average", "Average(uV)", "Buffer1", "Buffer1(uV)", "Buffer2", "Buffer2(uV)")
CLICK_CODE = 1.0  # ``Stimulus`` of every click export seen (with ``Stim. Freq.`` 0)
REQUIRED_KEYS = ("Identifier", "Ear", "Intensity", "Stim. Rate", "Sweeps", "Artifacts", "Smp. Period",
                 "Zero Position")
POINTS_PER_RECORDING = 1024
SPLIT_HALF_WINDOW_MS = (1.0, 10.0)
ENCODING = "utf-8-sig"  # the exports are ASCII; anything that does not decode is not one


@dataclass
class _Export:
    """One parsed file: header values per recording and the data block, with line numbers."""

    path: Path
    header: dict[str, tuple[int, list[str]]]  # key -> (line number, one value per recording)
    columns: list[dict[str, int]]             # per recording: column name -> field index
    data: np.ndarray                          # float64 [points, fields]
    data_line: int                            # line number of the first data row

    @property
    def n_recordings(self) -> int:
        return len(self.columns)

    def value(self, key: str, recording: int) -> tuple[str, int]:
        line, values = self.header[key]
        return values[recording], line

    def number(self, key: str, recording: int) -> float:
        text, line = self.value(key, recording)
        try:
            return float(text)
        except ValueError:
            raise DataError(f"expected a number, got {text!r}", file=str(self.path),
                            row=f"line {line}, recording {recording + 1}", field=key) from None

    def count(self, key: str, recording: int) -> int:
        value = self.number(key, recording)
        if not value.is_integer() or not 0 <= value < 2**53:  # larger is damage, and would overflow int64
            _, line = self.value(key, recording)
            raise DataError(f"expected a whole count, got {value!r}", file=str(self.path),
                            row=f"line {line}, recording {recording + 1}", field=key)
        return int(value)


# ---------------------------------------------------------------- parsing


def _key(field: str) -> str:
    """``Smp. Period:`` → ``Smp. Period``; ``Stim. Freq.`` (no colon) stays as it is."""
    return field.strip().removesuffix(":").strip()


def _recording_columns(fields: list[str], file: str, line: int) -> list[dict[str, int]]:
    """Group the ``Data Pnt:`` row's names into recordings, each starting at an ``Average`` column."""
    names = [_key(f) for f in fields]
    groups: list[dict[str, int]] = []
    for index, name in enumerate(names[1:], start=1):
        if not name:
            if any(names[index:]):
                raise DataError(f"blank column name in field {index + 1} before further columns",
                                file=file, row=f"line {line}", field=DATA_KEY)
            break
        if name == RECORDING_COLUMNS[0]:
            groups.append({})
        elif not groups:
            raise DataError(f"column {name!r} comes before the first 'Average' column", file=file,
                            row=f"line {line}", field=DATA_KEY)
        if name not in RECORDING_COLUMNS or name in groups[-1]:
            raise DataError(f"unexpected column {name!r} in recording {len(groups)}; each recording has "
                            f"{', '.join(RECORDING_COLUMNS)}", file=file, row=f"line {line}", field=DATA_KEY)
        groups[-1][name] = index
    if not groups:
        raise DataError("no recordings: the row names no 'Average' column", file=file, row=f"line {line}",
                        field=DATA_KEY)
    for number, group in enumerate(groups, start=1):
        missing = [c for c in RECORDING_COLUMNS if c not in group]
        if missing:
            raise DataError(f"recording {number} lacks columns {missing}", file=file, row=f"line {line}",
                            field=DATA_KEY)
    return groups


def _header_values(fields: list[str], starts: list[int], file: str, line: int, key: str) -> list[str]:
    """One value per recording, taken from the field above the recording's first column."""
    stray = [i for i, f in enumerate(fields[1:], start=1) if f.strip() and i not in starts]
    if stray:
        raise DataError(f"value {fields[stray[0]].strip()!r} in field {stray[0] + 1} is not above a "
                        "recording's first column", file=file, row=f"line {line}", field=key)
    values = [fields[s].strip() if s < len(fields) else "" for s in starts]
    return values


def _column_labels(columns: list[dict[str, int]]) -> dict[int, str]:
    """Field index → 'Buffer1(uV) of recording 3', so a bad cell is named as a person would look for it."""
    labels = {0: "Data Pnt (point number)"}
    for number, group in enumerate(columns, start=1):
        labels.update({index: f"{name} of recording {number}" for name, index in group.items()})
    return labels


def _data_block(lines: list[str], first_line: int, labels: dict[int, str], file: str) -> np.ndarray:
    """The data rows as float64 [points, fields]; row k must be numbered k and be complete."""
    width = max(labels) + 1
    rows = []
    for offset, text in enumerate(lines):
        line = first_line + offset
        fields = text.split(",")
        if len(fields) < width or "".join(fields[width:]).strip():
            raise DataError(f"expected {width - 1} values after the point number, found "
                            f"{sum(1 for f in fields[1:] if f.strip())}: truncated or edited row",
                            file=file, row=f"line {line}", field=DATA_KEY)
        rows.append(fields[:width])
    try:
        block = np.array(rows, dtype=np.float64)
    except ValueError:
        block = None
    if block is None or not np.isfinite(block).all():
        for offset, fields in enumerate(rows):
            for index, text in enumerate(fields):
                try:
                    ok = np.isfinite(float(text))
                except ValueError:
                    ok = False
                if not ok:
                    raise DataError(f"expected a number in field {index + 1}, got {text.strip()!r}", file=file,
                                    row=f"line {first_line + offset}", field=labels.get(index, DATA_KEY))
    numbers = block[:, 0]
    wrong = numbers != np.arange(1, len(block) + 1)
    if wrong.any():
        k = int(np.argmax(wrong))
        raise DataError(f"data point number {numbers[k]:g}, expected {k + 1}", file=file,
                        row=f"line {first_line + k}", field=labels[0])
    return block


def _parse(path: Path) -> _Export:
    file = str(path)
    lines = read_text(path, ENCODING, hint="a SmartEP text export is plain ASCII").splitlines()
    data_index = next((i for i, t in enumerate(lines) if _key(t.split(",", 1)[0]) == DATA_KEY), None)
    if data_index is None:
        raise DataError(f"no '{DATA_KEY}:' row: not a SmartEP text export, or its header is cut off",
                        file=file, field=DATA_KEY)
    columns = _recording_columns(lines[data_index].split(","), file, data_index + 1)
    starts = [group[RECORDING_COLUMNS[0]] for group in columns]
    header: dict[str, tuple[int, list[str]]] = {}
    for index, text in enumerate(lines[:data_index]):
        if not text.strip():
            continue
        fields = text.split(",")
        key = _key(fields[0])
        if not key:
            raise DataError("header row without a key", file=file, row=f"line {index + 1}")
        if key in header:
            raise DataError(f"header key repeated (first on line {header[key][0]})", file=file,
                            row=f"line {index + 1}", field=key)
        header[key] = (index + 1, _header_values(fields, starts, file, index + 1, key))
    for key in REQUIRED_KEYS:
        if key not in header:
            raise DataError("missing header row", file=file, field=key)
        blank = [i + 1 for i, v in enumerate(header[key][1]) if not v]
        if blank:
            raise DataError(f"no value for recording {blank[0]}", file=file, row=f"line {header[key][0]}",
                            field=key)
    data_lines = lines[data_index + 1:]
    while data_lines and not data_lines[-1].strip():
        data_lines.pop()
    if len(data_lines) != POINTS_PER_RECORDING:
        raise DataError(f"{len(data_lines)} data rows, SmartEP recordings have {POINTS_PER_RECORDING}: "
                        "the file is truncated or edited", file=file,
                        row=f"line {data_index + 1 + len(data_lines)}", field=DATA_KEY)
    block = _data_block(data_lines, data_index + 2, _column_labels(columns), file)
    return _Export(path, header, columns, block, data_index + 2)


# ---------------------------------------------------------------- recordings → rows


def _windows(export: _Export, recording: int, *, signal_length: int, sampling_rate_hz: float) -> np.ndarray:
    """[3, signal_length] µV (average, buffer 1, buffer 2) from this recording's onset."""
    file = str(export.path)
    period_us = export.number("Smp. Period", recording)
    _, line = export.value("Smp. Period", recording)
    where = f"line {line}, recording {recording + 1}"
    try:
        ratio = resampling_ratio(sampling_rate_hz, 1e6 / period_us if period_us > 0 else float("nan"))
    except ValueError as exc:
        raise DataError(f"sample period {period_us} µs: {exc}", file=file, row=where, field="Smp. Period") from None
    zero = export.number("Zero Position", recording)
    _, line = export.value("Zero Position", recording)
    where = f"line {line}, recording {recording + 1}"
    n_points = export.data.shape[0]
    if not zero.is_integer() or not 1 <= zero <= n_points:
        raise DataError(f"onset sample {zero!r} is not a data point 1…{n_points}", file=file, row=where,
                        field="Zero Position")
    onset = int(zero) - 1
    needed = samples_needed(signal_length, ratio)
    if n_points - onset < needed:
        raise DataError(f"{n_points - onset} samples from onset (Zero Position {int(zero)}) at {period_us} µs "
                        f"cannot cover {signal_length} samples at {sampling_rate_hz:g} Hz (need {needed})",
                        file=file, row=where, field="Zero Position")
    group = export.columns[recording]
    fields = [group["Average(uV)"], group["Buffer1(uV)"], group["Buffer2(uV)"]]
    return window_from_onset(export.data[onset:, fields].T, ratio, signal_length)


def _ear(export: _Export, recording: int) -> str:
    text, line = export.value("Ear", recording)
    ear = EAR_NAMES.get(text.casefold())
    if ear is None:
        raise DataError(f"unknown ear {text!r}; expected R or L", file=str(export.path),
                        row=f"line {line}, recording {recording + 1}", field="Ear")
    return ear


def _stimulus(export: _Export, recording: int) -> tuple[str, float, str]:
    """(stimulus type, frequency kHz, polarity text) of one recording; see the module docstring."""
    polarity = ""
    if "Stim. Mode" in export.header and export.value("Stim. Mode", recording)[0]:
        polarity = f"Stim. Mode {export.value('Stim. Mode', recording)[0]}"
    if "Stim. Freq." not in export.header or not export.value("Stim. Freq.", recording)[0]:
        return UNKNOWN, np.nan, polarity
    hz = export.number("Stim. Freq.", recording)
    if not np.isfinite(hz) or hz < 0 or hz > 1000.0 * FREQUENCY_RANGE_KHZ[1]:
        _, line = export.value("Stim. Freq.", recording)
        raise DataError(f"stimulus frequency {hz!r} Hz is not 0 (click) or a tone-burst frequency up to "
                        f"{FREQUENCY_RANGE_KHZ[1]:g} kHz", file=str(export.path),
                        row=f"line {line}, recording {recording + 1}", field="Stim. Freq.")
    if hz > 0:
        return "tone_burst", hz / 1000.0, polarity
    code = export.value("Stimulus", recording)[0] if "Stimulus" in export.header else ""
    try:
        is_click = float(code) == CLICK_CODE
    except ValueError:
        is_click = False
    return ("click" if is_click else UNKNOWN), np.nan, polarity


def _records(export: _Export, patient_id: str | None, *, signal_length: int,
             sampling_rate_hz: float) -> ABRRecords:
    n = export.n_recordings
    windows = np.stack([_windows(export, g, signal_length=signal_length, sampling_rate_hz=sampling_rate_hz)
                        for g in range(n)])
    identifiers = np.array([export.value("Identifier", g)[0] for g in range(n)])
    rows = empty_rows(n)
    rows["patient_id"] = identifiers if patient_id is None else np.full(n, patient_id)
    rows["session_id"] = identifiers
    rows["ear"] = np.array([_ear(export, g) for g in range(n)])
    rows["intensity_db"] = np.array([export.number("Intensity", g) for g in range(n)])
    rows["stimulus_rate_hz"] = np.array([export.number("Stim. Rate", g) for g in range(n)])
    half_a, half_b = windows[:, 1].astype(np.float32), windows[:, 2].astype(np.float32)
    kind, khz, polarity = zip(*(_stimulus(export, g) for g in range(n)))
    return ABRRecords(
        signal=windows[:, 0], sampling_rate_hz=sampling_rate_hz, signal_unit="uV", threshold_source="unknown",
        source=f"smartep:{export.path.name}", **rows,
        extra={
            "half_a": half_a,
            "half_b": half_b,
            "split_half_r": split_half_r(half_a, half_b, sampling_rate_hz, start_ms=SPLIT_HALF_WINDOW_MS[0],
                                         stop_ms=SPLIT_HALF_WINDOW_MS[1]),
            "sweeps": np.array([export.count("Sweeps", g) for g in range(n)], np.int64),
            "artifacts": np.array([export.count("Artifacts", g) for g in range(n)], np.int64),
            "sample_period_us": np.array([export.number("Smp. Period", g) for g in range(n)], np.float32),
            "zero_position": np.array([export.count("Zero Position", g) for g in range(n)], np.int64),
            "recording": np.arange(1, n + 1, dtype=np.int64),
            "source_file": np.full(n, export.path.name),
            "stimulus_type": np.array(kind), "stimulus_frequency_khz": np.array(khz, np.float32),
            "stimulus_polarity": np.array(polarity), "level_unit": np.full(n, DEFAULT_LEVEL_UNIT),
        })


# ---------------------------------------------------------------- public API


def _subject_files(folder: Path) -> list[tuple[Path, str]]:
    """(file, patient id) for a subject folder of ``*.TXT`` files, or a folder of subject folders."""
    def exports(directory: Path) -> list[Path]:
        return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() == ".txt")

    direct = exports(folder)
    if direct:
        return [(p, folder.name) for p in direct]
    nested = [(p, sub.name) for sub in sorted(d for d in folder.iterdir() if d.is_dir()) for p in exports(sub)]
    if not nested:
        raise DataError("no SmartEP .TXT exports in the folder or its subject folders", file=str(folder))
    return nested


def read_smartep(path_or_folder: str | os.PathLike, *, signal_length: int = 200,
                 sampling_rate_hz: float = 20000.0) -> ABRRecords:
    """Read one SmartEP ``.TXT`` export, a subject folder of them, or a folder of subject folders.

    Every recording in every file becomes one row (see the module docstring for the mapping).
    A recording that cannot be read is an error naming file, line, recording and field.
    """
    signal_length = check_time_base(signal_length, sampling_rate_hz)
    path = Path(path_or_folder)
    if not path.exists():
        raise DataError("file not found", file=str(path))
    files = _subject_files(path) if path.is_dir() else [(path, None)]
    parts, where = [], []
    for file, patient_id in files:
        export = _parse(file)
        parts.append(_records(export, patient_id, signal_length=signal_length, sampling_rate_hz=sampling_rate_hz))
        where += [(file, g + 1) for g in range(export.n_recordings)]
    records = ABRRecords.concatenate(parts)
    try:
        return records.validate()
    except DataError as exc:
        if isinstance(exc.row, int):
            file, recording = where[exc.row]
            raise DataError(exc.reason, file=str(file), row=f"recording {recording}", field=exc.field) from None
        raise


def read_smartep_expert_thresholds(mat_path: str | os.PathLike, *,
                                   variable: str = "expert_human_all") -> dict[str, list[float]]:
    """The published experts' thresholds (dB) per subject: ``{"P1": [rater 1, …, rater 5], …}``.

    ``thres_data_v2.mat`` holds raters × subjects arrays; column index = subject number − 1 (the
    data set's convention, which the split-half replication of the recordings agrees with).
    These are the only labels this data set has; they stay out of ``ABRRecords`` so that a
    series' threshold is chosen deliberately (e.g. the raters' median), not silently.
    """
    from scipy.io import loadmat

    path = Path(mat_path)
    if not path.exists():
        raise DataError("file not found", file=str(path))
    try:
        contents = loadmat(path, variable_names=[variable])
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError… for a broken file
        raise DataError(f"cannot read as a MATLAB file ({type(exc).__name__}: {exc})", file=str(path)) from None
    if variable not in contents:
        raise DataError("variable not in the file", file=str(path), field=variable)
    table = np.asarray(contents[variable], dtype=np.float64)
    if table.ndim != 2 or table.size == 0:
        raise DataError(f"expected a raters × subjects matrix, got shape {table.shape}", file=str(path),
                        field=variable)
    return {f"P{column + 1}": [float(v) for v in table[:, column]] for column in range(table.shape[1])}
