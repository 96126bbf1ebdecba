"""Evaluation metrics: perfect scores for perfect predictions, hand-checked small cases, NaN/inf
handling, the majority-class floor, severity boundaries, per-age strata and the patient bootstrap."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from abrflow.data.records import CLASS_NAMES
from abrflow.evaluation.metrics import (
    classification_metrics,
    clinical_metrics,
    expected_calibration_error,
    peak_metrics,
    severity_grade,
    signal_metrics,
    threshold_metrics,
)
from abrflow.evaluation.stratify import AGE_STRATA, bootstrap_ci, by_age_stratum

FS_HZ = 20000.0


def _waves(n: int = 20, t: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t_ms = np.arange(t) / FS_HZ * 1000
    lat = rng.uniform(5, 8, n)[:, None]
    return np.exp(-0.5 * ((t_ms - lat) / 0.3) ** 2) + 0.05 * rng.standard_normal((n, t))


def _one_hot(y: np.ndarray, k: int = 5) -> np.ndarray:
    return np.eye(k)[y]


# ----------------------------------------------------------------------------- signals
def test_signal_metrics_perfect_prediction():
    x = _waves()
    m = signal_metrics(x, x.copy(), FS_HZ)
    assert m["mse"] == 0 and m["mae"] == 0
    assert m["pearson_r"] == pytest.approx(1.0)
    assert m["snr_db"] == math.inf and m["snr_db_median"] == math.inf
    assert m["spectral_correlation"] == pytest.approx(1.0)
    assert m["log_spectral_distance_db"] == pytest.approx(0.0, abs=1e-9)
    assert m["envelope_correlation"] == pytest.approx(1.0)
    json.dumps(m)


def test_signal_metrics_half_amplitude_hand_checked():
    """pred = true / 2: shape is perfect, error power is a quarter of the signal power (6.02 dB),
    and every power-spectrum bin is off by a factor 4 (6.02 dB log-spectral distance)."""
    x = _waves()
    m = signal_metrics(0.5 * x, x, FS_HZ)
    assert m["mse"] == pytest.approx(np.mean((0.5 * x) ** 2))
    assert m["mae"] == pytest.approx(np.mean(np.abs(0.5 * x)))
    assert m["pearson_r"] == pytest.approx(1.0)
    assert m["snr_db"] == pytest.approx(10 * np.log10(4), abs=1e-9)
    assert m["snr_db_median"] == pytest.approx(10 * np.log10(4), abs=1e-9)
    assert m["spectral_correlation"] == pytest.approx(1.0)
    assert m["log_spectral_distance_db"] == pytest.approx(10 * np.log10(4), abs=1e-6)
    assert m["envelope_correlation"] == pytest.approx(1.0)


def test_signal_metrics_flat_row_and_unrelated_noise():
    x = _waves(n=4)
    pred = x.copy()
    pred[0] = 0.0  # flat: r undefined for this row, the mean uses the others
    m = signal_metrics(pred, x, FS_HZ)
    assert m["pearson_r"] == pytest.approx(1.0)
    noise = np.random.default_rng(1).standard_normal(x.shape)
    assert abs(signal_metrics(noise, x, FS_HZ)["pearson_r"]) < 0.3
    with pytest.raises(ValueError, match="differ in shape"):
        signal_metrics(x[:, :100], x, FS_HZ)
    assert math.isnan(signal_metrics(np.zeros((0, 200)), np.zeros((0, 200)), FS_HZ)["mse"])


# ----------------------------------------------------------------------------- wave V
def test_peak_metrics_perfect():
    y = np.array([1, 1, 0, 1, 0, 1], bool)
    lat = np.where(y, [5.6, 6.1, 0, 7.0, 0, 8.2], np.nan)
    amp = np.where(y, [0.3, 0.4, 0, 0.2, 0, 0.1], np.nan)
    m = peak_metrics(y.astype(float), y, lat, lat, amp, amp)
    assert m["presence_accuracy"] == 1 and m["presence_f1"] == 1 and m["presence_auc"] == 1
    assert m["latency_mae_ms"] == 0 and m["latency_rmse_ms"] == 0 and m["amplitude_mae_uv"] == 0
    assert m["latency_within_0_2ms"] == 1 and m["latency_within_0_5ms"] == 1
    assert m["n_latency_marked"] == 4
    json.dumps(m)


def test_peak_metrics_hand_checked():
    prob = np.array([0.9, 0.6, 0.4, 0.2])
    y = np.array([True, False, True, False])
    lat_true = np.array([6.0, np.nan, 7.0, np.nan])
    lat_pred = np.array([6.3, 5.0, np.nan, np.nan])  # the second marked wave was not found
    amp_true = np.array([0.4, np.nan, 0.2, np.nan])
    amp_pred = np.array([0.1, 0.3, 0.3, np.nan])
    m = peak_metrics(prob, y, lat_pred, lat_true, amp_pred, amp_true)
    # Calls at 0.5: [1, 1, 0, 0] vs [1, 0, 1, 0]: TP 1, FP 1, FN 1, TN 1.
    assert m["presence_accuracy"] == pytest.approx(0.5)
    assert m["presence_f1"] == pytest.approx(0.5)
    # Positives score 0.9 and 0.4, negatives 0.6 and 0.2: 3 of 4 pairs ordered right.
    assert m["presence_auc"] == pytest.approx(0.75)
    assert m["latency_mae_ms"] == pytest.approx(0.3)
    assert m["n_latency_scored"] == 1 and m["n_latency_marked"] == 2
    assert m["latency_within_0_5ms"] == pytest.approx(0.5)  # the missing pick counts as outside
    assert m["latency_within_0_2ms"] == 0
    assert m["amplitude_mae_uv"] == pytest.approx(0.2)
    assert m["amplitude_rmse_uv"] == pytest.approx(np.sqrt((0.09 + 0.01) / 2))


def test_peak_metrics_one_class_gives_nan_auc_not_crash():
    y = np.ones(5, bool)
    m = peak_metrics(np.full(5, 0.7), y, np.full(5, 6.0), np.full(5, 6.1), np.full(5, 0.2), np.full(5, 0.2))
    assert math.isnan(m["presence_auc"])
    assert m["presence_accuracy"] == 1
    empty = peak_metrics(*(np.zeros(0),) * 6)
    assert math.isnan(empty["presence_f1"]) and math.isnan(empty["latency_mae_ms"])


# ----------------------------------------------------------------------------- classes
def test_classification_perfect():
    y = np.repeat(np.arange(5), [40, 3, 6, 2, 4])
    m = classification_metrics(_one_hot(y), y, CLASS_NAMES)
    assert m["accuracy"] == 1 and m["balanced_accuracy"] == 1
    assert m["macro_f1"] == 1 and m["weighted_f1"] == 1 and m["macro_auc"] == 1
    assert m["ece"] == pytest.approx(0.0, abs=1e-12)
    assert m["confusion_matrix"] == np.diag([40, 3, 6, 2, 4]).tolist()
    assert all(v["f1"] == 1 and v["auc"] == 1 for v in m["per_class"].values())
    json.dumps(m)


def test_constant_normal_classifier_is_the_known_floor():
    """The predecessor's failure: predicting NORMAL everywhere on an 80 % NORMAL set."""
    y = np.repeat(np.arange(5), [800, 10, 100, 40, 50])
    probs = np.tile([0.8, 0.01, 0.1, 0.04, 0.05], (len(y), 1))
    m = classification_metrics(probs, y, CLASS_NAMES)
    f1_normal = 2 * 0.8 / 1.8
    assert m["macro_f1"] == pytest.approx(f1_normal / 5)  # ≈ 0.178
    assert m["macro_f1"] == pytest.approx(0.178, abs=0.001)
    assert m["balanced_accuracy"] == pytest.approx(0.2)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["macro_auc"] == pytest.approx(0.5)  # constant scores rank nothing
    assert m["per_class"]["SENSORINEURAL"]["recall"] == 0


def test_classification_unknown_rows_absent_class_and_hand_confusion():
    y = np.array([0, 0, 1, 1, 2, -1, -1])
    probs = np.array([[0.9, 0.1, 0, 0, 0], [0.2, 0.8, 0, 0, 0], [0.3, 0.7, 0, 0, 0],
                      [0.6, 0.4, 0, 0, 0], [0.1, 0.1, 0.8, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 1]])
    m = classification_metrics(probs, y, CLASS_NAMES)
    assert m["n"] == 5 and m["n_unknown_excluded"] == 2
    cm = np.zeros((5, 5), int)
    for t, p in [(0, 0), (0, 1), (1, 1), (1, 0), (2, 2)]:
        cm[t, p] += 1
    assert m["confusion_matrix"] == cm.tolist()
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.5 + 1) / 3)  # classes 0, 1, 2 occur
    assert math.isnan(m["per_class"]["TOTAL"]["auc"]) and m["per_class"]["TOTAL"]["support"] == 0
    assert math.isnan(m["per_class"]["TOTAL"]["recall"])
    # OvR AUC of class 0: positives score 0.9, 0.2; negatives 0.3, 0.6, 0.1 → 4 of 6 pairs ordered.
    assert m["per_class"]["NORMAL"]["auc"] == pytest.approx(4 / 6)
    # Class 1: positives 0.7, 0.4; negatives 0.1, 0.8, 0.1 → 4 of 6. Class 2 separates perfectly.
    assert m["per_class"]["NEUROPATHY"]["auc"] == pytest.approx(4 / 6)
    assert m["macro_auc"] == pytest.approx(np.mean([4 / 6, 4 / 6, 1.0]))
    with pytest.raises(ValueError, match="probs must be"):
        classification_metrics(probs[:, :3], y, CLASS_NAMES)
    everything_unknown = classification_metrics(probs[:2], np.array([-1, -1]), CLASS_NAMES)
    assert everything_unknown["n"] == 0 and math.isnan(everything_unknown["macro_f1"])


def test_ece_hand_checked():
    # Confidence 0.8 everywhere, half right: ECE = |0.5 − 0.8| = 0.3.
    probs = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 5 + [1] * 5)
    assert expected_calibration_error(probs, y) == pytest.approx(0.3)
    # Two bins: conf 0.95 all right (gap 0.05), conf 0.55 all wrong (gap 0.55), equal sizes.
    probs = np.array([[0.95, 0.05]] * 4 + [[0.55, 0.45]] * 4)
    y = np.array([0] * 4 + [1] * 4)
    assert expected_calibration_error(probs, y) == pytest.approx((0.05 + 0.55) / 2)


# ----------------------------------------------------------------------------- thresholds
def test_threshold_metrics_perfect_including_no_response():
    thr = np.array([5, 10, 35.0, 60, np.inf, np.inf])
    m = threshold_metrics(thr, thr.copy())
    assert m["mae_db"] == 0 and m["within_5db"] == 1 and m["within_10db"] == 1 and m["within_15db"] == 1
    assert m["n_no_response_agree"] == 2 and m["no_response_agreement_rate"] == 1
    assert m["agreement_within_10db"] == 1
    json.dumps(m)


def test_threshold_metrics_hand_checked_with_inf_and_nan():
    pred = np.array([10, 30, 52, np.inf, 40, np.inf, 20, np.nan])
    true = np.array([15, 20, 35, 50, np.inf, np.inf, np.nan, 10])
    m = threshold_metrics(pred, true)
    assert m["n"] == 6 and m["n_unknown_excluded"] == 2
    assert m["n_finite_pairs"] == 3
    assert m["mae_db"] == pytest.approx((5 + 10 + 17) / 3)
    assert m["bias_db"] == pytest.approx((-5 + 10 + 17) / 3)
    assert m["within_5db"] == pytest.approx(1 / 3)
    assert m["within_10db"] == pytest.approx(2 / 3)
    assert m["within_15db"] == pytest.approx(2 / 3)
    assert m["n_false_no_response"] == 1  # said "no response", truth 50 dB
    assert m["n_missed_no_response"] == 1  # said 40 dB, truth none
    assert m["n_no_response_true"] == 2 and m["n_no_response_agree"] == 1
    assert m["no_response_agreement_rate"] == pytest.approx(0.5)
    assert m["agreement_within_10db"] == pytest.approx((2 + 1) / 6)
    with pytest.raises(ValueError, match="-inf"):
        threshold_metrics(np.array([-np.inf]), np.array([10.0]))
    nothing = threshold_metrics(np.array([np.nan]), np.array([10.0]))
    assert nothing["n"] == 0 and math.isnan(nothing["mae_db"])


def test_severity_grade_boundaries():
    thr = np.array([-5, 0, 20, 20.5, 21, 40, 41, 70, 71, 90, 90.5, 91, 120, np.inf, np.nan])
    expected = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4, -1]
    assert severity_grade(thr).tolist() == expected


def test_clinical_metrics_perfect_and_hand_checked():
    thr = np.array([10, 15, 30, 55, 80, 100, np.inf, 5])
    cls = np.array([0, 0, 2, 2, 2, 3, 3, 0])
    m = clinical_metrics(thr, thr.copy(), cls, cls.copy())
    for block in ("diagnosis_by_class", "diagnosis_by_threshold"):
        assert m[block]["sensitivity"] == 1 and m[block]["specificity"] == 1 and m[block]["kappa"] == 1
    assert m["severity"]["quadratic_kappa"] == pytest.approx(1.0)
    assert m["thresholds"]["mae_db"] == 0
    json.dumps(m)

    # Binary: truth [loss, loss, normal, normal], call [loss, normal, normal, normal]:
    # sensitivity 1/2, specificity 1, observed agreement 3/4, chance 1/2 → kappa 0.5.
    m = clinical_metrics(np.array([50, 10, 10, 10.0]), np.array([50, 50, 10, 10.0]),
                         np.array([2, 0, 0, 0]), np.array([2, 2, 0, 0]))
    for block in ("diagnosis_by_class", "diagnosis_by_threshold"):
        assert m[block]["sensitivity"] == pytest.approx(0.5)
        assert m[block]["specificity"] == pytest.approx(1.0)
        assert m[block]["kappa"] == pytest.approx(0.5)
    # Quadratic weights: one grade off costs less than four grades off.
    true = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4.0]) * 20 + 10
    near = clinical_metrics(true + 20, true)["severity"]["quadratic_kappa"]
    far = clinical_metrics(true[::-1], true)["severity"]["quadratic_kappa"]
    assert near > far


def test_clinical_metrics_single_category_kappa_is_nan():
    m = clinical_metrics(np.array([10, 15.0]), np.array([10, 15.0]), np.array([0, 0]), np.array([0, 0]))
    assert math.isnan(m["diagnosis_by_class"]["kappa"])
    assert math.isnan(m["diagnosis_by_class"]["sensitivity"])
    assert m["diagnosis_by_class"]["specificity"] == 1


# ----------------------------------------------------------------------------- strata, bootstrap
def test_by_age_stratum_slices_arrays_and_passes_other_keywords():
    age = np.array([0.2, 0.5, 2.0, 10, 30, 70, np.nan, 17.99])
    y = np.array([0, 1, 0, 0, 1, 0, 1, 1])

    def fraction(values: np.ndarray, scale: float) -> dict:
        return {"mean": float(values.mean() * scale)}

    out = by_age_stratum(age, fraction, values=y, scale=2.0)
    assert list(out) == [label for *_, label in AGE_STRATA] + ["unknown"]
    assert out["<1 y"] == {"n": 2, "mean": 1.0}
    assert out["1–3 y"] == {"n": 1, "mean": 0.0}
    assert out["3–18 y"] == {"n": 2, "mean": 1.0}
    assert out[">60 y"]["n"] == 1 and out["unknown"] == {"n": 1, "mean": 2.0}
    no_adults = by_age_stratum(age[:3], lambda values: float(values.sum()), values=y[:3])
    assert no_adults["18–60 y"] == {"n": 0} and "unknown" not in no_adults
    assert no_adults["<1 y"] == {"n": 2, "value": 1.0}


def test_by_age_stratum_with_classification_metrics():
    y = np.array([0, 0, 2, 2, 0, 4])
    out = by_age_stratum(np.array([0.1, 0.3, 0.4, 40, 50, 55.0]), classification_metrics,
                         probs=_one_hot(y), y_true=y, class_names=CLASS_NAMES)
    assert out["<1 y"]["n"] == 3 and out["<1 y"]["macro_f1"] == 1
    json.dumps(out)


def _mean(values: np.ndarray) -> float:
    return float(values.mean())


def test_bootstrap_resamples_patients_not_recordings():
    """Copies of a patient's recording carry no new information: the interval must not shrink."""
    rng = np.random.default_rng(3)
    per_patient = rng.normal(0, 1, 40)
    patients = np.arange(40)
    once = bootstrap_ci(_mean, patients, n_boot=300, seed=7, values=per_patient)
    copies = 10
    copied = bootstrap_ci(_mean, np.repeat(patients, copies), n_boot=300, seed=7,
                          values=np.repeat(per_patient, copies))
    assert copied["lo"] == pytest.approx(once["lo"]) and copied["hi"] == pytest.approx(once["hi"])
    assert copied["value"] == pytest.approx(once["value"])
    # Treating each copy as independent (recording-level resampling) would shrink it ~√10-fold.
    naive = bootstrap_ci(_mean, np.arange(40 * copies), n_boot=300, seed=7, values=np.repeat(per_patient, copies))
    assert (naive["hi"] - naive["lo"]) < 0.5 * (once["hi"] - once["lo"])
    assert once["lo"] < once["value"] < once["hi"] and once["n_valid"] == 300


def test_bootstrap_skips_undefined_resamples_and_is_seeded():
    groups = np.array([0, 0, 1, 1, 2, 2])
    y = np.array([1, 1, 0, 0, 1, 0], bool)
    score = np.array([0.9, 0.8, 0.1, 0.3, 0.7, 0.4])

    def auc(y: np.ndarray, score: np.ndarray) -> float:
        return float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else math.nan

    a = bootstrap_ci(auc, groups, n_boot=200, seed=1, y=y, score=score)
    b = bootstrap_ci(auc, groups, n_boot=200, seed=1, y=y, score=score)
    assert a == b
    assert a["value"] == 1.0
    assert 0 < a["n_valid"] < 200  # resamples of group 0 (or 1) alone have one class: skipped
    assert a["lo"] <= a["hi"] <= 1.0
