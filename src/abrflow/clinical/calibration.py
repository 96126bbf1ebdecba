"""Calibration of the heads' uncertainty: temperature scaling and split-conformal intervals.

Why these two: temperature scaling (Guo et al. 2017) fixes over/under-confident probabilities
with one parameter and never changes the predicted class; split-conformal prediction (Vovk et al.;
Lei et al. 2018) turns any point prediction with a spread σ̂ into intervals whose coverage on
new recordings exchangeable with the calibration set is at least the nominal level, whatever the
model's quality. Nonconformity is normalised, s = |y − ŷ| / σ̂ (σ̂ from the head's log-spread), so
intervals ŷ ± q·σ̂ are wide where the head says it is unsure and narrow where it is sure.

Everything is computed on the validation split after training, stored in the checkpoint as plain
types (``Calibration.to_dict``), and applied at inference. Scores are stored whole, so an interval
at any level can be computed later with the exact finite-sample quantile. Pure NumPy/SciPy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
import scipy.special

from ..data.schema import INTERPEAK_INTERVALS, WAVE_KEYS

CALIBRATION_FORMAT = "abrflow.calibration/1"
DEFAULT_LEVEL = 0.9
#: Regression outputs that get conformal intervals: value field -> its log-spread field. Waves I, III,
#: V (latency, amplitude), the interpeak intervals (``with_intervals`` derives them) and the threshold.
INTERVAL_TARGETS: dict[str, str] = {
    **{f"{w}_{what}": f"{w}_{spread}" for w in WAVE_KEYS
       for what, spread in (("latency_ms", "latency_log_std"), ("amplitude_uv", "amplitude_log_std"))},
    **{f"{name}_interval_ms": f"{name}_interval_log_std" for name, _, _ in INTERPEAK_INTERVALS},
    "threshold_db": "threshold_log_std",
}
#: Probabilities that get a temperature: name -> the logit field it scales.
TEMPERATURE_TARGETS: dict[str, str] = {
    "hearing_loss": "hearing_loss_logits",
    **{f"{w}_present": f"{w}_present_logit" for w in WAVE_KEYS},
    "threshold_no_response": "threshold_no_response_logit",
}
#: Search range of the temperature (log-uniform bounds): far beyond any sensible value on both sides.
TEMPERATURE_BOUNDS: tuple[float, float] = (0.02, 50.0)
_LOG_STD_CLIP = 20.0  # exp(±20): only keeps σ̂ finite and positive for any head output


# --------------------------------------------------------------------------- the math


def _ceil(x: float) -> int:
    """⌈x⌉ forgiving float noise: (9 + 1)·0.9 is 9.000000000000002 in binary, and must give 9."""
    return math.ceil(x - 1e-9)


def _binary_as_two_class(logits: np.ndarray) -> np.ndarray:
    """[N] binary logits z -> [N, 2] logits (0, z): softmax of these is (1 − σ(z), σ(z))."""
    return np.stack([np.zeros_like(logits), logits], axis=1)


def temperature_nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of softmax(logits / T) at the true classes ``y``."""
    logits = np.asarray(logits, np.float64)
    if logits.ndim == 1:
        logits = _binary_as_two_class(logits)
    log_p = scipy.special.log_softmax(logits / float(temperature), axis=1)
    return float(-log_p[np.arange(len(y)), np.asarray(y, np.int64)].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T).

    ``logits`` [N, K] with integer classes ``y`` [N] in 0..K−1, or binary logits [N] with y in {0, 1}.
    Minimised over log T (the NLL is smooth and unimodal there) within ``TEMPERATURE_BOUNDS``.
    """
    logits = np.asarray(logits, np.float64)
    y = np.asarray(y)
    if logits.ndim not in (1, 2) or len(logits) != len(y):
        raise ValueError(f"logits {logits.shape} and labels {y.shape} must be [N, K] (or [N]) and [N]")
    if len(y) == 0:
        raise ValueError("cannot fit a temperature on zero labelled recordings")
    if not np.isfinite(logits).all():
        raise ValueError("logits contain NaN or inf")
    n_classes = 2 if logits.ndim == 1 else logits.shape[1]
    if np.any((y < 0) | (y >= n_classes)) or not np.all(np.equal(np.mod(y, 1), 0)):
        raise ValueError(f"labels must be integers in 0..{n_classes - 1}")
    lo, hi = (math.log(b) for b in TEMPERATURE_BOUNDS)
    fit = scipy.optimize.minimize_scalar(lambda log_t: temperature_nll(logits, y, math.exp(log_t)),
                                         bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
    return float(math.exp(fit.x))


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal quantile: the ⌈(n + 1)(1 − α)⌉-th smallest of n scores.

    Intervals built with it cover a new exchangeable point with probability ≥ 1 − α. With too few
    scores (⌈(n + 1)(1 − α)⌉ > n) no finite quantile has that guarantee: returns +inf.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    scores = np.asarray(scores, np.float64).ravel()
    if np.isnan(scores).any():
        raise ValueError("conformal scores contain NaN")
    n = scores.size
    k = _ceil((n + 1) * (1.0 - alpha))
    if k > n:
        return math.inf
    return float(np.partition(scores, k - 1)[k - 1])


def min_scores_for(alpha: float) -> int:
    """The fewest calibration scores that give a finite quantile at miscoverage ``alpha``."""
    return _ceil((1.0 - alpha) / alpha)


def spread(log_std: np.ndarray) -> np.ndarray:
    """σ̂ from a head's natural-log spread (clipped only to stay finite and positive)."""
    return np.exp(np.clip(np.asarray(log_std, np.float64), -_LOG_STD_CLIP, _LOG_STD_CLIP))


def normalised_scores(y: np.ndarray, y_hat: np.ndarray, log_std: np.ndarray) -> np.ndarray:
    """Nonconformity |y − ŷ| / σ̂."""
    return np.abs(np.asarray(y, np.float64) - np.asarray(y_hat, np.float64)) / spread(log_std)


def conformal_interval(y_hat: np.ndarray, log_std: np.ndarray, quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) = ŷ ∓ q·σ̂."""
    half = float(quantile) * spread(log_std)
    y_hat = np.asarray(y_hat, np.float64)
    return y_hat - half, y_hat + half


def class_scores(probabilities: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-ambiguous-set nonconformity 1 − p̂(true class) (Sadinle et al. 2019)."""
    probabilities = np.asarray(probabilities, np.float64)
    return 1.0 - probabilities[np.arange(len(y)), np.asarray(y, np.int64)]


def prediction_sets(probabilities: np.ndarray, quantile: float) -> np.ndarray:
    """[N, K] membership of each class in the conformal set {k : 1 − p̂_k ≤ q}."""
    return 1.0 - np.asarray(probabilities, np.float64) <= float(quantile)


def empirical_coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Share of ``y`` inside [lo, hi] (NaN rows of ``y`` ignored)."""
    y = np.asarray(y, np.float64)
    ok = ~np.isnan(y)
    if not ok.any():
        return math.nan
    return float(np.mean((y[ok] >= np.asarray(lo)[ok]) & (y[ok] <= np.asarray(hi)[ok])))


def probabilities(logits: np.ndarray, temperature: float | None) -> np.ndarray:
    """softmax(logits / T) for [N, K] logits, σ(z / T) for [N] binary logits; T = 1 when None."""
    t = 1.0 if temperature is None else float(temperature)
    logits = np.asarray(logits, np.float64) / t
    if logits.ndim == 1:
        return scipy.special.expit(logits)
    return scipy.special.softmax(logits, axis=1)


# --------------------------------------------------------------------------- stored calibration


@dataclass(frozen=True)
class Calibration:
    """What the checkpoint stores: temperatures and the sorted conformal scores per quantity.

    ``temperatures`` maps ``TEMPERATURE_TARGETS`` names to T (None where no labelled recording
    existed); ``scores`` maps ``INTERVAL_TARGETS`` names and ``hearing_loss`` to sorted scores.
    """

    level: float
    temperatures: dict[str, float | None]
    scores: dict[str, np.ndarray]
    n_recordings: int
    split: str = "val"
    counts: dict[str, int] = field(default_factory=dict)

    def alpha(self, level: float | None = None) -> float:
        level = self.level if level is None else float(level)
        if not 0.0 < level < 1.0:
            raise ValueError(f"confidence level must be in (0, 1), got {level}")
        return 1.0 - level

    def quantile(self, name: str, level: float | None = None) -> float:
        """The conformal quantile of ``name`` at ``level`` (+inf when too few scores)."""
        if name not in self.scores:
            raise KeyError(f"no conformal scores for {name!r}; stored: {sorted(self.scores)}")
        return conformal_quantile(self.scores[name], self.alpha(level))

    def to_dict(self) -> dict:
        """Plain types only (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "format": CALIBRATION_FORMAT,
            "split": self.split,
            "level": float(self.level),
            "n_recordings": int(self.n_recordings),
            "temperature": {k: (None if v is None else float(v)) for k, v in self.temperatures.items()},
            "scores": {k: [float(s) for s in v] for k, v in self.scores.items()},
            "quantile_at_level": {k: self.quantile(k) for k in self.scores},
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Calibration:
        if not isinstance(d, Mapping) or d.get("format") != CALIBRATION_FORMAT:
            found = d.get("format") if isinstance(d, Mapping) else type(d).__name__
            raise ValueError(f"calibration format {found!r} is not {CALIBRATION_FORMAT!r}")
        scores = {str(k): np.sort(np.asarray(v, np.float64)) for k, v in d["scores"].items()}
        for k, v in scores.items():
            if v.ndim != 1 or np.isnan(v).any() or (v < 0).any():
                raise ValueError(f"calibration scores of {k!r} must be non-negative numbers")
        temps = {str(k): (None if v is None else float(v)) for k, v in d["temperature"].items()}
        for k, v in temps.items():
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"temperature of {k!r} must be positive, got {v}")
        level = float(d["level"])
        if not 0.0 < level < 1.0:
            raise ValueError(f"calibration level must be in (0, 1), got {level}")
        return cls(level=level, temperatures=temps, scores=scores, n_recordings=int(d["n_recordings"]),
                   split=str(d.get("split", "val")), counts={k: int(v.size) for k, v in scores.items()})


def with_intervals(values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``values`` plus each interpeak interval ``{name}_interval_ms`` (later − earlier latency, NaN
    where either is) and, where the spreads are there, ``{name}_interval_log_std``: the two
    latencies' spreads added in quadrature (their errors taken as independent)."""
    out = dict(values)
    for name, early, late in INTERPEAK_INTERVALS:
        out[f"{name}_interval_ms"] = (np.asarray(values[f"{late}_latency_ms"], np.float64)
                                      - np.asarray(values[f"{early}_latency_ms"], np.float64))
        if f"{early}_latency_log_std" in values:
            a = np.asarray(values[f"{early}_latency_log_std"], np.float64)
            b = np.asarray(values[f"{late}_latency_log_std"], np.float64)
            out[f"{name}_interval_log_std"] = 0.5 * np.logaddexp(2 * a, 2 * b)
    return out


def calibrate_heads(outputs: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], *,
                    level: float = DEFAULT_LEVEL, split: str = "val") -> Calibration:
    """Fit temperatures and conformal scores from head outputs and labels of one split.

    ``outputs``: the heads' fields as arrays (``HeadOutput`` names, regression values in units).
    ``targets``: ``hearing_loss`` (int, −1 unknown), per wave ``{w}_present`` (1/0, NaN where not
    judged), ``{w}_latency_ms`` and ``{w}_amplitude_uv`` (NaN where not marked), ``threshold_db``
    (NaN unknown, +inf no response). Interpeak intervals are scored where both waves are marked.
    Each quantity uses only the recordings that carry its label; a quantity with none gets no
    temperature (None) or an empty score list (intervals then unavailable, never guessed).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    outputs = with_intervals(outputs)
    targets = with_intervals(targets)
    hl = np.asarray(targets["hearing_loss"], np.int64)
    thr = np.asarray(targets["threshold_db"], np.float64)
    n = len(hl)

    labelled = {"hearing_loss": (hl >= 0, hl),
                "threshold_no_response": (~np.isnan(thr), np.isposinf(thr).astype(np.int64))}
    for w in WAVE_KEYS:
        present = np.asarray(targets[f"{w}_present"], np.float64)
        labelled[f"{w}_present"] = (np.isfinite(present), np.nan_to_num(present).astype(np.int64))
    temperatures: dict[str, float | None] = {}
    for name, (mask, y) in labelled.items():
        logits = np.asarray(outputs[TEMPERATURE_TARGETS[name]], np.float64)[mask]
        temperatures[name] = fit_temperature(logits, y[mask]) if mask.any() else None

    scores: dict[str, np.ndarray] = {}
    for name, log_std_name in INTERVAL_TARGETS.items():
        y = np.asarray(targets[name], np.float64)
        mask = np.isfinite(y)
        scores[name] = np.sort(normalised_scores(y[mask], np.asarray(outputs[name])[mask],
                                                 np.asarray(outputs[log_std_name])[mask]))
    known = hl >= 0
    probs = probabilities(np.asarray(outputs["hearing_loss_logits"])[known], temperatures["hearing_loss"])
    scores["hearing_loss"] = np.sort(class_scores(probs, hl[known]))
    return Calibration(level=float(level), temperatures=temperatures, scores=scores, n_recordings=n,
                       split=split, counts={k: int(v.size) for k, v in scores.items()})
