"""How long the default synthetic cohort takes to simulate (DESIGN.md §5: about 50k recordings in seconds).

Run: ``python benchmarks/simulator_speed.py``. Writes ``benchmarks/results/simulator_speed.json``
(recordings, patients, seconds, recordings per second, the cohort summary and median Fmp) and
prints it. Speed is measured here, never asserted in a test.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from abrflow.data.synthetic import simulate_cohort

RESULT_PATH = Path(__file__).resolve().parent / "results" / "simulator_speed.json"


def measure() -> dict:
    """Simulate the default cohort once (after a small warm-up so imports and caches don't count)."""
    simulate_cohort(5, seed=0)
    start = time.perf_counter()
    records = simulate_cohort()
    seconds = time.perf_counter() - start
    return {
        "recordings": len(records),
        "patients": int(len(np.unique(records.patient_id))),
        "seconds": round(seconds, 3),
        "recordings_per_s": round(len(records) / seconds, 1),
        "median_fmp": float(np.median(records.fmp)),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "summary": records.summary(),
    }


def write_atomically(result: dict, path: Path) -> None:
    """Temporary file then rename: an interrupted run never leaves a half-written result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(result, fh, indent=2)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main() -> None:
    result = measure()
    write_atomically(result, RESULT_PATH)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
