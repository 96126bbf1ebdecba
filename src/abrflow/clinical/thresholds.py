"""Hearing threshold of one ear from its level series: the one function evaluation and inference share.

Clinically an ear's ABR threshold is the lowest stimulus level at which wave V is present. Given a
response probability per recording of a series (a model's wave-V presence probability, a classical
detector's 0/1 call, or the marked/true presence), :func:`estimate_series_threshold` fits a
monotone logistic curve of response probability against level and reports where it crosses the
criterion.

Why a logistic fit rather than isotonic regression plus interpolation: detectability grows
sigmoidally with sensation level; two parameters pool every level and every replicate, so one
noisy recording cannot move the crossing by a whole step, and the crossing is continuous between
tested levels. Soft probabilities are used as soft targets of the Bernoulli likelihood (cross-
entropy), so a model's confidence counts, not just its 0/1 call. The slope is bounded: from a
transition spread over ~50 dB (an uninformative series) to one within ~1 dB (a step at 5 dB
resolution). With hard 0/1 responses that separate at levels L0 < L1 the fit is steep and the
crossing lands midway between L0 and L1 — the unbiased choice when the true threshold is anywhere
in (L0, L1].

The interval is honest about what a series can say, not a sampling confidence interval: it spans
the tested levels bracketing the crossing (the highest level below it and the lowest level at or
above it — the latter is the clinician's "lowest level with a response"), widened to where the
fitted curve runs from 0.25 to 0.75 when the fit is shallow (ambiguous responses).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import scipy.optimize
import scipy.special

from ..data.records import ABRRecords
from .series import series_rows

#: Bounds of the logistic slope (per dB): a transition over ~50 dB … one within ~1 dB.
SLOPE_PER_DB_BOUNDS: tuple[float, float] = (0.05, 3.0)
#: Level step assumed when a series has a single level (the clinical 5 dB grid).
DEFAULT_STEP_DB = 5.0
#: The fitted curve's probabilities that bound the ambiguity band of the interval.
AMBIGUITY_BAND: tuple[float, float] = (0.25, 0.75)
#: Criteria on a MODEL's (temperature-scaled) wave-V probabilities, fixed once on a synthetic cohort
#: (simulate_cohort(300, seed=777): 554 ears, 46 without response; the 4-epoch default checkpoint),
#: never on real data. Detection (does the ear respond at all?) stays "more likely than not", 0.5.
#: Location: near threshold wave V is small and the model's probability stays below 0.5 where the
#: response is already there, so the 0.5 crossing sat 2.7 dB above the attainable threshold.
#: Attainable MAE / bias / share of no-response ears still called no response, by location criterion
#: (detection 0.5): 0.2: 1.34/−1.19/0.85, 0.25: 1.25/−0.84/0.87, 0.3: 1.33/−0.37/0.89,
#: 0.35: 1.57/+0.20/0.93, 0.4: 1.93/+0.94/0.93, 0.5: 3.15/+2.71/0.96. 0.35: half the error of 0.5
#: at the smallest bias, losing one deaf ear in 46. (Without the separate detection criterion,
#: 0.3 called only 67% of deaf ears deaf.) Hard 0/1 calls (classical methods, truth) keep 0.5.
MODEL_RESPONSE_CRITERION = 0.35
MODEL_DETECTION_CRITERION = 0.5
#: A model "calls" a wave (I, III or V) in one recording at this calibrated presence probability: the
#: yes/no reading of the probability, behind the norm flags, the per-level I/III latencies, the
#: present/absent call scored against a clinician and the CLI's "absent".
WAVE_CALL_PROBABILITY = 0.5


@dataclass(frozen=True)
class SeriesThreshold:
    """One ear's threshold estimate.

    ``threshold_db`` is +inf for "no response up to ``no_response_up_to_db``"; NaN when the series
    holds no usable level. ``method`` says how it was found: ``logistic`` (a crossing within the
    tested range), ``all_respond`` (every level responds: the threshold is at or below the lowest
    level, reported as that level), ``no_response``, or ``no_data``.
    """

    threshold_db: float
    lo_db: float
    hi_db: float
    no_response_up_to_db: float | None
    method: str
    n_levels: int

    @property
    def at_or_below_lowest_level(self) -> bool:
        """True when the series never stopped responding: the threshold is an upper bound."""
        return self.method == "all_respond"

    def as_dict(self) -> dict:
        return asdict(self)


def _level_step_db(levels: np.ndarray) -> float:
    """The series' smallest spacing between tested levels (5 dB when a single level was tested)."""
    unique = np.unique(levels)
    return float(np.diff(unique).min()) if unique.size > 1 else DEFAULT_STEP_DB


def _fit_logistic(levels_db: np.ndarray, target: np.ndarray, start_db: float) -> tuple[float, float]:
    """Maximum-likelihood (soft cross-entropy) logistic p(L) = expit(k (L − L50)): returns (L50, k)."""
    centre = float(levels_db.mean())
    x = levels_db - centre  # centred for conditioning

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        l50, k = params
        z = k * (x - l50)
        # −[y log σ(z) + (1 − y) log(1 − σ(z))] = softplus(z) − y z, written stably.
        value = np.sum(np.logaddexp(0.0, z) - target * z)
        residual = scipy.special.expit(z) - target
        return float(value), np.array([-k * residual.sum(), np.sum(residual * (x - l50))])

    span = float(np.ptp(x)) + 2 * DEFAULT_STEP_DB
    bounds = [(x.min() - span, x.max() + span), SLOPE_PER_DB_BOUNDS]
    fit = scipy.optimize.minimize(loss, np.array([start_db - centre, 0.3]), jac=True, method="TNC",
                                  bounds=bounds)
    l50, k = fit.x
    return float(l50 + centre), float(k)


def _interpolated_crossing(tested_db: np.ndarray, level_mean: np.ndarray, criterion: float) -> float:
    """A starting guess: where the per-level mean probability first reaches the criterion, going up."""
    i = int(np.flatnonzero(level_mean >= criterion)[0])
    if i == 0:
        return float(tested_db[0])
    lo, hi = level_mean[i - 1], level_mean[i]
    frac = (criterion - lo) / (hi - lo) if hi > lo else 0.5
    return float(tested_db[i - 1] + frac * (tested_db[i] - tested_db[i - 1]))


def estimate_series_threshold(levels_db: np.ndarray, response_prob: np.ndarray, *, criterion: float = 0.5,
                              ambiguity_band: tuple[float, float] = AMBIGUITY_BAND,
                              detection: float | None = None) -> SeriesThreshold:
    """Threshold (dB) of one level series from per-recording response probabilities.

    Replicates at one level are all used. Rows with a NaN level or probability are ignored.
    "No level responds" (every probability below ``criterion``) gives +inf, "no response up to the
    highest level"; "every level responds" gives the lowest level with ``method='all_respond'``
    and ``lo_db`` one step below it. Otherwise the logistic crossing, as the module describes; a
    crossing the fit puts outside the tested range is treated like the corresponding edge case.
    ``detection`` (default: ``criterion``) decides whether the ear responds at all: some level's
    mean probability must reach it; ``criterion`` then places the threshold on the fitted curve.
    """
    detection = criterion if detection is None else detection
    if not (0.0 < criterion < 1.0 and 0.0 < detection < 1.0):
        raise ValueError(f"criterion and detection must be probabilities in (0, 1), got {criterion}, {detection}")
    levels = np.asarray(levels_db, dtype=np.float64).ravel()
    prob = np.asarray(response_prob, dtype=np.float64).ravel()
    if levels.shape != prob.shape:
        raise ValueError(f"levels_db {levels.shape} and response_prob {prob.shape} differ in shape")
    ok = np.isfinite(levels) & np.isfinite(prob)
    levels, prob = levels[ok], np.clip(prob[ok], 0.0, 1.0)
    n_levels = int(np.unique(levels).size)
    if n_levels == 0:
        return SeriesThreshold(math.nan, math.nan, math.nan, None, "no_data", 0)
    lowest, highest = float(levels.min()), float(levels.max())
    step = _level_step_db(levels)
    tested = np.unique(levels)
    level_mean = np.array([prob[levels == lv].mean() for lv in tested])
    if (level_mean < detection).all() or (level_mean < criterion).all():
        return _no_response(highest, n_levels)
    if (level_mean >= criterion).all():
        return _all_respond(lowest, step, n_levels)

    l50, k = _fit_logistic(levels, prob, _interpolated_crossing(tested, level_mean, criterion))
    threshold = l50 + scipy.special.logit(criterion) / k
    if threshold > highest:
        return _no_response(highest, n_levels)
    if threshold <= lowest:
        return _all_respond(lowest, step, n_levels)
    bracket_lo = float(tested[tested < threshold].max())
    bracket_hi = float(tested[tested >= threshold].min())
    band_lo = l50 + scipy.special.logit(ambiguity_band[0]) / k
    band_hi = l50 + scipy.special.logit(ambiguity_band[1]) / k
    lo = max(min(bracket_lo, band_lo), lowest - step)
    hi = min(max(bracket_hi, band_hi), highest)
    return SeriesThreshold(float(threshold), float(lo), float(hi), None, "logistic", n_levels)


def _no_response(highest_db: float, n_levels: int) -> SeriesThreshold:
    return SeriesThreshold(math.inf, highest_db, math.inf, highest_db, "no_response", n_levels)


def _all_respond(lowest_db: float, step_db: float, n_levels: int) -> SeriesThreshold:
    return SeriesThreshold(lowest_db, lowest_db - step_db, lowest_db, None, "all_respond", n_levels)


def series_thresholds(records: ABRRecords, response_prob: np.ndarray, *, criterion: float = 0.5,
                      detection: float | None = None) -> dict[str, SeriesThreshold]:
    """:func:`estimate_series_threshold` for every level series (``records.series_key``)."""
    prob = np.asarray(response_prob, dtype=np.float64)
    if prob.shape != (len(records),):
        raise ValueError(f"response_prob must have one value per recording ({len(records)}), got {prob.shape}")
    return {key: estimate_series_threshold(records.intensity_db[rows], prob[rows], criterion=criterion,
                                           detection=detection)
            for key, rows in series_rows(records).items()}


def true_series_thresholds(records: ABRRecords, *, attainable: bool = False) -> dict[str, float]:
    """The recorded threshold of each series (``threshold_db`` is per ear: its first row's value).

    ``attainable=True`` raises a threshold below the series' lowest tested level to that level:
    a series that still responds at its lowest level can only ever say "at or below L", so that
    is the best any method can report from it (clinics stop at a screening level; in the synthetic
    cohort about half the normal ears do).
    """
    rows = series_rows(records)
    out = {}
    for key, at in rows.items():
        truth = float(records.threshold_db[at[0]])
        if attainable and math.isfinite(truth):
            truth = max(truth, float(records.intensity_db[at].astype(np.float64).min()))
        out[key] = truth
    return out


def threshold_of(estimate: float | SeriesThreshold | Mapping) -> float:
    """The threshold (dB) of an estimate: a number, a :class:`SeriesThreshold` or a per-ear result dict."""
    if isinstance(estimate, SeriesThreshold):
        return estimate.threshold_db
    if isinstance(estimate, Mapping):
        return float(estimate["threshold_db"])
    return float(estimate)


def aligned_thresholds(estimated: Mapping[str, float | SeriesThreshold | Mapping], truth: Mapping[str, float]
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(estimated_db, true_db, keys) over the series both know, in sorted key order: ready for
    :func:`abrflow.evaluation.metrics.threshold_metrics`."""
    keys = sorted(set(estimated) & set(truth))
    est = np.array([threshold_of(estimated[k]) for k in keys], dtype=np.float64)
    true = np.array([truth[k] for k in keys], dtype=np.float64)
    return est, true, keys
