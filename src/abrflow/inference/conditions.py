"""Generation conditions: what ``ABRInference.generate`` is asked for, checked and filled in.

Static inputs (age, intensity, rate, Fmp) are range-checked like every input
(``abrflow.data.schema.VALID_RANGES``); the hearing-loss class takes English names, original codes
or 0–4 (−1 unconditional); the threshold takes dB nHL, NaN (unconditional) or inf (no response).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..data.schema import VALID_RANGES, class_code
from ..errors import AbrflowError
from .inputs import STATIC_RANGES, static_value

#: Conditions ``generate`` uses where the caller gives none: the typical recording of the cohort
#: the project was designed for — an infant (median age 0.5 y) with normal hearing, tested at
#: 60 dB nHL at the usual 33.1/s; Fmp and threshold unknown (the model's learned "unknown" token).
DEFAULT_GENERATION_CONDITIONS: dict[str, float] = {
    "age_years": 0.5, "intensity_db": 60.0, "stimulus_rate_hz": 33.1, "fmp": math.nan,
    "hearing_loss": 0, "threshold_db": math.nan,
}
#: Short names people use for the conditions.
CONDITION_ALIASES = {"age": "age_years", "intensity": "intensity_db", "rate": "stimulus_rate_hz",
                     "stimulus_rate": "stimulus_rate_hz", "threshold": "threshold_db", "class": "hearing_loss"}


def threshold_condition(value: object) -> float:
    """A threshold condition in dB nHL; None/NaN unconditional, inf no response."""
    if value is None:
        return math.nan
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise AbrflowError(f"threshold_db must be a number, NaN (unknown) or inf (no response), got {value!r}") from None
    if math.isnan(v) or v == math.inf:
        return v
    lo, hi = VALID_RANGES["threshold_db"]
    if not lo <= v <= hi:
        raise AbrflowError(f"threshold_db = {value!r} is outside [{lo:g}, {hi:g}] dB nHL (use inf for no response)")
    return v


def generation_conditions(n: int, conditions: Mapping | None, conditioning) -> dict[str, np.ndarray]:
    """Each condition as ``n`` values (one value is repeated), defaults where not given.

    ``conditioning``: the model's ``cfg.model.conditioning`` (a class or threshold condition is an
    error for a model trained without it).
    """
    given = {}
    for key, value in dict(conditions or {}).items():
        name = CONDITION_ALIASES.get(key, key)
        if name not in DEFAULT_GENERATION_CONDITIONS:
            raise AbrflowError(f"unknown generation condition {key!r}; expected one of "
                               f"{list(DEFAULT_GENERATION_CONDITIONS)}")
        if name in given:
            raise AbrflowError(f"generation condition {name} given twice")
        given[name] = value
    out: dict[str, np.ndarray] = {}
    for name, default in DEFAULT_GENERATION_CONDITIONS.items():
        value = given.get(name, default)
        cells = np.asarray(value, dtype=object)
        if cells.ndim == 0:
            cells = np.full(n, value, dtype=object)
        if cells.shape != (n,):
            raise AbrflowError(f"generation condition {name} must be one value or {n} values, "
                               f"got shape {list(cells.shape)}")
        if name in STATIC_RANGES:
            out[name] = np.array([static_value(name, v, row=i if n > 1 else None) for i, v in enumerate(cells)],
                                 np.float32)
        elif name == "hearing_loss":
            out[name] = np.array([-1 if v is None else class_code(v, where="hearing_loss") for v in cells],
                                 np.int64)
        else:
            out[name] = np.array([threshold_condition(v) for v in cells], np.float32)
    if (out["hearing_loss"] >= 0).any() and not conditioning.use_class_condition:
        raise AbrflowError("this model was trained without hearing-loss conditioning; leave hearing_loss unset")
    if np.isfinite(out["threshold_db"]).any() or np.isposinf(out["threshold_db"]).any():
        if not conditioning.use_threshold_condition:
            raise AbrflowError("this model was trained without threshold conditioning; leave threshold_db unset")
    return out
