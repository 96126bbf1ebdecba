"""Calibration math: temperature scaling recovers a known temperature; conformal quantiles have their
finite-sample guarantee; stored calibration round-trips and is validated."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special

from abrflow.clinical.calibration import (
    CALIBRATION_FORMAT,
    Calibration,
    calibrate_heads,
    class_scores,
    conformal_interval,
    conformal_quantile,
    empirical_coverage,
    fit_temperature,
    min_scores_for,
    normalised_scores,
    prediction_sets,
    probabilities,
    temperature_nll,
    with_intervals,
)


@pytest.mark.parametrize("true_t", [0.5, 1.0, 3.0])
def test_fit_temperature_recovers_the_temperature_that_generated_the_labels(true_t):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20_000, 5))
    p = scipy.special.softmax(logits / true_t, axis=1)
    y = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(true_t, rel=0.05)
    assert temperature_nll(logits, y, t) <= temperature_nll(logits, y, 1.0) + 1e-9


def test_fit_temperature_binary_logits():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 4, 20_000)
    y = (rng.random(z.size) < scipy.special.expit(z / 2.0)).astype(int)
    assert fit_temperature(z, y) == pytest.approx(2.0, rel=0.05)
    assert probabilities(z, 2.0) == pytest.approx(scipy.special.expit(z / 2.0))


@pytest.mark.parametrize("bad", [
    (np.zeros((3, 5)), np.array([0, 1])),          # length mismatch
    (np.zeros((0, 5)), np.zeros(0, int)),         # empty
    (np.full((2, 5), np.nan), np.array([0, 1])),  # NaN logits
    (np.zeros((2, 5)), np.array([0, 5])),         # label out of range
])
def test_fit_temperature_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        fit_temperature(*bad)


def test_conformal_quantile_finite_sample_rank():
    scores = np.arange(1.0, 10.0)  # 9 scores: ⌈10 · 0.9⌉ = 9 → the largest
    assert conformal_quantile(scores, 0.1) == 9.0
    assert conformal_quantile(scores[:8], 0.1) == math.inf  # too few for 90%: no finite guarantee
    assert min_scores_for(0.1) == 9 and min_scores_for(0.05) == 19
    assert conformal_quantile(np.arange(100.0), 0.1) == 90.0  # ⌈101 · 0.9⌉ = 91st smallest
    with pytest.raises(ValueError):
        conformal_quantile(scores, 1.0)
    with pytest.raises(ValueError):
        conformal_quantile(np.array([1.0, np.nan]), 0.1)


def test_conformal_intervals_cover_at_least_nominal_on_exchangeable_data():
    """Averaged over many calibration/test draws, coverage is in [1 − α, 1 − α + 1/(n + 1)]."""
    rng = np.random.default_rng(2)
    n, alpha, covered = 50, 0.1, []
    for _ in range(2000):
        y_hat, log_std = rng.normal(0, 1, n + 1), rng.normal(0, 0.3, n + 1)
        y = y_hat + np.exp(log_std) * rng.standard_t(3, n + 1)  # heavy tails, heteroscedastic
        q = conformal_quantile(normalised_scores(y[:n], y_hat[:n], log_std[:n]), alpha)
        lo, hi = conformal_interval(y_hat[n:], log_std[n:], q)
        covered.append(lo[0] <= y[n] <= hi[0])
    assert 0.9 - 0.015 <= np.mean(covered) <= 0.9 + 1 / 51 + 0.015


def test_prediction_sets_and_class_scores():
    p = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    assert class_scores(p, np.array([0, 2])) == pytest.approx([0.3, 0.75])
    assert prediction_sets(p, 0.7).tolist() == [[True, False, False], [True, True, False]]
    assert empirical_coverage(np.array([1.0, 2.0, np.nan]), np.array([0.0, 3.0, 0.0]),
                              np.array([2.0, 4.0, 1.0])) == 0.5


WAVE_LATENCY_MS = {"i": 1.7, "iii": 3.8, "v": 6.5}


def _heads(n, rng):
    out = {"hearing_loss_logits": rng.normal(0, 1, (n, 5)), "threshold_db": rng.normal(20, 10, n),
           "threshold_log_std": np.full(n, np.log(10.0)), "threshold_no_response_logit": rng.normal(0, 1, n)}
    for w, lat in WAVE_LATENCY_MS.items():
        out.update({f"{w}_present_logit": rng.normal(0, 2, n), f"{w}_latency_ms": rng.normal(lat, 0.3, n),
                    f"{w}_latency_log_std": np.full(n, np.log(0.3)), f"{w}_amplitude_uv": rng.normal(0.3, 0.1, n),
                    f"{w}_amplitude_log_std": np.full(n, np.log(0.1))})
    return out


def _wave_targets(n, rng, present, judged=None):
    """Labels of every wave: present rows marked, the rest NaN; presence NaN where not judged."""
    judged = np.ones(n, bool) if judged is None else judged
    out = {}
    for w, lat in WAVE_LATENCY_MS.items():
        out[f"{w}_present"] = np.where(judged, present.astype(float), np.nan)
        out[f"{w}_latency_ms"] = np.where(present, rng.normal(lat, 0.3, n), np.nan)
        out[f"{w}_amplitude_uv"] = np.where(present, rng.normal(0.3, 0.1, n), np.nan)
    return out


def test_calibrate_heads_uses_only_labelled_rows_and_round_trips():
    rng = np.random.default_rng(3)
    n = 200
    outputs = _heads(n, rng)
    present = rng.random(n) < 0.7
    thr = rng.normal(20, 10, n)
    thr[:20], thr[20:30] = np.nan, np.inf
    targets = {"hearing_loss": np.where(np.arange(n) < 10, -1, rng.integers(0, 5, n)), "threshold_db": thr,
               **_wave_targets(n, rng, present)}
    targets["i_latency_ms"][:50] = np.nan  # I marked on fewer rows: I–III and I–V scored only where both are
    cal = calibrate_heads(outputs, targets, level=0.8)
    marked_i = int((present & (np.arange(n) >= 50)).sum())
    expected = {f"{w}_{what}": int(present.sum()) for w in WAVE_LATENCY_MS for what in ("latency_ms", "amplitude_uv")}
    expected.update(i_latency_ms=marked_i, i_iii_interval_ms=marked_i, i_v_interval_ms=marked_i,
                    iii_v_interval_ms=int(present.sum()), threshold_db=n - 30, hearing_loss=n - 10)
    assert cal.counts == expected
    assert all(t > 0 for t in cal.temperatures.values()) and set(cal.temperatures) >= {"i_present", "iii_present"}
    stored = cal.to_dict()
    assert stored["format"] == CALIBRATION_FORMAT and stored["level"] == 0.8
    assert all(isinstance(s, float) for s in stored["scores"]["threshold_db"])  # plain types only
    back = Calibration.from_dict(stored)
    for name in cal.scores:
        assert back.quantile(name, 0.9) == cal.quantile(name, 0.9)
    assert back.temperatures == cal.temperatures


def test_interpeak_interval_spread_adds_the_latency_spreads_in_quadrature():
    values = {"i_latency_ms": np.array([1.6]), "iii_latency_ms": np.array([3.7]), "v_latency_ms": np.array([5.6]),
              "i_latency_log_std": np.log([0.3]), "iii_latency_log_std": np.log([0.4]),
              "v_latency_log_std": np.log([0.4])}
    out = with_intervals(values)
    assert out["i_v_interval_ms"][0] == pytest.approx(4.0) and out["iii_v_interval_ms"][0] == pytest.approx(1.9)
    assert np.exp(out["i_iii_interval_log_std"][0]) == pytest.approx(0.5)


def test_calibrate_heads_without_labels_gives_no_temperature_and_no_interval():
    rng = np.random.default_rng(4)
    n = 20
    targets = {"hearing_loss": np.full(n, -1), "threshold_db": np.full(n, np.nan),
               **_wave_targets(n, rng, np.zeros(n, bool), judged=np.zeros(n, bool))}
    cal = calibrate_heads(_heads(n, rng), targets)
    assert cal.temperatures["hearing_loss"] is None and cal.temperatures["threshold_no_response"] is None
    assert cal.temperatures["i_present"] is None  # never judged: no temperature
    assert cal.quantile("v_latency_ms") == math.inf  # no scores: no finite interval, not a guess
    assert cal.quantile("i_v_interval_ms") == math.inf


@pytest.mark.parametrize("broken", [
    {"format": "abrflow.calibration/0"},
    {"format": CALIBRATION_FORMAT, "level": 0.9, "n_recordings": 1, "temperature": {"v_present": -1.0},
     "scores": {}},
    {"format": CALIBRATION_FORMAT, "level": 1.5, "n_recordings": 1, "temperature": {}, "scores": {}},
    {"format": CALIBRATION_FORMAT, "level": 0.9, "n_recordings": 1, "temperature": {},
     "scores": {"threshold_db": [-1.0]}},
])
def test_stored_calibration_is_validated(broken):
    with pytest.raises(ValueError):
        Calibration.from_dict(broken)
