"""Split-half replication: is a response real? Two half-averages of one recording must agree.

Clinicians overlay the two interleaved half-averages (SmartEP Buffer1/Buffer2, EARNDB R1/R2) and
call a response only where they replicate. Here that is the Pearson r of the halves over 1–10 ms
after onset (:func:`abrflow.data.split_half_r`), both band-passed to the analysis
band of the classical methods first, so that the criterion does not depend on a device's filters.

The criterion :data:`REPLICATION_MIN_R` was fixed on the simulator's noise, never on real data:
pairs of independent averaged-EEG noise traces (the synthetic cohort's 1/f noise, amplifier band
100–3000 Hz) band-passed like the halves reach r ≥ 0.43 in 5% of cases
(:func:`null_split_half_r` recomputes it; a test keeps the constant honest). A real recording
system's noise has its own colour, so where an export carries enough halves the criterion is taken
from that noise instead (:func:`own_noise_criterion`, :func:`replication_criterion`): SmartEP's
and EARNDB's is redder than the simulator's, and their 5% point is r ≈ 0.52–0.54.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from ..data import synthetic
from ..data.halves import split_half_r

#: Band (Hz) both halves are filtered to before they are compared (the classical methods' band).
REPLICATION_BAND_HZ: tuple[float, float] = (100.0, 1500.0)
#: 95th percentile of the split-half r of noise alone (see the module docstring).
REPLICATION_MIN_R = 0.43
#: False-alarm rate the criterion was set at.
REPLICATION_FALSE_ALARM = 0.05
#: Fewest and most pairs of recordings an export's own-noise criterion is taken from
#: (:func:`own_noise_criterion`): 15 recordings give 105 pairs; one SmartEP ear has 117 (6,786 pairs).
MIN_NULL_PAIRS = 100
MAX_NULL_PAIRS = 20_000
#: The criterion that gates the MODEL's series threshold (a level whose pooled halves stay below it
#: holds no response). Not the 5%-false-alarm one: fixed on the synthetic tuning cohort with the
#: simulator's half-averages (experiments/series_rule_synthetic.py, experiments/results/series_rule_synthetic.json)
#: as the strictest criterion costing ≤ 1 dB of per-ear MAE. Near threshold a real response is small
#: beside each half's noise, so its halves correlate weakly: there r ≥ 0.43 raised the synthetic
#: per-ear threshold by +10.8 dB on average (and the real SmartEP ones by +8 to +15 dB).
MODEL_GATE_MIN_R = -0.05


def replication_r(half_a: np.ndarray, half_b: np.ndarray, sampling_rate_hz: float) -> np.ndarray:
    """Split-half r [N] of band-passed halves [N, T] over 1–10 ms (NaN where undefined)."""
    sos = scipy.signal.butter(2, REPLICATION_BAND_HZ, btype="bandpass", fs=sampling_rate_hz, output="sos")
    a = scipy.signal.sosfiltfilt(sos, np.asarray(half_a, np.float64), axis=-1)
    b = scipy.signal.sosfiltfilt(sos, np.asarray(half_b, np.float64), axis=-1)
    return split_half_r(a, b, sampling_rate_hz)


def has_halves(extra: dict) -> bool:
    return "half_a" in extra and "half_b" in extra


def _pooled_halves(records) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each level's halves pooled over its runs (weighted by sweeps where known): (a, b, level of each row)."""
    half_a = np.asarray(records.extra["half_a"], np.float64)
    half_b = np.asarray(records.extra["half_b"], np.float64)
    sweeps = np.asarray(records.extra.get("sweeps", np.ones(len(records))), np.float64)
    weight = np.where(np.isfinite(sweeps) & (sweeps > 0), sweeps, 1.0)
    keys = np.char.add(np.char.add(records.series_key.astype(str), "|"), records.intensity_db.astype(str))
    unique, codes = np.unique(keys, return_inverse=True)
    pooled_a = np.zeros((len(unique), half_a.shape[1]))
    pooled_b = np.zeros_like(pooled_a)
    np.add.at(pooled_a, codes, half_a * weight[:, None])
    np.add.at(pooled_b, codes, half_b * weight[:, None])
    return pooled_a, pooled_b, codes


def replicates(records, min_r: float = REPLICATION_MIN_R) -> np.ndarray | None:
    """Per recording: do the halves of its level replicate? None when the records carry no halves.

    Judged per level of each series, as a clinician overlays every run at a level: the halves of
    all runs at that level are pooled (weighted by their sweeps where known: SmartEP saves runs of
    500–2000 sweeps) and the pooled halves must reach ``min_r``. Pooled noise is still noise of the
    same colour, so the criterion's false-alarm rate is unchanged.
    """
    if not has_halves(records.extra):
        return None
    pooled_a, pooled_b, codes = _pooled_halves(records)
    r = replication_r(pooled_a, pooled_b, records.sampling_rate_hz)
    return (np.nan_to_num(r, nan=-1.0) >= min_r)[codes]


def own_noise_criterion(records, false_alarm: float = REPLICATION_FALSE_ALARM) -> float | None:
    """The split-half r that pairs of the export's OWN noise reach in ``false_alarm`` of cases.

    Half the difference of a recording's halves, (a − b) / 2, holds no response (it cancels), only
    the recording system's noise; two recordings' differences are independent noise. Their r over
    pairs of recordings is the null the criterion should come from (r does not depend on the noise
    level, only on its colour, so runs of any length pair up). SmartEP's and EARNDB's noise is
    redder than the simulator's (≈ 1/f² against 1/f in the ABR band): its 5% point is r ≈ 0.52–0.54
    and :data:`REPLICATION_MIN_R` = 0.43 passes ≈ 10% of it. None where the records carry no halves
    or give fewer than :data:`MIN_NULL_PAIRS` pairs (the simulator's criterion then stands).
    """
    if not has_halves(records.extra):
        return None
    noise = (np.asarray(records.extra["half_a"], np.float64) - np.asarray(records.extra["half_b"], np.float64)) / 2
    n = len(noise)
    if n * (n - 1) // 2 <= MAX_NULL_PAIRS:
        first, second = np.triu_indices(n, 1)
    else:  # a large export: a fixed random sample of pairs, the same on every call
        rng = np.random.default_rng(0)
        first, second = rng.integers(0, n, (2, MAX_NULL_PAIRS))
        keep = first != second
        first, second = first[keep], second[keep]
    r = replication_r(noise[first], noise[second], records.sampling_rate_hz) if first.size else np.empty(0)
    r = r[np.isfinite(r)]
    return float(np.quantile(r, 1.0 - false_alarm)) if r.size >= MIN_NULL_PAIRS else None


def replication_criterion(records) -> float:
    """The 5% criterion for these records: their own noise's where it can be measured, else the simulator's."""
    own = own_noise_criterion(records)
    return REPLICATION_MIN_R if own is None else own


def null_split_half_r(quantile: float = 1.0 - REPLICATION_FALSE_ALARM, n_pairs: int = 4000, seed: int = 0,
                      sampling_rate_hz: float = 20_000.0, signal_length: int = 200) -> float:
    """The ``quantile`` of split-half r for pairs of independent simulated noise averages."""
    return float(np.nanquantile(null_split_half_rs(n_pairs, seed, sampling_rate_hz, signal_length), quantile))


def null_split_half_rs(n_pairs: int = 4000, seed: int = 0, sampling_rate_hz: float = 20_000.0,
                       signal_length: int = 200) -> np.ndarray:
    """Split-half r of ``n_pairs`` pairs of independent simulated noise averages (the criterion's null)."""
    phys = synthetic.make_physiology()
    sos = synthetic.amplifier_sos(sampling_rate_hz, phys)
    rng = np.random.default_rng(seed)
    unit, clean = np.ones(n_pairs), np.zeros(n_pairs, dtype=bool)
    a, b = (synthetic.eeg_noise_uv(rng, unit, clean, signal_length, sampling_rate_hz, sos, phys) for _ in range(2))
    return replication_r(a, b, sampling_rate_hz)
