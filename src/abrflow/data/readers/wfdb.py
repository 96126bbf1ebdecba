"""Reader for PhysioNet WFDB records of EARNDB ("Evoked Auditory Responses in Normals"), shared/real/README.md.

Records are named ``N{subject}_evoked_ave{level}_F{kHz}_R{half}``: R1 and R2 are two
half-averages of one level. They become ONE row: ``signal`` = mean of the two halves,
``extra["half_a"]``/``["half_b"]`` = R1/R2 in the same time base and ``extra["split_half_r"]`` their
Pearson r over 1–10 ms (``_common.split_half_r``). A series is subject + frequency:
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
  ``extra["level_unit"] = "dB peSPL"`` says so; ``extra["stimulus_frequency_khz"]``.
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
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..records import ABRRecords, class_code, empty_rows
from ._acoustic import burst_onset_index
from ._common import (
    EAR_NAMES,
    check_time_base,
    resampling_ratio,
    samples_needed,
    split_half_r,
    window_from_onset,
)

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"N(?P<subject>\d+)_evoked_ave(?P<level>\d+)_F(?P<khz>\d+)_R(?P<half>[12])")
COMMENT_KEYS = ("SPL", "Stim Freq (kHz)", "Ear", "Total Trials Used", "wnsfmp", "residual noise level", "Condition")
PEAK_RANGE_UV = (0.005, 5.0)
LEVEL_UNIT = "dB peSPL"
SPLIT_HALF_WINDOW_MS = (1.0, 10.0)
ABR_SIGNAL = 0
MICROPHONE_SIGNAL = 1
BYTES_PER_SAMPLE = {"32": 4}  # the formats this reader accepts (EARNDB uses little-endian int32)


@dataclass(frozen=True)
class _Name:
    """What a record's file name says: subject, level, frequency (digits as written) and which half."""

    folder: Path
    subject: str
    level: str
    khz: str
    half: int

    @property
    def stem(self) -> str:
        return f"N{self.subject}_evoked_ave{self.level}_F{self.khz}_R{self.half}"

    @property
    def order(self) -> tuple[int, int, int]:
        return int(self.subject), int(self.khz), int(self.level)

    @property
    def pair(self) -> str:
        return f"N{self.subject}_evoked_ave{self.level}_F{self.khz}"

    def path(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}{suffix}"

    def twin(self) -> _Name:
        return _Name(self.folder, self.subject, self.level, self.khz, 3 - self.half)


@dataclass
class _Half:
    """One half-average read and checked: the whole ABR in µV, the microphone, the comment values."""

    name: _Name
    abr_uv: np.ndarray  # the whole record at the source rate
    microphone: np.ndarray | None  # raw samples of the ear-canal microphone, None without one
    source_hz: float
    gain: float  # the header's gain (a multiplier in EARNDB)
    comments: dict[str, str]
    header_file: Path  # the twin's header when this half has none

    @property
    def header_borrowed(self) -> bool:
        return self.header_file != self.name.path(".hea")

    def number(self, key: str) -> float:
        try:
            return float(self.comments[key])
        except ValueError:
            raise DataError(f"expected a number, got {self.comments[key]!r}", file=str(self.header_file),
                            row="comment line", field=key) from None


def _import_wfdb(file: str):
    try:
        with warnings.catch_warnings():
            # wfdb's own import raises pandas deprecation warnings that say nothing about the data.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            import wfdb
    except ImportError:
        raise DataError("reading WFDB records needs the wfdb package: pip install 'abrflow[wfdb]'",
                        file=file) from None
    return wfdb


def _name(path: Path) -> _Name:
    match = NAME_PATTERN.fullmatch(path.name.removesuffix(path.suffix) if path.suffix in (".hea", ".dat")
                                   else path.name)
    if match is None:
        raise DataError("not an EARNDB record name N{subject}_evoked_ave{level}_F{kHz}_R{1|2}", file=str(path))
    return _Name(path.parent, match["subject"], match["level"], match["khz"], int(match["half"]))


# ---------------------------------------------------------------- one half


def _comments(lines: list[str], file: str) -> dict[str, str]:
    text = " ".join(lines)
    found = {k.strip(): v.strip() for k, v in re.findall(r"<([^>]+)>\s*:\s*([^<]*)", text)}
    for key in COMMENT_KEYS:
        if not found.get(key):
            raise DataError("missing in the header's comment line", file=file, row="comment line", field=key)
    return found


def _check_header(header, file: str, dat: Path) -> None:
    """What this reader relies on; wfdb itself accepts headers that lack some of it."""
    n_sig = header.n_sig or 0
    if n_sig < 1 or len(header.fmt or []) != n_sig or len(header.adc_gain or []) != n_sig:
        raise DataError(f"header declares {n_sig} signals but describes {len(header.fmt or [])}", file=file,
                        field="signal lines")
    if header.fmt[ABR_SIGNAL] not in BYTES_PER_SAMPLE or len(set(header.fmt)) != 1:
        raise DataError(f"sample formats {header.fmt}; this reader handles format 32 (int32) only", file=file,
                        field="fmt")
    if any(spf not in (None, 1) for spf in (header.samps_per_frame or [])) or \
            any(offset not in (None, 0) for offset in (header.byte_offset or [])):
        raise DataError(f"samples per frame {header.samps_per_frame} / byte offsets {header.byte_offset}; this "
                        "reader handles one sample per frame from the start of the file only", file=file,
                        field="signal lines")
    if not isinstance(header.sig_len, int) or header.sig_len < 1:
        raise DataError(f"signal length {header.sig_len!r} is not a positive count", file=file, field="sig_len")
    if not header.fs or header.fs <= 0:
        raise DataError(f"sampling frequency {header.fs!r} is not positive", file=file, field="fs")
    if not dat.exists():
        raise DataError("the signal file is missing", file=str(dat))
    expected = header.sig_len * n_sig * BYTES_PER_SAMPLE[header.fmt[ABR_SIGNAL]]
    if dat.stat().st_size != expected:
        raise DataError(f"{dat.stat().st_size} bytes, but the header ({file}) describes {header.sig_len} samples "
                        f"× {n_sig} signals = {expected} bytes: truncated or wrong header", file=str(dat),
                        field="sig_len")


def _read_header(wfdb, header_name: _Name, dat: Path):
    """The parsed and checked header of ``header_name``, for the signal file ``dat``."""
    header_file = header_name.path(".hea")
    try:
        header = wfdb.rdheader(str(header_name.path("")))
    except Exception as exc:  # wfdb raises IndexError, ValueError, … for a malformed header
        raise DataError(f"cannot read the WFDB header ({type(exc).__name__}: {exc})", file=str(header_file)) from None
    _check_header(header, str(header_file), dat)
    return header


def _digital(wfdb, name: _Name, header_name: _Name) -> tuple[np.ndarray, object]:
    """Raw int samples [n, signals] and the header they were read with (the twin's when borrowed).

    The header is parsed and checked against the signal file's size *before* any sample is read,
    and the (checked) interleaved little-endian int32 layout of format 32 is then read directly:
    wfdb's own reader allocates what a header declares, so a damaged header (``2002`` samples
    become ``2002000000``) would make it fill 16 GB before noticing the file holds 16 kB.
    """
    dat = name.path(".dat")
    header = _read_header(wfdb, header_name, dat)
    return np.fromfile(dat, "<i4").reshape(header.sig_len, header.n_sig), header


def _read_half(wfdb, name: _Name) -> _Half:
    if not name.path(".dat").exists():
        raise DataError("the signal file is missing (each level needs both halves, R1 and R2)",
                        file=str(name.path(".dat")))
    header_name = name
    if not name.path(".hea").exists():
        header_name = name.twin()
        if not header_name.path(".hea").exists():
            raise DataError(f"neither this half nor its twin R{header_name.half} has a header (.hea)",
                            file=str(name.path(".dat")))
        message = (f"{name.path('.dat')}: no header; reading it with the header of its twin "
                   f"{header_name.path('.hea').name} (same level; the twin's gain scales it)")
        logger.warning(message)
        warnings.warn(message, stacklevel=3)
    digital, header = _digital(wfdb, name, header_name)
    gain = header.adc_gain[ABR_SIGNAL]
    baseline = (header.baseline or [0] * header.n_sig)[ABR_SIGNAL] or 0
    if not gain or not np.isfinite(gain) or gain <= 0:
        raise DataError(f"gain {gain!r} is not a positive number", file=str(header_name.path(".hea")), field="gain")
    microvolts = (digital[:, ABR_SIGNAL].astype(np.float64) - baseline) * gain  # the EARNDB quirk: the gain multiplies
    microphone = digital[:, MICROPHONE_SIGNAL].astype(np.float64) if header.n_sig > MICROPHONE_SIGNAL else None
    comments = _comments(header.comments or [], str(header_name.path(".hea")))
    return _Half(name, microvolts, microphone, float(header.fs), float(gain), comments,
                 header_file=header_name.path(".hea"))


def _cut(half: _Half, onset: int, *, signal_length: int, sampling_rate_hz: float) -> np.ndarray:
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


def _series_onsets(pairs: list[tuple[_Half, _Half]]) -> dict[tuple[str, str], tuple[int, bool]]:
    """Per series (subject, kHz): (onset sample, placed by the microphone?) from its loudest level.

    The onset is a property of the set-up, the same at every level of a series (measured: within
    0.05 ms from 30 dB up), and the loudest level places it best.
    """
    loudest: dict[tuple[str, str], tuple[_Half, _Half]] = {}
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


def _check_pair(a: _Half, b: _Half) -> None:
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


def _row_values(a: _Half, b: _Half) -> dict[str, object]:
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


def _records(pairs: list[tuple[_Half, _Half]], windows: np.ndarray, onsets: dict[tuple[str, str], tuple[int, bool]],
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
            "stimulus_frequency_khz": np.array([v["khz"] for v in values], np.float32),
            "level_unit": np.full(n, LEVEL_UNIT),
            "header_borrowed": np.array([a.header_borrowed or b.header_borrowed for a, b in pairs]),
            "stimulus_onset_ms": np.array([1000.0 * i / a.source_hz for (i, _), (a, _) in zip(placed, pairs)],
                                          np.float32),
            "onset_from_microphone": np.array([bool(m) for _, m in placed]),
            "record": np.array([a.name.pair for a, _ in pairs]),
        })


# ---------------------------------------------------------------- public API


def _pairs_in(path: Path) -> list[_Name]:
    """The R1 name of every level pair: all records of a folder, or the pair of one record path."""
    if not path.is_dir():
        name = _name(path)
        return [name if name.half == 1 else name.twin()]
    files = [p for p in path.iterdir() if p.is_file() and p.suffix in (".hea", ".dat")]
    if not files:
        raise DataError("no WFDB records (.hea/.dat) in the folder", file=str(path))
    names = {_name(p) for p in files}
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
    wfdb = _import_wfdb(str(path))
    pairs = []
    for first in _pairs_in(path):
        a, b = _read_half(wfdb, first), _read_half(wfdb, first.twin())
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
