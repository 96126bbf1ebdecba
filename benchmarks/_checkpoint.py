"""The trained checkpoint that generation quality and analysis latency are measured on.

``--checkpoint PATH`` (or the environment variable ``ABRFLOW_BENCH_CHECKPOINT``) uses yours.
Otherwise the benchmarks train one with abrflow's own trainer: the default network on the demo's
400-patient synthetic cohort (configs/demo.yaml) for ``EPOCHS`` epochs of ``BATCHES`` batches of 32
(about 90 s on 2 cores: ``make bench`` must stay under 15 minutes, and generation quality is
compared between samplers on this one checkpoint, not against a fully trained model). It is kept under a key of the recipe and of abrflow's source (in the system's temporary
folder, or ``ABRFLOW_BENCH_CACHE``), so the benchmarks of one run train it once (the first that
needs it; its JSON then carries the training time) and a source change retrains it.
``run_all.py`` points ``ABRFLOW_BENCH_CACHE`` at a fresh folder: every ``make bench`` trains its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import abrflow
from abrflow.config import load_config
from abrflow.io import atomic_write_text
from abrflow.training.trainer import ABRTrainer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "demo.yaml"
EPOCHS = 2
BATCHES = 150
OVERRIDES = [f"training.epochs={EPOCHS}", f"training.limit_train_batches={BATCHES}", "logging.progress_bar=false",
             "logging.use_tensorboard=false", "logging.log_level=WARNING"]
EXPERIMENT = "bench"


def _source_key() -> str:
    digest = hashlib.sha256()
    package = Path(abrflow.__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    digest.update(CONFIG.read_bytes())
    digest.update(json.dumps(OVERRIDES).encode())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    root = os.environ.get("ABRFLOW_BENCH_CACHE") or Path(tempfile.gettempdir()) / "abrflow-bench"
    return Path(root) / _source_key()


def benchmark_checkpoint(path: str | None = None) -> tuple[Path, dict]:
    """(checkpoint path, provenance for the result JSON): ``path`` if given, else the cached or a
    freshly trained benchmark checkpoint."""
    path = path or os.environ.get("ABRFLOW_BENCH_CHECKPOINT")
    if path:
        return Path(path), {"source": "given", "path": str(path)}
    root = cache_dir()
    recipe_file = root / "recipe.json"
    if recipe_file.is_file():
        recipe = json.loads(recipe_file.read_text(encoding="utf-8"))
        return Path(recipe["path"]), {**recipe, "reused_from_cache": True}
    cfg = load_config(str(CONFIG), [*OVERRIDES, f"project.output_root={root}"], environ={})
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    start = time.perf_counter()
    summary = ABRTrainer(cfg, experiment=EXPERIMENT).train()
    seconds = time.perf_counter() - start
    best = Path(summary["best_model"] or summary["latest_model"])
    recipe = {"source": "trained by benchmarks/_checkpoint.py", "config": str(CONFIG.relative_to(ROOT)),
              "overrides": OVERRIDES, "patients": int(cfg.data.synthetic.n_patients), "epochs": EPOCHS,
              "global_step": int(summary["global_step"]), "train_seconds": round(seconds, 1),
              "final_metrics": {k: v for k, v in summary["metrics"].items() if k.startswith("val/")},
              "path": str(best)}
    atomic_write_text(recipe_file, json.dumps(recipe, indent=1))
    return best, {**recipe, "reused_from_cache": False}


def benchmark_models(paths: list[str] | None = None) -> tuple[list[Path], dict]:
    """Like :func:`benchmark_checkpoint` for ``--checkpoint PATH…``: one path (or none) as there,
    several as a given ensemble (``abrflow.inference.ensemble``), listed in the provenance."""
    if paths and len(paths) > 1:
        return [Path(p) for p in paths], {"source": "given", "ensemble": [str(p) for p in paths]}
    path, provenance = benchmark_checkpoint(paths[0] if paths else None)
    return [path], provenance
