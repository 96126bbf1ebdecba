"""Train the transfer recipe's members and read them on the real recordings: the README's table in one command.

    python experiments/transfer_recipe.py [--seeds 42 1 2] [--root DIR]   # about 4 min a seed on 2 cores

Each member is ``train.py`` with the recipe's flags (``RECIPE``, the default config otherwise) and
its own ``project.seed``. Then ``series_rule_synthetic.py`` re-fixes the split-half gate for the
ensemble of all members on the synthetic tuning cohort, and ``real_transfer.py`` reads the real
files once with all of them (``results/series_rule_synthetic_ensemble.json``,
``experiments/results/real_transfer_ensemble.json``). A member already trained under ``--root`` is reused. If
the gate the rule chooses is not the one the code ships (``MODEL_GATE_MIN_R``), the script says so
and exits 1: the real files were then read with a rule not fixed for these members.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from abrflow.clinical.replication import MODEL_GATE_MIN_R

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = (42, 1, 2)
RECIPE = ["--epochs", "4", "--batch_size", "64", "--learning_rate", "2e-3", "training.scheduler.type=one_cycle",
          "training.scheduler.warmup_epochs=0", "training.ema.decay=0.995", "training.limit_train_batches=120",
          "training.limit_val_batches=20", "logging.progress_bar=false"]


def member(root: Path, seed: int) -> Path:
    """The best checkpoint of the recipe at ``seed`` under ``root``, trained if it is not there yet."""
    name = f"transfer_seed{seed}"
    best = root / "checkpoints" / name / "best_model.pt"
    if not best.is_file():
        subprocess.run([sys.executable, str(ROOT / "train.py"), "--experiment", name, "--output_root", str(root),
                        *RECIPE, f"project.seed={seed}"], check=True, cwd=ROOT)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="one member per seed (default 42 1 2)")
    p.add_argument("--root", default=str(Path(tempfile.gettempdir()) / "abrflow-transfer"),
                   help="where the members are trained (and found again)")
    args = p.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds must differ, got {args.seeds}")
    paths = [str(member(Path(args.root), seed)) for seed in args.seeds]
    rule = RESULTS / "series_rule_synthetic_ensemble.json"
    here = Path(__file__).resolve().parent
    subprocess.run([sys.executable, str(here / "series_rule_synthetic.py"), "--checkpoint", *paths,
                    "--out", str(rule)], check=True)
    subprocess.run([sys.executable, str(here / "real_transfer.py"), "--checkpoint", *paths,
                    "--output", str(RESULTS / "real_transfer_ensemble.json")], check=True)
    chosen = json.loads(rule.read_text(encoding="utf-8"))["chosen_replication_min_r"]
    if chosen != MODEL_GATE_MIN_R:
        print(f"the rule chose the gate r ≥ {chosen} for these members, but the code ships r ≥ {MODEL_GATE_MIN_R} "
              "(clinical/replication.py): the real files were read with a rule not fixed for them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
