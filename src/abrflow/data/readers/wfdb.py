"""Reader for PhysioNet WFDB records of EARNDB ("Evoked Auditory Responses in Normals"), shared/real/README.md.

Records are named ``N{subject}_evoked_ave{level}_F{kHz}_R{half}``: R1 and R2 are two
half-averages of one level. They become ONE row: ``signal`` = mean of the two halves,
``extra["half_a"]``/``["half_b"]`` = R1/R2 in the same time base and ``extra["split_half_r"]`` their
Pearson r over 1–10 ms (``abrflow.data.split_half_r``). A series is subject + frequency:
``patient_id`` ``N1``…, ``session_id`` ``F1``/``F4``, so 1 kHz and 4 kHz series stay apart.

Format and quirks (the ``wfdb`` package reads the format; it is imported only here):

- Signal 0 is the ABR; signal 1 is the OAE probe microphone in the ear canal, which records the
  tone burst itself: it is used only to find the stimulus onset (below), not kept in the records.
- Gain: every record is scaled to the full int32 range and the header's gain acts as a
  MULTIPLIER: ``(digital − baseline) × gain`` gives µV-sized values (peaks 0.06–0.6 µV) although
  the header names the unit nV. A stock reader divides and returns ~1e18, so the raw digital
  values are read (``physical=False``) and multiplied. Each half's window is then checked to be
  physiological (peak |x| within ``PEAK_RANGE_UV``); anything else is an error naming the file.
- Time zero is the stimulus onset heard in the ear canal, NOT sample 0: per series (subject +
  frequency) the microphone of its loudest level places the burst's onset
  (``_acoustic.burst_onset_index``), and every level of the series is cut there. The burst starts
  0.3–0.6 ms after sample 0 in most series but 5.3–5.7 ms after it in N3, N6 (1 kHz) and N8 (the
  data set's README assumes sample 0). ``extra["stimulus_onset_ms"]`` keeps the onset in the
  record's own time; where no microphone channel or too faint a burst cannot place it (a lone
  low-level pair), sample 0 is used with a logged warning and ``extra["onset_from_microphone"]``
  False. From the onset each half (48 kHz) is resampled to the model's rate with
  ``resample_poly`` (20 000/48 000 = 5/12) and cut to ``signal_length`` samples.
- ``N8_evoked_ave55_F1_R2.dat`` has no header: a ``.dat`` without ``.hea`` is read with its twin
  half's header (same subject, level and frequency; the gain is then the twin's, so that half's
  scale is approximate — the twin gains of this data set differ by a factor 0.65–1.8), with a
  logged warning and ``warnings.warn`` naming the file, and ``extra["header_borrowed"]`` True.

Comment line ``<SPL>: 10 <Stim Freq (kHz)>:1 <Ear>: r <Total Trials Used>:3953 <wnsfmp>:0.75243
<residual noise level>: 4.1792 <Condition>: Normal`` maps to:

- ``intensity_db`` = SPL, which for these tone bursts is dB peSPL, not dB nHL:
  ``extra["level_unit"] = "dB peSPL"`` says so; ``extra["stimulus_frequency_khz"]`` from
  ``Stim Freq (kHz)``; ``extra["stimulus_type"]`` "tone_burst" (the data set's stimulus: the file
  gives only the frequency). The polarity is not recorded (``abrflow.data.stimulus``: unknown).
- ``ear`` r/l → R/L; ``hearing_loss`` from Condition (Normal → 0 NORMAL).
- ``fmp`` = mean of the halves' ``wnsfmp`` (the export has no Fmp of the combined average);
  the halves' values are kept in ``extra["fmp_half_a"]``/``["fmp_half_b"]``.
- ``extra["sweeps"]`` = total trials of both halves; the halves' residual noise levels (unit not
  stated in the file) in ``extra["residual_noise_half_a"]``/``["residual_noise_half_b"]``.
- Age, stimulus rate and threshold are not in the files: NaN. (The lowest level of a series is
  the listener's behavioural threshold in dB peSPL; it is not written into ``threshold_db``,
  which is dB nHL.)
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..halves import split_half_r
from ..records import ABRRecords
from ..schema import class_code, empty_rows
from ..timebase import check_time_base, resampling_ratio, samples_needed, window_from_onset
from ._acoustic import burst_onset_index
from ._common import EAR_NAMES
from ._wfdb_files import Half, RecordName, import_wfdb, read_half, record_name

logger = logging.getLogger(__name__)

PEAK_RANGE_UV = (0.005, 5.0)
LEVEL_UNIT = "dB peSPL"
STIMULUS_TYPE = "tone_burst"  # EARNDB's stimuli (shared/real/README.md); the comment line gives only the frequency
SPLIT_HALF_WINDOW_MS = (1.0, 10.0)


def _cut(half: Half, onset: int, *, signal_length: int, sampling_rate_hz: float) -> np.ndarray:
    """The half's window from sample ``onset`` at the model's rate, checked to be physiological."""
    file = str(half.name.path(".dat"))
    try:
        ratio = resampling_ratio(sampling_rate_hz, half.source_hz)
    except ValueError as exc:
        raise DataError(str(exc), file=str(half.header_file), field="fs") from None
    needed = samples_needed(signal_length, ratio)
    after = len(half.abr_uv) - onset
    if after < needed:
        raise DataError(f"{after} samples at {half.source_hz:g} Hz after the stimulus onset (sample {onset}) cannot "
                        f"cover {signal_length} samples at {sampling_rate_hz:g} Hz (need {needed})", file=file,
                        field="sig_len")
    window = window_from_onset(half.abr_uv[onset:], ratio, signal_length)
    peak = float(np.max(np.abs(window)))
    low, high = PEAK_RANGE_UV
    if not low <= peak <= high:
        raise DataError(f"peak |ABR| {peak:.3g} µV in the window is not physiological ({low}–{high} µV); the "
                        f"header gain {half.gain:g} is expected to multiply the int32 samples", file=file,
                        field="amplitude")
    return window


def _series_onsets(pairs: list[tuple[Half, Half]]) -> dict[tuple[str, str], tuple[int, bool]]:
    """Per series (subject, kHz): (onset sample, placed by the microphone?) from its loudest level.

    The onset is a property of the set-up, the same at every level of a series (measured: within
    0.05 ms from 30 dB up), and the loudest level places it best.
    """
    loudest: dict[tuple[str, str], tuple[Half, Half]] = {}
    for a, b in pairs:
        key = (a.name.subject, a.name.khz)
        if key not in loudest or int(a.name.level) > int(loudest[key][0].name.level):
            loudest[key] = (a, b)
    onsets = {}
    for key, (a, b) in loudest.items():
        mics = [h.microphone for h in (a, b) if h.microphone is not None]
        index, ratio = (None, 0.0)
        if mics:
            length = min(len(m) for m in mics)
            index, ratio = burst_onset_index(np.mean([m[:length] for m in mics], axis=0), a.source_hz,
                                             1000.0 * int(a.name.khz))
        if index is None:
            why = "has no microphone channel" if not mics else f"holds too faint a burst (peak/median {ratio:.0f})"
            message = (f"{a.name.path('.dat')}: the ear-canal microphone {why}, so the stimulus onset of series "
                       f"N{a.name.subject} F{a.name.khz} cannot be placed; taking sample 0 as onset")
            logger.warning(message)
            warnings.warn(message, stacklevel=3)
        onsets[key] = (index or 0, index is not None)
    return onsets


# ---------------------------------------------------------------- pairs → rows


def _check_pair(a: Half, b: Half) -> None:
    """Both halves must describe the same level, frequency, ear and condition as their names."""
    for half in (a, b):
        file = str(half.header_file)
        if half.number("SPL") != int(half.name.level):
            raise DataError(f"SPL {half.comments['SPL']} but the file name says level {half.name.level}", file=file,
                            row="comment line", field="SPL")
        if half.number("Stim Freq (kHz)") != int(half.name.khz):
            raise DataError(f"Stim Freq {half.comments['Stim Freq (kHz)']} kHz but the file name says F"
                            f"{half.name.khz}", file=file, row="comment line", field="Stim Freq (kHz)")
    for key in ("Ear", "Condition"):
        if a.comments[key].casefold() != b.comments[key].casefold():
            raise DataError(f"the halves disagree: R1 says {a.comments[key]!r}, R2 says {b.comments[key]!r} "
                            f"({b.header_file.name})", file=str(a.header_file), row="comment line",
                            field=key)


def _row_values(a: Half, b: Half) -> dict[str, object]:
    file = str(a.header_file)
    ear = EAR_NAMES.get(a.comments["Ear"].casefold())
    if ear is None:
        raise DataError(f"unknown ear {a.comments['Ear']!r}; expected r or l", file=file, row="comment line",
                        field="Ear")
    try:
        condition = class_code(a.comments["Condition"], where="Condition")
    except DataError as exc:
        raise DataError(exc.reason, file=file, row="comment line", field="Condition") from None
    trials = []
    for half in (a, b):
        value = half.number("Total Trials Used")
        if not value.is_integer() or value < 0:
            raise DataError(f"expected a whole count, got {value!r}", file=str(half.header_file),
                            row="comment line", field="Total Trials Used")
        trials.append(int(value))
    return {"ear": ear, "hearing_loss": condition, "sweeps": sum(trials),
            "intensity_db": a.number("SPL"), "khz": a.number("Stim Freq (kHz)"),
            "fmp": (a.number("wnsfmp"), b.number("wnsfmp")),
            "noise": (a.number("residual noise level"), b.number("residual noise level"))}


def _records(pairs: list[tuple[Half, Half]], windows: np.ndarray, onsets: dict[tuple[str, str], tuple[int, bool]],
             sampling_rate_hz: float, source: str) -> ABRRecords:
    """One row per pair; ``windows`` [pairs, 2, T] holds each pair's two halves cut at its series' onset."""
    values = [_row_values(a, b) for a, b in pairs]
    placed = [onsets[(a.name.subject, a.name.khz)] for a, _ in pairs]
    n = len(pairs)
    half_a = windows[:, 0].astype(np.float32)
    half_b = windows[:, 1].astype(np.float32)
    fmp = np.array([v["fmp"] for v in values])
    noise = np.array([v["noise"] for v in values])
    rows = empty_rows(n)
    rows.update(
        patient_id=np.array([f"N{a.name.subject}" for a, _ in pairs]),
        session_id=np.array([f"F{a.name.khz}" for a, _ in pairs]),
        ear=np.array([v["ear"] for v in values]),
        intensity_db=np.array([v["intensity_db"] for v in values]),
        fmp=fmp.mean(axis=1),
        hearing_loss=np.array([v["hearing_loss"] for v in values], np.int8))
    signal = (windows[:, 0] + windows[:, 1]) / 2.0
    return ABRRecords(
        signal=signal, sampling_rate_hz=sampling_rate_hz, signal_unit="uV", threshold_source="unknown",
        source=source, **rows,
        extra={
            "half_a": half_a,
            "half_b": half_b,
            "split_half_r": split_half_r(half_a, half_b, sampling_rate_hz, start_ms=SPLIT_HALF_WINDOW_MS[0],
                                         stop_ms=SPLIT_HALF_WINDOW_MS[1]),
            "sweeps": np.array([v["sweeps"] for v in values], np.int64),
            "fmp_half_a": fmp[:, 0].astype(np.float32),
            "fmp_half_b": fmp[:, 1].astype(np.float32),
            "residual_noise_half_a": noise[:, 0].astype(np.float32),
            "residual_noise_half_b": noise[:, 1].astype(np.float32),
            "stimulus_type": np.full(n, STIMULUS_TYPE),
            "stimulus_frequency_khz": np.array([v["khz"] for v in values], np.float32),
            "level_unit": np.full(n, LEVEL_UNIT),
            "header_borrowed": np.array([a.header_borrowed or b.header_borrowed for a, b in pairs]),
            "stimulus_onset_ms": np.array([1000.0 * i / a.source_hz for (i, _), (a, _) in zip(placed, pairs)],
                                          np.float32),
            "onset_from_microphone": np.array([bool(m) for _, m in placed]),
            "record": np.array([a.name.pair for a, _ in pairs]),
        })


# ---------------------------------------------------------------- public API


def _pairs_in(path: Path) -> list[RecordName]:
    """The R1 name of every level pair: all records of a folder, or the pair of one record path."""
    if not path.is_dir():
        name = record_name(path)
        return [name if name.half == 1 else name.twin()]
    files = [p for p in path.iterdir() if p.is_file() and p.suffix in (".hea", ".dat")]
    if not files:
        raise DataError("no WFDB records (.hea/.dat) in the folder", file=str(path))
    names = {record_name(p) for p in files}
    for name in names:
        if name.twin() not in names:
            raise DataError(f"half R{name.half} has no twin R{3 - name.half} of the same level: a level needs both "
                            "half-averages", file=str(name.path(".dat")))
    firsts = {n if n.half == 1 else n.twin() for n in names}
    return sorted(firsts, key=lambda n: n.order)


def read_wfdb(path_or_folder: str | os.PathLike, *, signal_length: int = 200,
              sampling_rate_hz: float = 20000.0) -> ABRRecords:
    """Read EARNDB WFDB records: a folder (every level pair in it) or one record's pair.

    A single ``.hea``/``.dat`` path or a record path without extension reads that level's two
    halves (R1 and R2) into one row. See the module docstring for the mapping and the quirks.
    """
    signal_length = check_time_base(signal_length, sampling_rate_hz)
    path = Path(path_or_folder)
    bare_record = bool(path.name) and any(path.with_name(path.name + s).exists() for s in (".hea", ".dat"))
    if not path.exists() and not bare_record:
        raise DataError("file not found", file=str(path))
    wfdb = import_wfdb(str(path))
    pairs = []
    for first in _pairs_in(path):
        a, b = read_half(wfdb, first), read_half(wfdb, first.twin())
        _check_pair(a, b)
        pairs.append((a, b))
    onsets = _series_onsets(pairs)
    windows = np.stack([[_cut(half, onsets[(a.name.subject, a.name.khz)][0], signal_length=signal_length,
                              sampling_rate_hz=sampling_rate_hz) for half in (a, b)] for a, b in pairs])
    records = _records(pairs, windows, onsets, sampling_rate_hz, source=f"wfdb:{path.name}")
    try:
        return records.validate()
    except DataError as exc:
        if isinstance(exc.row, int):
            half = pairs[exc.row][0]
            raise DataError(exc.reason, file=str(half.header_file), row=half.name.pair, field=exc.field) from None
        raise
