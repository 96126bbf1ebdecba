#!/usr/bin/env python
"""The demo of the seed document: train 3 epochs on the synthetic cohort, evaluate, then serve.

    python run_training_demo.py [--output_root DIR] [--epochs N] [section.key=value ...]

Each stage is the same command a user would type (`train.py`, `evaluate.py`, `inference.py`),
so the demo proves the whole path end to end; everything lands under outputs/demo/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from abrflow.cli import main as abrflow


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(Path(__file__).resolve().parent / "configs" / "demo.yaml"))
    p.add_argument("--experiment", default="demo")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--output_root", default=".")
    p.add_argument("--generate_samples", type=int, default=32, help="generated waveforms scored by evaluate")
    p.add_argument("--bootstrap", type=int, default=200, help="patient bootstrap resamples for intervals")
    p.add_argument("overrides", nargs="*", help="config overrides for training, e.g. data.synthetic.n_patients=600")
    return p


REAL_SERIES = Path(__file__).resolve().parent.parent / "shared" / "real" / "ihs-smartep-human" / "P6"


def prepare_inputs(folder: Path) -> dict[str, Path]:
    """What a clinic brings: a batch of patients (the seed document's test_batch.npz layout) and
    recorded waveforms (simulated level series of 4 new patients, another seed than training)."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    batch = folder / "test_batch.npz"
    np.savez(batch, patients=np.array([[45, 80, 30, 0.75], [0.5, 60, 33.1, 0.9], [2, 40, 33.1, np.nan],
                                       [70, 90, 21.1, 0.6]]))
    recordings = folder / "recordings.npz"
    code = abrflow(["simulate", "--patients", "4", "--seed", "7", "--out", str(recordings)])
    if code:
        raise SystemExit(code)
    return {"batch": batch, "recordings": recordings}


def stages(args: argparse.Namespace, inputs: dict[str, Path] | None = None) -> list[tuple[str, list[str]]]:
    root = Path(args.output_root)
    ckpt = root / "checkpoints" / args.experiment / "best_model.pt"
    out = root / "outputs" / args.experiment
    inputs = inputs or {"batch": out / "inputs" / "test_batch.npz", "recordings": out / "inputs" / "recordings.npz"}
    infer = ["infer", "--checkpoint", str(ckpt)]
    series = [str(inputs["recordings"])] + ([str(REAL_SERIES)] if REAL_SERIES.is_dir() else [])
    return [
        ("train", ["train", "--config", args.config, "--experiment", args.experiment, "--epochs", str(args.epochs),
                   "--output_root", str(root), *args.overrides]),
        ("evaluate", ["evaluate", "--checkpoint", str(ckpt), "--output_dir", str(out / "evaluation"),
                      "--generate_samples", str(args.generate_samples), "--bootstrap", str(args.bootstrap)]),
        ("single patient", [*infer, "--age", "35", "--intensity", "80", "--rate", "30", "--fmp", "0.8",
                            "--confidence", "--seed", "0", "--output_dir", str(out / "inference")]),
        ("batch of patients", [*infer, "--input_file", str(inputs["batch"]), "--confidence", "--seed", "0",
                               "--output", "csv", "--output_dir", str(out / "batch")]),
        ("recorded waveforms", [*infer, "--input_file", str(inputs["recordings"]), "--confidence",
                                "--output_dir", str(out / "recorded")]),
        ("threshold per ear", ["threshold", *series, "--checkpoint", str(ckpt), "--output", "csv",
                               "--output_dir", str(out / "thresholds")]),
        ("synthetic data", [*infer, "--generate", "16", "--seed", "0", "--output_dir", str(out / "synthetic_data")]),
    ]


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    inputs = prepare_inputs(Path(args.output_root) / "outputs" / args.experiment / "inputs")
    for name, command in stages(args, inputs):
        start = time.perf_counter()
        print(f"\n=== {name}: abrflow {' '.join(command)}", flush=True)
        code = abrflow(command)
        print(f"=== {name}: exit {code} in {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            return code
    print(f"\nDemo complete: outputs in {Path(args.output_root) / 'outputs' / args.experiment}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
