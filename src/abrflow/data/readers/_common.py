"""Helpers every reader needs: the model's time base, resampling from onset, text, ears, split-half r.

Kept in one place so that all readers cut, resample and check a window the same way
(DESIGN.md §3: resample with ``scipy.signal.resample_poly``, cut from stimulus onset, never pad).
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from ...errors import ConfigError, DataError

#: Side names seen in clinic exports (English and Turkish), case-folded → ear code.
EAR_NAMES = {"left": "L", "l": "L", "sol": "L", "right": "R", "r": "R", "sağ": "R", "sag": "R"}
#: Largest denominator of the resampling ratio (target/source rate) that ``resample_poly`` is given.
MAX_RATIO_DENOMINATOR = 1000
#: Largest upsampling factor (target/source rate): a lower source rate cannot carry an ABR, and a
#: huge factor (a damaged rate field) would make ``resample_poly`` build millions of samples.
MAX_UPSAMPLING = 10


def check_time_base(signal_length: int, sampling_rate_hz: float) -> int:
    """The model's window as an int length; a bad option is a ConfigError, not a data error."""
    if int(signal_length) != signal_length or signal_length < 2:
        raise ConfigError(f"signal_length must be an integer >= 2, got {signal_length!r}")
    if not np.isfinite(sampling_rate_hz) or sampling_rate_hz <= 0:
        raise ConfigError(f"sampling_rate_hz must be positive, got {sampling_rate_hz!r}")
    return int(signal_length)


def resampling_ratio(target_hz: float, source_hz: float) -> Fraction:
    """up/down (= target/source rate) for ``resample_poly``; ValueError if no exact small ratio exists.

    Callers turn the ValueError into a ConfigError (a rate the user passed) or a DataError
    (a rate read from a file), so the message can name the right culprit.
    """
    if not np.isfinite(source_hz) or source_hz <= 0:
        raise ValueError(f"source sampling rate must be positive, got {source_hz!r}")
    if source_hz == target_hz:
        return Fraction(1)
    exact = target_hz / source_hz
    if not math.isfinite(exact) or exact > MAX_UPSAMPLING:  # e.g. a damaged 48000 Hz read as 4 Hz
        raise ValueError(f"source sampling rate {source_hz:g} Hz is too low for the model's {target_hz:g} Hz "
                         f"(at most {MAX_UPSAMPLING}× upsampling)")
    ratio = Fraction(exact).limit_denominator(MAX_RATIO_DENOMINATOR)
    if ratio == 0 or abs(float(ratio) - exact) > 1e-6 * exact:
        raise ValueError(f"cannot resample {source_hz:g} Hz to {target_hz:g} Hz with a rational ratio of "
                         f"denominator <= {MAX_RATIO_DENOMINATOR} (best {ratio})")
    return ratio


def samples_needed(signal_length: int, ratio: Fraction) -> int:
    """Source samples from onset needed so that the last target sample lies inside the recording."""
    return math.ceil((signal_length - 1) / ratio) + 1


def window_from_onset(samples: np.ndarray, ratio: Fraction, signal_length: int) -> np.ndarray:
    """``samples`` [..., n] start at stimulus onset; returns [..., signal_length] at the target rate.

    The caller checks ``n >= samples_needed(...)`` first (and says which file is short); here a
    short input is a programming error.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.shape[-1] < samples_needed(signal_length, ratio):
        raise ValueError(f"{samples.shape[-1]} samples cannot cover a {signal_length}-sample window")
    if ratio == 1:
        return samples[..., :signal_length].copy()
    resampled = resample_poly(samples, ratio.numerator, ratio.denominator, axis=-1)
    return resampled[..., :signal_length]


def split_half_r(half_a: np.ndarray, half_b: np.ndarray, sampling_rate_hz: float, *,
                 start_ms: float = 1.0, stop_ms: float = 10.0) -> np.ndarray:
    """Pearson r between two half-averages [N, T] over ``start_ms <= t < stop_ms`` after onset.

    Replication of the two halves is how clinicians judge that a response is real: a response
    gives r near 1, noise alone r near 0. The first millisecond is left out because it holds the
    stimulus artefact, which replicates whether or not the brainstem answered. NaN where the
    window holds fewer than 3 samples or a half is flat (r is undefined there).
    """
    half_a = np.asarray(half_a, np.float64)
    half_b = np.asarray(half_b, np.float64)
    t_ms = np.arange(half_a.shape[-1]) * 1000.0 / sampling_rate_hz
    inside = (t_ms >= start_ms) & (t_ms < stop_ms)
    if inside.sum() < 3:
        return np.full(half_a.shape[0], np.nan, np.float32)
    a = half_a[:, inside] - half_a[:, inside].mean(axis=1, keepdims=True)
    b = half_b[:, inside] - half_b[:, inside].mean(axis=1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denominator > 0, (a * b).sum(axis=1) / denominator, np.nan)
    return r.astype(np.float32)


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
