"""Metrics by age stratum and with patient-bootstrap intervals: any metric function of metrics.py,
on the rows of one stratum or of resampled patients."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping

import numpy as np

NAN = float("nan")

#: Age strata (lower bound inclusive, upper exclusive, label) used for every per-age report.
AGE_STRATA: tuple[tuple[float, float, str], ...] = (
    (0.0, 1.0, "<1 y"), (1.0, 3.0, "1–3 y"), (3.0, 18.0, "3–18 y"), (18.0, 60.0, "18–60 y"),
    (60.0, math.inf, ">60 y"),
)

def _take(arrays: Mapping[str, object], n: int, index: np.ndarray) -> dict:
    """Row-select every keyword that is a length-``n`` array; pass other keywords through unchanged."""
    out = {}
    for key, value in arrays.items():
        if isinstance(value, np.ndarray) and value.ndim >= 1 and len(value) == n:
            out[key] = value[index]
        else:
            out[key] = value
    return out


def by_age_stratum(age_years: np.ndarray, fn: Callable[..., object], **arrays) -> dict:
    """``fn(**arrays)`` per age stratum (AGE_STRATA, plus "unknown" for NaN ages when there are any).

    Keywords that are NumPy arrays with one row per recording are sliced; any other keyword (class
    names, a sampling rate) is passed as is. An empty stratum reports ``n = 0`` and is not scored.
    Each entry is ``{"n": rows, **fn(...)}`` when ``fn`` returns a dict, else ``{"n", "value"}``.
    """
    age = np.asarray(age_years, dtype=np.float64)
    n = len(age)
    masks = [(label, (age >= lo) & (age < hi)) for lo, hi, label in AGE_STRATA]
    unknown = np.isnan(age)
    if unknown.any():
        masks.append(("unknown", unknown))
    out = {}
    for label, mask in masks:
        count = int(mask.sum())
        if count == 0:
            out[label] = {"n": 0}
            continue
        result = fn(**_take(arrays, n, np.flatnonzero(mask)))
        out[label] = {"n": count, **result} if isinstance(result, dict) else {"n": count, "value": float(result)}
    return out


def bootstrap_ci(fn: Callable[..., float], groups: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05, **arrays) -> dict:
    """Percentile interval of a scalar metric, resampling GROUPS (patients) with replacement.

    Recordings of one patient are correlated; resampling recordings would pretend 25 recordings of
    one child are 25 children and shrink the interval. Each resample draws as many groups as there
    are, takes all rows of every drawn group, and recomputes ``fn`` on them. Resamples where the
    metric is undefined (NaN, e.g. a class missing) are skipped; ``n_valid`` says how many counted.
    Keywords as in :func:`by_age_stratum`.
    """
    groups = np.asarray(groups)
    n = len(groups)
    value = fn(**arrays)
    value = float(value) if value is not None else NAN
    if n == 0 or n_boot < 1:
        return {"value": value, "lo": NAN, "hi": NAN, "n_boot": int(n_boot), "n_valid": 0, "alpha": alpha}
    # Rows sorted by group: each group is one contiguous block [start, start + size).
    _, codes = np.unique(groups, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    sorted_arrays = _take(arrays, n, order)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sizes), size=(n_boot, len(sizes)))
    stats = np.full(n_boot, np.nan)
    for b, drawn in enumerate(draws):
        # Concatenated ranges of the drawn blocks, without a Python loop over groups.
        lengths = sizes[drawn]
        block_start = np.repeat(starts[drawn] - np.cumsum(np.concatenate([[0], lengths[:-1]])), lengths)
        index = block_start + np.arange(lengths.sum())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stats[b] = fn(**_take(sorted_arrays, n, index))
    valid = stats[np.isfinite(stats)]
    lo, hi = (np.percentile(valid, [100 * alpha / 2, 100 * (1 - alpha / 2)]) if valid.size else (NAN, NAN))
    return {"value": value, "lo": float(lo), "hi": float(hi), "n_boot": int(n_boot), "n_valid": int(valid.size),
            "alpha": float(alpha)}
