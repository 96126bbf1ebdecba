"""The one timing loop: ``export_onnx(time_it=True)`` and every benchmark in benchmarks/ use it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> dict:
    """Wall seconds of ``fn`` over ``repeats`` calls after ``warmup`` calls.

    ``median`` is the figure reported; ``best`` (the fastest call) is what the machine does when no
    other process competes for its cores, ``p95`` the tail.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"median": statistics.median(times), "best": times[0],
            "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))], "n": len(times)}
