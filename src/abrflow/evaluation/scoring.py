"""Scoring a model and the classical baselines on the same recordings, with patient-bootstrap intervals.

- :func:`score_model`: the heads on every recording → the peaks, classification and clinical groups
  (the per-recording threshold head and the per-ear threshold by the per-ear rule,
  :func:`abrflow.clinical.ear_rule.ear_thresholds`, the same rule ``abrflow threshold`` applies);
- :func:`baseline_predictions`, :func:`baseline_by_age`: the classical methods' per-row outputs;
- :func:`headline`: metric → method → value with its 95 % patient-bootstrap interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ..clinical.calibration import INTERVAL_TARGETS, with_intervals
from ..clinical.classical import read_classical
from ..clinical.ear_rule import ear_thresholds
from ..clinical.picker import V_PRESENT_CRITERION
from ..clinical.thresholds import aligned_thresholds, true_series_thresholds
from ..data.records import ABRRecords
from ..data.schema import WAVE_KEYS
from ..data.wave_labels import wave_labels
from . import metrics, stratify
from .baselines import HandFeatureClassifier, majority_baseline
from .labels import labels_of

NAN = float("nan")
#: What metrics.json keeps of each ear's estimate (the latency–intensity function is in ``abrflow threshold``'s).
EAR_FIELDS = ("patient_id", "ear", "session_id", "threshold_db", "lo_db", "hi_db", "method", "level_unit",
              "stimulus", "stimulus_outside_training", "stimulus_note")


# ---------------------------------------------------------------------------- small scorers (bootstrap)
def binary_f1(pred: np.ndarray, y: np.ndarray) -> float:
    """F1 of boolean calls against boolean truth, by counting (fast inside a bootstrap); NaN when undefined."""
    tp, fp, fn = np.sum(pred & y), np.sum(pred & ~y), np.sum(~pred & y)
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else NAN


def _kappa_normal_vs_loss(pred_class: np.ndarray, true_class: np.ndarray) -> float:
    """Cohen's κ of the normal / hearing-loss call (NaN when both raters use a single category)."""
    known = true_class >= 0
    a, b = pred_class[known] != 0, true_class[known] != 0
    n = a.size
    if n == 0:
        return NAN
    po = np.mean(a == b)
    pe = np.mean(a) * np.mean(b) + np.mean(~a) * np.mean(~b)
    return float((po - pe) / (1 - pe)) if pe < 1 else NAN


def _v_f1(score, y, criterion):
    return binary_f1(score >= criterion, y)


def finite_mae(pred, true):
    """Mean |pred − true| over the rows where both are finite (latencies, thresholds); NaN with none."""
    ok = np.isfinite(pred) & np.isfinite(true)
    return float(np.mean(np.abs(pred[ok] - true[ok]))) if ok.any() else NAN


def share_within_10db(est, true):
    """Share of comparable ears within ±10 dB, "no response" agreement counted, a mismatch failing."""
    known = ~np.isnan(est) & ~np.isnan(true)
    e, t = est[known], true[known]
    if not e.size:
        return NAN
    finite = np.isfinite(e) & np.isfinite(t)
    close = np.zeros(e.size, bool)
    close[finite] = np.abs(e[finite] - t[finite]) <= 10.0 + 1e-9
    return float(np.mean(close | (np.isinf(e) & np.isinf(t))))


#: Headline metrics: key → (label, higher is better, formatter digits).
HEADLINE = {
    "v_f1": ("wave V presence F1", True, 3),
    "v_latency_mae_ms": ("wave V latency MAE (ms, marked waves)", False, 3),
    "i_f1": ("wave I presence F1", True, 3),
    "i_latency_mae_ms": ("wave I latency MAE (ms, marked waves)", False, 3),
    "iii_f1": ("wave III presence F1", True, 3),
    "iii_latency_mae_ms": ("wave III latency MAE (ms, marked waves)", False, 3),
    "macro_f1": ("hearing-loss macro-F1", True, 3),
    "balanced_accuracy": ("hearing-loss balanced accuracy", True, 3),
    "ear_threshold_mae_db": ("per-ear threshold MAE (dB, both finite)", False, 1),
    "ear_threshold_within_10db": ("per-ear threshold within ±10 dB (all ears)", True, 3),
    "normal_vs_loss_kappa": ("normal vs hearing loss, Cohen's kappa", True, 3),
}
#: The headline's metrics in report order, each with the labels it needs.
HEADLINE_NEEDS = {"v_f1": "v_marks", "v_latency_mae_ms": "v_marks", "i_f1": "i_marks", "i_latency_mae_ms": "i_marks",
                  "iii_f1": "iii_marks", "iii_latency_mae_ms": "iii_marks", "macro_f1": "classes",
                  "balanced_accuracy": "classes", "normal_vs_loss_kappa": "classes",
                  "ear_threshold_mae_db": "thresholds", "ear_threshold_within_10db": "thresholds"}


# ---------------------------------------------------------------------------- model scoring
def series_arrays(records: ABRRecords, estimated: Mapping) -> dict[str, np.ndarray]:
    """Per-ear (estimated, recorded, attainable, patient, age) aligned on the series keys."""
    truth = true_series_thresholds(records)
    attainable = true_series_thresholds(records, attainable=True)
    est, true, keys = aligned_thresholds(estimated, truth)
    first = {}
    for i, key in enumerate(records.series_key):
        first.setdefault(str(key), i)
    rows = np.array([first[k] for k in keys], dtype=int)
    return {"est": est, "true": true, "attainable": np.array([attainable[k] for k in keys], np.float64),
            "patient": records.patient_id[rows], "age": records.age_years[rows].astype(np.float64)}


def _interval_coverage(pred: Mapping[str, np.ndarray], records: ABRRecords) -> dict:
    """Empirical coverage of the calibrated intervals on these rows (nominal level alongside)."""
    waves = wave_labels(records)
    truths = {f"{w}_{what}": waves[field][:, j].astype(np.float64) for j, w in enumerate(WAVE_KEYS)
              for what, field in (("latency_ms", "latency_ms"), ("amplitude_uv", "amplitude_uv"))}
    truths = with_intervals(truths)
    truths["threshold_db"] = np.where(np.isfinite(records.threshold_db), records.threshold_db, np.nan)
    out = {}
    for name in INTERVAL_TARGETS:
        y = np.asarray(truths[name], np.float64)
        ok = np.isfinite(y) & np.isfinite(pred[f"{name}_lo"])  # no interval (too few calibration marks): unscored
        inside = (y[ok] >= pred[f"{name}_lo"][ok]) & (y[ok] <= pred[f"{name}_hi"][ok])
        out[name] = {"n": int(ok.sum()), "coverage": float(inside.mean()) if ok.any() else NAN}
    known = records.hearing_loss >= 0
    sets = pred["hearing_loss_set"][known]
    y = records.hearing_loss[known].astype(int)
    out["hearing_loss_set"] = {"n": int(known.sum()),
                               "coverage": float(sets[np.arange(len(y)), y].mean()) if known.any() else NAN,
                               "mean_set_size": float(sets.sum(axis=1).mean()) if known.any() else NAN}
    return out


def score_model(inference, records: ABRRecords, ensemble=None) -> tuple[dict, dict]:
    """Heads on every recording → the peaks, classification and clinical groups, and the arrays
    (predictions, per-ear thresholds) the headline and the figures need.

    The model reads :func:`~abrflow.clinical.levels.model_view` of the records (levels not in dB nHL
    unknown to it), and the per-ear thresholds come from the per-ear rule, replication gate included
    where the records carry half-averages: the numbers ``abrflow threshold`` gives for the same ears.
    ``ensemble`` (an ``ABREnsemble``): the per-ear thresholds come from its averaged probabilities,
    as ``abrflow threshold`` with several checkpoints gives them; every other group from ``inference``."""
    calibrated = inference.calibrated
    trained = inference.trained_stimulus
    pred = inference.analyse_records(records, return_confidence=calibrated)  # reads the model's view itself
    names = list(inference.class_names)
    y = records.hearing_loss.astype(int)
    age = records.age_years.astype(np.float64)
    peak_args = dict(v_present_prob=pred["v_present_prob"], v_present_true=records.v_present,
                     lat_pred_ms=pred["v_latency_ms"], lat_true_ms=records.v_latency_ms.astype(np.float64),
                     amp_pred_uv=pred["v_amplitude_uv"], amp_true_uv=records.v_amplitude_uv.astype(np.float64))
    class_args = dict(probs=pred["hearing_loss_prob"], y_true=y, class_names=names)
    head_thr = np.where(pred["threshold_no_response_prob"] >= 0.5, np.inf, pred["threshold_db"])
    rec_args = dict(pred_thr=head_thr, true_thr=records.threshold_db.astype(np.float64),
                    pred_class=pred["hearing_loss"], true_class=y)
    rule_pred = pred if ensemble is None else ensemble.analyse_records(records, return_confidence=False)
    estimates = ear_thresholds(records, rule_pred, trained=trained)
    ears = series_arrays(records, estimates)
    methods, counts = np.unique([e["method"] for e in estimates.values()], return_counts=True)
    labels = labels_of(records)
    coverage = _interval_coverage(pred, records) if calibrated else {
        "reason": "the checkpoint carries no calibration: no intervals"}
    per_ear = {
        "method": "logistic fit of the model's wave-V presence probability across the ear's levels "
                  "(abrflow.clinical.ear_rule: a level whose half-averages do not replicate holds "
                  "no response, where the records carry them)",
        "n_ears": len(estimates),
        "estimate_methods": {str(m): int(c) for m, c in zip(methods, counts)},
        "estimates": {key: {name: e[name] for name in EAR_FIELDS} for key, e in estimates.items()},
    }
    if labels.has("thresholds"):
        per_ear.update(recorded=metrics.clinical_metrics(ears["est"], ears["true"]),
                       attainable=metrics.threshold_metrics(ears["est"], ears["attainable"]),
                       by_age=stratify.by_age_stratum(ears["age"], metrics.clinical_metrics, pred_thr=ears["est"],
                                                      true_thr=ears["true"]))
    else:
        per_ear.update(labels.missing("thresholds"))
    groups = {
        "labels": labels.as_dict(),
        "peaks": labels.missing("v_marks") or {
            **metrics.peak_metrics(**peak_args), "interval_coverage": coverage,
            "by_age": stratify.by_age_stratum(age, metrics.peak_metrics, **peak_args)},
        "classification": labels.missing("classes") or {
            **metrics.classification_metrics(**class_args),
            "by_age": stratify.by_age_stratum(age, metrics.classification_metrics, **class_args)},
        "clinical": {
            "per_recording_head": labels.missing("thresholds") or {
                **metrics.clinical_metrics(**rec_args), "no_response_rule": "no-response probability ≥ 0.5 → +inf",
                "by_age": stratify.by_age_stratum(age, metrics.clinical_metrics, **rec_args)},
            "per_ear_series": per_ear,
        },
    }
    return groups, {"pred": pred, "ears": ears, "estimates": estimates, "labels": labels}


# ---------------------------------------------------------------------------- baselines' predictions
def baseline_predictions(train: ABRRecords | None, records: ABRRecords) -> dict:
    """The baselines' per-row outputs (run_baselines returns only scores; the headline needs rows),
    with the classical reading and the fitted classifier for ``run_baselines`` to reuse."""
    reading = read_classical(records)
    out = {
        "picked": reading.picked,
        "ear_thresholds": {
            "cross-covariance": reading.crosscov_db,
            "lowest peak (picker)": reading.lowest_peak_db,
            "protocol floor (lowest level tested)": reading.lowest_tested_db,
        },
        "class_probs": {},
        "reading": reading,
        "classifier": None,
    }
    if train is not None:
        clf = out["classifier"] = HandFeatureClassifier().fit(train)
        out["class_probs"]["hand features (gradient boosting)"] = clf.predict_proba(records,
                                                                                   features=reading.features(records))
        out["class_probs"]["majority (training priors)"] = majority_baseline(train.hearing_loss)(len(records))
    return out


def baseline_by_age(records: ABRRecords, base: dict) -> dict:
    """The wave V picker and the per-ear thresholds of the baselines by age stratum (run_baselines
    strata cover the classifiers only)."""
    age = records.age_years.astype(np.float64)
    picked = base["picked"]
    out = {"peak_picker": stratify.by_age_stratum(
        age, metrics.peak_metrics, v_present_prob=picked["v_present_score"], v_present_true=records.v_present,
        lat_pred_ms=picked["v_latency_ms"], lat_true_ms=records.v_latency_ms.astype(np.float64),
        amp_pred_uv=picked["v_amplitude_uv"], amp_true_uv=records.v_amplitude_uv.astype(np.float64),
        threshold=V_PRESENT_CRITERION)}
    for name, estimated in base["ear_thresholds"].items():
        e = series_arrays(records, estimated)
        out[f"ear_threshold {name}"] = stratify.by_age_stratum(e["age"], metrics.clinical_metrics, pred_thr=e["est"],
                                                              true_thr=e["true"])
    return out


# ---------------------------------------------------------------------------- headline with intervals
def headline(records: ABRRecords, model: dict, base: dict, n_boot: int, seed: int) -> dict:
    """metric → method → {value, lo, hi, …}: patient-bootstrap intervals (stratify.bootstrap_ci)."""
    groups = records.patient_id
    y = records.hearing_loss.astype(int)
    v_true = records.v_present.astype(bool)
    lat_true = records.v_latency_ms.astype(np.float64)
    pred, ears = model["pred"], model["ears"]

    def ci(fn: Callable[..., float], group_ids: np.ndarray, **arrays) -> dict:
        return stratify.bootstrap_ci(fn, group_ids, n_boot=n_boot, seed=seed, **arrays)

    picked, labels = base["picked"], model["labels"]
    out: dict = {}
    if labels.has("v_marks"):  # bootstraps only where the labels exist: the rest is a reason, not work
        out["v_f1"] = {
            "model": ci(_v_f1, groups, score=pred["v_present_prob"], y=v_true, criterion=0.5),
            "peak picker": ci(_v_f1, groups, score=picked["v_present_score"], y=v_true, criterion=V_PRESENT_CRITERION)}
        out["v_latency_mae_ms"] = {
            "model": ci(finite_mae, groups, pred=pred["v_latency_ms"], true=lat_true),
            "peak picker": ci(finite_mae, groups, pred=picked["v_latency_ms"], true=lat_true)}
    waves, picks = wave_labels(records), base["reading"].waves
    for j, w in enumerate(("i", "iii")):
        if not labels.has(f"{w}_marks"):
            continue
        judged, truth = waves["judged"][:, j], waves["present"][:, j]
        picker_call = np.asarray(picks[f"{w}_present"], np.float64)
        out[f"{w}_f1"] = {
            "model": ci(_v_f1, groups[judged], score=pred[f"{w}_present_prob"][judged], y=truth[judged], criterion=0.5),
            "peak picker": ci(_v_f1, groups[judged], score=picker_call[judged], y=truth[judged], criterion=0.5)}
        marked = waves["latency_ms"][:, j].astype(np.float64)
        out[f"{w}_latency_mae_ms"] = {
            "model": ci(finite_mae, groups, pred=pred[f"{w}_latency_ms"], true=marked),
            "peak picker": ci(finite_mae, groups, pred=picks[f"{w}_latency_ms"], true=marked)}
    if labels.has("classes"):
        classifiers = {"model": pred["hearing_loss_prob"], **base["class_probs"]}
        out["macro_f1"] = {name: ci(metrics.macro_f1, groups, probs=p, y_true=y) for name, p in classifiers.items()}
        out["balanced_accuracy"] = {name: ci(metrics.balanced_accuracy, groups, probs=p, y_true=y)
                                    for name, p in classifiers.items()}
        out["normal_vs_loss_kappa"] = {name: ci(_kappa_normal_vs_loss, groups, pred_class=p.argmax(axis=1), true_class=y)
                                       for name, p in classifiers.items()}
    if labels.has("thresholds"):
        per_ear = {"model": ears, **{name: series_arrays(records, est) for name, est in base["ear_thresholds"].items()}}
        out["ear_threshold_mae_db"] = {name: ci(finite_mae, e["patient"], pred=e["est"], true=e["true"])
                                       for name, e in per_ear.items()}
        out["ear_threshold_within_10db"] = {name: ci(share_within_10db, e["patient"], est=e["est"], true=e["true"])
                                            for name, e in per_ear.items()}
    return {key: out[key] if key in out else labels.missing(need) for key, need in HEADLINE_NEEDS.items()}
