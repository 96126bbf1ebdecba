"""An ear's level series read three ways: the model, the classical methods, and split-half replication.

``series_report`` is what ``abrflow threshold`` and ``inference.py --series`` print: per subject/ear
the model's threshold with its interval (``ABRInference.estimate_threshold``), beside the
cross-covariance criterion (Suthakar & Liberman 2019), the lowest level where the classical
picker finds wave V, and — where the export carries half-averages — the lowest level whose halves
replicate; then the wave V latency–intensity function by the model and by the picker.
"""

from __future__ import annotations

import math

import numpy as np

from ..data.records import ABRRecords
from ..evaluation.baselines import (
    _series_rows,
    band_pass,
    pick_wave_v,
    series_threshold_crosscov,
    series_threshold_lowest_peak,
)
from ..evaluation.replication import REPLICATION_MIN_R, replicates, replication_criterion
from ..evaluation.thresholds import MODEL_RESPONSE_CRITERION

BASELINES: dict[str, str] = {
    "crosscov_db": "cross-covariance (Suthakar & Liberman 2019)",
    "lowest_peak_db": "lowest level with a picked wave V",
    "replication_db": "lowest level whose half-averages replicate (r ≥ the 5% point of the export's own noise; "
                      f"the simulator's {REPLICATION_MIN_R} where the export has too few recordings to measure it)",
}


def _lowest_level(levels: np.ndarray, calls: np.ndarray) -> float:
    """Lowest level where at least half the recordings are called responses (+inf: none)."""
    responding = [lv for lv in np.unique(levels) if calls[levels == lv].mean() >= 0.5]
    return float(min(responding)) if responding else math.inf


def series_report(inference, records: ABRRecords, criterion: float = MODEL_RESPONSE_CRITERION) -> dict[str, dict]:
    """Per series key: the model's estimate (see ``estimate_threshold``) plus ``baselines`` (dB, +inf =
    no response, None = not available) and the picker's latencies in ``latency_intensity``."""
    out = inference.estimate_threshold(records, criterion=criterion)
    filtered = band_pass(records)
    picked = pick_wave_v(records, filtered=filtered)
    crosscov = series_threshold_crosscov(records, filtered=filtered)
    lowest_peak = series_threshold_lowest_peak(records, picked)
    criterion = replication_criterion(records)
    replicating = replicates(records, criterion)
    for key, rows in _series_rows(records).items():
        levels = records.intensity_db[rows].astype(np.float64)
        out[key]["baselines"] = {
            "crosscov_db": crosscov[key], "lowest_peak_db": lowest_peak[key],
            "replication_db": None if replicating is None else _lowest_level(levels, replicating[rows]),
            "replication_min_r": None if replicating is None else criterion,
        }
        li = out[key]["latency_intensity"]
        picker = []
        for lv in li["intensity_db"]:
            at = rows[levels == lv]
            found = at[picked["v_present"][at]]
            picker.append(float(np.nanmean(picked["v_latency_ms"][found])) if found.size else math.nan)
        li["picker_v_latency_ms"] = picker
    return out


def _num(value, fmt: str = ".1f") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "no response"
    return "–" if value != value else f"{value:{fmt}}"


def format_series(results: dict) -> str:
    """Per subject/ear: the model's threshold with interval, the baselines, then the latency–intensity function."""
    lines = []
    for r in results.values():
        unit = r.get("level_unit", "dB nHL")
        ear = f"{r['patient_id']} ear {r['ear']}" + (f" session {r['session_id']}" if r["session_id"] else "")
        if r["method"] == "no_response":
            thr = f"no response up to {_num(r['no_response_up_to_db'], 'g')} {unit}"
        elif r["method"] == "all_respond":
            thr = f"≤ {_num(r['threshold_db'], 'g')} {unit} (responds at every tested level)"
        elif r["method"] == "no_data":
            thr = "no usable level"
        else:
            thr = f"{_num(r['threshold_db'])} {unit} [{_num(r['lo_db'])}, {_num(r['hi_db'])}]"
        lines.append(f"{ear}: model threshold {thr} ({r['method']}, {r['n_levels']} levels)")
        if "baselines" in r:
            b = r["baselines"]
            lines.append("  classical:       " + "; ".join(
                f"{name.replace('_db', '').replace('_', ' ')} {_num(b[name])}" for name in BASELINES
                if b.get(name) is not None)
                + (f" (halves replicate at r ≥ {b['replication_min_r']:.2f})" if b.get("replication_min_r") else ""))
        li = r["latency_intensity"]
        points = []
        for j, lv in enumerate(li["intensity_db"]):
            model = _num(li["v_latency_ms"][j], ".2f")
            point = f"{lv:g}: {model}"
            if "picker_v_latency_ms" in li:
                point += f"/{_num(li['picker_v_latency_ms'][j], '.2f')}"
            points.append(point)
        slope = li["slope_ms_per_db"]
        lines.append(f"  wave V ms ({unit}: model/picker): " + " | ".join(points)
                     + (f"   model slope {slope:+.3f} ms/dB" if slope == slope else ""))
    return "\n".join(lines)
