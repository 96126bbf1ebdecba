"""`make bench`: run every benchmark script in this folder, then render docs/performance.md.

Each script runs in its own process (a clean memory and thread state per measurement) and writes
results/<name>.json; the issue-9 suite runs first (in ORDER), any other script in this folder after
it, and report.py last. The checkpoint that generation and latency are measured on is trained once
per run (``ABRFLOW_BENCH_CACHE`` points at a fresh folder, removed at the end) unless
``--checkpoint`` is given. A failing benchmark is reported and makes the run exit non-zero; the
others still run. The run's wall time, per-script times and load go to results/run_all.json.

    python benchmarks/run_all.py [--threads 2] [--checkpoint PATH] [--only NAME ...] [--skip NAME ...]
                                 [--with compile_speed]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("simulator_speed", "data_loading", "train_speed", "generation_speed", "analysis_latency", "peak_memory")
NOT_BENCHMARKS = {"run_all", "report"}
#: Run only when asked for (``--with`` or ``--only``): longer than the 15-minute suite allows.
OPT_IN = {"compile_speed"}


def cpu_idle(seconds: float = 2.0) -> float | None:
    """Share of the machine's CPU time that was idle over ``seconds`` (Linux /proc/stat; None elsewhere)."""
    def sample():
        with open("/proc/stat", encoding="ascii") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_idle(max_seconds: float, threshold: float = 0.85) -> float | None:
    """Wait up to ``max_seconds`` until other processes leave the CPU ≥ ``threshold`` idle; the idle share."""
    deadline = time.monotonic() + max_seconds
    idle = cpu_idle()
    while idle is not None and idle < threshold and time.monotonic() < deadline:
        time.sleep(3.0)
        idle = cpu_idle()
    return idle


def scripts() -> list[Path]:
    found = {p.stem: p for p in HERE.glob("*.py") if p.stem not in NOT_BENCHMARKS and not p.name.startswith("_")}
    return [found[n] for n in ORDER if n in found] + [found[n] for n in sorted(found) if n not in ORDER]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every benchmark (default 2)")
    parser.add_argument("--checkpoint", help="measure generation and latency on this checkpoint instead of training one")
    parser.add_argument("--only", nargs="+", default=None, help="run only these benchmarks (names without .py)")
    parser.add_argument("--skip", nargs="+", default=[], help="skip these benchmarks")
    parser.add_argument("--with", dest="with_", nargs="+", default=[], metavar="NAME",
                        help=f"also run these opt-in benchmarks ({', '.join(sorted(OPT_IN))})")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="on a shared machine: before each benchmark wait up to SECONDS for the CPU to be "
                             "≥ 85%% idle (default 0: start at once)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.with_) - OPT_IN)
    if unknown:
        parser.error(f"--with {' '.join(unknown)}: not an opt-in benchmark ({', '.join(sorted(OPT_IN))})")
    wanted = (lambda n: n in args.only) if args.only is not None else (lambda n: n not in OPT_IN or n in args.with_)
    selected = [p for p in scripts() if wanted(p.stem) and p.stem not in args.skip]
    cache = Path(tempfile.mkdtemp(prefix="abrflow-bench-run-"))
    env = {**os.environ, "ABRFLOW_BENCH_THREADS": str(args.threads), "ABRFLOW_BENCH_CACHE": str(cache)}
    if args.checkpoint:
        env["ABRFLOW_BENCH_CHECKPOINT"] = str(Path(args.checkpoint).resolve())
    loadavg_before = [round(v, 2) for v in os.getloadavg()]
    start = time.perf_counter()
    runs, failed = [], []
    try:
        for script in selected:
            waiting = time.perf_counter()
            idle = wait_for_idle(args.wait_idle) if args.wait_idle > 0 else None
            waited = time.perf_counter() - waiting
            began = time.perf_counter()
            print(f"== {script.name}", flush=True)
            proc = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, env=env)
            seconds = time.perf_counter() - began
            print(f"== {script.name}: exit {proc.returncode} in {seconds:.0f} s", flush=True)
            runs.append({"script": script.name, "seconds": round(seconds, 1), "exit_code": proc.returncode,
                         "cpu_idle_at_start": idle, "waited_for_idle_seconds": round(waited, 1)})
            if proc.returncode:
                failed.append(script.name)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    wall = time.perf_counter() - start
    if args.only is None and not args.skip:  # only a whole-suite run says how long `make bench` takes
        waited = sum(r["waited_for_idle_seconds"] for r in runs)
        record = {"benchmark": "run_all", "wall_seconds": round(wall, 1), "waited_for_idle_seconds": round(waited, 1),
                  "wall_seconds_without_waiting": round(wall - waited, 1), "cpu_count": os.cpu_count(),
                  "threads": args.threads, "loadavg_before": loadavg_before,
                  "loadavg_after": [round(v, 2) for v in os.getloadavg()], "scripts": runs, "failed": failed,
                  "finished": datetime.now(timezone.utc).strftime("finished %Y-%m-%d %H:%M UTC")}
        (HERE / "results").mkdir(exist_ok=True)
        tmp = HERE / "results" / ".run_all.json.tmp"
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        tmp.replace(HERE / "results" / "run_all.json")
    subprocess.run([sys.executable, str(HERE / "report.py")], cwd=HERE.parent, env=env, check=False)
    print(f"== all benchmarks: {wall / 60:.1f} min", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
