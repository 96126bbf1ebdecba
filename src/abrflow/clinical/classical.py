"""The classical reading of a set of recordings, assembled once: what every caller of the classical
methods (``run_baselines``, the evaluation's baseline rows, ``abrflow threshold``) reads from it.

Band-pass once, pick waves I, III and V once, and derive the per-ear thresholds (cross-covariance, lowest
picked V, protocol floor) and, on demand, the hand features from those same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.records import ABRRecords
from ..data.schema import DEFAULT_LEVEL_UNIT
from ..data.stimulus import stimulus_of
from .classical_thresholds import (
    series_threshold_crosscov,
    series_threshold_lowest_peak,
    series_threshold_lowest_tested,
)
from .features import hand_features
from .levels import norms_apply
from .picker import band_pass, pick_waves


@dataclass(frozen=True)
class ClassicalReading:
    """The classical methods' outputs on one set of records (thresholds keyed by ``series_key``)."""

    filtered: np.ndarray  # band-passed traces [N, T]
    picked: dict[str, np.ndarray]  # pick_wave_v per recording (wave V: thresholds, features)
    crosscov_db: dict[str, float]  # Suthakar & Liberman (2019) per ear, +inf no response
    lowest_peak_db: dict[str, float]  # lowest level with a picked V per ear
    lowest_tested_db: dict[str, float]  # the protocol floor per ear
    waves: dict[str, np.ndarray]  # pick_waves per recording: I, III and V (V equal to ``picked``)

    def features(self, records: ABRRecords) -> np.ndarray:
        """Hand features of the same records (``abrflow.clinical.features.hand_features``)."""
        return hand_features(records, filtered=self.filtered, picked=self.picked, crosscov=self.crosscov_db,
                             waves=self.waves)


def read_classical(records: ABRRecords) -> ClassicalReading:
    """Every classical method on ``records``, each intermediate computed once."""
    filtered = band_pass(records)
    waves = pick_waves(records, filtered=filtered)
    picked = {k: waves[k] for k in ("v_present_score", "v_present", "v_latency_ms", "v_amplitude_uv",
                                    "v_peak_to_trough_uv")}
    return ClassicalReading(filtered=filtered, picked=picked, waves=waves,
                            crosscov_db=series_threshold_crosscov(records, filtered=filtered),
                            lowest_peak_db=series_threshold_lowest_peak(records, picked),
                            lowest_tested_db=series_threshold_lowest_tested(records))


def picker_columns(records: ABRRecords) -> dict[str, np.ndarray]:
    """The classical pickers' waves I, III and V per recording as ``picker_*`` columns (latency,
    amplitude, presence and its score), beside a model's in the same table. Rows played with a stimulus
    other than a click, or at levels in another unit than dB nHL, get NaN / False: the pickers' windows
    come from click norms in dB nHL."""
    waves = pick_waves(records)
    stimulus = stimulus_of(records)
    clicks = np.array([norms_apply([t]) for t in stimulus["stimulus_type"]], bool) & (
        stimulus["level_unit"] == DEFAULT_LEVEL_UNIT)
    out = {}
    for key, value in waves.items():
        value = np.asarray(value)
        out[f"picker_{key}"] = np.where(clicks, value, False if value.dtype == bool else np.nan)
    return out
