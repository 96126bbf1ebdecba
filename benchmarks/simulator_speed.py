"""How fast the default synthetic cohort is simulated (DESIGN.md §5: about 50k recordings "in seconds").

The issue sets no number; the yardstick is the design's "in seconds", read as the default cohort
in ≤ 10 s. Median of ``--repeats`` simulations after a small warm-up (imports and caches don't
count); the cohort summary and median Fmp are kept beside the speed.

    python benchmarks/simulator_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _timing import add_common_arguments, environment, figure, set_threads, timed, write_result

from abrflow.data.synthetic import simulate_cohort

GOAL_SECONDS = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    env = environment()
    start = time.perf_counter()
    simulate_cohort(5, seed=0)
    records = simulate_cohort()
    t = timed(simulate_cohort, args.repeats, warmup=0)
    n = len(records)
    figures = {
        "cohort_seconds": figure(t["median"], GOAL_SECONDS, unit="s", higher_is_better=False,
                                 what=f"default cohort ({n:,} recordings, "
                                      f"{len(np.unique(records.patient_id)):,} patients)",
                                 note="yardstick from DESIGN.md §5 ('in seconds'), not an issue goal"),
        "recordings_per_s": figure(n / t["median"], n / GOAL_SECONDS, unit="recordings/s",
                                   what="simulated recordings per second"),
    }
    result = {"environment": env, "figures": figures, "recordings": n, "seconds_per_cohort": t,
              "recordings_per_s_best": n / t["best"], "median_fmp": float(np.median(records.fmp)),
              "summary": records.summary(), "seconds": round(time.perf_counter() - start, 1)}
    write_result("simulator_speed", result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
