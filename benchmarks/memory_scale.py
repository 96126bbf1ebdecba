"""Peak memory of training on 50k vs 500k recordings read from a memory-mapped records directory.

`python benchmarks/memory_scale.py` simulates two cohorts on disk (written 2,000 patients at a time,
so neither is ever held whole): ≈50k recordings (the clinic's size) and ≈500k (10×). Each is then
trained on in a fresh process, through the same path as ``train.py`` (``data.source=file``,
``data.dataset_path=DIR``): the default model, batch 32, 15 training steps and 5 validation batches.
The child reports its peak resident set (``getrusage(RUSAGE_SELF).ru_maxrss``), the resident set
after the imports (the floor any run pays) and after the data module's setup, and the split of the
final resident set into anonymous memory and mapped file pages. The goal: peak(500k) / peak(50k)
well below 10 (the data grew 10×), target < 1.5. For contrast, both cohorts are also trained
from memory (the directory read whole, ``mmap=False``).

Calibration at the end of fit (a pass over the whole validation split) is left out: it is a
fixed-size forward pass per batch and would only add minutes on a CPU. Results go to
``benchmarks/results/memory_scale.json``. Disk: ≈0.5 GB for the 500k cohort, in a temporary folder
(``--root``) removed afterwards (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "memory_scale.json"
#: Recordings per patient of the default simulator (51,394 / 2,038): ≈50k and ≈500k recordings.
COHORTS = {"50k": 1983, "500k": 19830}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def child(data_dir: str, steps: int, batch_size: int, out_root: str, in_memory: bool) -> dict:
    """One training run in this (fresh) process; returns its memory figures."""
    import torch

    torch.set_num_threads(1)
    from abrflow.config import load_config
    from abrflow.data.datamodule import ABRDataModule
    from abrflow.data.records import ABRRecords
    from abrflow.training.calibration import CalibrationCallback
    from abrflow.training.trainer import ABRTrainer

    after_imports = _status_mb("VmRSS")
    cfg = load_config(overrides=[
        "data.source=file", f"data.dataset_path={data_dir}", f"data.dataloader.batch_size={batch_size}",
        "training.epochs=1", f"training.limit_train_batches={steps}", "training.limit_val_batches=5",
        "logging.progress_bar=false", "logging.use_tensorboard=false", "hardware.device=cpu",
        f"project.output_root={out_root}"], environ={})
    records = ABRRecords.load(data_dir, mmap=False) if in_memory else None
    dm = ABRDataModule(cfg.data, seed=cfg.project.seed, records=records)
    start = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - start
    after_setup = _status_mb("VmRSS")
    trainer = ABRTrainer(cfg, experiment="memory", datamodule=dm)
    callbacks = trainer._callbacks
    trainer._callbacks = lambda: [c for c in callbacks() if not isinstance(c, CalibrationCallback)]
    start = time.perf_counter()
    result = trainer.train()
    return {
        "recordings": len(dm.records), "train_rows": len(dm.split.train),
        "memory_mapped": dm.records.is_memory_mapped, "steps": result["global_step"],
        "peak_rss_mb": round(_rss_mb(), 1), "rss_after_imports_mb": round(after_imports, 1),
        "rss_after_setup_mb": round(after_setup, 1),
        "final_rss_anon_mb": _status_mb("RssAnon"), "final_rss_file_mb": _status_mb("RssFile"),
        "setup_s": round(setup_s, 2), "train_s": round(time.perf_counter() - start, 2),
        "val_loss": result["metrics"].get("val/loss"),
    }


def _run_child(data_dir: Path, args, in_memory: bool) -> dict:
    out_root = Path(tempfile.mkdtemp(prefix="run-", dir=args.root))
    cmd = [sys.executable, __file__, "--child", str(data_dir), "--steps", str(args.steps),
           "--batch_size", str(args.batch_size), "--out_root", str(out_root)] + (["--in_memory"] if in_memory else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    shutil.rmtree(out_root, ignore_errors=True)
    if proc.returncode:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out_root", help=argparse.SUPPRESS)
    p.add_argument("--in_memory", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--root", default=None, help="folder for the cohorts (default: a new folder in /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the simulated cohorts")
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.batch_size, args.out_root, args.in_memory)))
        return 0

    from abrflow.data.synthetic import simulate_cohort_to_dir

    args.root = tempfile.mkdtemp(prefix="abrflow-memory-", dir=args.root or "/tmp")
    runs: dict[str, dict] = {}
    try:
        dirs = {}
        for name, n_patients in COHORTS.items():
            start = time.perf_counter()
            dirs[name] = simulate_cohort_to_dir(Path(args.root) / f"cohort_{name}", n_patients, seed=7)
            size = sum(f.stat().st_size for f in dirs[name].iterdir())
            print(f"{name}: simulated and written in {time.perf_counter() - start:.1f} s ({size / 2**20:.0f} MB "
                  f"on disk, peak RSS of this process so far {_rss_mb():.0f} MB)", flush=True)
            runs[f"mmap_{name}"] = _run_child(dirs[name], args, in_memory=False)
            runs[f"mmap_{name}"]["disk_mb"] = round(size / 2**20, 1)
            print(f"  memory-mapped: {runs[f'mmap_{name}']}", flush=True)
        for name in COHORTS:
            runs[f"in_memory_{name}"] = _run_child(dirs[name], args, in_memory=True)
            print(f"  {name} in memory: {runs[f'in_memory_{name}']}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(args.root, ignore_errors=True)
    small, large = runs["mmap_50k"], runs["mmap_500k"]
    result = {
        "what": f"peak RSS of a training process (default model, batch 32, {args.steps} steps, 5 validation batches) "
                "reading a memory-mapped records directory of 50k vs 500k recordings",
        "peak_rss_ratio_500k_over_50k": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "data_ratio_500k_over_50k": round(large["recordings"] / small["recordings"], 2),
        "peak_above_imports_ratio": round((large["peak_rss_mb"] - large["rss_after_imports_mb"])
                                          / (small["peak_rss_mb"] - small["rss_after_imports_mb"]), 3),
        "runs": runs,
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "note": "ru_maxrss counts mapped file pages while resident; the data module reads a batch's rows and "
                "returns the pages (madvise DONTNEED), full passes (validation, statistics) go in chunks.",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"peak RSS 50k {small['peak_rss_mb']:.0f} MB, 500k {large['peak_rss_mb']:.0f} MB: "
          f"ratio {result['peak_rss_ratio_500k_over_50k']:.2f} for {result['data_ratio_500k_over_50k']:.1f}× the data "
          f"→ {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
