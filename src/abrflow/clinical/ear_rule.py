"""The per-ear rule: one ear's threshold and wave V latency–intensity function from a model's
reading of its level series. The one function behind ``ABRInference.estimate_threshold``,
``ABREnsemble``, ``abrflow threshold``, ``inference.py --series`` and ``evaluate``.

Given the model's wave-V presence probability and latency per recording (read from
:func:`~abrflow.clinical.levels.model_view` of the records, so that levels not in dB nHL are
unknown to the model):

1. the replication gate: where the records carry half-averages (SmartEP, EARNDB, the simulator
   with ``half_averages=True``), a level whose pooled halves do not agree (split-half r below
   :data:`~abrflow.clinical.replication.MODEL_GATE_MIN_R`) holds no response, whatever the model says;
2. the threshold: a logistic fit of the (gated) probabilities across the ear's levels
   (:func:`~abrflow.clinical.thresholds.estimate_series_threshold`), the ear responding where some
   level reaches :data:`MODEL_DETECTION_CRITERION` and the threshold placed at the
   :data:`MODEL_RESPONSE_CRITERION` crossing, both fixed on a synthetic cohort;
3. the latency–intensity function: per tested level (loudest first) the mean probability, the mean
   latency of the recordings called responses, and its slope over levels; beside it waves I and III
   where the model calls them in those responses, and the wave V norm band for the ear's age
   (``clinical.norms``; clicks in dB nHL only — a click norm is never read against another stimulus
   or unit); and the interpeak intervals at the loudest level with a response, against their norms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..data.records import ABRRecords
from ..data.schema import DEFAULT_LEVEL_UNIT, INTERPEAK_INTERVALS, WAVE_KEYS
from ..data.stimulus import stimulus_of
from .levels import TrainedStimulus, level_units, model_view, norms_apply, series_stimulus_notes
from .norms import latency_norm_band_ms, norm_flags, normative_latency_ms
from .replication import MODEL_GATE_MIN_R, replicates
from .series import series_rows
from .thresholds import (
    MODEL_DETECTION_CRITERION,
    MODEL_RESPONSE_CRITERION,
    WAVE_CALL_PROBABILITY,
    series_thresholds,
)


def _floats(values) -> list[float]:
    return [float(v) for v in np.asarray(values, np.float64)]


def _called_mean(analysed: Mapping[str, np.ndarray], wave: str, rows: np.ndarray) -> float:
    """Mean latency of ``wave`` over ``rows`` where the model calls it (NaN where it calls it nowhere)."""
    if f"{wave}_latency_ms" not in analysed or not rows.size:
        return math.nan
    lat = np.asarray(analysed[f"{wave}_latency_ms"], np.float64)[rows]
    prob = np.asarray(analysed[f"{wave}_present_prob"], np.float64)[rows]
    keep = prob >= WAVE_CALL_PROBABILITY
    return float(lat[keep].mean()) if keep.any() else math.nan


def _top_level_intervals(latencies: Mapping[str, list[float]], age_years: float) -> dict[str, dict]:
    """Interpeak intervals at the loudest level where both waves were read, with z-score and flag."""
    out = {}
    for name, early, late in INTERPEAK_INTERVALS:
        pairs = [(a, b) for a, b in zip(latencies[early], latencies[late]) if math.isfinite(a) and math.isfinite(b)]
        if not pairs:
            out[name] = {"ms": None, "z": None, "outside_norm": False}
            continue
        a, b = pairs[0]
        flags = norm_flags({early: np.array([a]), late: np.array([b])}, np.array([math.nan]), np.array([age_years]))
        out[name] = {"ms": float(flags[f"{name}_interval_ms"][0]), "z": float(flags[f"{name}_interval_z"][0]),
                     "outside_norm": bool(flags[f"{name}_interval_outside_norm"][0])}
    return out


def gated_response_prob(records: ABRRecords, v_present_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(the probabilities with levels whose halves do not replicate set to 0, the per-row replication
    call or None where the records carry no halves)."""
    prob = np.asarray(v_present_prob, np.float64)
    replicating = replicates(records, MODEL_GATE_MIN_R)
    if replicating is not None:
        prob = np.where(replicating, prob, 0.0)
    return prob, replicating


def ear_thresholds(records: ABRRecords, analysed: Mapping[str, np.ndarray],
                   criterion: float = MODEL_RESPONSE_CRITERION, trained: TrainedStimulus | None = None
                   ) -> dict[str, dict]:
    """Per level series (patient + ear + session, in sorted key order): the ear's threshold with its
    interval (``SeriesThreshold`` fields) and the wave V latency–intensity function.

    ``analysed``: the model's outputs per row of ``records``, read from ``model_view(records)``;
    ``v_present_prob`` and ``v_latency_ms`` are used. Levels are the recorded ones, in their unit
    (``level_unit``). Each ear says what was played (``stimulus``) and whether that is outside what
    the model was trained on (``trained``; ``stimulus_outside_training``, ``stimulus_note``).
    """
    prob, replicating = gated_response_prob(records, analysed["v_present_prob"])
    latency = np.asarray(analysed["v_latency_ms"], np.float64)
    estimates = series_thresholds(records, prob, criterion=criterion, detection=MODEL_DETECTION_CRITERION)
    units = level_units(records)
    stimulus = series_stimulus_notes(records, trained)
    types = stimulus_of(records)["stimulus_type"]
    out = {}
    for key, rows in series_rows(records).items():
        levels = records.intensity_db[rows].astype(np.float64)
        tested = np.unique(levels[np.isfinite(levels)])[::-1]  # loudest first, as tested
        p_level, lat_level, n_level, rep_level = [], [], [], []
        waves: dict[str, list[float]] = {w: [] for w in WAVE_KEYS}
        for lv in tested:
            at = rows[levels == lv]
            responding = at[prob[at] >= criterion]
            p_level.append(float(prob[at].mean()))
            lat_level.append(float(latency[responding].mean()) if responding.size else math.nan)
            n_level.append(int(at.size))
            rep_level.append(math.nan if replicating is None else float(replicating[at].mean()))
            for w in WAVE_KEYS:
                waves[w].append(lat_level[-1] if w == "v" else _called_mean(analysed, w, responding))
        age = float(np.nanmean(records.age_years[rows])) if np.isfinite(records.age_years[rows]).any() else math.nan
        clicks_nhl = norms_apply(np.unique(types[rows]).tolist()) and str(units[rows[0]]) == DEFAULT_LEVEL_UNIT
        if clicks_nhl:
            ages = np.full(tested.size, age)
            norm_ms = normative_latency_ms("v", tested, ages)[0]
            norm_lo, norm_hi = latency_norm_band_ms("v", tested, ages)
            norm = {"v_norm_ms": _floats(norm_ms), "v_norm_lo_ms": _floats(norm_lo), "v_norm_hi_ms": _floats(norm_hi)}
        else:
            norm = {name: [None] * tested.size for name in ("v_norm_ms", "v_norm_lo_ms", "v_norm_hi_ms")}
        lat = np.array(lat_level)
        ok = np.isfinite(lat)
        slope = float(np.polyfit(tested[ok], lat[ok], 1)[0]) if ok.sum() >= 2 else math.nan
        first = rows[0]
        out[key] = {
            "patient_id": str(records.patient_id[first]), "ear": str(records.ear[first]),
            "session_id": str(records.session_id[first]), "level_unit": str(units[first]),
            "stimulus": stimulus[key]["stimulus"], "stimulus_outside_training": stimulus[key]["outside_training"],
            "stimulus_note": stimulus[key]["note"],
            **estimates[key].as_dict(),
            "latency_intensity": {"intensity_db": _floats(tested), "n_recordings": n_level,
                                  "v_present_prob": p_level, "v_latency_ms": lat_level,
                                  "i_latency_ms": waves["i"], "iii_latency_ms": waves["iii"], **norm,
                                  "replicating_fraction": rep_level, "slope_ms_per_db": slope},
            "top_level_intervals": _top_level_intervals(waves, age),
        }
    return out


def read_ears(analyser, records: ABRRecords, criterion: float = MODEL_RESPONSE_CRITERION) -> dict[str, dict]:
    """:func:`ear_thresholds` of what ``analyser`` reads from :func:`model_view` of the records.

    ``analyser``: anything with ``analyse_records(records, return_confidence=False)`` — one model
    (``ABRInference``) or an ensemble (``ABREnsemble``, whose probabilities are the members' mean).
    """
    trained = getattr(analyser, "trained_stimulus", None)
    analysed = analyser.analyse_records(model_view(records, trained), return_confidence=False)
    return ear_thresholds(records, analysed, criterion, trained)
