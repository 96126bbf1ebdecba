"""Classical baselines: the wave-V picker, the two series thresholds, the hand-feature classifier and
the majority floor, on hand-made traces and on a small simulated cohort (numbers measured on seeds
21/22, 31/32, 41/42 are quoted next to each assertion)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from abrflow.clinical import classical_thresholds as C
from abrflow.clinical import features as F
from abrflow.clinical import norms as N
from abrflow.clinical import picker as P
from abrflow.clinical.thresholds import aligned_thresholds, true_series_thresholds
from abrflow.data.records import CLASS_NAMES, ABRRecords, empty_rows
from abrflow.data.synthetic import simulate_cohort
from abrflow.evaluation import baselines as B
from abrflow.evaluation.metrics import classification_metrics

FS_HZ = 20000.0


def _series_records(levels_db: np.ndarray, threshold_db: float, noise_uv: float = 0.02, seed: int = 0,
                    age_years: float = 30.0, runs: int = 2) -> ABRRecords:
    """One ear: V (with its trough and SN10) at the normative latency above θ, small noise below."""
    rng = np.random.default_rng(seed)
    levels = np.repeat(np.asarray(levels_db, float), runs)
    n = len(levels)
    t_ms = np.arange(200) * 1000 / FS_HZ
    lat = N.normative_v_latency_ms(levels, np.full(n, age_years))
    amp = np.where(levels > threshold_db, 0.5 * (1 - np.exp(-(levels - threshold_db) / 10)), 0.0)
    g = lambda c, s: np.exp(-0.5 * ((t_ms[None, :] - c[:, None]) / s) ** 2)  # noqa: E731
    wave = amp[:, None] * (g(lat, 0.3) - 0.5 * g(lat + 0.75, 0.3) - 0.4 * g(lat + 3.0, 1.2))
    rows = empty_rows(n)
    rows.update(patient_id=np.full(n, "P1"), ear=np.full(n, "L"), intensity_db=levels.astype(np.float32),
                age_years=np.full(n, age_years, np.float32), stimulus_rate_hz=np.full(n, 33.1, np.float32),
                hearing_loss=np.zeros(n, np.int8),
                threshold_db=np.full(n, threshold_db if 0 <= threshold_db <= 100 else np.nan, np.float32))
    signal = (wave + noise_uv * rng.standard_normal(wave.shape)).astype(np.float32)
    return ABRRecords(signal=signal, sampling_rate_hz=FS_HZ, source="test:series", **rows).validate()


# ----------------------------------------------------------------------------- hand-made traces
def test_picker_finds_a_clean_wave_v_and_rejects_noise():
    rec = _series_records(np.array([80.0, 60, 40, 20]), threshold_db=-100.0, noise_uv=0.005)  # V everywhere
    picked = P.pick_wave_v(rec)
    expected = N.normative_v_latency_ms(rec.intensity_db, rec.age_years)
    assert np.all(np.abs(picked["v_latency_ms"] - expected) <= 0.1)
    assert picked["v_present"].all() and (picked["v_present_score"] > 0.8).all()
    np.testing.assert_allclose(picked["v_amplitude_uv"], 0.5, atol=0.05)
    assert (picked["v_peak_to_trough_uv"] > picked["v_amplitude_uv"]).all()
    # Pure noise: the template still fits somewhere in the window now and then (the criterion is
    # F1-optimal against marked V, a liberal choice: 33 % of simulated recordings without V pass).
    noise = _series_records(np.tile([80.0, 60, 40, 20], 25), threshold_db=200.0, noise_uv=0.1, seed=1, runs=1)
    noise_picked = P.pick_wave_v(noise)
    assert noise_picked["v_present"].mean() < 0.4
    assert np.median(noise_picked["v_present_score"]) < 0.45


def test_crosscov_threshold_on_a_clean_series():
    levels = np.array([80.0, 60, 50, 40, 30, 20, 10])
    rec = _series_records(levels, threshold_db=33.0, noise_uv=0.01)
    (key,) = np.unique(rec.series_key)
    thr = C.series_threshold_crosscov(rec)[key]
    assert 30.0 <= thr <= 45.0
    silent = _series_records(levels, threshold_db=200.0, noise_uv=0.05, seed=2)
    assert C.series_threshold_crosscov(silent)[key] == np.inf



def test_lowest_peak_threshold_needs_half_the_runs():
    levels = np.array([80.0, 60, 40, 30, 20])
    rec = _series_records(levels, threshold_db=25.0, runs=2)  # rows: 80, 80, 60, 60, …, 20, 20
    (key,) = np.unique(rec.series_key)
    calls = np.array([1, 1, 1, 0, 1, 1, 0, 1, 0, 0], bool)  # 30 dB: one run of two
    assert C.series_threshold_lowest_peak(rec, {"v_present": calls})[key] == 30.0
    assert C.series_threshold_lowest_peak(rec, {"v_present": np.zeros(10, bool)})[key] == np.inf
    assert C.series_threshold_lowest_tested(rec)[key] == 20.0


def test_majority_baseline_is_the_floor():
    y_train = np.repeat(np.arange(5), [80, 1, 11, 3, 5])
    predict = B.majority_baseline(np.r_[y_train, -1])
    probs = predict(len(y_train))
    np.testing.assert_allclose(probs[0], [0.8, 0.01, 0.11, 0.03, 0.05])
    m = classification_metrics(probs, y_train, CLASS_NAMES)
    assert m["balanced_accuracy"] == pytest.approx(0.2)
    assert m["macro_f1"] == pytest.approx(0.178, abs=0.002)
    assert predict(np.zeros(3)).shape == (3, 5)
    with pytest.raises(ValueError, match="at least one known class"):
        B.majority_baseline(np.array([-1, -1]))


# ----------------------------------------------------------------------------- simulated cohort
@pytest.fixture(scope="module")
def cohorts() -> tuple[ABRRecords, ABRRecords]:
    return simulate_cohort(200, seed=21), simulate_cohort(150, seed=22)


@pytest.fixture(scope="module")
def results(cohorts) -> dict:
    train, test = cohorts
    # One OpenMP thread: gradient boosting on a shared 2-core machine otherwise spins for minutes.
    with threadpool_limits(1, user_api="openmp"):
        return B.run_baselines(train, test, n_boot=50)


@pytest.fixture(scope="module")
def picked(cohorts) -> dict:
    return P.pick_wave_v(cohorts[1])


def test_picker_latency_on_marked_waves(cohorts, picked):
    """Measured on the simulator with the IV–V complex (issue 19): latency MAE 0.17 ms at ≥ 40 dB,
    99.5 % of marked V with a peak in the window, 90 % within ±0.5 ms (the picker takes the larger
    of IV and V, where the clinician marks V before its negative slope); before the complex was
    simulated: 0.11–0.13 ms, 98 %."""
    test = cohorts[1]
    sel = test.v_present & (test.intensity_db >= 40)
    err = np.abs(picked["v_latency_ms"] - test.v_latency_ms)[sel]
    assert np.isfinite(err).mean() >= 0.98
    assert np.nanmean(err) < 0.25
    assert np.mean(err <= 0.5) >= 0.85


def test_picker_presence_and_criterion(results, cohorts, picked):
    """Measured: presence F1 0.90, AUC 0.89; F1-optimal criterion 0.50–0.525 on other seeds."""
    wave_v = results["peak_picker"]["wave_v"]
    assert wave_v["presence_f1"] >= 0.85
    assert wave_v["presence_auc"] >= 0.83
    assert wave_v["amplitude_mae_uv"] < 0.1
    best = B.calibrate_criterion(picked["v_present_score"], cohorts[1].v_present)
    assert abs(best - P.V_PRESENT_CRITERION) <= 0.1


def test_crosscov_threshold_near_truth_for_normal_ears(cohorts):
    """Measured on normal ears: 52–56 % within ±10 dB of the recorded θ (the screening floor
    censors: an ear tested down to 30 dB cannot show θ = 5), 84–86 % of the attainable θ
    (the rest mostly "no response" calls on ears whose top-level runs do not reproduce)."""
    test = cohorts[1]
    est = C.series_threshold_crosscov(test)
    keys, first = np.unique(test.series_key, return_index=True)
    cls = dict(zip(keys.tolist(), test.hearing_loss[first].tolist()))
    for attainable, share in ((False, 0.45), (True, 0.75)):
        e, t, k = aligned_thresholds(est, true_series_thresholds(test, attainable=attainable))
        normal = np.array([cls[x] for x in k]) == 0
        assert np.mean(np.abs(e[normal] - t[normal]) <= 10) >= share
    e, t, k = aligned_thresholds(est, true_series_thresholds(test))
    no_response = np.isin([cls[x] for x in k], [1, 3])
    assert np.mean(np.isinf(e[no_response])) >= 0.6  # measured 0.80–0.90


def test_series_thresholds_scored_in_results(results):
    """Measured attainable-θ MAE: cross-covariance 3.5–3.9 dB, lowest peak 2.2–2.4 dB, and the
    protocol floor (lowest tested level, no waveform read) 1.3–1.5 dB: the simulated protocol
    stops just below θ, so threshold numbers on this cohort must be read against that floor."""
    assert results["threshold_crosscov"]["attainable"]["mae_db"] < 5.0
    assert results["peak_picker"]["threshold_lowest_peak"]["attainable"]["mae_db"] < 4.0
    assert results["threshold_protocol_floor"]["attainable"]["mae_db"] < 3.0
    recorded = results["threshold_crosscov"]["recorded"]
    assert {"thresholds", "diagnosis_by_threshold", "severity"} <= set(recorded)
    assert recorded["severity"]["quadratic_kappa"] > 0.5


def test_hand_features_beat_the_majority_floor(results):
    """Measured macro-F1: hand features 0.66–0.83, majority 0.18."""
    hand = results["hand_features"]["classification"]
    floor = results["majority"]["classification"]
    assert floor["macro_f1"] == pytest.approx(0.18, abs=0.02)
    assert floor["balanced_accuracy"] == pytest.approx(0.2)
    assert hand["macro_f1"] > 0.5 > floor["macro_f1"] + 0.2
    assert hand["balanced_accuracy"] > 0.5
    assert results["hand_features"]["macro_f1_ci"]["lo"] > results["majority"]["macro_f1_ci"]["hi"]


def test_classifier_probabilities_and_results_are_json(cohorts, results):
    train, test = cohorts
    feats = F.hand_features(test)
    assert feats.shape == (len(test), len(F.FEATURE_NAMES))
    with threadpool_limits(1, user_api="openmp"):
        clf = B.HandFeatureClassifier(max_iter=20).fit(train)
        probs = clf.predict_proba(test, features=feats)
    assert probs.shape == (len(test), 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    text = json.dumps(results)
    assert "NaN" not in json.dumps(results["hand_features"]["classification"]["macro_f1"])
    assert results["n_series"] == len(np.unique(test.series_key)) and len(text) > 1000
