"""Normalisation statistics fitted on the training split only, stored in every checkpoint.

Signals get one global robust scale (a flat no-response trace stays flat, amplitude keeps its
meaning); `per_sample` z-scoring is available and is what legacy pickles already contain.
Static inputs are z-scored per input, NaN (unknown) stays NaN for the model's missing embedding.

Before scaling, every signal can be high-passed (``highpass_hz``; ``data.input_highpass_hz``, 30 Hz
by default): a zero-phase 2nd-order Butterworth, the same in training and inference. Exports without
a hardware high-pass (EARNDB) carry a baseline offset and drift the simulated cohort never shows;
30 Hz removes them and leaves the ABR's slowest part (SN10, ~100–200 Hz) nearly whole. On a window
of fixed length the filter is a linear map, applied as a matrix (``highpass_matrix``), so the ONNX
graph applies the same one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import scipy.signal

from ..errors import DataError
from .records import STATIC_FIELDS, ABRRecords

_MAD_TO_SD = 1.4826  # median absolute deviation → standard deviation for Gaussian data
#: Largest |signal| in model units (multiples of the training scale) the model is given: far beyond
#: any recording (1e9 × 0.1 µV = 100 V), below where its float32 arithmetic overflows (~1e19).
MAX_MODEL_UNITS = 1e9
#: Rows the signal scale is fitted on at most: 50,000 rows keep a clinic-sized cohort's scale exact
#: (its training split is ≈36k rows); a larger cohort is sampled, 10M values (40 MB) at 200 samples.
FIT_MAX_SIGNAL_ROWS = 50_000


def _signal_sample(records: ABRRecords, rows: np.ndarray, max_rows: int) -> np.ndarray:
    """A float32 copy of the signal of ``rows`` (at most ``max_rows`` evenly spaced ones), read row by row
    from a memory-mapped file (nothing else of the file becomes resident)."""
    from .records_dir import read_rows

    if len(rows) > max_rows:
        rows = rows[np.linspace(0, len(rows) - 1, max_rows).round().astype(np.int64)]
    return read_rows(records.signal, rows).astype(np.float32, copy=False)


@lru_cache(maxsize=8)
def _highpass_sos(sampling_rate_hz: float, highpass_hz: float) -> np.ndarray:
    return scipy.signal.butter(2, highpass_hz, btype="highpass", fs=sampling_rate_hz, output="sos")


@lru_cache(maxsize=8)
def highpass_matrix(n_samples: int, sampling_rate_hz: float, highpass_hz: float) -> np.ndarray:
    """M [T, T] with ``x @ M`` = ``sosfiltfilt`` of x (zero-phase 2nd-order Butterworth high-pass):
    row i of M is the filtered unit impulse at sample i; the ONNX graph applies it. Read-only."""
    matrix = scipy.signal.sosfiltfilt(_highpass_sos(sampling_rate_hz, highpass_hz), np.eye(n_samples),
                                      axis=-1).astype(np.float32)
    matrix.setflags(write=False)
    return matrix


def _highpass(signal: np.ndarray, sampling_rate_hz: float, highpass_hz: float | None) -> np.ndarray:
    """float32 [..., T] through the input high-pass (unchanged when ``highpass_hz`` is None).

    ``sosfiltfilt`` itself, not the matrix: a NumPy matmul wakes OpenBLAS's own threads, which
    then spin beside torch's and cost a quarter of the training throughput on 2 cores."""
    signal = np.asarray(signal, np.float32)
    if highpass_hz is None:
        return signal
    sos = _highpass_sos(float(sampling_rate_hz), float(highpass_hz))
    return scipy.signal.sosfiltfilt(sos, signal, axis=-1).astype(np.float32)


@dataclass(frozen=True)
class NormalizationStats:
    mode: str
    signal_scale: float
    static_mean: tuple[float, float, float, float]
    static_std: tuple[float, float, float, float]
    signal_unit: str = "uV"
    highpass_hz: float | None = None  # None: no input filter (checkpoints written before it existed)
    sampling_rate_hz: float | None = None  # the time base the filter was designed for

    @classmethod
    def fit(cls, records: ABRRecords, mode: str = "global_robust", *, rows: np.ndarray | None = None,
            max_signal_rows: int = FIT_MAX_SIGNAL_ROWS, highpass_hz: float | None = None) -> NormalizationStats:
        """Fit on (training) records, or on their ``rows`` (indices) without copying the rest.

        The signal scale is exact up to ``max_signal_rows`` rows; above that it is fitted on that many
        evenly spaced rows (records are ordered by patient, so every part of the cohort is in the
        sample), read in chunks: a memory-mapped cohort of any size is never read whole. Static
        statistics always use every row.
        """
        rows = np.arange(len(records)) if rows is None else np.asarray(rows)
        fs = float(records.sampling_rate_hz)
        if highpass_hz is not None and not 0 < highpass_hz < fs / 2:
            raise DataError(f"input high-pass {highpass_hz:g} Hz must lie between 0 and Nyquist ({fs / 2:g} Hz)",
                            field="data.input_highpass_hz")
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        if len(rows) == 0:
            raise DataError("cannot fit normalisation on zero recordings")
        if mode == "global_robust":
            x = _highpass(_signal_sample(records, rows, max_signal_rows), fs, highpass_hz)
            sd = float(np.std(x))
            x -= np.median(x)  # in place: one copy of the sample at a time
            np.abs(x, out=x)
            scale = float(_MAD_TO_SD * np.median(x, overwrite_input=True))
            if not np.isfinite(scale) or scale <= 0:
                scale = sd
            if not np.isfinite(scale) or scale <= 0:
                raise DataError("signals are constant; cannot fit a signal scale", file=records.source or None)
        elif mode in ("per_sample", "none"):
            scale = 1.0
        else:
            raise DataError(f"unknown normalisation mode {mode!r}")
        static = np.stack([getattr(records, f)[rows] for f in STATIC_FIELDS], axis=1).astype(np.float64)
        mean = np.zeros(4)
        std = np.ones(4)
        for i in range(4):
            col = static[:, i][np.isfinite(static[:, i])]
            if col.size:
                mean[i] = col.mean()
                sd = col.std()
                std[i] = sd if sd > 1e-6 else 1.0
        return cls(mode=mode, signal_scale=scale, static_mean=tuple(map(float, mean)),
                   static_std=tuple(map(float, std)), signal_unit=records.signal_unit,
                   highpass_hz=None if highpass_hz is None else float(highpass_hz),
                   sampling_rate_hz=fs if highpass_hz is not None else None)

    # --------------------------------------------------------------- transforms
    def filter_signal(self, signal: np.ndarray) -> np.ndarray:
        """The input high-pass (identity when ``highpass_hz`` is None), float32 [..., T]."""
        return _highpass(signal, self.sampling_rate_hz, self.highpass_hz)

    def normalize_signal(self, signal: np.ndarray) -> np.ndarray:
        """Model units; a signal too large to scale (|x| beyond float32 after scaling) is a DataError,
        not NaN predictions: a finite 1e30 µV (a unit mistake) must not pass silently."""
        with np.errstate(over="ignore", invalid="ignore"):
            signal = self.filter_signal(signal)
            if self.mode == "per_sample":
                mu = signal.mean(axis=-1, keepdims=True)
                sd = signal.std(axis=-1, keepdims=True)
                out = ((signal - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
            else:
                out = (signal / self.signal_scale).astype(np.float32)
        bad = ~(np.abs(out) <= MAX_MODEL_UNITS)  # NaN compares False: caught too
        if bad.any():
            rows = bad.reshape(-1, out.shape[-1] if out.ndim else 1).any(axis=-1)
            raise DataError(f"signal row {int(np.argmax(rows))} is beyond {MAX_MODEL_UNITS:g} model units after "
                            f"scaling (scale {self.signal_scale:g} {self.signal_unit}): values too large or NaN/inf; "
                            "check the signal unit", field="signal")
        return out

    def denormalize_signal(self, signal: np.ndarray) -> np.ndarray:
        """Back to the records' unit (µV for global scaling; per-sample z-scores cannot be undone)."""
        return (np.asarray(signal, np.float32) * self.signal_scale).astype(np.float32)

    def normalize_static(self, static: np.ndarray) -> np.ndarray:
        static = np.asarray(static, np.float32)
        return ((static - np.asarray(self.static_mean, np.float32)) / np.asarray(self.static_std, np.float32))

    def denormalize_static(self, static: np.ndarray) -> np.ndarray:
        static = np.asarray(static, np.float32)
        return static * np.asarray(self.static_std, np.float32) + np.asarray(self.static_mean, np.float32)

    # --------------------------------------------------------------- storage
    def to_dict(self) -> dict:
        d = asdict(self)
        d["static_fields"] = list(STATIC_FIELDS)
        d["static_mean"] = list(self.static_mean)
        d["static_std"] = list(self.static_std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NormalizationStats:
        try:
            return cls(mode=str(d["mode"]), signal_scale=float(d["signal_scale"]),
                       static_mean=tuple(float(v) for v in d["static_mean"]),
                       static_std=tuple(float(v) for v in d["static_std"]),
                       signal_unit=str(d.get("signal_unit", "uV")),
                       highpass_hz=None if d.get("highpass_hz") is None else float(d["highpass_hz"]),
                       sampling_rate_hz=None if d.get("sampling_rate_hz") is None else float(d["sampling_rate_hz"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"stored normalisation statistics are incomplete ({exc})") from exc
