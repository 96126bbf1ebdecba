"""Classical per-ear thresholds from a level series, read beside the model's.

- :func:`series_threshold_crosscov`: the cross-covariance threshold of Suthakar & Liberman (2019).
- :func:`series_threshold_lowest_peak`: the lowest level where the picker finds V.
- :func:`series_threshold_lowest_tested`: the protocol floor, which reads no waveform at all.

The cross-covariance criterion was set once on ``simulate_cohort(600, seed=1234)`` and is NOT
tuned for threshold error: the simulated protocol stops one or two steps below θ, so the lowest
tested level alone is within 2 dB of the attainable θ on average, and error-tuning drives the
criterion down to the median of pure noise (≈0.27). It is set instead at the 90th percentile of
the cross-covariance of sub-threshold levels (0.49 → 0.5): a level without a response passes by
chance about one time in ten, which is what a clinic testing further below θ needs.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from ..data.records import ABRRecords
from .norms import normative_v_latency_ms
from .picker import ANALYSIS_START_MS, band_pass
from .series import series_rows

#: Cross-covariance criterion (Suthakar & Liberman 2019), for each level against the highest level and
#: for the reproducibility of the highest level's runs (see the module docstring for how it was set).
CROSSCOV_CRITERION = 0.5
#: Lag search (ms) around the normative latency shift between a level and the highest level.
CROSSCOV_LAG_MS: tuple[float, float] = (-0.5, 1.0)
#: Lag search (ms) between runs at the same (highest) level.
REPLICATE_LAG_MS = 0.5


def _max_crosscov(a: np.ndarray, b: np.ndarray, lags: np.ndarray, lag_lo: int, lag_hi: int) -> float:
    """Largest normalised cross-covariance ('coeff') of two traces within a lag range (samples)."""
    a = a - a.mean()
    b = b - b.mean()
    norm = np.sqrt((a @ a) * (b @ b))
    if norm <= 0:
        return 0.0
    xc = scipy.signal.correlate(a, b, mode="full") / norm
    sel = (lags >= lag_lo) & (lags <= lag_hi)
    return float(xc[sel].max())


def crosscov_by_level(records: ABRRecords, rows: np.ndarray, filtered: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(levels_db descending, cross-covariance per level) for one series.

    The reference is the mean trace at the highest level. Each lower level's mean trace is compared
    with it at lags from 0.5 ms before to 1.0 ms after the normative latency shift between the two
    levels (V moves later as the level falls; more so in conductive loss): a narrow lag range
    keeps the chance maximum of noise low. The highest level itself is scored by its own
    reproducibility: the first run against the mean of the others, ±0.5 ms (NaN with a single run:
    it cannot be judged, and is taken as responding).
    """
    fs = records.sampling_rate_hz
    start = int(np.ceil(ANALYSIS_START_MS * fs / 1000.0))
    levels = records.intensity_db[rows]
    tested = np.unique(levels)[::-1]
    top_rows = rows[levels == tested[0]]
    reference = filtered[top_rows, start:].mean(axis=0)
    n = filtered.shape[1] - start
    lags = scipy.signal.correlation_lags(n, n, mode="full")
    age = records.age_years[rows[:1]]
    expected_top = normative_v_latency_ms(tested[:1], age)[0]
    values = np.empty(len(tested))
    if len(top_rows) >= 2:
        half = int(round(REPLICATE_LAG_MS * fs / 1000.0))
        values[0] = _max_crosscov(filtered[top_rows[0], start:], filtered[top_rows[1:], start:].mean(axis=0),
                                  lags, -half, half)
    else:
        values[0] = np.nan
    for j, level in enumerate(tested[1:], start=1):
        shift_ms = normative_v_latency_ms(np.array([level]), age)[0] - expected_top
        lag_lo = int(np.floor((shift_ms + CROSSCOV_LAG_MS[0]) * fs / 1000.0))
        lag_hi = int(np.ceil((shift_ms + CROSSCOV_LAG_MS[1]) * fs / 1000.0))
        trace = filtered[rows[levels == level], start:].mean(axis=0)
        values[j] = _max_crosscov(trace, reference, lags, lag_lo, lag_hi)
    return tested, values


def _threshold_from_crosscov(levels_db: np.ndarray, values: np.ndarray, criterion: float) -> float:
    """Lowest level whose cross-covariance reaches the criterion, interpolated towards the next lower
    level (linear in cross-covariance); +inf when the highest level itself does not reproduce.

    The lowest passing level rather than the first failure on the way down: one noisy level above
    threshold then cannot raise the estimate (on the calibration cohort the first-failure rule had
    ~3 dB more error at every criterion)."""
    if np.isfinite(values[0]) and values[0] < criterion:
        return float("inf")
    passing = np.flatnonzero(np.nan_to_num(values, nan=1.0) >= criterion)
    j = int(passing.max())  # levels are in descending order: the lowest passing level
    if j == len(levels_db) - 1:
        return float(levels_db[j])
    v_hi, v_lo = values[j], values[j + 1]
    frac = (v_hi - criterion) / (v_hi - v_lo) if np.isfinite(v_hi) and v_hi > v_lo else 0.5
    return float(levels_db[j] - frac * (levels_db[j] - levels_db[j + 1]))


def series_threshold_crosscov(records: ABRRecords, criterion: float = CROSSCOV_CRITERION,
                              filtered: np.ndarray | None = None) -> dict[str, float]:
    """Cross-covariance threshold per series (Suthakar & Liberman 2019), +inf for no response."""
    filtered = band_pass(records) if filtered is None else filtered
    out = {}
    for key, rows in series_rows(records).items():
        levels, values = crosscov_by_level(records, rows, filtered)
        out[key] = _threshold_from_crosscov(levels, values, criterion)
    return out


def lowest_responding_level(levels_db: np.ndarray, calls: np.ndarray) -> float:
    """Lowest level at which at least half the recordings are called responses (+inf: none)."""
    responding = [lv for lv in np.unique(levels_db) if calls[levels_db == lv].mean() >= 0.5]
    return float(min(responding)) if responding else float("inf")


def series_threshold_lowest_peak(records: ABRRecords, picked: dict[str, np.ndarray]) -> dict[str, float]:
    """Lowest level at which the picker calls V present in at least half of the runs (+inf: none)."""
    present = np.asarray(picked["v_present"], dtype=bool)
    return {key: lowest_responding_level(records.intensity_db[rows], present[rows])
            for key, rows in series_rows(records).items()}


def series_threshold_lowest_tested(records: ABRRecords) -> dict[str, float]:
    """The lowest tested level of each series, reading no waveform: the protocol floor.

    Testers stop a step or two below the threshold they see, so where the series ends already says
    much about θ. A threshold method that does not beat this floor has learned the protocol, not
    the response.
    """
    return {key: float(records.intensity_db[rows].min()) for key, rows in series_rows(records).items()}
