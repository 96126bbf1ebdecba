"""The physiological cohort simulator: determinism, cohort make-up and the physiology of DESIGN.md §5."""

from __future__ import annotations

import re

import numpy as np
import pytest

from abrflow.data.records import ABRRecords
from abrflow.data.synthetic import (
    CONDUCTIVE,
    NEUROPATHY,
    NORMAL,
    SENSORINEURAL,
    TOTAL,
    Physiology,
    cochlear_delay_ms,
    simulate_cohort,
)
from abrflow.errors import ConfigError

N_PATIENTS = 300


@pytest.fixture(scope="module")
def cohort() -> ABRRecords:
    return simulate_cohort(N_PATIENTS, seed=11)


@pytest.fixture(scope="module")
def loss_cohort() -> ABRRecords:
    """Half the recordings from conductive and sensorineural ears: enough ears to compare curves."""
    return simulate_cohort(200, seed=12, class_prevalence=(0.5, 0.0, 0.25, 0.0, 0.25))


def _normal_with_v(rec: ABRRecords) -> np.ndarray:
    return (rec.hearing_loss == NORMAL) & rec.extra["true_v_present"]


def _level_curve(rec: ABRRecords, mask: np.ndarray, min_rows: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Mean true V latency per level over the rows in ``mask`` (levels with enough rows)."""
    levels, latencies = [], []
    for level in np.unique(rec.intensity_db[mask]):
        rows = mask & (rec.intensity_db == level)
        if rows.sum() >= min_rows:
            levels.append(level)
            latencies.append(rec.extra["true_v_latency_ms"][rows].mean())
    return np.asarray(levels), np.asarray(latencies)


# ----------------------------------------------------------------------------- determinism, container
def test_same_seed_gives_identical_arrays_and_other_seed_differs():
    a, b = simulate_cohort(30, seed=5), simulate_cohort(30, seed=5)
    c = simulate_cohort(30, seed=6)
    for name in ("signal", "intensity_db", "age_years", "fmp", "v_latency_ms", "v_amplitude_uv",
                 "wave_latency_ms", "hearing_loss", "threshold_db", "patient_id", "ear"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.extra.keys() == b.extra.keys()
    for key in a.extra:
        np.testing.assert_array_equal(a.extra[key], b.extra[key], err_msg=key)
    n = min(len(a), len(c))
    assert not np.allclose(a.signal[:n], c.signal[:n])
    assert not np.array_equal(a.age_years[:n], c.age_years[:n])


def test_records_are_valid_and_labelled_as_simulated(cohort):
    cohort.validate()
    assert cohort.signal.shape == (len(cohort), 200) and cohort.signal.dtype == np.float32
    assert cohort.sampling_rate_hz == 20000.0 and cohort.signal_unit == "uV"
    assert cohort.threshold_source == "simulated"
    assert cohort.source == f"synthetic:seed=11,patients={N_PATIENTS}"
    assert all(re.fullmatch(r"P\d{5}", p) for p in np.unique(cohort.patient_id))
    assert len(np.unique(cohort.patient_id)) == N_PATIENTS
    assert set(np.unique(cohort.ear)) == {"L", "R"}
    assert set(np.unique(cohort.session_id)) <= {"", "S1"}
    n = len(cohort)
    for key, shape in [("true_v_latency_ms", (n,)), ("true_v_amplitude_uv", (n,)), ("true_wave_latency_ms", (n, 3)),
                       ("true_v_present", (n,)), ("sweeps_accepted", (n,)), ("sweeps_rejected", (n,)),
                       ("sigma_eeg_uv", (n,)), ("residual_noise_uv", (n,)), ("air_bone_gap_db", (n,))]:
        assert cohort.extra[key].shape == shape, key


def test_other_time_base_and_tiny_cohort():
    rec = simulate_cohort(2, seed=1, sampling_rate_hz=10000.0, signal_length=120)
    assert rec.signal.shape[1] == 120 and rec.sampling_rate_hz == 10000.0
    assert np.allclose(rec.time_ms[-1], 11.9)
    assert len(simulate_cohort(1, seed=0)) > 0


# ----------------------------------------------------------------------------- cohort make-up
def test_protocol_levels_rates_and_recordings_per_patient(cohort):
    per_patient = len(cohort) / N_PATIENTS
    assert 22 <= per_patient <= 28
    assert cohort.intensity_db.min() >= 0 and cohort.intensity_db.max() <= 100
    assert np.all(cohort.intensity_db % 5 == 0)
    rates = np.round(cohort.stimulus_rate_hz.astype(np.float64), 1)
    assert set(np.unique(rates)) <= {11.1, 21.1, 33.1, 49.1}
    assert np.mean(rates == 33.1) > 0.6
    # Each series descends: its first recording is at its loudest level.
    key = cohort.series_key
    first = np.r_[True, key[1:] != key[:-1]]
    for k in np.unique(key)[:50]:
        rows = np.flatnonzero(key == k)
        assert cohort.intensity_db[rows[0]] == cohort.intensity_db[rows].max()
    assert first.sum() == len(np.unique(key)) == 2 * N_PATIENTS


def test_class_prevalence_by_recording_is_near_the_clinic(cohort):
    targets = {NORMAL: (0.797, 0.035), SENSORINEURAL: (0.106, 0.025), CONDUCTIVE: (0.056, 0.02),
               TOTAL: (0.033, 0.012), NEUROPATHY: (0.008, 0.004)}
    for code, (share, tol) in targets.items():
        assert abs(np.mean(cohort.hearing_loss == code) - share) < tol, code


def test_ages_are_mostly_infants(cohort):
    first = np.unique(cohort.patient_id, return_index=True)[1]
    ages = cohort.age_years[first]
    assert np.median(ages) < 1.0
    assert np.percentile(ages, 75) <= 2.0
    assert ages.min() >= 0 and ages.max() <= 75 and ages.max() > 18


def test_thresholds_match_each_ears_class(cohort):
    theta, cls = cohort.threshold_db, cohort.hearing_loss
    gap = cohort.extra["air_bone_gap_db"]
    assert np.all(np.isposinf(theta[np.isin(cls, [TOTAL, NEUROPATHY])]))
    normal = cls == NORMAL
    assert theta[normal].min() >= 0 and theta[normal].max() <= 30
    assert theta[normal & (cohort.age_years >= 18)].max() <= 20
    sn = cls == SENSORINEURAL
    assert theta[sn].min() >= 30 and theta[sn].max() <= 90
    cd = cls == CONDUCTIVE
    assert gap[cd].min() >= 20 and gap[cd].max() <= 60
    assert (theta[cd] - gap[cd]).min() >= 0 and (theta[cd] - gap[cd]).max() <= 20
    assert np.all(gap[~cd] == 0)
    # One class and one threshold per ear.
    for k in np.unique(cohort.series_key):
        rows = cohort.series_key == k
        assert len(np.unique(cls[rows])) == 1 and len(np.unique(theta[rows])) == 1


# ----------------------------------------------------------------------------- latencies
def test_v_latency_falls_with_intensity_within_each_normal_series(cohort):
    rows = np.flatnonzero(_normal_with_v(cohort))
    order = rows[np.lexsort((cohort.intensity_db[rows], cohort.stimulus_rate_hz[rows], cohort.series_key[rows]))]
    same = (cohort.series_key[order][1:] == cohort.series_key[order][:-1]) & \
        (cohort.stimulus_rate_hz[order][1:] == cohort.stimulus_rate_hz[order][:-1])
    louder = cohort.intensity_db[order][1:] > cohort.intensity_db[order][:-1]
    d_lat = np.diff(cohort.extra["true_v_latency_ms"][order])
    assert (same & louder).sum() > 500
    assert np.all(d_lat[same & louder] < 0)


def test_latency_intensity_slope_steepens_towards_threshold():
    phys = Physiology()
    def slope(level_db):
        return float(cochlear_delay_ms(np.array(level_db - 5.0), phys) - cochlear_delay_ms(np.array(level_db + 5.0), phys)) / 10
    assert 0.01 <= slope(70) <= 0.035
    assert slope(20) >= 0.045
    assert slope(20) > slope(40) > slope(70)


def test_adult_and_infant_wave_v_latency_at_80_db(cohort):
    v = cohort.extra["true_v_latency_ms"]
    at80 = _normal_with_v(cohort) & (cohort.intensity_db == 80)
    adult = at80 & (cohort.age_years >= 18)
    infant = at80 & (cohort.age_years < 1)
    assert adult.sum() > 20 and infant.sum() > 100
    assert abs(v[adult].mean() - 5.7) < 0.3
    assert v[infant].mean() > v[adult].mean() + 0.3


def test_infant_latency_intensity_anchors(cohort):
    infant = _normal_with_v(cohort) & (cohort.age_years < 1) & np.isclose(cohort.stimulus_rate_hz, 33.1)
    v = cohort.extra["true_v_latency_ms"]
    for level, (lo, hi) in {80: (6.1, 6.6), 40: (6.8, 7.15), 10: (8.2, 9.1)}.items():
        rows = infant & (cohort.intensity_db == level)
        assert rows.sum() >= 10, level
        assert lo <= v[rows].mean() <= hi, (level, v[rows].mean())


def test_interpeak_intervals_mature(cohort):
    waves = cohort.extra["true_wave_latency_ms"]
    at80 = _normal_with_v(cohort) & (cohort.intensity_db == 80) & np.isfinite(waves[:, 0])
    i_v = waves[:, 2] - waves[:, 0]
    i_iii = waves[:, 1] - waves[:, 0]
    newborn, adult = at80 & (cohort.age_years < 0.15), at80 & (cohort.age_years >= 18)
    assert abs(np.median(i_v[newborn]) - 5.0) < 0.25
    assert abs(np.median(i_v[adult]) - 4.0) < 0.25
    assert abs(np.median(waves[at80, 0]) - 1.5) < 0.2
    # I–III / I–V was a fixed 0.52; it now follows the cited norms by age (adult (3.95 − 2.07) / 3.95
    # = 0.476, Picton via BrainWave.jl; term newborn 2.75 / 4.97 = 0.553), and V is the marked V.
    ratio = i_iii / i_v
    assert np.all((ratio[at80] > 0.45) & (ratio[at80] < 0.58))
    assert np.median(ratio[newborn]) > np.median(ratio[adult]) + 0.04


def test_conductive_loss_shifts_the_latency_intensity_curve_by_the_gap(loss_cohort):
    """A conductive ear at level L behaves like a normal ear at L − gap (same age band, same rate)."""
    rec = loss_cohort
    v = rec.extra["true_v_latency_ms"]
    gap = rec.extra["air_bone_gap_db"]
    rate33 = np.isclose(rec.stimulus_rate_hz, 33.1)
    for band in (rec.age_years < 1, rec.age_years >= 1):
        levels, normal_lat = _level_curve(rec, _normal_with_v(rec) & band & rate33)
        cd = (rec.hearing_loss == CONDUCTIVE) & rec.extra["true_v_present"] & band & rate33
        effective = rec.intensity_db - gap
        cd &= (effective >= levels.min()) & (effective <= levels.max())
        assert cd.sum() >= 50
        shifted = v[cd] - np.interp(effective[cd], levels, normal_lat)
        unshifted = v[cd] - np.interp(rec.intensity_db[cd], levels, normal_lat)
        assert abs(np.median(shifted)) < 0.2
        assert np.median(unshifted) > 0.4
    # The interpeak interval stays normal (mature ears, so age does not confound it).
    waves = rec.extra["true_wave_latency_ms"]
    i_v = waves[:, 2] - waves[:, 0]
    mature = np.isfinite(i_v) & (rec.age_years >= 2)
    cd, nm = mature & (rec.hearing_loss == CONDUCTIVE), mature & (rec.hearing_loss == NORMAL)
    assert cd.sum() >= 10
    assert abs(np.median(i_v[cd]) - np.median(i_v[nm])) < 0.25


def test_sensorineural_latency_is_normal_well_above_threshold_and_prolonged_near_it(loss_cohort):
    rec = loss_cohort
    v = rec.extra["true_v_latency_ms"]
    sl = rec.extra["sensation_level_db"]
    rate33 = np.isclose(rec.stimulus_rate_hz, 33.1)
    levels, normal_lat = _level_curve(rec, _normal_with_v(rec) & rate33)
    sn = (rec.hearing_loss == SENSORINEURAL) & rec.extra["true_v_present"] & rate33 & \
        (rec.intensity_db >= levels.min()) & (rec.intensity_db <= levels.max())
    excess = v - np.interp(rec.intensity_db, levels, normal_lat)
    far, near = np.median(excess[sn & (sl >= 20)]), np.median(excess[sn & (sl < 10)])
    assert abs(far) < 0.25
    assert near > 0.25 and near > far + 0.25


def test_faster_rate_delays_wave_v(cohort):
    v = cohort.extra["true_v_latency_ms"]
    at80 = _normal_with_v(cohort) & (cohort.intensity_db == 80)
    key = cohort.series_key
    deltas = []
    for k in np.unique(key[at80 & np.isclose(cohort.stimulus_rate_hz, 49.1)]):
        rows = at80 & (key == k)
        slow, fast = rows & np.isclose(cohort.stimulus_rate_hz, 11.1), rows & np.isclose(cohort.stimulus_rate_hz, 49.1)
        if slow.any() and fast.any():
            deltas.append(v[fast][0] - v[slow][0])
    assert len(deltas) >= 5
    assert 0.15 <= np.median(deltas) <= 0.35  # +0.05 ms per 10/s over 38/s, ×1.5 in infants


# ----------------------------------------------------------------------------- amplitudes and signals
def test_v_amplitude_grows_with_sensation_level_then_saturates(cohort):
    amp = cohort.extra["true_v_amplitude_uv"]
    sl = cohort.extra["sensation_level_db"]
    neural = np.isin(cohort.hearing_loss, [NORMAL, CONDUCTIVE])
    medians = [np.median(amp[neural & (sl > lo) & (sl <= hi)]) for lo, hi in [(0, 10), (10, 20), (20, 40), (40, 100)]]
    assert medians[0] < medians[1] < medians[2]
    assert medians[3] < 1.15 * medians[2]
    assert amp.max() <= 0.6 + 1e-6
    assert np.all(amp[~cohort.extra["true_v_present"]] == 0)


def test_waves_i_and_iii_vanish_before_v(cohort):
    tw = cohort.extra["true_wave_latency_ms"]
    sl = cohort.extra["sensation_level_db"]
    assert not np.isfinite(tw[sl < 20, 0]).any() and not np.isfinite(tw[sl < 20, 1]).any()
    assert np.all(np.isfinite(tw[:, 2])[np.isfinite(tw[:, 0])])
    assert np.isfinite(tw[:, 2]).sum() > np.isfinite(tw[:, 1]).sum() > np.isfinite(tw[:, 0]).sum()


def test_signal_amplitudes_are_physiological(cohort):
    assert np.abs(cohort.signal).max() < 10.0
    rms = np.sqrt((cohort.signal ** 2).mean(axis=1))
    assert np.median(rms[cohort.hearing_loss == TOTAL]) < 0.2
    loud = _normal_with_v(cohort) & (cohort.intensity_db == 80)
    window = cohort.time_ms >= 1.0
    peak_to_peak = np.ptp(cohort.signal[:, window], axis=1)
    assert 0.3 < np.median(peak_to_peak[loud]) < 2.0
    assert np.median(rms[loud]) > 1.5 * np.median(rms[cohort.hearing_loss == TOTAL])


def test_alternating_polarity_cancels_most_of_the_cochlear_microphonic():
    only_neuropathy = dict(class_prevalence=(0.0, 1.0, 0.0, 0.0, 0.0), artifact_rate=0.0)
    alt = simulate_cohort(12, seed=3, alternate_polarity=True, **only_neuropathy)
    single = simulate_cohort(12, seed=3, alternate_polarity=False, **only_neuropathy)
    assert np.all(alt.hearing_loss == NEUROPATHY) and not alt.v_present.any()
    cm_window = (alt.time_ms >= 1.0) & (alt.time_ms <= 4.0)
    loud = alt.intensity_db >= 90
    power = lambda rec: np.mean(rec.signal[loud][:, cm_window] ** 2)  # noqa: E731
    assert power(single) > 3 * power(alt)


def test_residual_noise_follows_sweeps_and_eeg(cohort):
    x = cohort.extra
    np.testing.assert_allclose(x["residual_noise_uv"], x["sigma_eeg_uv"] / np.sqrt(x["sweeps_accepted"]), rtol=1e-5)
    assert x["sigma_eeg_uv"].min() >= 5 and x["sigma_eeg_uv"].max() <= 20
    assert x["sweeps_accepted"].min() >= 1000 and x["sweeps_accepted"].max() <= 4000
    assert np.all(x["sweeps_rejected"] >= 0)


# ----------------------------------------------------------------------------- labels and Fmp
def test_v_marked_share_is_near_the_clinic(cohort):
    assert 0.70 <= cohort.v_present.mean() <= 0.79


def test_no_wave_v_in_classes_without_a_response(cohort):
    none = np.isin(cohort.hearing_loss, [TOTAL, NEUROPATHY])
    assert none.any()
    assert not cohort.v_present[none].any() and not cohort.extra["true_v_present"][none].any()
    assert not np.isfinite(cohort.wave_latency_ms[none]).any()
    assert not np.isfinite(cohort.extra["true_wave_latency_ms"][none]).any()


def test_v_is_never_marked_below_threshold(cohort):
    below = cohort.intensity_db < cohort.threshold_db
    assert below.sum() > 100
    assert not cohort.v_present[below].any()
    assert np.all(cohort.extra["sensation_level_db"][cohort.v_present] >= 5)
    assert np.all(cohort.extra["true_v_present"][cohort.v_present])
    assert np.all(cohort.extra["true_v_present"] == (cohort.extra["sensation_level_db"] > 0)
                  & np.isin(cohort.hearing_loss, [NORMAL, SENSORINEURAL, CONDUCTIVE]))


def test_marks_carry_small_jitter_around_the_truth(cohort):
    marked = cohort.v_present
    error_ms = cohort.v_latency_ms[marked] - cohort.extra["true_v_latency_ms"][marked]
    assert np.abs(error_ms).max() <= 0.05 + 1e-4
    assert error_ms.std() > 0.01
    assert np.all(np.isnan(cohort.v_amplitude_uv[~marked]))
    amp_error = cohort.v_amplitude_uv[marked] - cohort.extra["true_v_amplitude_uv"][marked]
    assert abs(np.median(amp_error)) < 0.05


def test_fmp_grows_with_sweeps_for_the_same_response(cohort):
    x = cohort.extra
    clear = _normal_with_v(cohort) & (x["sensation_level_db"] >= 40)
    many, few = clear & (x["sweeps_accepted"] >= 3000), clear & (x["sweeps_accepted"] <= 2000)
    assert many.sum() > 100 and few.sum() > 100
    assert np.median(cohort.fmp[many]) > 1.3 * np.median(cohort.fmp[few])
    # A clear response scores well above noise alone; the cohort median sits near the clinic's.
    assert np.median(cohort.fmp[clear]) > 2 * np.median(cohort.fmp[cohort.hearing_loss == TOTAL])
    assert 0.6 <= np.median(cohort.fmp) <= 0.95
    assert np.all(cohort.fmp >= 0)


# ----------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("kwargs, name", [
    (dict(n_patients=0), "n_patients"),
    (dict(signal_length=8), "signal_length"),
    (dict(sampling_rate_hz=0.0), "sampling_rate_hz"),
    (dict(sampling_rate_hz=-20000.0), "sampling_rate_hz"),
    (dict(artifact_rate=1.5), "artifact_rate"),
    (dict(class_prevalence=(0.5, 0.1, 0.1, 0.1, 0.1)), "class_prevalence"),
    (dict(sigma_eeg_uv_range=(-5.0, 20.0)), "sigma_eeg_uv_range"),
    (dict(sweeps_range=(4000, 1000)), "sweeps_range"),
    (dict(v_amplitude_max_uv_range=0.4), "v_amplitude_max_uv_range"),
    (dict(adult_v_latency_80db_ms=float("nan")), "adult_v_latency_80db_ms"),
    (dict(eeg_exponent_range=(2.0, 1.0)), "eeg_exponent_range"),
    (dict(eeg_exponent_range=(1.0, 6.0)), "eeg_exponent_range"),
])
def test_bad_parameters_raise_config_error_naming_them(kwargs, name):
    call = {"n_patients": 3, **kwargs}
    with pytest.raises(ConfigError, match=name):
        simulate_cohort(**call)


def test_unknown_parameter_suggests_the_nearest_name():
    with pytest.raises(ConfigError, match=r"class_prevalance.*did you mean 'class_prevalence'"):
        simulate_cohort(3, class_prevalance=(0.797, 0.008, 0.106, 0.033, 0.056))


def test_physiology_overrides_take_effect():
    older = simulate_cohort(20, seed=2, adult_v_latency_80db_ms=6.2,
                            age_group_weights=(0.0, 0.0, 0.0, 0.0, 1.0))
    rows = older.extra["true_v_present"] & (older.intensity_db == 80) & (older.hearing_loss == NORMAL)
    assert older.age_years.min() >= 18
    assert abs(older.extra["true_v_latency_ms"][rows].mean() - 6.3) < 0.3


def test_half_averages_average_to_the_recording_and_leave_the_cohort_unchanged():
    plain = simulate_cohort(6, seed=5)
    halves = simulate_cohort(6, seed=5, half_averages=True)
    np.testing.assert_array_equal(plain.signal, halves.signal)
    a, b = halves.extra["half_a"], halves.extra["half_b"]
    np.testing.assert_allclose((a + b) / 2, halves.signal, atol=1e-5)
    # Each half carries √2 × the recording's noise: their difference is noise of 2 × the residual SD.
    diff_sd = ((a - b) / 2).std(axis=1)
    ratio = np.median(diff_sd / halves.extra["noise_sd_uv"])
    assert 0.8 < ratio < 1.25
    assert "half_a" not in plain.extra


# ----------------------------------------------------------------------------- noise colour
def _half_difference_psd_db(rec: ABRRecords) -> tuple[np.ndarray, np.ndarray]:
    """Median PSD (dB re its 100–1100 Hz mean) of the halves' difference: the noise alone."""
    from scipy.signal import welch

    f, p = welch((rec.extra["half_a"] - rec.extra["half_b"]) / 2, fs=rec.sampling_rate_hz, nperseg=200, axis=-1)
    p = np.median(p, axis=0)
    return f, 10 * np.log10(p / p[(f >= 100) & (f <= 1100)].mean())


def test_eeg_exponent_recolours_the_noise_without_changing_its_in_band_level():
    pink = simulate_cohort(60, seed=5, half_averages=True)
    same = simulate_cohort(60, seed=5, half_averages=True, eeg_exponent_range=(1.0, 1.0))
    np.testing.assert_array_equal(pink.signal, same.signal)  # the default draws nothing extra
    assert (pink.extra["eeg_exponent"] == 1.0).all()
    brown = simulate_cohort(60, seed=5, half_averages=True, eeg_exponent_range=(2.0, 2.0))
    f, pink_db = _half_difference_psd_db(pink)
    _, brown_db = _half_difference_psd_db(brown)
    at = {hz: int(np.argmin(np.abs(f - hz))) for hz in (300, 1500)}
    # 300 → 1500 Hz: 1/f falls 7.0 dB here, 1/f² 14.2 dB (the real SmartEP and EARNDB noise: 13.6–21.5 dB).
    assert 5 < pink_db[at[300]] - pink_db[at[1500]] < 9
    assert 12 < brown_db[at[300]] - brown_db[at[1500]] < 18
    ratio = np.median(brown.extra["noise_sd_uv"]) / np.median(pink.extra["noise_sd_uv"])
    assert 0.75 < ratio < 1.1  # same power in the amplifier band (measured 0.86 in the response window)
    mixed = simulate_cohort(60, seed=5, eeg_exponent_range=(1.0, 2.5))
    assert 1.0 <= mixed.extra["eeg_exponent"].min() and mixed.extra["eeg_exponent"].max() <= 2.5
    assert mixed.extra["eeg_exponent"].std() > 0.3
