"""Physiological ABR cohort simulator (DESIGN.md §5): the data set abrflow runs on out of the box.

The simulation is patient-level so that splits, level series and thresholds mean what they mean
clinically: a patient gets an age and a hearing-loss class, each ear a threshold θ, each ear a
descending level series, and every recording a waveform built from the physiology (waves I, III, V
with their after-negativities, SN10, baseline drift, cochlear microphonic, stimulus artefact) plus
band-passed 1/f EEG noise averaged over a realistic number of sweeps.

Labels are what a clinician would write (wave V marked only where it is visible, with marking
jitter); the true physiological values travel alongside in ``ABRRecords.extra``.

Units are in the names. Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``,
and signal synthesis runs in fixed-size row chunks, so a seed always gives the same arrays.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.signal

from ..errors import ConfigError
from .records import ABRRecords

# Class codes in the original project's order (records.CLASS_NAMES).
NORMAL, NEUROPATHY, SENSORINEURAL, TOTAL, CONDUCTIVE = 0, 1, 2, 3, 4
N_CLASSES = 5
#: Classes whose brainstem produces waves I–V once the stimulus is above threshold.
NEURAL_CLASSES = (NORMAL, SENSORINEURAL, CONDUCTIVE)

#: The 5 dB level grid a series is drawn from, loudest first (dB nHL).
LEVEL_GRID_DB = np.arange(100.0, -5.0, -5.0)
#: Levels a clinician visits on the way down before bracketing the threshold in 5 dB steps.
COARSE_LEVELS_DB = (80.0, 60.0, 40.0, 30.0, 20.0, 10.0, 0.0)
#: Extra levels visited when the threshold is above 60 dB (searching upwards from 80).
HIGH_LEVELS_DB = (100.0, 90.0, 70.0)
#: Levels searched in ears with no response (TOTAL, NEUROPATHY).
NO_RESPONSE_LEVELS_DB = {TOTAL: (100.0, 90.0, 80.0), NEUROPATHY: (100.0, 90.0, 80.0, 70.0, 60.0)}

#: Biphasic stimulus artefact (derivative of a Gaussian): centre and width, gone well before 1 ms.
STIMULUS_ARTIFACT_PEAK_MS, STIMULUS_ARTIFACT_WIDTH_MS = 0.15, 0.08
#: Rows synthesised at once: bounds memory and keeps the random stream independent of cohort size.
_CHUNK_ROWS = 8192
#: Patients per class in the pilot that converts by-recording prevalence into patient probabilities.
_PILOT_PATIENTS = 4000


@dataclass(frozen=True)
class Physiology:
    """Named physiological and protocol parameters; defaults mirror DESIGN.md §5.

    Every field can be overridden by keyword in :func:`simulate_cohort`. Ranges are ``(low, high)``
    bounds of a uniform draw unless the field's comment says otherwise.
    """

    # --- cohort composition
    class_prevalence: tuple[float, ...] = (0.797, 0.008, 0.106, 0.033, 0.056)  # by recording, codes 0–4
    unilateral_fraction: float = 0.3  # share of hearing-loss patients whose other ear is normal
    age_group_edges_years: tuple[float, ...] = (0.0, 1.0, 2.0, 6.0, 18.0, 75.0)
    age_group_weights: tuple[float, ...] = (0.63, 0.16, 0.07, 0.04, 0.10)
    infant_age_beta: tuple[float, float] = (1.0, 2.0)  # Beta(a, b) shape of ages in the first group

    # --- test protocol
    stimulus_rates_hz: tuple[float, ...] = (33.1, 21.1, 11.1, 49.1)
    stimulus_rate_weights: tuple[float, ...] = (0.80, 0.08, 0.08, 0.04)
    replicate_probability: float = 0.85  # a level is recorded twice (reproducibility check)
    top_level_extra_runs: int = 1  # further runs at the opening level of every series
    rate_series_probability: float = 0.5  # ear gets extra recordings at 80 dB at the other rates
    level_below_threshold_probability: float = 0.05  # a second no-response level below θ
    fine_step_span_db: float = 10.0  # 5 dB steps from the stop level up to θ + this
    screening_floor_db_choices: tuple[float, ...] = (0.0, 10.0, 20.0, 30.0)  # lowest level tested
    screening_floor_weights: tuple[float, ...] = (0.25, 0.3, 0.25, 0.2)

    # --- thresholds θ (dB nHL)
    normal_threshold_db_range: tuple[float, float] = (0.0, 20.0)
    infant_normal_threshold_max_db: float = 30.0  # newborn upper bound, matures to the adult one
    sensorineural_threshold_db_range: tuple[float, float] = (30.0, 90.0)
    cochlear_threshold_db_range: tuple[float, float] = (0.0, 20.0)  # conductive ears: inner ear part
    air_bone_gap_db_range: tuple[float, float] = (20.0, 60.0)
    interaural_threshold_sd_db: float = 5.0  # bilateral loss: second ear θ = first ± this

    # --- latencies (ms)
    adult_v_latency_80db_ms: float = 5.7  # at the reference rate
    newborn_v_latency_80db_ms_range: tuple[float, float] = (6.4, 6.8)
    maturation_time_constant_years: float = 0.5  # immaturity exp(-age/τ): ≈ adult by 18 months
    v_latency_individual_sd_ms: float = 0.12
    wave_i_latency_80db_ms: float = 1.6  # I–V then ≈ 4.1 adult, ≈ 5.0 newborn
    wave_i_latency_individual_sd_ms: float = 0.08
    i_iii_fraction_of_i_v: float = 0.52
    li_slope_high_ms_per_db: float = 0.013  # linear part of the latency–intensity function
    li_near_threshold_ms: float = 2.83  # extra latency of the exponential part at 0 dB
    li_knee_db: float = 14.2  # level scale of the exponential part (steepening near threshold)
    li_individual_scale_range: tuple[float, float] = (0.85, 1.15)
    recruitment_latency_ms: float = 0.8  # sensorineural: extra latency at SL 0, decays with SL
    recruitment_sl_db: float = 10.0
    reference_rate_hz: float = 11.1
    rate_latency_ms_per_hz: float = 0.005  # +0.05 ms per +10/s
    infant_rate_factor: float = 1.5

    # --- amplitudes (µV) and shapes
    v_amplitude_max_uv_range: tuple[float, float] = (0.2, 0.6)  # saturation amplitude of V
    v_amplitude_growth_db: float = 10.0  # SL scale of V's growth towards saturation
    recruitment_growth_factor: float = 0.6  # sensorineural: faster growth (recruitment)
    wave_i_amplitude_ratio_range: tuple[float, float] = (0.3, 0.6)  # relative to V's maximum
    wave_iii_amplitude_ratio_range: tuple[float, float] = (0.5, 0.8)
    wave_i_vanish_sl_db_range: tuple[float, float] = (30.0, 40.0)  # I absent below this SL
    wave_iii_vanish_sl_db_range: tuple[float, float] = (20.0, 30.0)
    rate_amplitude_loss_per_hz: float = 0.003
    wave_width_ms_range: tuple[float, float] = (0.2, 0.5)  # Gaussian σ of each positive peak
    after_negativity_ratio: float = 0.5  # trough after each peak, relative to the peak
    sn10_ratio_range: tuple[float, float] = (0.3, 0.6)  # SN10 depth relative to V
    sn10_delay_ms: float = 3.0
    sn10_width_ms: float = 1.2
    drift_uv_range: tuple[float, float] = (0.0, 0.08)
    drift_period_ms_range: tuple[float, float] = (20.0, 60.0)

    # --- cochlear microphonic (neuropathy) and stimulus artefact
    cm_amplitude_80db_uv_range: tuple[float, float] = (0.3, 1.0)
    cm_frequency_hz_range: tuple[float, float] = (1000.0, 1500.0)
    cm_onset_ms_range: tuple[float, float] = (0.5, 1.0)
    cm_end_ms_range: tuple[float, float] = (4.0, 6.0)
    alternate_residual_range: tuple[float, float] = (0.05, 0.2)  # what alternating polarity leaves
    stimulus_artifact_100db_uv_range: tuple[float, float] = (1.0, 3.0)

    # --- noise and averaging
    sigma_eeg_uv_range: tuple[float, float] = (5.0, 20.0)  # broadband EEG per sweep, log-uniform
    sigma_eeg_beta: tuple[float, float] = (1.0, 4.0)  # skews σ_EEG towards quiet sleeping infants
    sweeps_range: tuple[float, float] = (1000.0, 4000.0)  # accepted sweeps
    rejected_sweeps_max_mean: float = 60.0  # mean rejections at the noisiest σ_EEG
    eeg_floor_hz: float = 10.0  # 1/f spectrum is flat below this
    # Spectral exponent α of the averaged EEG (power ∝ 1/f^α above eeg_floor_hz), drawn uniformly
    # per recording. 1 keeps the classic 1/f; residual noise in real clinic exports falls faster
    # in the ABR band (≈ 1/f² between 300 and 1500 Hz in SmartEP and EARNDB), so a training cohort
    # can be given a range. Whatever α, the noise power inside the amplifier band is that of the
    # 1/f noise of the same residual noise, so α changes the colour, not the difficulty.
    eeg_exponent_range: tuple[float, float] = (1.0, 1.0)
    amplifier_band_hz: tuple[float, float] = (100.0, 3000.0)
    artifact_burst_uv_range: tuple[float, float] = (3.0, 8.0)  # × residual noise, before filtering
    artifact_burst_width_ms_range: tuple[float, float] = (0.3, 1.5)

    # --- clinician labels and Fmp
    v_visible_min_sl_db: float = 5.0
    visibility_snr: float = 2.4  # peak-to-trough amplitude / in-band residual noise SD to mark a wave
    marking_jitter_ms: float = 0.05  # uniform ± this
    fmp_window_start_ms: float = 1.0  # Fmp ignores the stimulus artefact
    fmp_scale: float = 0.81  # multiplies var(average) / (single-point variance / N)


PHYSIOLOGY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Physiology))
_RUN_PARAMETERS = ("n_patients", "seed", "sampling_rate_hz", "signal_length", "alternate_polarity",
                   "artifact_rate", "half_averages")
#: Fields that must be strictly positive (scales, time constants, divisors).
_POSITIVE_FIELDS = ("maturation_time_constant_years", "li_knee_db", "recruitment_sl_db",
                    "v_amplitude_growth_db", "recruitment_growth_factor", "sn10_width_ms",
                    "eeg_floor_hz", "fmp_scale", "visibility_snr")
#: Steepest EEG spectrum the simulator accepts (power ∝ 1/f^4 is already far redder than any EEG).
MAX_EEG_EXPONENT = 4.0
#: Ranges whose lower end must be strictly positive (divisors, logarithms, widths, rates).
_POSITIVE_RANGES = ("sigma_eeg_uv_range", "wave_width_ms_range", "drift_period_ms_range",
                    "cm_frequency_hz_range", "artifact_burst_width_ms_range", "amplifier_band_hz",
                    "stimulus_rates_hz")


# ---------------------------------------------------------------------------- validation
def make_physiology(**overrides) -> Physiology:
    """Defaults with ``overrides`` applied and checked; unknown names suggest the nearest one."""
    for name in overrides:
        if name not in PHYSIOLOGY_FIELDS:
            close = difflib.get_close_matches(name, PHYSIOLOGY_FIELDS + _RUN_PARAMETERS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown simulate_cohort parameter {name!r}{hint}")
    coerced = {}
    for name, value in overrides.items():
        if isinstance(value, (list, tuple, np.ndarray)):
            try:
                value = tuple(float(x) for x in value)
            except (TypeError, ValueError) as exc:
                raise _bad(name, value, "a sequence of numbers") from exc
        coerced[name] = value
    phys = Physiology(**coerced)
    _validate_physiology(phys)
    return phys


def _bad(name: str, value: object, expected: str) -> ConfigError:
    return ConfigError(f"simulate_cohort parameter {name} = {value!r}: expected {expected}")


def _check_field(name: str, value: object, default: object) -> None:
    """One field against the rules its name and default imply (shares, ranges, probabilities)."""
    if isinstance(default, tuple):
        if not isinstance(value, tuple):
            raise _bad(name, value, f"a sequence of numbers like {default}")
        arr = np.asarray(value, dtype=float)
        if arr.size == 0 or not np.isfinite(arr).all() or arr.min() < 0:
            raise _bad(name, value, "non-negative finite numbers")
        if (name.endswith("_range") or name.endswith("_beta") or name == "amplifier_band_hz") and (
                arr.size != 2 or arr[1] < arr[0]):
            raise _bad(name, value, "(low, high) with 0 <= low <= high")
        if (name in _POSITIVE_RANGES or name.endswith("_beta")) and arr.min() <= 0:
            raise _bad(name, value, "strictly positive values")
        if (name == "class_prevalence" or name.endswith("_weights")) and abs(arr.sum() - 1.0) > 1e-3:
            raise _bad(name, value, f"shares summing to 1 (they sum to {arr.sum():.4f})")
        if name == "eeg_exponent_range" and arr.max() > MAX_EEG_EXPONENT:
            raise _bad(name, value, f"exponents in [0, {MAX_EEG_EXPONENT:g}] (0 white, 1 pink, 2 brown)")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise _bad(name, value, "a finite number")
    if value < 0:
        raise _bad(name, value, "a non-negative number")
    if isinstance(default, int) and value != int(value):
        raise _bad(name, value, "a whole number")
    if (name.endswith("_probability") or name.endswith("_fraction")) and value > 1:
        raise _bad(name, value, "a probability in [0, 1]")
    if name in _POSITIVE_FIELDS and value <= 0:
        raise _bad(name, value, "a positive number")


def _validate_physiology(phys: Physiology) -> None:
    """Reject values the simulation cannot mean: wrong lengths, negative ranges, bad shares."""
    defaults = Physiology()
    for name in PHYSIOLOGY_FIELDS:
        _check_field(name, getattr(phys, name), getattr(defaults, name))
    pairs = [("class_prevalence", N_CLASSES),
             ("age_group_weights", len(phys.age_group_edges_years) - 1),
             ("stimulus_rate_weights", len(phys.stimulus_rates_hz)),
             ("screening_floor_weights", len(phys.screening_floor_db_choices))]
    for name, n in pairs:
        if len(getattr(phys, name)) != n:
            raise _bad(name, getattr(phys, name), f"{n} values")
    edges = np.asarray(phys.age_group_edges_years)
    if np.any(np.diff(edges) <= 0) or edges[-1] > 120:
        raise _bad("age_group_edges_years", phys.age_group_edges_years, "increasing ages within 0–120")
    if max(phys.screening_floor_db_choices) > 100:
        raise _bad("screening_floor_db_choices", phys.screening_floor_db_choices, "levels within 0–100 dB")
    if max(phys.stimulus_rates_hz) > 200:
        raise _bad("stimulus_rates_hz", phys.stimulus_rates_hz, "rates within 0–200 /s")
    upper_db = {"sensorineural_threshold_db_range": phys.sensorineural_threshold_db_range[1],
                "air_bone_gap_db_range": phys.cochlear_threshold_db_range[1] + phys.air_bone_gap_db_range[1],
                "normal_threshold_db_range": max(phys.normal_threshold_db_range[1],
                                                 phys.infant_normal_threshold_max_db)}
    for name, top_db in upper_db.items():
        if top_db > 100:
            raise _bad(name, getattr(phys, name), f"thresholds within the 0–100 dB nHL test range "
                       f"(reaches {top_db} dB)")
    if phys.sweeps_range[0] < 1:
        raise _bad("sweeps_range", phys.sweeps_range, "at least one accepted sweep")


def _validate_run(n_patients, seed, sampling_rate_hz, signal_length, artifact_rate, phys) -> None:
    """Check the cohort-level arguments, naming the argument and its value."""
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)) or n_patients < 1:
        raise _bad("n_patients", n_patients, "an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise _bad("seed", seed, "a non-negative integer")
    if isinstance(signal_length, bool) or not isinstance(signal_length, (int, np.integer)) \
            or signal_length < 16:
        raise _bad("signal_length", signal_length, "an integer >= 16 samples")
    if not isinstance(sampling_rate_hz, (int, float)) or not math.isfinite(sampling_rate_hz) \
            or sampling_rate_hz <= 0:
        raise _bad("sampling_rate_hz", sampling_rate_hz, "a positive sampling rate in Hz")
    if sampling_rate_hz / 2 <= phys.amplifier_band_hz[1]:
        raise _bad("sampling_rate_hz", sampling_rate_hz,
                   f"more than twice the amplifier's high cut of {phys.amplifier_band_hz[1]} Hz")
    if not isinstance(artifact_rate, (int, float)) or not 0 <= artifact_rate <= 1:
        raise _bad("artifact_rate", artifact_rate, "a probability in [0, 1]")


# ---------------------------------------------------------------------------- small helpers
def _uniform(rng: np.random.Generator, bounds: tuple[float, float], size) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], size)


def _immaturity(age_years: np.ndarray, phys: Physiology) -> np.ndarray:
    """1 at birth, → 0 with maturation: drives the newborn-to-adult change of latency and θ."""
    return np.exp(-np.asarray(age_years) / phys.maturation_time_constant_years)


def _allocate(n: int, shares: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``n`` closest to ``n * shares`` (largest remainder)."""
    raw = n * shares
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


# ---------------------------------------------------------------------------- patients and ears
def _sample_ages(rng: np.random.Generator, n: int, phys: Physiology) -> np.ndarray:
    """Mostly infants (newborn-skewed), a tail of children and adults. Group sizes are allocated,
    not drawn, so that even a small cohort has the clinic's age profile."""
    edges = np.asarray(phys.age_group_edges_years)
    group = rng.permutation(np.repeat(np.arange(len(edges) - 1), _allocate(n, np.asarray(phys.age_group_weights))))
    u = rng.random(n)
    a, b = phys.infant_age_beta
    u = np.where(group == 0, rng.beta(a, b, n), u)
    return edges[group] + u * (edges[group + 1] - edges[group])


def _ear_classes(rng: np.random.Generator, patient_class: np.ndarray, phys: Physiology) -> np.ndarray:
    """[P, 2] class per ear: hearing loss is bilateral or, sometimes, one-sided (never neuropathy)."""
    ears = np.repeat(patient_class[:, None], 2, axis=1)
    one_sided = (rng.random(len(patient_class)) < phys.unilateral_fraction) & \
        (patient_class != NORMAL) & (patient_class != NEUROPATHY)
    normal_side = rng.integers(0, 2, len(patient_class))
    rows = np.flatnonzero(one_sided)
    ears[rows, normal_side[rows]] = NORMAL
    return ears


def _ear_thresholds(rng: np.random.Generator, ear_class: np.ndarray, age_years: np.ndarray,
                    phys: Physiology) -> tuple[np.ndarray, np.ndarray]:
    """θ and air–bone gap per ear [P, 2]; bilateral losses get similar θ on both sides."""
    p = len(ear_class)
    upper = phys.normal_threshold_db_range[1] + (
        phys.infant_normal_threshold_max_db - phys.normal_threshold_db_range[1]) * _immaturity(age_years, phys)
    normal = rng.uniform(phys.normal_threshold_db_range[0], upper[:, None], (p, 2))
    lo, hi = phys.sensorineural_threshold_db_range
    sn = _uniform(rng, (lo, hi), p)[:, None] + rng.normal(0, phys.interaural_threshold_sd_db, (p, 2)) * [0, 1]
    sn = np.clip(sn, lo, hi)
    gap = _uniform(rng, phys.air_bone_gap_db_range, p)[:, None] + \
        rng.normal(0, phys.interaural_threshold_sd_db, (p, 2)) * [0, 1]
    gap = np.clip(gap, *phys.air_bone_gap_db_range)
    cochlear = _uniform(rng, phys.cochlear_threshold_db_range, (p, 2))
    threshold_db = np.select([ear_class == NORMAL, ear_class == SENSORINEURAL, ear_class == CONDUCTIVE],
                             [normal, sn, cochlear + gap], default=np.inf)
    air_bone_gap_db = np.where(ear_class == CONDUCTIVE, gap, 0.0)
    return threshold_db, air_bone_gap_db


def _level_series(rng: np.random.Generator, threshold_db: np.ndarray, ear_class: np.ndarray,
                  phys: Physiology) -> np.ndarray:
    """[E, G] recordings per ear and grid level: descend 80 → 60 → 40 → 30 → 20 → 10, bracket θ in
    5 dB steps, stop one or two steps below θ (or at the tester's floor); search 90–100 for high θ."""
    grid = LEVEL_GRID_DB[None, :]
    theta = np.where(np.isfinite(threshold_db), threshold_db, 1000.0)[:, None]
    high = theta > 60
    coarse = np.isin(grid, COARSE_LEVELS_DB) | (high & np.isin(grid, HIGH_LEVELS_DB))
    start = np.where(high, 100.0, 80.0)
    below = rng.random((len(theta), 1)) < phys.level_below_threshold_probability
    floor_db = rng.choice(np.asarray(phys.screening_floor_db_choices), size=(len(theta), 1),
                          p=np.asarray(phys.screening_floor_weights))
    stop = np.clip(np.maximum(5.0 * np.floor(theta / 5.0) - 5.0 * below, floor_db), 0.0, None)
    fine = grid <= theta + phys.fine_step_span_db
    tested = (grid <= start) & (grid >= stop) & (coarse | fine) | (grid == 80.0)
    for cls, levels in NO_RESPONSE_LEVELS_DB.items():
        rows = ear_class == cls
        tested[rows] = np.isin(LEVEL_GRID_DB, levels)[None, :]
    replicates = 1 + (rng.random(tested.shape) < phys.replicate_probability)
    # The opening level (80 dB, or the loudest tested) is where morphology is judged: one more run.
    top = np.argmax(tested, axis=1)
    replicates[np.arange(len(top)), top] += int(phys.top_level_extra_runs)
    return tested * replicates


def _plan_cohort(rng: np.random.Generator, patient_class: np.ndarray, phys: Physiology) -> dict:
    """Patients → ears → recordings (level, rate): every row's identity before any physiology."""
    n = len(patient_class)
    age_years = _sample_ages(rng, n, phys)
    ear_class = _ear_classes(rng, patient_class, phys)
    threshold_db, gap_db = _ear_thresholds(rng, ear_class, age_years, phys)
    rates = np.asarray(phys.stimulus_rates_hz)
    base_rate = rng.choice(rates, size=n, p=np.asarray(phys.stimulus_rate_weights))
    ear_class, threshold_db, gap_db = ear_class.ravel(), threshold_db.ravel(), gap_db.ravel()
    counts = _level_series(rng, threshold_db, ear_class, phys)
    n_ears = 2 * n
    ear_of_row = np.repeat(np.repeat(np.arange(n_ears), len(LEVEL_GRID_DB)), counts.ravel())
    level_of_row = np.repeat(np.tile(LEVEL_GRID_DB, n_ears), counts.ravel())
    rate_of_row = np.repeat(base_rate, 2)[ear_of_row]
    # Rate series: one recording at 80 dB per other rate, in ears with a response at 80 dB.
    rate_ears = np.flatnonzero((rng.random(n_ears) < phys.rate_series_probability)
                               & np.isin(ear_class, NEURAL_CLASSES) & (threshold_db <= 60))
    extra_ear = np.repeat(rate_ears, len(rates))
    extra_rate = np.tile(rates, len(rate_ears))
    keep = extra_rate != np.repeat(base_rate, 2)[extra_ear]
    extra_ear, extra_rate = extra_ear[keep], extra_rate[keep]
    ear_of_row = np.concatenate([ear_of_row, extra_ear])
    level_of_row = np.concatenate([level_of_row, np.full(len(extra_ear), 80.0)])
    rate_of_row = np.concatenate([rate_of_row, extra_rate])
    is_extra = np.r_[np.zeros(len(ear_of_row) - len(extra_ear), bool), np.ones(len(extra_ear), bool)]
    order = np.lexsort((is_extra, -level_of_row, ear_of_row))
    return {
        "patient_class": patient_class, "age_years": age_years,
        "ear_class": ear_class, "threshold_db": threshold_db, "air_bone_gap_db": gap_db,
        "ear": ear_of_row[order], "intensity_db": level_of_row[order], "stimulus_rate_hz": rate_of_row[order],
    }


@lru_cache(maxsize=16)
def _patient_class_probabilities(phys: Physiology) -> np.ndarray:
    """Per-patient class probabilities giving ``phys.class_prevalence`` BY RECORDING.

    Loss classes have longer or shorter series than normal ears and one-sided losses add normal
    recordings, so the per-patient share differs from the per-recording one. A fixed-seed pilot of
    the protocol measures recordings per patient class and ear class; a linear solve inverts it.
    """
    pilot_class = np.repeat(np.arange(N_CLASSES), _PILOT_PATIENTS)
    plan = _plan_cohort(np.random.default_rng(20240229), pilot_class, phys)
    row_patient_class = np.repeat(pilot_class, 2)[plan["ear"]]
    row_ear_class = plan["ear_class"][plan["ear"]]
    per_patient = np.zeros((N_CLASSES, N_CLASSES))
    np.add.at(per_patient, (row_patient_class, row_ear_class), 1.0)
    per_patient /= _PILOT_PATIENTS
    target = np.asarray(phys.class_prevalence)
    probs = np.linalg.solve(per_patient.T, target)
    if np.any(probs < -1e-9):
        raise ConfigError(f"simulate_cohort: class_prevalence = {phys.class_prevalence} cannot be reached "
                          f"with unilateral_fraction = {phys.unilateral_fraction} (too few NORMAL recordings "
                          "for the one-sided losses)")
    probs = np.clip(probs, 0.0, None)
    return probs / probs.sum()


# ---------------------------------------------------------------------------- physiology per row
def _ear_physiology(rng: np.random.Generator, age_years_ear: np.ndarray, phys: Physiology) -> dict:
    """Individual constants of each ear: latency offsets, amplitudes, widths, where I and III vanish."""
    e = len(age_years_ear)
    imm = _immaturity(age_years_ear, phys)
    newborn_v = _uniform(rng, phys.newborn_v_latency_80db_ms_range, e)
    v80 = phys.adult_v_latency_80db_ms + (newborn_v - phys.adult_v_latency_80db_ms) * imm \
        + rng.normal(0, phys.v_latency_individual_sd_ms, e)
    i80 = phys.wave_i_latency_80db_ms + rng.normal(0, phys.wave_i_latency_individual_sd_ms, e)
    w_lo, w_hi = phys.wave_width_ms_range
    # Peaks widen from I to V and in infants; positions within the allowed σ range.
    base_width = w_lo + (w_hi - w_lo) * np.clip(
        np.array([0.05, 0.25, 0.45])[None, :] + 0.2 * imm[:, None] + rng.uniform(0, 0.2, (e, 3)), 0, 1)
    return {
        "imm": imm, "v80_ms": v80, "i80_ms": np.minimum(i80, v80 - 2.5),  # I–V never below 2.5 ms
        "li_scale": _uniform(rng, phys.li_individual_scale_range, e),
        "v_amp_max_uv": _uniform(rng, phys.v_amplitude_max_uv_range, e),
        "amp_ratio": np.stack([_uniform(rng, phys.wave_i_amplitude_ratio_range, e),
                               _uniform(rng, phys.wave_iii_amplitude_ratio_range, e), np.ones(e)], axis=1),
        "vanish_sl_db": np.stack([_uniform(rng, phys.wave_i_vanish_sl_db_range, e),
                                  _uniform(rng, phys.wave_iii_vanish_sl_db_range, e), np.zeros(e)], axis=1),
        "base_width_ms": base_width,
        "sn10_ratio": _uniform(rng, phys.sn10_ratio_range, e),
    }


def cochlear_delay_ms(effective_level_db: np.ndarray, phys: Physiology) -> np.ndarray:
    """Latency added to every wave at a level, relative to 80 dB: ≈0.02–0.03 ms/dB at high levels,
    ≈0.05 ms/dB and more near 0 dB (the normal latency–intensity function, DESIGN.md §5)."""
    lvl = np.asarray(effective_level_db, dtype=float)
    tau = phys.li_knee_db
    return phys.li_slope_high_ms_per_db * (80.0 - lvl) + phys.li_near_threshold_ms * (
        np.exp(-lvl / tau) - np.exp(-80.0 / tau))


def _wave_parameters(plan: dict, ear_phys: dict, phys: Physiology) -> dict:
    """True latencies, amplitudes and widths [N, 3] of waves I, III, V for every recording."""
    e = plan["ear"]
    cls = plan["ear_class"][e]
    level = plan["intensity_db"]
    rate = plan["stimulus_rate_hz"]
    theta = plan["threshold_db"][e]
    gap = plan["air_bone_gap_db"][e]
    imm = ear_phys["imm"][e]
    sl_db = level - theta  # −inf where there is no threshold
    neural = np.isin(cls, NEURAL_CLASSES)
    sn = cls == SENSORINEURAL

    # Latencies: conductive loss shifts the whole function right by the gap; sensorineural loss
    # adds a recruitment delay that fades ≈20 dB above θ; faster rates delay V more than I.
    finite_sl = np.where(np.isfinite(sl_db), sl_db, 0.0)
    cochlear = ear_phys["li_scale"][e] * cochlear_delay_ms(level - gap, phys) + \
        np.where(sn, phys.recruitment_latency_ms * np.exp(-np.maximum(finite_sl, 0) / phys.recruitment_sl_db), 0.0)
    rate_shift = phys.rate_latency_ms_per_hz * np.maximum(rate - phys.reference_rate_hz, 0) * (
        1 + (phys.infant_rate_factor - 1) * imm)
    lat_i = ear_phys["i80_ms"][e] + cochlear + 0.3 * rate_shift
    lat_v = ear_phys["v80_ms"][e] + cochlear + rate_shift
    lat_iii = lat_i + phys.i_iii_fraction_of_i_v * (lat_v - lat_i)
    latency = np.stack([lat_i, lat_iii, lat_v], axis=1)

    # Amplitudes: grow with SL above each wave's vanishing point and saturate; faster rates lower
    # them, I and III more than V.
    growth_db = phys.v_amplitude_growth_db * np.where(sn, phys.recruitment_growth_factor, 1.0)
    above = np.where(neural, finite_sl, -np.inf)[:, None] - ear_phys["vanish_sl_db"][e]
    rate_loss = np.clip(1 - phys.rate_amplitude_loss_per_hz * np.maximum(rate - phys.reference_rate_hz, 0),
                        0.5, 1.0)
    amplitude = ear_phys["v_amp_max_uv"][e, None] * ear_phys["amp_ratio"][e] * \
        (1 - np.exp(-np.maximum(above, 0) / growth_db[:, None])) * rate_loss[:, None] ** [2, 1.5, 1]
    amplitude = np.where(above > 0, amplitude, 0.0)
    latency = np.where(amplitude > 0, latency, np.nan)
    w_lo, w_hi = phys.wave_width_ms_range
    width = np.clip(ear_phys["base_width_ms"][e] * (1 + 0.25 * np.exp(-np.maximum(finite_sl, 0) / 20))[:, None],
                    w_lo, w_hi)
    return {"latency_ms": latency, "amplitude_uv": amplitude, "width_ms": width,
            "sl_db": sl_db, "sn10_uv": ear_phys["sn10_ratio"][e] * amplitude[:, 2]}


def _noise_parameters(rng: np.random.Generator, n: int, artifact_rate: float, phys: Physiology) -> dict:
    """σ_EEG, sweep counts and artefact flags per recording; residual noise = σ_EEG / √N_accepted."""
    lo, hi = phys.sigma_eeg_uv_range
    a, b = phys.sigma_eeg_beta
    sigma = np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * rng.beta(a, b, n))
    accepted = rng.integers(int(phys.sweeps_range[0]), int(phys.sweeps_range[1]) + 1, n)
    artifact = rng.random(n) < artifact_rate
    noisiness = (sigma - lo) / max(hi - lo, 1e-9)
    rejected = rng.poisson(2 + phys.rejected_sweeps_max_mean * noisiness ** 2 + artifact * 150)
    low, high = phys.eeg_exponent_range
    # Drawn only when it varies, so that the default cohort's random stream is unchanged.
    exponent = np.full(n, low) if low == high else rng.uniform(low, high, n)
    return {"sigma_eeg_uv": sigma, "sweeps_accepted": accepted, "sweeps_rejected": rejected,
            "residual_noise_uv": sigma / np.sqrt(accepted), "artifact": artifact, "eeg_exponent": exponent}


# ---------------------------------------------------------------------------- waveforms
def _response_window(t_ms: np.ndarray, phys: Physiology) -> np.ndarray:
    """Samples after the stimulus artefact: where noise is judged and Fmp is computed."""
    window = t_ms >= phys.fmp_window_start_ms
    return window if window.sum() >= 2 else np.ones_like(window)


def _gauss(t_ms: np.ndarray, centre_ms: np.ndarray, width_ms: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * ((t_ms - centre_ms[:, None]) / width_ms[:, None]) ** 2)


def _response_uv(t_ms: np.ndarray, waves: dict, rows: slice, phys: Physiology) -> np.ndarray:
    """Noise-free neural response: I, III, V each with its after-negativity, then SN10.
    Only rows where a wave exists are evaluated (most rows have no wave I)."""
    lat = waves["latency_ms"][rows].astype(np.float32)
    amp = waves["amplitude_uv"][rows].astype(np.float32)
    wid = waves["width_ms"][rows].astype(np.float32)
    sn10 = waves["sn10_uv"][rows].astype(np.float32)
    out = np.zeros((lat.shape[0], t_ms.size), np.float32)
    trough_ratio = np.float32(phys.after_negativity_ratio)
    for w in range(3):
        has = np.flatnonzero(amp[:, w] > 0)
        mu, sigma = lat[has, w], wid[has, w]
        # The trough sits 2.5 σ after the peak: close enough to read as one wave, far enough not to
        # pull the peak's position (< 0.03 ms).
        out[has] += amp[has, w, None] * (_gauss(t_ms, mu, sigma)
                                         - trough_ratio * _gauss(t_ms, mu + 2.5 * sigma, sigma))
    has = np.flatnonzero(sn10 > 0)
    out[has] -= sn10[has, None] * _gauss(t_ms, lat[has, 2] + np.float32(phys.sn10_delay_ms),
                                         np.full(has.size, phys.sn10_width_ms, np.float32))
    return out


def _non_neural_uv(rng: np.random.Generator, t_ms: np.ndarray, level_db: np.ndarray, neuropathy: np.ndarray,
                   alternate_polarity: bool, phys: Physiology) -> np.ndarray:
    """Stimulus artefact (< 1 ms), cochlear microphonic in neuropathy, slow baseline drift."""
    n = len(level_db)
    residual = _uniform(rng, phys.alternate_residual_range, n) if alternate_polarity else np.ones(n)
    stim = _uniform(rng, phys.stimulus_artifact_100db_uv_range, n) * 10 ** ((level_db - 100) / 20) * residual
    x = (t_ms - np.float32(STIMULUS_ARTIFACT_PEAK_MS)) / np.float32(STIMULUS_ARTIFACT_WIDTH_MS)
    out = stim.astype(np.float32)[:, None] * (-x * np.exp(np.float32(0.5) - np.float32(0.5) * x ** 2))

    cm_amp = _uniform(rng, phys.cm_amplitude_80db_uv_range, n) * 10 ** ((level_db - 80) / 20) * residual
    cm_freq_hz = _uniform(rng, phys.cm_frequency_hz_range, n)
    onset = _uniform(rng, phys.cm_onset_ms_range, n)
    end = _uniform(rng, phys.cm_end_ms_range, n)
    rows = np.flatnonzero(neuropathy)
    if rows.size:
        dt = t_ms[None, :] - onset[rows, None]
        envelope = np.exp(-4 * dt / (end - onset)[rows, None]) * (dt >= 0) * (t_ms[None, :] <= end[rows, None])
        out[rows] += (cm_amp[rows, None] * envelope * np.sin(2 * np.pi * cm_freq_hz[rows, None] * dt / 1000))

    drift = _uniform(rng, phys.drift_uv_range, n).astype(np.float32)
    cycles_per_ms = (2 * np.pi / _uniform(rng, phys.drift_period_ms_range, n)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    out += drift[:, None] * np.sin(cycles_per_ms[:, None] * t_ms[None, :] + phase[:, None])
    return out


def amplifier_sos(fs_hz: float, phys: Physiology) -> np.ndarray:
    """The recording amplifier's band-pass (2nd-order Butterworth, ``phys.amplifier_band_hz``)."""
    return scipy.signal.butter(2, phys.amplifier_band_hz, btype="bandpass", fs=fs_hz, output="sos")


def _eeg_noise_uv(rng: np.random.Generator, residual_noise_uv: np.ndarray, artifact: np.ndarray,
                  n_samples: int, fs_hz: float, sos: np.ndarray, phys: Physiology,
                  exponent: np.ndarray | None = None) -> np.ndarray:
    """Averaged EEG: 1/f noise whose broadband SD is the residual noise, plus artefact bursts,
    band-passed (zero phase) like the amplifier; a padded buffer keeps filter edges out.

    ``exponent`` [N] recolours row i to 1/f^α_i with the same power inside the amplifier band
    (``Physiology.eeg_exponent_range``); None or all 1 is the 1/f noise itself."""
    n = len(residual_noise_uv)
    pad = max(int(math.ceil(0.005 * fs_hz)), 16)
    n_buf = n_samples + 2 * pad + (n_samples % 2)
    freqs_hz = scipy.fft.rfftfreq(n_buf, 1 / fs_hz)
    # One-sided PSD ∝ 1/max(f, f_floor), normalised so that its integral over (0, fs/2] is 1.
    nyquist_hz, floor_hz = fs_hz / 2, phys.eeg_floor_hz
    total = 1.0 + math.log(nyquist_hz / floor_hz) if nyquist_hz > floor_hz else nyquist_hz / floor_hz
    psd = 1.0 / np.maximum(freqs_hz, floor_hz) / total
    bin_power = psd * (fs_hz / n_buf)
    weight = (n_buf * np.sqrt(bin_power) / 2).astype(np.float32)
    weight[0] = 0.0
    weight[-1] = 0.0
    if exponent is not None and np.any(exponent != 1.0):
        weight = weight * _recolouring(freqs_hz, psd, np.asarray(exponent, np.float64), phys)
    # Complex Gaussian coefficients (float32 pairs viewed as complex64): single precision is ample
    # for noise and halves the memory traffic of the FFT and the filter.
    coeffs = rng.standard_normal((n, 2 * freqs_hz.size), dtype=np.float32).view(np.complex64)
    noise = scipy.fft.irfft(coeffs * weight, n=n_buf, axis=1, workers=-1)
    noise *= residual_noise_uv.astype(np.float32)[:, None]
    rows = np.flatnonzero(artifact)
    if rows.size:
        t_ms = (np.arange(n_buf) - pad) * 1000.0 / fs_hz
        centre = rng.uniform(0, n_samples * 1000.0 / fs_hz, rows.size)
        width = _uniform(rng, phys.artifact_burst_width_ms_range, rows.size)
        size = _uniform(rng, phys.artifact_burst_uv_range, rows.size) * residual_noise_uv[rows]
        burst = size[:, None] * _gauss(t_ms, centre, width) * rng.standard_normal((rows.size, n_buf))
        noise[rows] += burst.astype(np.float32)
    filtered = scipy.signal.sosfiltfilt(sos.astype(np.float32), noise, axis=-1)
    return np.ascontiguousarray(filtered[:, pad:pad + n_samples], dtype=np.float32)


def _recolouring(freqs_hz: np.ndarray, psd_1f: np.ndarray, exponent: np.ndarray, phys: Physiology) -> np.ndarray:
    """Amplitude factors [N, F] that turn the 1/f PSD into 1/f^α_i with the same in-band power."""
    f = np.maximum(freqs_hz, phys.eeg_floor_hz)
    low_hz, high_hz = phys.amplifier_band_hz
    band = (freqs_hz >= low_hz) & (freqs_hz <= high_hz)
    psd = f[None, :] ** -exponent[:, None]
    psd *= psd_1f[band].sum() / psd[:, band].sum(axis=1, keepdims=True)
    return np.sqrt(psd / psd_1f[None, :]).astype(np.float32)


def _synthesise(rng: np.random.Generator, plan: dict, waves: dict, noise: dict, fs_hz: float,
                n_samples: int, alternate_polarity: bool, phys: Physiology) -> tuple[np.ndarray, np.ndarray]:
    """Signals [N, T] in µV and the realised in-band noise SD per row, chunk by chunk."""
    n = len(plan["intensity_db"])
    t_ms = (np.arange(n_samples) * 1000.0 / fs_hz).astype(np.float32)
    sos = amplifier_sos(fs_hz, phys)
    neuropathy = plan["ear_class"][plan["ear"]] == NEUROPATHY
    signal = np.empty((n, n_samples), np.float32)
    noise_sd_uv = np.empty(n, np.float32)
    window = _response_window(t_ms, phys)
    for start in range(0, n, _CHUNK_ROWS):
        rows = slice(start, min(start + _CHUNK_ROWS, n))
        eeg = _eeg_noise_uv(rng, noise["residual_noise_uv"][rows], noise["artifact"][rows],
                            n_samples, fs_hz, sos, phys, noise["eeg_exponent"][rows])
        noise_sd_uv[rows] = eeg[:, window].std(axis=1)
        signal[rows] = _response_uv(t_ms, waves, rows, phys) + eeg + _non_neural_uv(
            rng, t_ms, plan["intensity_db"][rows], neuropathy[rows], alternate_polarity, phys)
    return signal, noise_sd_uv


# ---------------------------------------------------------------------------- labels and Fmp
def _fmp(signal: np.ndarray, residual_noise_uv: np.ndarray, t_ms: np.ndarray, phys: Physiology) -> np.ndarray:
    """Fmp: variance of the averaged waveform in the response window over the single-point estimate
    of the residual noise variance (σ_EEG² / N, broadband), times ``fmp_scale``. Noise alone scores
    the in-band share of the 1/f noise (≈0.37 × 0.81 ≈ 0.3 with the defaults), so 3.1 needs a
    response with about nine times the noise power: a high-confidence response."""
    window = _response_window(t_ms, phys)
    return phys.fmp_scale * signal[:, window].var(axis=1) / residual_noise_uv ** 2


def _value_at(signal: np.ndarray, latency_ms: np.ndarray, fs_hz: float) -> np.ndarray:
    """Linear interpolation of each row at its own latency (NaN latencies give NaN)."""
    pos = np.nan_to_num(latency_ms, nan=0.0) * fs_hz / 1000.0
    i0 = np.clip(np.floor(pos).astype(int), 0, signal.shape[1] - 2)
    frac = np.clip(pos - i0, 0.0, 1.0)
    rows = np.arange(len(signal))
    value = signal[rows, i0] * (1 - frac) + signal[rows, i0 + 1] * frac
    return np.where(np.isfinite(latency_ms), value, np.nan)


def _clinician_marks(rng: np.random.Generator, waves: dict, noise_sd_uv: np.ndarray, signal: np.ndarray,
                     fs_hz: float, phys: Physiology) -> tuple[np.ndarray, np.ndarray]:
    """Marked latencies and amplitudes [N, 3] (NaN = not marked).

    A wave is marked where its peak-to-trough amplitude (peak plus its after-negativity, what a
    clinician measures) clearly exceeds the in-band residual noise SD; V additionally needs
    SL ≥ ~5 dB, and I and III are marked only alongside V. Marks carry uniform ±jitter; the
    amplitude is read off the trace at the marked latency, as a clinician's cursor would.
    """
    last_ms = (signal.shape[1] - 2) * 1000.0 / fs_hz
    amp, lat = waves["amplitude_uv"], waves["latency_ms"]
    peak_to_trough_uv = amp * (1 + phys.after_negativity_ratio)
    visible = (peak_to_trough_uv >= phys.visibility_snr * noise_sd_uv[:, None]) & np.isfinite(lat) \
        & (lat <= last_ms)
    visible[:, 2] &= waves["sl_db"] >= phys.v_visible_min_sl_db
    visible[:, :2] &= visible[:, 2:3]
    jitter = rng.uniform(-phys.marking_jitter_ms, phys.marking_jitter_ms, lat.shape)
    marked_lat = np.where(visible, np.clip(lat + jitter, 0.0, None), np.nan)
    marked_amp = np.stack([_value_at(signal, marked_lat[:, w], fs_hz) for w in range(3)], axis=1)
    return marked_lat, marked_amp


# ---------------------------------------------------------------------------- public entry point
def simulate_cohort(n_patients: int = 2038, seed: int = 42, *, sampling_rate_hz: float = 20000.0,
                    signal_length: int = 200, alternate_polarity: bool = True, artifact_rate: float = 0.02,
                    half_averages: bool = False, **physiology) -> ABRRecords:
    """Simulate a clinic's ABR cohort: ``n_patients`` patients, ≈25 recordings each.

    ``physiology`` overrides fields of :class:`Physiology` by name (unknown names and bad values
    raise :class:`~abrflow.errors.ConfigError`). The window starts at stimulus onset and has
    ``signal_length`` samples at ``sampling_rate_hz``. Returns validated :class:`ABRRecords` in µV
    with clinician-style labels; true values are in ``extra`` (see the module docstring).

    ``half_averages=True`` adds the two interleaved half-averages a clinician overlays
    (``extra["half_a"]``, ``extra["half_b"]``, ``extra["sweeps"]``), as SmartEP and EARNDB exports
    carry them: average ± d, with d an independent averaged-EEG trace at the recording's residual
    noise, so each half has √2 × its noise and their mean is the recording. d comes from a generator
    of its own, so the cohort itself is the same with or without halves.
    """
    phys = make_physiology(**physiology)
    _validate_run(n_patients, seed, sampling_rate_hz, signal_length, artifact_rate, phys)
    fs_hz, n_samples = float(sampling_rate_hz), int(signal_length)
    rng = np.random.default_rng(seed)

    counts = _allocate(int(n_patients), _patient_class_probabilities(phys))
    patient_class = rng.permutation(np.repeat(np.arange(N_CLASSES), counts))
    plan = _plan_cohort(rng, patient_class, phys)
    ear_patient = np.repeat(np.arange(n_patients), 2)
    ear_phys = _ear_physiology(rng, plan["age_years"][ear_patient], phys)
    waves = _wave_parameters(plan, ear_phys, phys)
    n = len(plan["ear"])
    noise = _noise_parameters(rng, n, artifact_rate, phys)
    signal, noise_sd_uv = _synthesise(rng, plan, waves, noise, fs_hz, n_samples, alternate_polarity, phys)
    t_ms = np.arange(n_samples) * 1000.0 / fs_hz
    fmp = _fmp(signal, noise["residual_noise_uv"], t_ms, phys)
    marked_lat, marked_amp = _clinician_marks(rng, waves, noise_sd_uv, signal, fs_hz, phys)

    e = plan["ear"]
    patient = e // 2
    true_present = waves["amplitude_uv"][:, 2] > 0
    records = ABRRecords(
        signal=signal, sampling_rate_hz=fs_hz,
        age_years=plan["age_years"][patient], intensity_db=plan["intensity_db"],
        stimulus_rate_hz=plan["stimulus_rate_hz"], fmp=fmp,
        patient_id=np.char.add("P", np.char.zfill((patient + 1).astype(str), 5)),
        ear=np.where(e % 2 == 0, "L", "R"), session_id=np.full(n, "S1"),
        v_present=np.isfinite(marked_lat[:, 2]), v_latency_ms=marked_lat[:, 2], v_amplitude_uv=marked_amp[:, 2],
        wave_latency_ms=marked_lat, wave_amplitude_uv=marked_amp,
        hearing_loss=plan["ear_class"][e], threshold_db=plan["threshold_db"][e],
        signal_unit="uV", threshold_source="simulated", source=f"synthetic:seed={seed},patients={n_patients}",
        extra={
            "true_v_present": true_present,
            "true_v_latency_ms": waves["latency_ms"][:, 2].astype(np.float32),
            "true_v_amplitude_uv": waves["amplitude_uv"][:, 2].astype(np.float32),
            "true_wave_latency_ms": waves["latency_ms"].astype(np.float32),
            "true_wave_amplitude_uv": waves["amplitude_uv"].astype(np.float32),
            "sensation_level_db": waves["sl_db"].astype(np.float32),
            "air_bone_gap_db": plan["air_bone_gap_db"][e].astype(np.float32),
            "sweeps_accepted": noise["sweeps_accepted"].astype(np.int32),
            "sweeps_rejected": noise["sweeps_rejected"].astype(np.int32),
            "sigma_eeg_uv": noise["sigma_eeg_uv"].astype(np.float32),
            "residual_noise_uv": noise["residual_noise_uv"].astype(np.float32),
            "noise_sd_uv": noise_sd_uv,
            "artifact_burst": noise["artifact"],
            "eeg_exponent": noise["eeg_exponent"].astype(np.float32),
        })
    if half_averages:
        records.extra.update(_half_averages(seed, signal, noise, fs_hz, n_samples, phys))
    return records.validate()


def _half_averages(seed: int, signal: np.ndarray, noise: dict, fs_hz: float, n_samples: int,
                   phys: Physiology) -> dict:
    """Two half-averages per recording whose mean is ``signal`` (see :func:`simulate_cohort`)."""
    rng = np.random.default_rng([int(seed), 1])
    sos = amplifier_sos(fs_hz, phys)
    no_burst = np.zeros(len(signal), dtype=bool)
    half_diff = np.empty_like(signal)
    for start in range(0, len(signal), _CHUNK_ROWS):
        rows = slice(start, min(start + _CHUNK_ROWS, len(signal)))
        half_diff[rows] = _eeg_noise_uv(rng, noise["residual_noise_uv"][rows], no_burst[rows], n_samples, fs_hz,
                                        sos, phys, noise["eeg_exponent"][rows])
    return {"half_a": signal + half_diff, "half_b": signal - half_diff,
            "sweeps": noise["sweeps_accepted"].astype(np.float32)}


def simulator_options(data_cfg) -> dict:
    """``simulate_cohort`` options (all but size and seed) from a ``data`` config section: one place,
    so that training, ``abrflow simulate`` and the benchmarks' tuning cohorts simulate alike."""
    syn = data_cfg.synthetic
    return {"sampling_rate_hz": float(data_cfg.sampling_rate_hz), "signal_length": int(data_cfg.signal_length),
            "alternate_polarity": bool(syn.alternate_polarity), "artifact_rate": float(syn.artifact_rate),
            "eeg_exponent_range": tuple(float(x) for x in syn.get("eeg_exponent_range", (1.0, 1.0)))}


def simulate_cohort_to_dir(path, n_patients: int = 2038, seed: int = 42, *, chunk_patients: int = 2000,
                           **options):
    """Simulate a cohort ``chunk_patients`` patients at a time into a records directory
    (:mod:`abrflow.data.records_dir`): a cohort of any size is written in the memory of one chunk
    (2,000 patients ≈ 51k recordings ≈ 40 MB of signal). Returns the directory's path.

    Chunk i is ``simulate_cohort(size_i, seed_i, **options)`` with its patients renumbered after
    those of the chunks before; seed_i comes from ``numpy.random.SeedSequence(seed)`` (one chunk:
    ``seed`` itself, so the result equals ``simulate_cohort(n_patients, seed)``). Each chunk has the
    class prevalence of the defaults, so chunks of fewer than about 1,000 patients lose the rare
    classes' exact shares.
    """
    from .records_dir import RecordsDirWriter

    if isinstance(chunk_patients, bool) or not isinstance(chunk_patients, (int, np.integer)) or chunk_patients < 1:
        raise _bad("chunk_patients", chunk_patients, "an integer >= 1")
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)) or n_patients < 1:
        raise _bad("n_patients", n_patients, "an integer >= 1")
    sizes = [chunk_patients] * (n_patients // chunk_patients)
    if n_patients % chunk_patients:
        sizes.append(n_patients % chunk_patients)
    if len(sizes) == 1:
        seeds = [int(seed)]
    else:
        seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(int(seed)).spawn(len(sizes))]
    width = max(5, len(str(n_patients)))
    source = f"synthetic:seed={seed},patients={n_patients},chunk_patients={chunk_patients}"
    offset = 0
    with RecordsDirWriter(path, string_widths={"patient_id": width + 1}, source=source) as writer:
        for size, chunk_seed in zip(sizes, seeds):
            rec = simulate_cohort(n_patients=size, seed=chunk_seed, **options)
            local = np.char.lstrip(rec.patient_id, "P").astype(np.int64)
            rec.patient_id = np.char.add("P", np.char.zfill((local + offset).astype(str), width))
            writer.append(rec)
            offset += size
    return writer.path
