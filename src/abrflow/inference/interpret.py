"""Head outputs → what a clinician reads: calibrated probabilities, waves I, III and V in units,
interpeak intervals, norm z-scores and flags, and (with a calibration) conformal intervals."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ..clinical.calibration import (
    INTERVAL_TARGETS,
    conformal_interval,
    prediction_sets,
    probabilities,
    with_intervals,
)
from ..clinical.norms import norm_flags
from ..clinical.thresholds import WAVE_CALL_PROBABILITY
from ..data.schema import INTERPEAK_INTERVALS, STATIC_FIELDS, WAVE_KEYS

#: Quantities whose interval is always required with confidence; the rest (waves I and III and the
#: interpeak intervals) get NaN bounds when the calibration split held too few marks of them.
REQUIRED_INTERVALS = ("v_latency_ms", "v_amplitude_uv", "threshold_db")


def wave_reading(out: Mapping[str, np.ndarray], static_raw: np.ndarray) -> dict[str, np.ndarray]:
    """From the waves' presence probabilities and latencies: the interpeak intervals (every row) and
    the norms' z-scores and flags for the waves called present (``abrflow.clinical.norms``;
    latency norms need the level, so unknown intensity gives no latency z-score)."""
    intervals = with_intervals({f"{w}_latency_ms": out[f"{w}_latency_ms"] for w in WAVE_KEYS})
    reading = {f"{name}_interval_ms": intervals[f"{name}_interval_ms"] for name, _, _ in INTERPEAK_INTERVALS}
    called = {w: np.where(np.asarray(out[f"{w}_present_prob"]) >= WAVE_CALL_PROBABILITY,
                          np.asarray(out[f"{w}_latency_ms"], np.float64), np.nan) for w in WAVE_KEYS}
    static_raw = np.asarray(static_raw, np.float64)
    age, intensity = (static_raw[:, STATIC_FIELDS.index(k)] for k in ("age_years", "intensity_db"))
    for key, value in norm_flags(called, intensity, age).items():
        if not key.endswith("_interval_ms"):  # the intervals themselves are reported for every row
            reading[key] = value
    return reading


def interpret_heads(heads: Mapping[str, np.ndarray], static_raw: np.ndarray, temperatures: Mapping,
                    quantile: Callable[[str, bool], float] | None) -> dict[str, np.ndarray]:
    """One row per recording. ``static_raw`` [N, 4] (age, intensity, rate, Fmp; NaN unknown) gives
    the norms their level and age; ``quantile(name, required)`` the conformal quantile (None: no
    intervals)."""
    hl_prob = probabilities(heads["hearing_loss_logits"], temperatures.get("hearing_loss"))
    values = with_intervals(heads)
    out: dict[str, np.ndarray] = {}
    for w in WAVE_KEYS:
        out[f"{w}_present_prob"] = probabilities(heads[f"{w}_present_logit"], temperatures.get(f"{w}_present"))
        out[f"{w}_latency_ms"] = heads[f"{w}_latency_ms"]
        out[f"{w}_amplitude_uv"] = heads[f"{w}_amplitude_uv"]
    out.update({
        "hearing_loss": np.argmax(hl_prob, axis=1).astype(np.int64),
        "hearing_loss_prob": hl_prob,
        "threshold_db": heads["threshold_db"],
        "threshold_no_response_prob": probabilities(heads["threshold_no_response_logit"],
                                                    temperatures.get("threshold_no_response")),
    })
    out.update(wave_reading(out, static_raw))
    if quantile is not None:
        for name, log_std in INTERVAL_TARGETS.items():
            q = quantile(name, name in REQUIRED_INTERVALS)
            if not np.isfinite(q):  # too few calibration marks of an optional quantity: no interval
                out[f"{name}_lo"] = out[f"{name}_hi"] = np.full(len(hl_prob), np.nan)
                continue
            lo, hi = conformal_interval(values[name], values[log_std], q)
            if name.endswith("_latency_ms"):
                lo = np.maximum(lo, 0.0)  # a latency is positive: clipping to the support keeps coverage
            out[f"{name}_lo"], out[f"{name}_hi"] = lo, hi
        out["hearing_loss_set"] = prediction_sets(hl_prob, quantile("hearing_loss", True))
    return out
