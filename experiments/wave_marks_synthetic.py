"""Waves I, III and V on the default cohort's synthetic test split: the model's marks beside the
classical pickers' (issue 19's first "done when").

    python experiments/wave_marks_synthetic.py --checkpoint RUN42.pt [RUN1.pt RUN2.pt] \
        [--output experiments/results/wave_marks_synthetic.json]

Per checkpoint (each member of the recipe alone): latency MAE, median signed error and the shares
within ±0.2/±0.5 ms against the marked waves, presence F1, for waves I, III and V and the I–V
interval, overall, for adults (≥ 18 y), infants (< 1 y) and at ≥ 70 dB; the pickers on the same rows.
The split is the default config's (``configs/config.yaml``: the cohort and the patient-grouped split
training used), so no recording of the test split was seen in training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from abrflow.clinical.classical import read_classical
from abrflow.clinical.thresholds import WAVE_CALL_PROBABILITY
from abrflow.config import load_config
from abrflow.data.datamodule import ABRDataModule
from abrflow.data.wave_labels import wave_labels
from abrflow.evaluation.scoring import binary_f1
from abrflow.inference.predictor import ABRInference
from abrflow.io import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
WAVES = ("i", "iii", "v")


def _errors(pred: np.ndarray, true: np.ndarray) -> dict:
    ok = np.isfinite(true)
    both = ok & np.isfinite(pred)
    err = pred[both] - true[both]
    absent = np.where(both, np.abs(pred - true), np.inf)[ok]
    return {"n_marked": int(ok.sum()), "n_read": int(both.sum()),
            "mae_ms": float(np.mean(np.abs(err))) if err.size else None,
            "median_error_ms": float(np.median(err)) if err.size else None,
            "within_0_2ms": float(np.mean(absent <= 0.2 + 1e-9)) if ok.any() else None,
            "within_0_5ms": float(np.mean(absent <= 0.5 + 1e-9)) if ok.any() else None}


def score(pred: dict, picks: dict, labels: dict, rows: np.ndarray) -> dict:
    out = {}
    lat = labels["latency_ms"].astype(np.float64)
    for j, w in enumerate(WAVES):
        truth = lat[rows, j]
        present = labels["present"][rows, j]
        out[w] = {"model": {**_errors(pred[f"{w}_latency_ms"][rows], truth),
                            "presence_f1": binary_f1(pred[f"{w}_present_prob"][rows] >= WAVE_CALL_PROBABILITY, present)},
                  "picker": {**_errors(picks[f"{w}_latency_ms"][rows], truth),
                             "presence_f1": binary_f1(np.asarray(picks[f"{w}_present"], bool)[rows], present)}}
    truth = lat[rows, 2] - lat[rows, 0]
    out["i_v"] = {"model": _errors(pred["v_latency_ms"][rows] - pred["i_latency_ms"][rows], truth),
                  "picker": _errors(picks["v_latency_ms"][rows] - picks["i_latency_ms"][rows], truth)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", nargs="+", required=True)
    p.add_argument("--output", default=str(RESULTS / "wave_marks_synthetic.json"))
    args = p.parse_args(argv)
    start = time.perf_counter()
    cfg = load_config(environ={})
    dm = ABRDataModule(cfg.data, seed=int(cfg.project.seed))
    dm.setup("fit")
    test = dm.split_records("test")
    labels = wave_labels(test)
    picks = read_classical(test).waves
    age, level = test.age_years.astype(np.float64), test.intensity_db.astype(np.float64)
    strata = {"all": np.arange(len(test)), "adults_18y_plus": np.flatnonzero(age >= 18),
              "infants_under_1y": np.flatnonzero(age < 1), "level_70db_plus": np.flatnonzero(level >= 70)}
    result = {"experiment": "wave_marks_synthetic", "split": "default config, test split",
              "n_test_recordings": len(test), "members": {}}
    for path in args.checkpoint:
        pred = ABRInference(path, device="cpu").analyse_records(test, return_confidence=False)
        result["members"][str(path)] = {name: score(pred, picks, labels, rows) for name, rows in strata.items()}
        overall = result["members"][str(path)]["all"]
        print(f"{path}: " + "; ".join(f"{w.upper()} MAE model {overall[w]['model']['mae_ms']:.3f} / picker "
                                      f"{overall[w]['picker']['mae_ms']:.3f} ms" for w in WAVES))
    result["model_beats_picker_every_wave"] = {
        m: all(r["all"][w]["model"]["mae_ms"] < r["all"][w]["picker"]["mae_ms"] for w in WAVES)
        for m, r in result["members"].items()}
    result["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_text(args.output, json.dumps(result, indent=1, allow_nan=True))
    print(f"results: {args.output}")
    return 0 if all(result["model_beats_picker_every_wave"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
