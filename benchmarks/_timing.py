"""What every benchmark shares: thread set-up, the one timing loop, goals and the results file.

A result file ``results/<name>.json`` holds ``environment`` (torch, threads, CPU count and the
load average before and after: the project's 2-core machines are shared, so a number is only
meaningful beside the load it was measured under), ``figures`` (each a value beside its goal:
``goal``, ``ratio`` = value / reference, ``met`` true/false, or null where the issue sets no goal)
and whatever detail the benchmark adds. ``report.py`` renders docs/performance.md from them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from abrflow.io import atomic_write_text
from abrflow.timing import timed  # noqa: F401  (re-exported: the one timing loop)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: The machine class of the issue's goals: a 2-core CPU.
DEFAULT_THREADS = 2


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=int(os.environ.get("ABRFLOW_BENCH_THREADS", DEFAULT_THREADS)),
                        help="torch intra-op threads (default 2, the goals' machine class; env ABRFLOW_BENCH_THREADS)")
    parser.add_argument("--out", default=None, help="result JSON (default: benchmarks/results/<name>.json)")


def set_threads(threads: int) -> None:
    """Intra-op threads for torch and the libraries it starts (OpenMP), one inter-op thread."""
    torch.set_num_threads(int(threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def load() -> list[float]:
    """1, 5 and 15-minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


def environment() -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "loadavg_before": load()}


def rate(items: int, t: dict) -> dict:
    """Items per second from a ``timed`` result: at the median call and at the fastest."""
    return {"per_s": items / t["median"], "per_s_best": items / t["best"]}


def figure(value: float | None, goal: float | None, *, unit: str, reference: float | None = None,
           higher_is_better: bool = True, what: str = "", met: bool | None = None, note: str = "",
           best: float | None = None) -> dict:
    """One reported number beside its goal.

    ``ratio`` is value / reference (e.g. the predecessor's figure); ``met`` compares the value (the
    median) with the goal unless given (goals such as "≥ 100× at equal or better quality" decide it
    elsewhere); ``best`` is the same figure at the fastest repeat, where there are repeats.
    """
    if met is None and goal is not None and value is not None:
        met = bool(value >= goal) if higher_is_better else bool(value <= goal)
    ratio = value / reference if value is not None and reference else None
    out = {"what": what, "value": value, "best": best, "unit": unit, "goal": goal,
           "goal_direction": ">=" if higher_is_better else "<=", "reference": reference, "ratio": ratio, "met": met}
    if note:
        out["note"] = note
    return out


def write_result(name: str, result: dict, out: str | os.PathLike | None = None) -> Path:
    """Stamp the load after the run and write results/<name>.json atomically; print it."""
    result.setdefault("environment", environment())["loadavg_after"] = load()
    result["benchmark"] = name
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2, allow_nan=True, default=_plain) + "\n"
    atomic_write_text(path, text)
    print(text, end="")
    return path


def _plain(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
