"""The features a clinician reads off an ear's level series, for the hand-feature classifier
(``abrflow.evaluation.baselines.HandFeatureClassifier``): this recording's picks plus its series' summary."""

from __future__ import annotations

import numpy as np

from ..data.records import ABRRecords
from .classical_thresholds import series_threshold_crosscov, series_threshold_lowest_peak
from .norms import normative_v_latency_ms
from .picker import band_pass, pick_wave_v, pick_waves
from .series import series_rows

#: Threshold stand-in for "no response" in features (beyond any tested level) for the classifier.
NO_RESPONSE_FEATURE_DB = 130.0

FEATURE_NAMES: tuple[str, ...] = (
    "age_years", "intensity_db", "stimulus_rate_hz", "fmp",
    "v_present_score", "v_latency_ms", "v_amplitude_uv", "v_latency_excess_ms",
    "top_v_present_score", "top_v_latency_ms", "top_v_latency_excess_ms",
    "top_v_amplitude_uv", "top_i_v_interval_ms",
    "threshold_crosscov_db", "no_response_crosscov", "threshold_lowest_peak_db", "no_response_lowest_peak",
)


def hand_features(records: ABRRecords, *, filtered: np.ndarray | None = None,
                  picked: dict[str, np.ndarray] | None = None, crosscov: dict[str, float] | None = None,
                  waves: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Feature matrix [N, len(FEATURE_NAMES)]: this recording's picks plus its series' summary.

    Series features are what a clinician reads first: V at the highest level (latency, its excess
    over the norm, amplitude), the I–V interval there, and the two classical thresholds.
    "No response" thresholds become NO_RESPONSE_FEATURE_DB plus a 0/1 flag (trees split on both).
    The I–V interval uses the wave-I picker of :func:`~abrflow.clinical.picker.pick_waves` (its
    latency wherever its window holds a peak, presence not required). ``filtered``, ``picked``,
    ``crosscov`` and ``waves`` may be passed when the caller computed them already.
    """
    filtered = band_pass(records) if filtered is None else filtered
    picked = pick_wave_v(records, filtered=filtered) if picked is None else picked
    crosscov = series_threshold_crosscov(records, filtered=filtered) if crosscov is None else crosscov
    excess = picked["v_latency_ms"] - normative_v_latency_ms(records.intensity_db, records.age_years)
    wave_i = (pick_waves(records, filtered=filtered) if waves is None else waves)["i_latency_ms"]
    lowest = series_threshold_lowest_peak(records, picked)
    feats = np.full((len(records), len(FEATURE_NAMES)), np.nan)
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}
    feats[:, col["age_years"]] = records.age_years
    feats[:, col["intensity_db"]] = records.intensity_db
    feats[:, col["stimulus_rate_hz"]] = records.stimulus_rate_hz
    feats[:, col["fmp"]] = records.fmp
    feats[:, col["v_present_score"]] = picked["v_present_score"]
    feats[:, col["v_latency_ms"]] = picked["v_latency_ms"]
    feats[:, col["v_amplitude_uv"]] = picked["v_amplitude_uv"]
    feats[:, col["v_latency_excess_ms"]] = excess
    for key, rows in series_rows(records).items():
        levels = records.intensity_db[rows]
        top = rows[levels == levels.max()]
        feats[rows, col["top_v_present_score"]] = picked["v_present_score"][top].mean()
        feats[rows, col["top_v_latency_ms"]] = np.nanmedian(picked["v_latency_ms"][top])
        feats[rows, col["top_v_latency_excess_ms"]] = np.nanmedian(excess[top])
        feats[rows, col["top_v_amplitude_uv"]] = np.nanmedian(picked["v_amplitude_uv"][top])
        feats[rows, col["top_i_v_interval_ms"]] = np.nanmedian(picked["v_latency_ms"][top] - wave_i[top])
        for name, flag, value in (("threshold_crosscov_db", "no_response_crosscov", crosscov[key]),
                                  ("threshold_lowest_peak_db", "no_response_lowest_peak", lowest[key])):
            feats[rows, col[name]] = value if np.isfinite(value) else NO_RESPONSE_FEATURE_DB
            feats[rows, col[flag]] = float(not np.isfinite(value))
    return feats
