"""A model's outputs as the seed document's result structure: one dict per prediction.

``ABRInference.predict_single``/``predict_batch``/``analyse`` return these: ``classification``
(predicted_category, code, original_code, probabilities, optionally the conformal prediction set),
``threshold`` (value in dB nHL, no-response probability, optionally lo/hi), ``peaks["V"]``,
``waveform`` (time_ms and the signal) and ``inputs``; with intervals a ``confidence`` section.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..data.schema import ORIGINAL_CLASS_CODES, STATIC_FIELDS


def floats(values) -> list[float]:
    """A 1-D array as a list of Python floats (JSON-ready)."""
    return [float(v) for v in np.asarray(values, np.float64)]


def confidence_summary(calibration, level: float) -> dict:
    """How the intervals were made (level, method, calibration split and sizes, temperatures)."""
    return {
        "level": level,
        "intervals": "split conformal, |y − ŷ|/σ̂ with the head's spread σ̂; latency/amplitude for wave V "
                     "if present, threshold for an ear that responds",
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
    wave_v = {"present_probability": float(arrays["v_present_prob"][i]),
              "latency_ms": float(arrays["v_latency_ms"][i]),
              "amplitude_uv": float(arrays["v_amplitude_uv"][i])}
    key = "signal_uv" if model.signal_unit == "uV" else "signal_zscore"
    waveform = {**waveform_meta, "time_ms": floats(model.time_ms), key: floats(arrays["waveform"][i])}
    result = {
        # float32 storage shows 0.8 as 0.800000011920929: 7 significant digits is what float32 holds
        "inputs": {name: (None if math.isnan(v) else float(f"{v:.7g}")) for name, v in zip(STATIC_FIELDS, static)},
        "classification": classification,
        "threshold": threshold,
        "peaks": {"V": wave_v},
        "waveform": waveform,
    }
    if confidence:
        in_set = arrays["hearing_loss_set"][i]
        classification["prediction_set"] = [n for n, keep in zip(model.class_names, in_set) if keep]
        threshold["lo"], threshold["hi"] = float(arrays["threshold_db_lo"][i]), float(arrays["threshold_db_hi"][i])
        for name, short in (("v_latency_ms", "latency_ms"), ("v_amplitude_uv", "amplitude_uv")):
            wave_v[f"{short}_lo"] = float(arrays[f"{name}_lo"][i])
            wave_v[f"{short}_hi"] = float(arrays[f"{name}_hi"][i])
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
        rows.append(row)
    return rows
