"""A model's outputs as the seed document's result structure: one dict per prediction.

``ABRInference.predict_single``/``predict_batch``/``analyse`` return these: ``classification``
(predicted_category, code, original_code, probabilities, optionally the conformal prediction set),
``threshold`` (value in dB nHL, no-response probability, optionally lo/hi), ``peaks["I"]``,
``["III"]`` and ``["V"]`` (presence probability, latency and amplitude, the latency's z-score against
the norms and its flag), ``intervals`` (I–III, III–V, I–V with z-scores and flags), ``waveform``
(time_ms and the signal) and ``inputs``; with intervals a ``confidence`` section.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..data.schema import INTERPEAK_INTERVALS, ORIGINAL_CLASS_CODES, STATIC_FIELDS, WAVE_KEYS, WAVE_NAMES


def floats(values) -> list[float]:
    """A 1-D array as a list of Python floats (JSON-ready)."""
    return [float(v) for v in np.asarray(values, np.float64)]


def _number(value) -> float | None:
    """A JSON number, None for NaN (an interval the calibration cannot give, a z-score without a norm)."""
    value = float(value)
    return None if math.isnan(value) else value


def _peaks(arrays: Mapping[str, np.ndarray], i: int, confidence: bool) -> dict:
    """``peaks`` of one row: per wave (I, III, V) its presence, latency, amplitude and norm reading."""
    peaks = {}
    for key, name in zip(WAVE_KEYS, WAVE_NAMES):
        wave = {"present_probability": float(arrays[f"{key}_present_prob"][i]),
                "latency_ms": float(arrays[f"{key}_latency_ms"][i]),
                "amplitude_uv": float(arrays[f"{key}_amplitude_uv"][i]),
                "latency_z": _number(arrays[f"{key}_latency_z"][i]),
                "latency_outside_norm": bool(arrays[f"{key}_latency_outside_norm"][i])}
        if confidence:
            for what in ("latency_ms", "amplitude_uv"):
                wave[f"{what}_lo"] = _number(arrays[f"{key}_{what}_lo"][i])
                wave[f"{what}_hi"] = _number(arrays[f"{key}_{what}_hi"][i])
        peaks[name] = wave
    return peaks


def _intervals(arrays: Mapping[str, np.ndarray], i: int, confidence: bool) -> dict:
    """``intervals`` of one row: I–III, III–V, I–V (ms) with z-scores and norm flags."""
    out = {}
    for name, early, late in INTERPEAK_INTERVALS:
        entry = {"ms": float(arrays[f"{name}_interval_ms"][i]),
                 "z": _number(arrays[f"{name}_interval_z"][i]),
                 "outside_norm": bool(arrays[f"{name}_interval_outside_norm"][i])}
        if confidence:
            entry["lo"] = _number(arrays[f"{name}_interval_ms_lo"][i])
            entry["hi"] = _number(arrays[f"{name}_interval_ms_hi"][i])
        out[f"{early.upper()}-{late.upper()}"] = entry
    return out


def confidence_summary(calibration, level: float) -> dict:
    """How the intervals were made (level, method, calibration split and sizes, temperatures)."""
    return {
        "level": level,
        "intervals": "split conformal, |y − ŷ|/σ̂ with the head's spread σ̂; latency/amplitude of waves I, III "
                     "and V where marked, interpeak intervals where both waves are marked (σ̂ of the two "
                     "latencies in quadrature), threshold for an ear that responds; none (null) for a quantity "
                     "the calibration split held too few marks of",
        "class_set": "conformal prediction set (1 − p̂ scores)",
        "probabilities": "temperature-scaled",
        "calibration_split": calibration.split,
        "calibration_counts": dict(calibration.counts),
        "temperature": dict(calibration.temperatures),
    }


def prediction_row(model, arrays: Mapping[str, np.ndarray], i: int, static: np.ndarray, waveform_meta: dict,
                   confidence: bool) -> dict:
    """Row ``i`` of ``arrays`` (``ABRInference.predict_arrays`` keys) as one result dict.

    ``model``: the ``ABRInference`` that made them (class names, time base, signal unit, calibration).
    """
    code = int(arrays["hearing_loss"][i])
    probs = arrays["hearing_loss_prob"][i]
    classification = {
        "predicted_category": model.class_names[code],
        "code": code,
        "original_code": ORIGINAL_CLASS_CODES[code] if code < len(ORIGINAL_CLASS_CODES) else None,
        "probabilities": {name: float(p) for name, p in zip(model.class_names, probs)},
    }
    threshold = {"value": float(arrays["threshold_db"][i]), "unit": "dB nHL",
                 "no_response_probability": float(arrays["threshold_no_response_prob"][i])}
    key = "signal_uv" if model.signal_unit == "uV" else "signal_zscore"
    waveform = {**waveform_meta, "time_ms": floats(model.time_ms), key: floats(arrays["waveform"][i])}
    result = {
        # float32 storage shows 0.8 as 0.800000011920929: 7 significant digits is what float32 holds
        "inputs": {name: (None if math.isnan(v) else float(f"{v:.7g}")) for name, v in zip(STATIC_FIELDS, static)},
        "classification": classification,
        "threshold": threshold,
        "peaks": _peaks(arrays, i, confidence),
        "intervals": _intervals(arrays, i, confidence),
        "waveform": waveform,
    }
    if confidence:
        in_set = arrays["hearing_loss_set"][i]
        classification["prediction_set"] = [n for n, keep in zip(model.class_names, in_set) if keep]
        threshold["lo"], threshold["hi"] = float(arrays["threshold_db_lo"][i]), float(arrays["threshold_db_hi"][i])
        result["confidence"] = model.confidence_summary()
    return result


def prediction_rows(model, arrays: Mapping[str, np.ndarray]) -> list[dict]:
    """``predict_arrays`` output → one predict_single-structured dict per row."""
    confidence = "v_latency_ms_lo" in arrays
    static = np.stack([arrays[name] for name in STATIC_FIELDS], axis=1)
    rows = []
    for i in range(len(static)):
        if "seed" in arrays:
            meta = {"source": "generated", "seed": int(arrays["seed"][i]), "sampler": str(arrays["sampler"][i]),
                    "steps": int(arrays["steps"][i])}
        else:
            meta = {"source": "measured"}
        row = prediction_row(model, arrays, i, static[i], meta, confidence)
        for key in ("id", "patient_id", "ear"):
            if key in arrays:
                row[key] = str(arrays[key][i])
        if "stimulus_outside_training" in arrays:
            row["stimulus_outside_training"] = bool(arrays["stimulus_outside_training"][i])
        if "picker_v_latency_ms" in arrays:  # measured recordings: the classical pickers beside the model
            row["classical_picker"] = {name: {"present": bool(arrays[f"picker_{key}_present"][i]),
                                              "latency_ms": _number(arrays[f"picker_{key}_latency_ms"][i]),
                                              "amplitude_uv": _number(arrays[f"picker_{key}_amplitude_uv"][i])}
                                       for key, name in zip(WAVE_KEYS, WAVE_NAMES)}
        rows.append(row)
    return rows
