"""Peak memory (RSS) of training and of evaluation on the default cohort, each in its own process.

- training: ``abrflow train`` on the default config (2,038-patient cohort, about 51k recordings)
  for ``--train-steps`` batches of one epoch, a short validation, then the calibration of the
  saved checkpoints on the whole validation split (as every training run ends);
- evaluation: ``abrflow evaluate`` on that checkpoint (test split, small ``--bootstrap``).

Each runs as ``python peak_memory.py --child <command> …``, which runs the command in-process and
reports its own ``ru_maxrss`` (and its children's, e.g. data-loader workers). The issue sets no
goal: the figures are reported against the machine's memory.

    python benchmarks/peak_memory.py [--train-steps 20] [--bootstrap 20]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import add_common_arguments, environment, figure, write_result

MARK = "PEAK_MEMORY_RESULT "


def child(command: list[str]) -> int:
    from abrflow.cli import main as abrflow

    start = time.perf_counter()
    code = abrflow(command)
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(MARK + json.dumps({"exit_code": code, "seconds": time.perf_counter() - start,
                             "max_rss_mib": own.ru_maxrss / 1024, "children_max_rss_mib": kids.ru_maxrss / 1024}),
          flush=True)
    return code


def run_child(command: list[str], threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "ABR_LOG_LEVEL": "WARNING"}
    proc = subprocess.run([sys.executable, __file__, "--child", *command], capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"abrflow {command[0]} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(MARK):])


def total_memory_mib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError):
        return None


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--bootstrap", type=int, default=20)
    args = parser.parse_args(argv)
    env = environment()
    env["torch_threads"] = args.threads  # the children's (OMP_NUM_THREADS)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="abrflow-peak-memory-") as root:
        train = run_child(["train", "--output_root", root, "--experiment", "memory", "--epochs", "1",
                           f"training.limit_train_batches={args.train_steps}", "training.limit_val_batches=20",
                           "logging.progress_bar=false", "logging.use_tensorboard=false"], args.threads)
        checkpoint = Path(root) / "checkpoints" / "memory" / "best_model.pt"
        evaluate = run_child(["evaluate", "--checkpoint", str(checkpoint), "--output_dir", str(Path(root) / "eval"),
                              "--bootstrap", str(args.bootstrap), "--device", "cpu"], args.threads)
    total = total_memory_mib()
    figures = {
        "train_peak_rss_mib": figure(max(train["max_rss_mib"], train["children_max_rss_mib"]), None, unit="MiB",
                                     higher_is_better=False,
                                     what=f"abrflow train, default cohort, {args.train_steps} steps + validation "
                                          f"+ calibration ({train['seconds']:.0f} s)"),
        "evaluate_peak_rss_mib": figure(max(evaluate["max_rss_mib"], evaluate["children_max_rss_mib"]), None,
                                        unit="MiB", higher_is_better=False,
                                        what=f"abrflow evaluate, test split of the default cohort, bootstrap "
                                             f"{args.bootstrap} ({evaluate['seconds']:.0f} s)"),
    }
    result = {"environment": env, "figures": figures, "machine_memory_mib": total, "train": train,
              "evaluate": evaluate, "seconds": round(time.perf_counter() - start, 1)}
    write_result("peak_memory", result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
