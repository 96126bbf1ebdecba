"""Results as flat tables (CSV): one row per prediction, per ear, or per tested level.

Nothing is dropped to make a table flat: per-class arrays become one column per class
(``hearing_loss_prob_NORMAL``…), a waveform becomes one column per sample named by its time
(``waveform_uv_0.00ms``…), +inf is written ``inf`` (no response), NaN an empty cell.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..io import atomic_open


def prediction_table(arrays: Mapping[str, np.ndarray], class_names: Sequence[str], time_ms: np.ndarray
                     ) -> dict[str, np.ndarray]:
    """``ABRInference.predict_arrays`` output → equal-length 1-D columns."""
    columns: dict[str, np.ndarray] = {}
    n = len(arrays["hearing_loss"])
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.ndim == 1:
            columns[key] = value
        elif key == "waveform":
            for j, t in enumerate(time_ms):
                columns[f"waveform_uv_{t:.2f}ms"] = value[:, j]
        elif value.ndim == 2 and value.shape[1] == len(class_names):
            for j, name in enumerate(class_names):
                columns[f"{key}_{name}"] = value[:, j]
        else:
            raise ValueError(f"{key}: cannot flatten shape {value.shape} into a table of {n} rows")
    if "hearing_loss" in columns:
        columns["hearing_loss_name"] = np.asarray(class_names)[columns["hearing_loss"].astype(int)]
    return columns


def series_tables(results: Mapping[str, dict]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``series_report`` → (one row per ear, one row per ear and tested level)."""
    keys = list(results)
    ears: dict[str, list] = {"series_key": keys}
    for name in ("patient_id", "ear", "session_id", "level_unit", "stimulus", "stimulus_outside_training", "method",
                 "n_levels",
                 "threshold_db", "lo_db", "hi_db", "no_response_up_to_db"):
        ears[name] = [results[k].get(name) for k in keys]
    for name in ("crosscov_db", "lowest_peak_db", "replication_db"):
        ears[f"baseline_{name}"] = [results[k].get("baselines", {}).get(name) for k in keys]
    ears["slope_ms_per_db"] = [results[k]["latency_intensity"]["slope_ms_per_db"] for k in keys]
    for k in keys:
        for name, reading in results[k].get("top_level_intervals", {}).items():
            for field, value in (("ms", reading["ms"]), ("z", reading["z"]), ("outside_norm", reading["outside_norm"])):
                ears.setdefault(f"top_level_{name}_interval_{field}", []).append(value)
    levels: dict[str, list] = {}
    for k in keys:
        li = results[k]["latency_intensity"]
        for j in range(len(li["intensity_db"])):
            levels.setdefault("series_key", []).append(k)
            for name, values in li.items():
                if isinstance(values, list):
                    levels.setdefault(name, []).append(values[j])
    as_arrays = {name: np.array([math.nan if v is None else v for v in values])
                 for name, values in ears.items()}
    return as_arrays, {name: np.array([math.nan if v is None else v for v in values]) for name, values in levels.items()}


def write_csv(path: str | os.PathLike, columns: Mapping[str, np.ndarray]) -> str:
    """Write equal-length columns atomically (UTF-8, ``inf`` for +inf, empty for NaN)."""
    frame = pd.DataFrame({k: np.asarray(v) for k, v in columns.items()})
    with atomic_open(path, "w", encoding="utf-8") as fh:
        frame.to_csv(fh, index=False, lineterminator="\n")
    return str(path)
