"""Published ABR norms (abrflow.clinical.norms): values at the cited points, their monotonicity with
level and age, and z-scores and flags with missing waves, levels and ages."""

from __future__ import annotations

import numpy as np
import pytest

from abrflow.clinical import norms as N

ADULT = 30.0


def test_adult_wave_v_follows_elberling_and_prosser_arslan_beyond():
    mean, sd = N.normative_latency_ms("v", np.array([0.0, 20, 40, 60, 80, 90]), ADULT)
    # Elberling et al. 2010 at 20/40/60 dB nHL; Prosser & Arslan 1987 at 80/90 dB and its shape below 20 dB.
    np.testing.assert_allclose(mean, [7.60 + 9.30 - 8.12, 7.60, 6.59, 5.88, 5.71, 5.58], atol=0.01)
    np.testing.assert_allclose(sd[1:4], [0.79, 0.74, 0.25], atol=1e-6)
    np.testing.assert_allclose(N.normative_v_latency_ms(np.array([80.0]), np.array([np.nan])), 5.71, atol=0.01)
    # the published adult norms at 60 dB nHL (5.88–6.16 ms, issue 19) hold the curve's value
    assert 5.88 <= N.normative_v_latency_ms(60.0, ADULT) <= 6.16


def test_adult_waves_i_and_iii_and_intervals():
    i, _ = N.normative_latency_ms("i", 80.0, ADULT)
    iii, _ = N.normative_latency_ms("iii", 80.0, ADULT)
    assert 1.6 <= i <= 2.0 and 3.5 <= iii <= 4.1
    for name, expected in (("i_v", (3.95, 0.23)), ("iii_v", (2.07, 0.19)), ("i_iii", (1.88, 0.13))):
        np.testing.assert_allclose(N.normative_interval_ms(name, ADULT), expected, atol=0.005)
    # Intervals do not depend on level: I, III and V shift together.
    for level in (20.0, 50.0, 90.0):
        v, _ = N.normative_latency_ms("v", level, ADULT)
        i, _ = N.normative_latency_ms("i", level, ADULT)
        assert v - i == pytest.approx(3.95)


def test_newborn_values_match_the_neonate_study():
    for wave, (mean, sd) in (("i", (1.79, 0.20)), ("iii", (4.54, 0.31)), ("v", (6.75, 0.38))):
        m, s = N.normative_latency_ms(wave, 80.0, 0.0)
        assert m == pytest.approx(mean, abs=0.02) and s == pytest.approx(sd, abs=1e-6)
    for name, expected in (("i_iii", (2.75, 0.36)), ("iii_v", (2.22, 0.22)), ("i_v", (4.97, 0.43))):
        np.testing.assert_allclose(N.normative_interval_ms(name, 0.0), expected, atol=1e-9)


def test_monotone_in_level_and_age():
    levels = np.arange(-10.0, 111.0, 5.0)
    ages = np.array([0.0, 0.1, 0.25, 0.5, 1, 1.5, 2, 5, 10, 30])
    for wave in N.WAVE_KEYS:
        mean, sd = N.normative_latency_ms(wave, levels[:, None], ages[None, :])
        assert np.all(np.diff(mean, axis=0) < 0), wave  # later at lower levels
        assert np.all(np.diff(mean, axis=1) <= 1e-12), wave  # earlier with age
        assert np.all(sd > 0)
    for name, _, _ in N.INTERVALS:
        mean, sd = N.normative_interval_ms(name, ages)
        assert np.all(np.diff(mean) < 0) and np.all(np.diff(sd) <= 0)
    # Wave I is mature within weeks (τ 5 weeks), the I–V interval over years (τ 100 weeks).
    i_3m = N.normative_latency_ms("i", 80.0, 0.25)[0] - N.normative_latency_ms("i", 80.0, ADULT)[0]
    iv_18m = N.normative_interval_ms("i_v", 1.5)[0] - 3.95
    assert i_3m < 0.01 and 0.3 < iv_18m < 0.6


def test_unknown_inputs_and_bad_names():
    mean, sd = N.normative_latency_ms("v", np.array([np.nan, 60.0]), np.array([0.0, np.nan]))
    assert np.isnan(mean[0]) and np.isnan(sd[0]) and mean[1] == pytest.approx(5.88, abs=0.01)
    assert np.isfinite(N.normative_interval_ms("i_v", np.nan)[0])
    with pytest.raises(ValueError, match="unknown wave"):
        N.normative_latency_ms("iv", 80.0, ADULT)
    with pytest.raises(ValueError, match="unknown interval"):
        N.normative_interval_ms("i_iv", ADULT)


def test_z_score_outside_norm_and_band():
    z = N.z_score(np.array([6.0, np.nan, 7.0]), 5.0, 0.5)
    np.testing.assert_allclose(z, [2.0, np.nan, 4.0])
    np.testing.assert_array_equal(N.outside_norm(np.array([1.9, -2.5, np.nan, 2.0])), [False, True, False, True])
    lo, hi = N.latency_norm_band_ms("v", np.array([60.0, 80.0]), ADULT)
    mean, sd = N.normative_latency_ms("v", np.array([60.0, 80.0]), ADULT)
    np.testing.assert_allclose(hi - mean, N.OUTSIDE_NORM_Z * sd)
    np.testing.assert_allclose(mean - lo, N.OUTSIDE_NORM_Z * sd)
    lo1, hi1 = N.latency_norm_band_ms("i", 80.0, ADULT, z=1.0)
    assert hi1 - lo1 == pytest.approx(0.30)


def test_norm_flags_per_wave_and_interval():
    # Row 0 normal adult at 80 dB; row 1 prolonged I–V (retrocochlear pattern); row 2 no wave III;
    # row 3 unknown level; row 4 newborn with newborn values (normal for age).
    lat = {"i": np.array([1.76, 1.76, 1.8, 1.76, 1.79]),
           "iii": np.array([3.64, 4.6, np.nan, 3.64, 4.54]),
           "v": np.array([5.71, 6.9, 5.7, 5.71, 6.75])}
    level = np.array([80.0, 80, 80, np.nan, 80])
    age = np.array([ADULT, ADULT, np.nan, ADULT, 0.0])
    f = N.norm_flags(lat, level, age)
    assert set(f) == {f"{w}_latency_{k}" for w in N.WAVE_KEYS for k in ("z", "outside_norm")} | {
        f"{x}_interval_{k}" for x, _, _ in N.INTERVALS for k in ("ms", "z", "outside_norm")}
    assert not any(f[k][0] for k in f if k.endswith("outside_norm"))
    np.testing.assert_allclose(f["v_latency_z"][0], 0.0, atol=0.05)
    assert f["i_v_interval_outside_norm"][1] and f["v_latency_outside_norm"][1]
    assert f["i_v_interval_ms"][1] == pytest.approx(5.14)
    # Missing III: its latency and both intervals with III are NaN/False; I–V still judged.
    assert np.isnan(f["iii_latency_z"][2]) and not f["iii_latency_outside_norm"][2]
    assert np.isnan(f["i_iii_interval_ms"][2]) and np.isnan(f["iii_v_interval_z"][2])
    assert not f["i_iii_interval_outside_norm"][2] and np.isfinite(f["i_v_interval_z"][2])
    # Unknown level: latency z NaN, intervals still scored.
    assert all(np.isnan(f[f"{w}_latency_z"][3]) for w in N.WAVE_KEYS)
    assert all(np.isfinite(f[f"{x}_interval_z"][3]) for x, _, _ in N.INTERVALS)
    # The newborn's long latencies are normal for its age, not for an adult's.
    assert not any(f[k][4] for k in f if k.endswith("outside_norm"))
    adult = N.norm_flags({w: lat[w][4:] for w in lat}, np.array([80.0]), np.array([ADULT]))
    assert adult["v_latency_outside_norm"][0] and adult["i_v_interval_outside_norm"][0]
    # A missing key means that wave is absent everywhere.
    only_v = N.norm_flags({"v": np.array([5.71])}, np.array([80.0]), np.array([ADULT]))
    assert np.isnan(only_v["i_v_interval_ms"][0]) and np.isfinite(only_v["v_latency_z"][0])
