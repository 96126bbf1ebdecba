"""The physiology plan of a cohort: who is tested, which ear at which level, and each ear's constants.

Patients get an age and a hearing-loss class, each ear a class and a threshold θ, each ear a
descending level series (plus rate series), in the order a clinician records them; every row's
identity is fixed here, before any waveform. :func:`_ear_physiology` draws each ear's individual
latency, amplitude and width constants.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...errors import ConfigError
from .physiology import (
    CONDUCTIVE,
    N_CLASSES,
    NEURAL_CLASSES,
    NEUROPATHY,
    NORMAL,
    SENSORINEURAL,
    TOTAL,
    Physiology,
    _immaturity,
    _uniform,
    _v_immaturity,
)

#: The 5 dB level grid a series is drawn from, loudest first (dB nHL).
LEVEL_GRID_DB = np.arange(100.0, -5.0, -5.0)
#: Levels a clinician visits on the way down before bracketing the threshold in 5 dB steps.
COARSE_LEVELS_DB = (80.0, 60.0, 40.0, 30.0, 20.0, 10.0, 0.0)
#: Extra levels visited when the threshold is above 60 dB (searching upwards from 80).
HIGH_LEVELS_DB = (100.0, 90.0, 70.0)
#: Levels searched in ears with no response (TOTAL, NEUROPATHY).
NO_RESPONSE_LEVELS_DB = {TOTAL: (100.0, 90.0, 80.0), NEUROPATHY: (100.0, 90.0, 80.0, 70.0, 60.0)}
#: Patients per class in the pilot that converts by-recording prevalence into patient probabilities.
_PILOT_PATIENTS = 4000


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


# ---------------------------------------------------------------------------- physiology per ear
def _ear_physiology(rng: np.random.Generator, age_years_ear: np.ndarray, phys: Physiology) -> dict:
    """Individual constants of each ear: latency offsets, amplitudes, widths, where I and III vanish."""
    e = len(age_years_ear)
    imm = _immaturity(age_years_ear, phys)
    v_imm = _v_immaturity(age_years_ear, phys)
    newborn_v = _uniform(rng, phys.newborn_v_latency_80db_ms_range, e)
    v80 = phys.adult_v_latency_80db_ms + (newborn_v - phys.adult_v_latency_80db_ms) * v_imm \
        + rng.normal(0, phys.v_latency_individual_sd_ms, e)
    i80 = phys.wave_i_latency_80db_ms + rng.normal(0, phys.wave_i_latency_individual_sd_ms, e) \
        + phys.newborn_wave_i_excess_ms * np.exp(-age_years_ear * 52.18 / phys.wave_i_maturation_weeks)
    w_lo, w_hi = phys.wave_width_ms_range
    # Peaks widen from I to III and in infants; positions within the allowed σ range. V is kept as
    # narrow as III: its breadth in a recording comes from the IV–V complex around it.
    base_width = w_lo + (w_hi - w_lo) * np.clip(
        np.array([0.05, 0.25, 0.25])[None, :] + 0.2 * imm[:, None] + rng.uniform(0, 0.2, (e, 3)), 0, 1)
    return {
        "imm": imm, "v_imm": v_imm, "v80_ms": v80, "i80_ms": np.minimum(i80, v80 - 2.5),  # I–V never below 2.5 ms
        "li_scale": _uniform(rng, phys.li_individual_scale_range, e),
        "v_amp_max_uv": _uniform(rng, phys.v_amplitude_max_uv_range, e),
        "amp_ratio": np.stack([_uniform(rng, phys.wave_i_amplitude_ratio_range, e),
                               _uniform(rng, phys.wave_iii_amplitude_ratio_range, e), np.ones(e)], axis=1),
        "vanish_sl_db": np.stack([_uniform(rng, phys.wave_i_vanish_sl_db_range, e),
                                  _uniform(rng, phys.wave_iii_vanish_sl_db_range, e), np.zeros(e)], axis=1),
        "base_width_ms": base_width,
        "sn10_ratio": _uniform(rng, phys.sn10_ratio_range, e),
    }
