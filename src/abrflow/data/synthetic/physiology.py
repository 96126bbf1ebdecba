"""Physiological and protocol parameters of the simulator, with their validation.

:class:`Physiology` names every number the simulation uses (DESIGN.md §5), each with its source or
meaning beside it; :func:`make_physiology` applies and checks overrides. Also the class codes and
the small draws the other stages share.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError

# Class codes in the original project's order (records.CLASS_NAMES).
NORMAL, NEUROPATHY, SENSORINEURAL, TOTAL, CONDUCTIVE = 0, 1, 2, 3, 4
N_CLASSES = 5
#: Classes whose brainstem produces waves I–V once the stimulus is above threshold.
NEURAL_CLASSES = (NORMAL, SENSORINEURAL, CONDUCTIVE)


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
    maturation_time_constant_years: float = 0.5  # thresholds, widths, rate effect: exp(-age/τ)
    # Wave V latency matures with two exponentials, τ ≈ 5 and ≈ 100 weeks (Eggermont & Salamy 1988,
    # Hear Res 33:35, abstract). Unsourced: the fast share, chosen so that 3–6-month-olds keep most
    # of the newborn delay (I–V 4.99 ms at 3–6 months, Camarillo & Laganao 2024) while V is near
    # adult by 18 months (Gorga et al. 1989, J Speech Hear Res 32:281; Amorim et al. 2009).
    v_maturation_fast_weeks: float = 5.0
    v_maturation_slow_weeks: float = 100.0
    v_maturation_fast_fraction: float = 0.2
    v_latency_individual_sd_ms: float = 0.12
    wave_i_latency_80db_ms: float = 1.6  # adult; I–V then ≈ 4.1 (3.95 ± 0.23, Picton via BrainWave.jl)
    # Term newborns: I 1.79 ms (Arq Neuropsiquiatr 2003;61:906) vs 1.49 ms at 3–6 months (Camarillo &
    # Laganao 2024); wave I τ ≈ 5 weeks (Eggermont & Salamy 1988). Unsourced: the excess, half that
    # difference (the click rates differ), so that the newborn I–V stays ≈ 4.97 ms ([NEO]).
    newborn_wave_i_excess_ms: float = 0.1
    wave_i_maturation_weeks: float = 5.0
    wave_i_latency_individual_sd_ms: float = 0.08
    # I–III / I–V: adult (3.95 − 2.07) / 3.95 = 0.476 (I–V 3.95 ± 0.23, III–V 2.07 ± 0.19 ms,
    # "Picton book" in BrainWave.jl findABRPeaks); term newborn 2.75 / 4.97 = 0.553 ([NEO] above);
    # between the two with V's maturation.
    i_iii_fraction_of_i_v: float = 0.476
    newborn_i_iii_fraction_of_i_v: float = 0.553
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
    # V' (the trough after V): V's major negative slope. Unsourced: depth and place chosen so that the
    # slope after V is steeper than the rise, V' lies between V and VI, and V's peak moves < 0.05 ms.
    v_trough_ratio_range: tuple[float, float] = (0.6, 1.0)  # V' depth relative to V
    v_trough_delay_sigma: float = 2.0  # V' centre after V, in V's σ
    v_trough_width_fraction: float = 0.8  # V' σ relative to V's σ
    drift_uv_range: tuple[float, float] = (0.0, 0.08)

    # --- minor components II, IV, VI and the IV–V complex (components.py)
    # II: at (2.88 − 1.79) / (4.54 − 1.79) = 0.40 of I–III in term newborns (I 1.79, II 2.88, III 4.54,
    # Arq Neuropsiquiatr 2003;61:906); the same fraction at all ages is unsourced.
    wave_ii_fraction_of_i_iii: float = 0.40
    # II and IV may be missing in healthy people; VI and VII vary so much that their absence is not
    # abnormal (Chiappa et al. 1979, Arch Neurol 36:81). Shares and amplitudes (relative to V's
    # saturation amplitude) unsourced: chosen so that II is a small wave, VI a clear second positivity.
    wave_ii_presence_probability: float = 0.7
    wave_vi_presence_probability: float = 0.8
    wave_ii_amplitude_ratio_range: tuple[float, float] = (0.15, 0.35)
    wave_vi_amplitude_ratio_range: tuple[float, float] = (0.3, 0.6)
    # SL below which each is absent; unsourced: like I and III, minor waves vanish before V.
    wave_ii_vanish_sl_db_range: tuple[float, float] = (30.0, 40.0)
    wave_iv_vanish_sl_db_range: tuple[float, float] = (10.0, 20.0)
    wave_vi_vanish_sl_db_range: tuple[float, float] = (15.0, 30.0)
    # VI after V: unsourced (no readable norm found); 1.0–1.5 ms in adults as the brief of this
    # change gives it, longer in infants by this share of immaturity; at least vi_min_interval_sigma
    # of V's σ so that V' fits between them.
    v_vi_interval_ms_range: tuple[float, float] = (1.0, 1.5)
    infant_vi_interval_factor: float = 0.2
    vi_min_interval_sigma: float = 3.3
    wave_iv_width_fraction_of_v: float = 0.8  # unsourced
    wave_vi_width_fraction_of_v: float = 0.8  # unsourced
    # IV–V shapes in IV_V_SHAPES order (separate, IV shoulder on V, V shoulder on IV, fused). Chiappa
    # et al. 1979 describe six normal IV–V patterns in 50 adults; the patterns' shares were not
    # readable: unsourced, chosen so that separate peaks are the commonest and every shape is seen.
    iv_v_shape_weights: tuple[float, ...] = (0.4, 0.25, 0.15, 0.2)
    # V − IV in V's σ, and IV's amplitude relative to V's, per shape. Unsourced: chosen so that the
    # noise-free complex has the named shape (tests/test_synthetic_waves.py checks it); the
    # separate shape gives V − IV ≈ 0.7–1.0 ms, term newborns 0.89 ms ([NEO]: IV 5.86, V 6.75).
    iv_v_separation_sigma_separate_range: tuple[float, float] = (2.9, 3.5)
    iv_v_separation_sigma_iv_shoulder_range: tuple[float, float] = (2.0, 2.4)
    iv_v_separation_sigma_v_shoulder_range: tuple[float, float] = (1.8, 2.2)
    iv_v_separation_sigma_fused_range: tuple[float, float] = (0.3, 0.8)
    wave_iv_ratio_separate_range: tuple[float, float] = (0.6, 1.0)
    wave_iv_ratio_iv_shoulder_range: tuple[float, float] = (0.35, 0.5)
    wave_iv_ratio_v_shoulder_range: tuple[float, float] = (1.6, 2.2)
    wave_iv_ratio_fused_range: tuple[float, float] = (0.6, 1.0)
    iv_max_fraction_of_iii_v: float = 0.45  # IV stays in the later half of III–V (unsourced)
    # Marking window: on a separate or shoulder complex the mark is searched after this share of
    # the V − IV gap before V (past IV's own peak); see components._mark_v.
    mark_window_fraction_of_iv_v: float = 0.45
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
_POSITIVE_FIELDS = ("maturation_time_constant_years", "v_maturation_fast_weeks", "v_maturation_slow_weeks",
                    "wave_i_maturation_weeks", "v_trough_delay_sigma", "v_trough_width_fraction",
                    "wave_iv_width_fraction_of_v", "wave_vi_width_fraction_of_v", "iv_max_fraction_of_iii_v",
                    "li_knee_db", "recruitment_sl_db",
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
    for name in ("i_iii_fraction_of_i_v", "newborn_i_iii_fraction_of_i_v", "wave_ii_fraction_of_i_iii",
                 "iv_max_fraction_of_iii_v", "mark_window_fraction_of_iv_v"):
        if not 0 < getattr(phys, name) < 1:
            raise _bad(name, getattr(phys, name), "a fraction strictly between 0 and 1")
    pairs = [("class_prevalence", N_CLASSES), ("iv_v_shape_weights", 4),
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


# ---------------------------------------------------------------------------- small helpers
def _uniform(rng: np.random.Generator, bounds: tuple[float, float], size) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], size)


def _immaturity(age_years: np.ndarray, phys: Physiology) -> np.ndarray:
    """1 at birth, → 0 with maturation: drives the newborn-to-adult change of latency and θ."""
    return np.exp(-np.asarray(age_years) / phys.maturation_time_constant_years)


def _v_immaturity(age_years: np.ndarray, phys: Physiology) -> np.ndarray:
    """Wave V's (and the interpeak intervals') immaturity: 1 at birth, two exponentials → 0."""
    weeks = np.asarray(age_years) * 52.18
    fast = phys.v_maturation_fast_fraction
    return fast * np.exp(-weeks / phys.v_maturation_fast_weeks) + (1 - fast) * np.exp(-weeks / phys.v_maturation_slow_weeks)


def _gauss(t_ms: np.ndarray, centre_ms: np.ndarray, width_ms: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * ((t_ms - centre_ms[:, None]) / width_ms[:, None]) ** 2)
