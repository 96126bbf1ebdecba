"""EARNDB's files, one half-average at a time: record names, WFDB headers checked before any sample is
read, the gain quirk, the comment line. ``wfdb.py`` pairs the halves into records."""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"N(?P<subject>\d+)_evoked_ave(?P<level>\d+)_F(?P<khz>\d+)_R(?P<half>[12])")
COMMENT_KEYS = ("SPL", "Stim Freq (kHz)", "Ear", "Total Trials Used", "wnsfmp", "residual noise level", "Condition")
ABR_SIGNAL = 0
MICROPHONE_SIGNAL = 1
BYTES_PER_SAMPLE = {"32": 4}  # the formats this reader accepts (EARNDB uses little-endian int32)


@dataclass(frozen=True)
class RecordName:
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

    def twin(self) -> RecordName:
        return RecordName(self.folder, self.subject, self.level, self.khz, 3 - self.half)


@dataclass
class Half:
    """One half-average read and checked: the whole ABR in µV, the microphone, the comment values."""

    name: RecordName
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


def import_wfdb(file: str):
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


def record_name(path: Path) -> RecordName:
    match = NAME_PATTERN.fullmatch(path.name.removesuffix(path.suffix) if path.suffix in (".hea", ".dat")
                                   else path.name)
    if match is None:
        raise DataError("not an EARNDB record name N{subject}_evoked_ave{level}_F{kHz}_R{1|2}", file=str(path))
    return RecordName(path.parent, match["subject"], match["level"], match["khz"], int(match["half"]))


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


def _read_header(wfdb, header_name: RecordName, dat: Path):
    """The parsed and checked header of ``header_name``, for the signal file ``dat``."""
    header_file = header_name.path(".hea")
    try:
        header = wfdb.rdheader(str(header_name.path("")))
    except Exception as exc:  # wfdb raises IndexError, ValueError, … for a malformed header
        raise DataError(f"cannot read the WFDB header ({type(exc).__name__}: {exc})", file=str(header_file)) from None
    _check_header(header, str(header_file), dat)
    return header


def _digital(wfdb, name: RecordName, header_name: RecordName) -> tuple[np.ndarray, object]:
    """Raw int samples [n, signals] and the header they were read with (the twin's when borrowed).

    The header is parsed and checked against the signal file's size *before* any sample is read,
    and the (checked) interleaved little-endian int32 layout of format 32 is then read directly:
    wfdb's own reader allocates what a header declares, so a damaged header (``2002`` samples
    become ``2002000000``) would make it fill 16 GB before noticing the file holds 16 kB.
    """
    dat = name.path(".dat")
    header = _read_header(wfdb, header_name, dat)
    return np.fromfile(dat, "<i4").reshape(header.sig_len, header.n_sig), header


def read_half(wfdb, name: RecordName) -> Half:
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
    return Half(name, microvolts, microphone, float(header.fs), float(gain), comments,
                 header_file=header_name.path(".hea"))
