"""The model-quality gate: what a trained checkpoint must do on held-out synthetic data, beside the
classical baselines, so that a change that makes the model worse fails ``make test``.

Each check compares the model with a baseline measured on the same rows (or with a fixed bound):

- wave V presence F1 ≥ the classical picker's − margin;
- wave V latency MAE (marked waves) ≤ the picker's + margin; the same for waves I and III;
- per-ear threshold (the per-ear rule): MAE over ears with both finite ≤ the protocol floor's +
  margin, and the share of all ears within ±10 dB (a no-response mismatch failing) ≥ the floor's +
  margin (the MAE alone cannot tell a network that calls many ears deaf from one that reads them);
- hearing-loss macro-F1 ≥ the majority row's + margin;
- reconstruction of recordings noised to diffusion time t = 300 (of 1000): Pearson r ≥ a bound (at
  t = 100 the noised input itself correlates 0.98 with the recording: any network passes there);
- generation: discriminative score |acc − 0.5| (real vs generated twins) ≤ a bound.

The margins and bounds are set from measured values and stored with the seed and the training
recipe in ``tests/data/quality_gate.json`` (``python -m tests.quality_gate`` measures again and
prints the table; the JSON is edited by hand so that a change of a margin shows in review).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from abrflow.clinical.classical import read_classical
from abrflow.clinical.ear_rule import ear_thresholds
from abrflow.clinical.levels import model_view
from abrflow.clinical.picker import V_PRESENT_CRITERION
from abrflow.clinical.thresholds import aligned_thresholds, true_series_thresholds
from abrflow.data.records import ABRRecords
from abrflow.data.wave_labels import wave_labels
from abrflow.evaluation import metrics
from abrflow.evaluation.baselines import majority_baseline
from abrflow.evaluation.generation import discriminative_score, generation_conditions
from abrflow.evaluation.reconstruction import reconstruct
from abrflow.evaluation.scoring import binary_f1, finite_mae, share_within_10db

GATE_FILE = Path(__file__).resolve().parent / "data" / "quality_gate.json"
#: Rows reconstructed and pairs generated: enough for stable numbers, seconds on a CPU.
RECONSTRUCTION_ROWS, GENERATION_PAIRS = 256, 256
RECONSTRUCTION_T = 300


def measure(model, test: ABRRecords, train: ABRRecords, seed: int = 0) -> dict[str, float]:
    """Every quantity the gate checks, for ``model`` (an ``ABRInference``) and the baselines."""
    pred = model.analyse_records(model_view(test), return_confidence=False)
    reading = read_classical(test)
    waves = wave_labels(test)
    marked = test.v_present.astype(bool)
    latency = test.v_latency_ms.astype(np.float64)
    truth = true_series_thresholds(test)
    model_ears, ears_true, _ = aligned_thresholds(ear_thresholds(test, pred), truth)
    floor_ears, floor_true, _ = aligned_thresholds(reading.lowest_tested_db, truth)
    y = test.hearing_loss.astype(int)

    rng = np.random.default_rng(seed)
    rows = test.select(np.sort(rng.choice(len(test), min(len(test), RECONSTRUCTION_ROWS), replace=False)))
    sampler, steps, _ = model.sampling()
    (_, recon), = reconstruct(model, rows, [RECONSTRUCTION_T], sampler=sampler, steps=steps, seed=seed).values()
    true_signal = model.stats.filter_signal(rows.signal).astype(np.float64)
    recon_r = metrics.signal_metrics(recon.astype(np.float64), true_signal, test.sampling_rate_hz)["pearson_r"]

    twins = test.select(np.sort(rng.choice(len(test), min(len(test), GENERATION_PAIRS), replace=False)))
    conditions, _ = generation_conditions(model, twins)
    generated, _ = model.generate(len(twins), conditions, seed=seed)
    disc = discriminative_score(model.stats.filter_signal(twins.signal), generated, test.sampling_rate_hz, seed=seed)

    return {
        "v_f1_model": binary_f1(pred["v_present_prob"] >= 0.5, marked),
        "v_f1_picker": binary_f1(reading.picked["v_present_score"] >= V_PRESENT_CRITERION, marked),
        "v_latency_mae_ms_model": finite_mae(pred["v_latency_ms"], np.where(marked, latency, np.nan)),
        "v_latency_mae_ms_picker": finite_mae(reading.picked["v_latency_ms"], np.where(marked, latency, np.nan)),
        **{f"{w}_latency_mae_ms_{who}": finite_mae(values, waves["latency_ms"][:, j].astype(np.float64))
           for j, w in ((0, "i"), (1, "iii")) for who, values in (("model", pred[f"{w}_latency_ms"]),
                                                                  ("picker", reading.waves[f"{w}_latency_ms"]))},
        "ear_threshold_mae_db_model": finite_mae(model_ears, ears_true),
        "ear_threshold_mae_db_floor": finite_mae(floor_ears, floor_true),
        "ear_within_10db_model": share_within_10db(model_ears, ears_true),
        "ear_within_10db_floor": share_within_10db(floor_ears, floor_true),
        "macro_f1_model": metrics.macro_f1(pred["hearing_loss_prob"], y),
        "macro_f1_majority": metrics.macro_f1(majority_baseline(train.hearing_loss)(len(test)), y),
        "reconstruction_pearson_r": float(recon_r),
        "discriminative_score": float(disc["score"]),
    }


def load_gate(path: Path = GATE_FILE) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


#: The checks: (name, model value, baseline value or None for a fixed bound, "≥"/"≤", margin/bound key).
#: "≥": model ≥ baseline + margin (or ≥ bound); "≤": model ≤ baseline + margin (or ≤ bound).
CHECKS: tuple[tuple[str, str, str | None, str, str], ...] = (
    ("wave V presence F1 vs the picker", "v_f1_model", "v_f1_picker", "≥", "v_f1"),
    ("wave V latency MAE vs the picker", "v_latency_mae_ms_model", "v_latency_mae_ms_picker", "≤", "v_latency_mae_ms"),
    ("wave I latency MAE vs the picker", "i_latency_mae_ms_model", "i_latency_mae_ms_picker", "≤", "i_latency_mae_ms"),
    ("wave III latency MAE vs the picker", "iii_latency_mae_ms_model", "iii_latency_mae_ms_picker", "≤",
     "iii_latency_mae_ms"),
    ("per-ear threshold MAE vs the protocol floor", "ear_threshold_mae_db_model", "ear_threshold_mae_db_floor", "≤",
     "ear_threshold_mae_db"),
    ("per-ear share within ±10 dB vs the protocol floor", "ear_within_10db_model", "ear_within_10db_floor", "≥",
     "ear_within_10db"),
    ("macro-F1 vs the majority row", "macro_f1_model", "macro_f1_majority", "≥", "macro_f1"),
    ("reconstruction r at t = 300", "reconstruction_pearson_r", None, "≥", "reconstruction_pearson_r"),
    ("generation discriminative score", "discriminative_score", None, "≤", "discriminative_score"),
)


def failures(measured: dict[str, float], gate: dict) -> list[str]:
    """The checks ``measured`` fails, each with its numbers (an empty list: the model passes).
    A value that is not a number (an undefined metric) fails its check."""
    out = []
    for name, key, baseline, direction, limit in CHECKS:
        value = measured[key]
        if baseline is None:
            bound, against = gate["bounds"][limit], "bound"
        else:
            bound = measured[baseline] + gate["margins"][limit]
            against = f"{baseline} {measured[baseline]:.4g} {gate['margins'][limit]:+g}"
        ok = np.isfinite(value) and (value >= bound if direction == "≥" else value <= bound)
        if not ok:
            out.append(f"{name}: {key} {value:.4g}, needs {direction} {bound:.4g} ({against})")
    return out


def shuffled(model) -> None:
    """Permute every weight tensor of ``model.model`` in place (seeded): the same values, no structure."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.model.parameters():
            flat = p.view(-1)
            flat.copy_(flat[torch.randperm(flat.numel(), generator=g)])


def untrained(model, seed: int = 0) -> None:
    """Re-initialise ``model.model`` as a fresh, untrained network of the same config (target
    statistics kept, so outputs are in units)."""
    from abrflow.models.unet import build_model

    torch.manual_seed(seed)
    fresh = build_model(model.cfg)
    fresh.set_target_stats(**model.target_stats)
    model.model.load_state_dict(fresh.state_dict())


if __name__ == "__main__":  # python -m tests.quality_gate CHECKPOINT: measure and print
    from abrflow.config import from_dict
    from abrflow.data.datamodule import ABRDataModule
    from abrflow.inference.predictor import ABRInference

    inference = ABRInference(sys.argv[1], device="cpu")
    cfg = from_dict(inference.metadata["config"])
    dm = ABRDataModule(cfg.data, seed=cfg.project.seed)
    dm.setup()
    print(json.dumps(measure(inference, dm.split_records("test"), dm.split_records("train")), indent=1))
