"""Generated waveforms as records a user can keep, and the summary people read first.

``abrflow infer --generate N`` writes the waveforms as abrflow records (``generated.npz``: the
conditions in the records' fields, each row's seed in ``extra["seed"]``) and a JSON summary of what
was generated (sampler, conditions, peak-to-peak spread).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..data.records import ABRRecords
from ..data.schema import empty_rows

#: The conditions a generated record carries in its fields.
CONDITION_FIELDS = ("age_years", "intensity_db", "stimulus_rate_hz", "fmp", "hearing_loss", "threshold_db")


def generated_records(model, waveforms: np.ndarray, used: Mapping[str, np.ndarray]) -> ABRRecords:
    """``ABRInference.generate``'s output as validated records (patients ``generated-0``, …)."""
    n = len(waveforms)
    rows = empty_rows(n)
    rows["patient_id"] = np.array([f"generated-{i}" for i in range(n)])
    for name in CONDITION_FIELDS:
        rows[name] = used[name]
    return ABRRecords(signal=waveforms, sampling_rate_hz=model.sampling_rate_hz, signal_unit=model.signal_unit,
                      source=f"abrflow generate ({model.checkpoint_path})", extra={"seed": used["seed"]},
                      **rows).validate()


def generation_summary(model, waveforms: np.ndarray, used: Mapping[str, np.ndarray], *, sampler: str, steps: int,
                       guidance: float) -> dict:
    """What was generated: count, sampler, the range (or classes) of each condition, peak-to-peak.

    A condition left unknown (all NaN) reads "unknown"; +inf (a threshold of no response) is a
    known condition and keeps its value."""
    p2p = waveforms.max(axis=1) - waveforms.min(axis=1)
    return {"n": len(waveforms), "checkpoint": str(model.checkpoint_path), "sampler": sampler, "steps": steps,
            "guidance": guidance, "first_seed": int(used["seed"][0]), "signal_unit": model.signal_unit,
            "conditions": {k: (np.unique(v).tolist() if v.dtype.kind in "iu" else  # float32: 7 digits
                               [float(f"{np.nanmin(v):.7g}"), float(f"{np.nanmax(v):.7g}")]
                               if not np.isnan(v).all() else "unknown")
                           for k, v in used.items() if k != "seed"},
            "peak_to_peak": {"median": float(np.median(p2p)), "p5": float(np.percentile(p2p, 5)),
                             "p95": float(np.percentile(p2p, 95))}}
