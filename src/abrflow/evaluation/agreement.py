"""Agreement with a clinic's own people: the clinician's wave marks and the experts' thresholds.

- Marks: for every wave the records mark, the model's and the classical picker's latency beside
  the mark (:mod:`abrflow.evaluation.mark_agreement`), with a Bland–Altman figure and a figure of the
  traces where the model disagrees most, both marks drawn.
- Thresholds: the model's per-ear threshold (the per-ear rule) and the classical methods' beside
  the experts' (:mod:`abrflow.evaluation.threshold_agreement`): from ``--thresholds CSV``, else from
  the rater file a SmartEP data set keeps beside its subject folders.

Where the files carry neither, each section says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..clinical.thresholds import WAVE_CALL_PROBABILITY
from ..data.readers.smartep_raters import find_thresholds_file, smartep_rater_thresholds
from ..data.readers.thresholds_csv import read_thresholds_csv
from ..data.records import ABRRecords
from ..data.schema import WAVE_KEYS, WAVE_NAMES
from . import figures_agreement
from .mark_agreement import PRESENCE_KEYS, mark_agreement, wave_marks, worst_rows
from .threshold_agreement import threshold_agreement

NO_MARKS = "no wave marks (I, III or V) in these files"
NO_RATERS = ("no expert thresholds for these ears (give them with --thresholds CSV: patient_id, ear, threshold_db"
             "[, rater])")
#: Traces drawn in the worst-agreement figure and in the example-marks figure.
WORST_TRACES = 6
EXAMPLE_TRACES = 6


def expert_raters(records: ABRRecords, data_paths: Sequence[str | os.PathLike] | None,
                  thresholds_csv: str | os.PathLike | None) -> tuple[dict, str | None]:
    """(per series key the raters' thresholds, where they came from): the CSV when given, else a
    SmartEP rater file beside a folder that was read; ({}, None) when there are none."""
    if thresholds_csv is not None:
        return read_thresholds_csv(thresholds_csv), str(thresholds_csv)
    for path in data_paths or ():
        found = find_thresholds_file(records, path) if Path(path).is_dir() else None
        if found is not None:
            raters = smartep_rater_thresholds(records, mat_path=found)
            if raters:
                return raters, str(found)
    return {}, None


def threshold_section(records: ABRRecords, estimates: dict, classical: dict, data_paths, thresholds_csv) -> dict:
    """The threshold agreement of the model and the classical methods with the experts (or the reason)."""
    raters, source = expert_raters(records, data_paths, thresholds_csv)
    if not raters:
        return {"reason": NO_RATERS}
    methods = {"model": {key: float(e["threshold_db"]) for key, e in estimates.items()}}
    methods.update({name: dict(values) for name, values in classical.items()})
    return {"source": source, **threshold_agreement(methods, raters)}


def has_marks(records: ABRRecords) -> bool:
    return bool(np.isfinite(records.wave_latency_ms).any() or records.v_present.any())


def mark_methods(records: ABRRecords, pred: dict, reading) -> dict[str, dict[str, np.ndarray]]:
    """What each method reads of each wave (I, III, V), per row: latencies and present/absent calls;
    the model's from its heads, the classical pickers' from ``read_classical(records).waves``."""
    out: dict[str, dict[str, np.ndarray]] = {"model": {}, "classical picker": {}}
    for key, name in zip(WAVE_KEYS, WAVE_NAMES):
        out["model"][name] = np.asarray(pred[f"{key}_latency_ms"], np.float64)
        out["model"][PRESENCE_KEYS[name]] = np.asarray(pred[f"{key}_present_prob"]) >= WAVE_CALL_PROBABILITY
        out["classical picker"][name] = np.asarray(reading.waves[f"{key}_latency_ms"], np.float64)
        out["classical picker"][PRESENCE_KEYS[name]] = np.asarray(reading.waves[f"{key}_present"], bool)
    return out


def mark_section(records: ABRRecords, methods: dict, *, n_boot: int, seed: int) -> dict:
    """Every marked wave, each method (:func:`mark_methods`) beside the clinician (or the reason)."""
    if not has_marks(records):
        return {"reason": NO_MARKS}
    # The simulator marks a wave wherever it is visible: there an unmarked trace is an absent wave.
    absent = records.source.startswith("synthetic")
    return mark_agreement(records, methods, n_boot=n_boot, seed=seed, unmarked_means_absent=absent)


def example_rows(records: ABRRecords, k: int) -> np.ndarray:
    """Up to ``k`` rows with the most waves marked, spread over the levels (loudest and softest first),
    deterministic: the traces the example-marks figure shows."""
    marked = np.stack([np.isfinite(wave_marks(records, w)) for w in WAVE_NAMES], axis=1).sum(axis=1)
    best = np.flatnonzero(marked == marked.max()) if marked.max() > 0 else np.array([], int)
    if best.size <= k:
        return best
    order = best[np.argsort(records.intensity_db[best], kind="stable")]
    return np.unique(order[np.linspace(0, order.size - 1, k).round().astype(int)])


def mark_figures(out_dir: Path, records: ABRRecords, methods: dict) -> dict[str, Path]:
    """Bland–Altman of every method and marked wave, example traces with every method's I, III and V
    on them, and the traces where the model's V is furthest off."""
    marks_v = wave_marks(records, "V")
    model_v, picker = methods["model"]["V"], methods["classical picker"]
    panels = {}
    for wave in WAVE_NAMES:
        marks = wave_marks(records, wave)
        if np.isfinite(marks).any():
            panels[f"model, wave {wave}"] = (methods["model"][wave], marks)
            panels[f"classical picker, wave {wave}"] = (picker[wave], marks)
    paths = {"mark_bland_altman": figures_agreement.bland_altman_marks(panels, out_dir / "mark_bland_altman.png")}
    rows = example_rows(records, EXAMPLE_TRACES)
    if rows.size:
        marks = [{"clinician": {w: float(wave_marks(records, w)[r]) for w in WAVE_NAMES},
                  **{m: {w: float(methods[m][w][r]) for w in WAVE_NAMES} for m in ("model", "classical picker")}}
                 for r in rows]
        titles = [f"{records.patient_id[r]} {records.ear[r]} {records.intensity_db[r]:g} dB, "
                  f"{records.age_years[r]:.2g} y" for r in rows]
        paths["example_marks"] = figures_agreement.example_marks(records.time_ms, records.signal[rows], marks, titles,
                                                                out_dir / "example_marks.png")
    worst = worst_rows(records, model_v, marks_v, k=WORST_TRACES)
    if worst:
        rows = [w["row"] for w in worst]
        marks = [{"clinician V": float(marks_v[r]), "model V": float(model_v[r]), "picker V": float(picker["V"][r])}
                 for r in rows]
        titles = [f"{w['patient_id']} {w['ear']} {w['level_db']:g} dB: model {w['difference_ms']:+.2f} ms" for w in worst]
        paths["worst_marks"] = figures_agreement.worst_traces(records.time_ms, records.signal[rows], marks, titles,
                                                             out_dir / "worst_marks.png")
    return paths
