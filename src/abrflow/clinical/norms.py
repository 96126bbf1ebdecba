"""Published norms a clinician reads an ABR against: latencies of waves I, III and V by click level
and age, the interpeak intervals I–III, III–V and I–V, and the z-scores and flags against them.

Sources (``shared/reference/abr-physiology.md`` has the sheet they were read from):

- [PA87]  Prosser S, Arslan E (1987). Audiology 26:179 — adult click wave-V
  latency–intensity polynomial, as coded (with SD 0.24 ms) in Carcagno's BrainWave.jl
  ``src/findABRPeaks.jl``.
- [ECD10] Elberling C, Callø J, Don M (2010). J Acoust Soc Am 128:215 — adult click wave V
  7.60 ± 0.79, 6.59 ± 0.74, 5.88 ± 0.25 ms at 20/40/60 dB nHL (amtoolbox ``data_elberling2010.m``).
- [PIC]   Picton's book (Human Auditory Evoked Potentials), adult intervals as coded in BrainWave.jl
  (labelled "data from Picton book"): I–V 3.95 ± 0.23 ms, III–V 2.07 ± 0.19 ms.
- [NEO]   Arq Neuropsiquiatr 2003;61:906 — term neonates, day 2, 80 dB HL clicks: I 1.79 ± 0.20,
  III 4.54 ± 0.31, V 6.75 ± 0.38, I–III 2.75 ± 0.36, III–V 2.22 ± 0.22, I–V 4.97 ± 0.43 ms.
- [CAM]   Camarillo & Laganao 2024 (WPRIM 1036010), infants 3–6 months: wave I SD 0.15 ms.
- [ES88]  Eggermont JJ, Salamy A (1988). Hear Res 33:35–47 — maturation of term infants: wave I one
  exponential (τ ≈ 5 weeks), wave V the sum of two (τ ≈ 5 and ≈ 100 weeks).
- [TOW]   Towson University ABR normative study (mdsoar.org/handle/11603/3281): interpeak latencies
  constant across stimulus intensities.
- [IPI]   "Interpeak intervals of ABR, interaural differences in normal-hearing subjects and patients
  with sensorineural hearing loss" (scilit b8546f78; authors not shown): 95 % limits x̄ + 1.96 SD.

The model (every step below is either a cited number or arithmetic on cited numbers, marked
*derived*):

1. Adult wave V(L): [ECD10]'s measured means at 20/40/60 dB nHL (7.60/6.59/5.88 ms; a click with
   a stated calibration, 0 dB nHL = 35.2 dB peSPL, Rønne et al. 2012), linear between them; above
   60 dB [PA87]'s polynomial values at 80 and 90 dB (5.71, 5.58 ms), the only published curve that
   reaches the clinic's top levels, linear from 5.88 at 60 dB to them; below 20 dB [ECD10]'s 20 dB
   point continued with [PA87]'s shape (V(L) = 7.60 + PA87(L) − PA87(20): 8.78 ms at 0 dB).
   Outside 0–90 dB the end slopes continue. Where the two sources overlap they differ by 0.3–0.5 ms
   (PA87 6.98/6.16 ms at 40/60 dB; different click calibrations): the measured points win inside
   their range. Fixed from the literature before any real recording was read.
2. Interpeak intervals do not depend on level [TOW], so
   adult I(L) = V(L) − I–V and III(L) = V(L) − III–V (*derived*: I = 1.76, III = 3.64 ms at 80 dB):
   I follows the cochlear delay as V does.
3. Adult I–III = I–V − III–V = 1.88 ms (*derived*), SD √(0.23² − 0.19²) = 0.13 ms (*derived*,
   assuming I–III and III–V independent).
4. Maturation [ES88]: wave I's newborn excess (1.79 − 1.76 = 0.03 ms, *derived*) decays with
   τ = 5 weeks; each interval's newborn excess over the adult value ([NEO] − adult) decays with
   τ = 100 weeks (V's slow exponential is the central conduction time; *derived* split of V's two
   exponentials). So V(80 dB, newborn) = 1.79 + 4.97 = 6.76 ms ([NEO]: 6.75). With τ = 100 weeks
   an infant keeps 47 % of the excess at 18 months, in line with [ES88] and Spitzer et al. 2015
   (V still shortening at 3–5 years) rather than with the "mature by 18 months" of Amorim 2009.
   [NEO] used 80 dB HL: taken as 80 dB nHL.
5. Latency SDs: adult V SD by level from [ECD10] (linear between 20/40/60 dB, flat outside; 0.25 at
   ≥ 60 dB agrees with [PA87]'s 0.24). Adult I SD 0.15 ms ([CAM]: wave I is mature by 3–6 months,
   [ES88] τ = 5 weeks); adult III SD √(0.15² + 0.13²) = 0.20 ms (*derived*: I plus I–III,
   independent). The extra variance V shows at low levels (SD_V(L)² − 0.25²) is peripheral and is
   added to I and III alike (*derived*: intervals are level-independent). The newborn's extra
   variance (SD_newborn² − SD_adult²) fades with the same exponential as the mean (*derived*).
6. Unknown age (NaN) = adult; unknown level gives NaN latency norms (intervals need no level).

Not corrected for stimulus rate or polarity: the norms are for the clinic's usual 10–33/s clicks.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..data.schema import INTERPEAK_INTERVALS, WAVE_KEYS

INTERVALS = INTERPEAK_INTERVALS
#: |z| above this is outside the norm: the 95 % reference limit x̄ ± 1.96 SD used for ABR interpeak
#: intervals by [IPI].
OUTSIDE_NORM_Z: float = 1.96

#: [PA87] adult wave V (ms) = Σ c_k L^k, L in dB nHL, highest power first; fitted range used 0–90 dB.
PROSSER_ARSLAN_COEFFS: tuple[float, ...] = (-5.859e-8, 1.274e-5, -5.424e-4, -0.05297, 9.3)
#: [ECD10] adult wave-V mean and SD (ms) at 20/40/60 dB nHL.
ELBERLING_LEVELS_DB: tuple[float, ...] = (20.0, 40.0, 60.0)
ELBERLING_V_MEAN_MS: tuple[float, ...] = (7.60, 6.59, 5.88)
ELBERLING_V_SD_MS: tuple[float, ...] = (0.79, 0.74, 0.25)
#: Levels (dB nHL) where [PA87] supplies the adult V curve: above [ECD10]'s range, and below it (shape).
PROSSER_ARSLAN_HIGH_LEVELS_DB: tuple[float, ...] = (80.0, 90.0)
PROSSER_ARSLAN_LOW_LEVELS_DB: tuple[float, ...] = (0.0, 10.0)

#: Adult interpeak intervals, (mean, SD) ms: [PIC] I–V and III–V; I–III derived (docstring, 3).
ADULT_INTERVAL_MS: dict[str, tuple[float, float]] = {
    "i_v": (3.95, 0.23), "iii_v": (2.07, 0.19),
    "i_iii": (3.95 - 2.07, float(np.sqrt(0.23 ** 2 - 0.19 ** 2)))}
#: Term newborn (day 2, 80 dB HL) intervals, (mean, SD) ms [NEO].
NEWBORN_INTERVAL_MS: dict[str, tuple[float, float]] = {
    "i_iii": (2.75, 0.36), "iii_v": (2.22, 0.22), "i_v": (4.97, 0.43)}
#: Term newborn latencies at 80 dB HL, (mean, SD) ms [NEO]; the level they were measured at.
NEWBORN_LATENCY_MS: dict[str, tuple[float, float]] = {"i": (1.79, 0.20), "iii": (4.54, 0.31), "v": (6.75, 0.38)}
NEWBORN_LEVEL_DB = 80.0
#: Adult latency SDs at high level (ms): I [CAM]; III derived (docstring, 5); V [ECD10] at 60 dB.
ADULT_HIGH_LEVEL_SD_MS: dict[str, float] = {
    "i": 0.15, "iii": float(np.sqrt(0.15 ** 2 + ADULT_INTERVAL_MS["i_iii"][1] ** 2)), "v": 0.25}
#: Maturation time constants [ES88] (weeks): peripheral (wave I) and central (the intervals).
PERIPHERAL_TAU_WEEKS, CENTRAL_TAU_WEEKS = 5.0, 100.0
WEEKS_PER_YEAR = 365.25 / 7.0
#: Age taken for an unknown age (years): adult.
ADULT_AGE_YEARS = 30.0


# ---------------------------------------------------------------------------- building blocks
def _check_wave(wave: str) -> str:
    key = wave.lower()
    if key not in WAVE_KEYS:
        raise ValueError(f"unknown wave {wave!r}; expected one of {WAVE_KEYS}")
    return key


def _interval(name: str) -> str:
    if name not in ADULT_INTERVAL_MS:
        raise ValueError(f"unknown interval {name!r}; expected one of {[x for x, _, _ in INTERVALS]}")
    return name


def _age_weeks(age_years) -> np.ndarray:
    age = np.nan_to_num(np.asarray(age_years, np.float64), nan=ADULT_AGE_YEARS)
    return np.maximum(age, 0.0) * WEEKS_PER_YEAR


def _immaturity(age_years, tau_weeks: float) -> np.ndarray:
    """1 at term birth, → 0 with age: exp(−age / τ) [ES88]."""
    return np.exp(-_age_weeks(age_years) / tau_weeks)


def adult_v_latency_ms(intensity_db) -> np.ndarray:
    """Adult click wave V (ms) at a level in dB nHL: [ECD10] inside 20–60 dB, [PA87] above and its
    shape below (module docstring, 1); linear between knots, end slopes outside (NaN stays NaN)."""
    level = np.asarray(intensity_db, np.float64)
    poly = np.poly1d(PROSSER_ARSLAN_COEFFS)
    low = [ELBERLING_V_MEAN_MS[0] + poly(lv) - poly(ELBERLING_LEVELS_DB[0]) for lv in PROSSER_ARSLAN_LOW_LEVELS_DB]
    knots_db = np.array([*PROSSER_ARSLAN_LOW_LEVELS_DB, *ELBERLING_LEVELS_DB, *PROSSER_ARSLAN_HIGH_LEVELS_DB])
    knots_ms = np.array([*low, *ELBERLING_V_MEAN_MS, *poly(np.array(PROSSER_ARSLAN_HIGH_LEVELS_DB))])
    first_slope = (knots_ms[1] - knots_ms[0]) / (knots_db[1] - knots_db[0])
    last_slope = (knots_ms[-1] - knots_ms[-2]) / (knots_db[-1] - knots_db[-2])
    extra = np.where(level < knots_db[0], (level - knots_db[0]) * first_slope, 0.0) \
        + np.where(level > knots_db[-1], (level - knots_db[-1]) * last_slope, 0.0)
    return np.interp(level, knots_db, knots_ms) + extra


def _adult_v_sd_ms(intensity_db) -> np.ndarray:
    level = np.asarray(intensity_db, np.float64)
    sd = np.interp(level, ELBERLING_LEVELS_DB, ELBERLING_V_SD_MS)
    return np.where(np.isnan(level), np.nan, sd)


# ---------------------------------------------------------------------------- public API
def normative_interval_ms(interval: str, age_years) -> tuple[np.ndarray, np.ndarray]:
    """(mean, SD) of an interpeak interval (``i_iii``, ``iii_v``, ``i_v``) in ms for age; level-free."""
    name = _interval(interval)
    m = _immaturity(age_years, CENTRAL_TAU_WEEKS)
    (a_mean, a_sd), (n_mean, n_sd) = ADULT_INTERVAL_MS[name], NEWBORN_INTERVAL_MS[name]
    mean = a_mean + (n_mean - a_mean) * m
    sd = np.sqrt(a_sd ** 2 + (n_sd ** 2 - a_sd ** 2) * m)
    return mean, sd


def normative_latency_ms(wave: str, intensity_db, age_years) -> tuple[np.ndarray, np.ndarray]:
    """(mean, SD) latency in ms of wave ``i``, ``iii`` or ``v`` for click level (dB nHL) and age
    (years; NaN = adult). NaN where the level is unknown. Arrays broadcast together."""
    key = _check_wave(wave)
    level, age = np.broadcast_arrays(np.asarray(intensity_db, np.float64), np.asarray(age_years, np.float64))
    adult_i = adult_v_latency_ms(level) - ADULT_INTERVAL_MS["i_v"][0]
    i_newborn_excess = NEWBORN_LATENCY_MS["i"][0] - (float(adult_v_latency_ms(NEWBORN_LEVEL_DB))
                                                     - ADULT_INTERVAL_MS["i_v"][0])
    m_peripheral = _immaturity(age, PERIPHERAL_TAU_WEEKS)
    m_central = _immaturity(age, CENTRAL_TAU_WEEKS)
    wave_i = adult_i + i_newborn_excess * m_peripheral
    if key == "i":
        mean, m = wave_i, m_peripheral
    else:
        mean = wave_i + normative_interval_ms("i_iii" if key == "iii" else "i_v", age)[0]
        m = m_central
    # SD: the adult SD at high level, plus the extra (peripheral) variance V shows at low levels,
    # plus the newborn's extra variance fading with maturation (module docstring, 5).
    low_level_var = _adult_v_sd_ms(level) ** 2 - ELBERLING_V_SD_MS[-1] ** 2
    adult_sd = ADULT_HIGH_LEVEL_SD_MS[key]
    newborn_var = NEWBORN_LATENCY_MS[key][1] ** 2 - adult_sd ** 2
    sd = np.sqrt(adult_sd ** 2 + low_level_var + newborn_var * m)
    return mean, sd


def normative_v_latency_ms(intensity_db, age_years) -> np.ndarray:
    """Expected wave-V latency (ms) for level and age (unknown age taken as adult): the mean of
    :func:`normative_latency_ms` for wave V."""
    return normative_latency_ms("v", intensity_db, age_years)[0]


def z_score(value, mean, sd) -> np.ndarray:
    """(value − mean) / sd; NaN where any of them is NaN."""
    value, mean, sd = (np.asarray(x, np.float64) for x in (value, mean, sd))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (value - mean) / sd


def outside_norm(z) -> np.ndarray:
    """|z| > OUTSIDE_NORM_Z (bool); False where z is NaN."""
    z = np.asarray(z, np.float64)
    return np.abs(np.nan_to_num(z, nan=0.0)) > OUTSIDE_NORM_Z


def latency_norm_band_ms(wave: str, intensity_db, age_years, z: float = OUTSIDE_NORM_Z
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) = mean ∓ z·SD of a wave's latency, e.g. the shaded band of a latency–intensity plot."""
    mean, sd = normative_latency_ms(wave, intensity_db, age_years)
    return mean - z * sd, mean + z * sd


def norm_flags(latency_ms: Mapping[str, np.ndarray], intensity_db, age_years) -> dict[str, np.ndarray]:
    """Each wave's latency z and flag, and each interval's value, z and flag, per recording.

    ``latency_ms`` maps ``i``, ``iii``, ``v`` to latencies [N] (NaN = absent; a missing key = all
    absent). Returns ``{w}_latency_z``, ``{w}_latency_outside_norm`` per wave and ``{x}_interval_ms``,
    ``{x}_interval_z``, ``{x}_interval_outside_norm`` per interval: NaN / False where a wave is
    missing; latency z is NaN where the level is unknown, interval z is not.
    """
    level = np.asarray(intensity_db, np.float64)
    age = np.asarray(age_years, np.float64)
    n = np.broadcast_shapes(level.shape, age.shape, *(np.shape(v) for v in latency_ms.values()))
    lat = {w: np.broadcast_to(np.asarray(latency_ms.get(w, np.nan), np.float64), n) for w in WAVE_KEYS}
    out: dict[str, np.ndarray] = {}
    for w in WAVE_KEYS:
        z = z_score(lat[w], *normative_latency_ms(w, level, age))
        out[f"{w}_latency_z"] = np.broadcast_to(z, n).copy()
        out[f"{w}_latency_outside_norm"] = outside_norm(out[f"{w}_latency_z"])
    for name, first, last in INTERVALS:
        value = lat[last] - lat[first]
        z = z_score(value, *normative_interval_ms(name, age))
        out[f"{name}_interval_ms"] = value
        out[f"{name}_interval_z"] = np.broadcast_to(z, n).copy()
        out[f"{name}_interval_outside_norm"] = outside_norm(out[f"{name}_interval_z"])
    return out
