"""An ear's level series read three ways: the model, the classical methods, and split-half replication.

``series_report`` is what ``abrflow threshold`` and ``inference.py --series`` report: per subject/ear
the model's threshold with its interval (``ABRInference.estimate_threshold``), beside the
cross-covariance criterion (Suthakar & Liberman 2019), the lowest level where the classical
picker finds wave V, and — where the export carries half-averages — the lowest level whose halves
replicate; then the wave V latency–intensity function by the model and by the picker.
"""

from __future__ import annotations

import math

import numpy as np

from ..clinical.classical import read_classical
from ..clinical.classical_thresholds import lowest_responding_level
from ..clinical.levels import norms_apply
from ..clinical.replication import REPLICATION_MIN_R, replicates, replication_criterion
from ..clinical.series import series_rows
from ..clinical.thresholds import MODEL_RESPONSE_CRITERION
from ..data.records import ABRRecords
from ..data.schema import WAVE_KEYS
from ..data.stimulus import stimulus_of

BASELINES: dict[str, str] = {
    "crosscov_db": "cross-covariance (Suthakar & Liberman 2019)",
    "lowest_peak_db": "lowest level with a picked wave V",
    "replication_db": "lowest level whose half-averages replicate (r ≥ the 5% point of the export's own noise; "
                      f"the simulator's {REPLICATION_MIN_R} where the export has too few recordings to measure it)",
}


def series_report(inference, records: ABRRecords, criterion: float = MODEL_RESPONSE_CRITERION) -> dict[str, dict]:
    """Per series key: the model's estimate (see ``estimate_threshold``) plus ``baselines`` (dB, +inf =
    no response, None = not available) and the classical pickers' latencies of waves I, III and V in
    ``latency_intensity`` (``picker_{i,iii,v}_latency_ms``).

    The classical picker searches wave V in a window set by click latency norms: for a series played
    with another stimulus (a tone burst, a chirp) it is not applied (None, and ``picker_note`` says
    why) — a click norm is never read against a tone burst."""
    out = inference.estimate_threshold(records, criterion=criterion)
    reading = read_classical(records)
    waves, crosscov, lowest_peak = reading.waves, reading.crosscov_db, reading.lowest_peak_db
    criterion = replication_criterion(records)
    replicating = replicates(records, criterion)
    types = stimulus_of(records)["stimulus_type"]
    for key, rows in series_rows(records).items():
        levels = records.intensity_db[rows].astype(np.float64)
        clicks = norms_apply(np.unique(types[rows]).tolist())
        out[key]["baselines"] = {
            "crosscov_db": crosscov[key], "lowest_peak_db": lowest_peak[key] if clicks else None,
            "replication_db": None if replicating is None else lowest_responding_level(levels, replicating[rows]),
            "replication_min_r": None if replicating is None else criterion,
        }
        li = out[key]["latency_intensity"]
        for w in WAVE_KEYS:
            picker = []
            for lv in li["intensity_db"]:
                at = rows[levels == lv]
                found = at[waves[f"{w}_present"][at]]
                picker.append(float(np.nanmean(waves[f"{w}_latency_ms"][found])) if found.size else math.nan)
            li[f"picker_{w}_latency_ms"] = picker if clicks else [None] * len(picker)
        if not clicks:
            out[key]["baselines"]["picker_note"] = (f"classical picker not applied: its wave V window comes from click "
                                                    f"latency norms, and this series was recorded with "
                                                    f"{out[key]['stimulus']}")
    return out
