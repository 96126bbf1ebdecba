"""The model's time base: a fixed window of samples from stimulus onset, at a fixed rate (DESIGN.md §3).

Every reader and ``ABRInference.analyse`` cut and resample a recording the same way through these
functions: resample with ``scipy.signal.resample_poly`` by an exact small ratio, cut from stimulus
onset, never pad (a recording too short for the window is an error). Some sources carry their own
time base already (abrflow records, the original project's pickle): they are read as stored.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from ..errors import ConfigError

#: File types stored already on a model's time base: read as they are, never cut or resampled
#: (abrflow ``.npz`` records; the original project's pickle, 200 samples per recording).
OWN_TIME_BASE_SUFFIXES: tuple[str, ...] = (".npz", ".pkl", ".pickle")


def carries_own_time_base(path: str | os.PathLike) -> bool:
    """True for a source whose recordings are stored on a time base already (see
    ``OWN_TIME_BASE_SUFFIXES``; a records directory too): a reader takes no window options for it."""
    p = Path(path)
    return p.suffix.lower() in OWN_TIME_BASE_SUFFIXES or (p / "abrflow_records.json").is_file()


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
