"""Data loading: samples/s through the real data module's ``train_dataloader`` on the default cohort.

The default synthetic cohort (2,038 patients, about 51k recordings) is set up once (simulation,
patient-grouped split, normalisation; timed), then one training epoch (batch 32, shuffled) is read
with ``num_workers`` 0 and 2. Time to the first batch (worker start-up) is reported apart from the
steady rate. The issue sets no number; the yardstick here is the training goal (136 samples/s):
loading must never be what limits training.

    python benchmarks/data_loading.py [--workers 0 2] [--max-batches N] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time

from _timing import add_common_arguments, environment, figure, set_threads, write_result

from abrflow.config import load_config
from abrflow.data.datamodule import ABRDataModule

TRAINING_GOAL_SAMPLES_PER_S = 136.0


def read_epoch(dm: ABRDataModule, max_batches: int | None) -> dict:
    start = time.perf_counter()
    loader = dm.train_dataloader()
    it = iter(loader)
    first = next(it)
    first_at = time.perf_counter()
    samples, batches = 0, 0
    for batch in it:
        samples += int(batch["signal"].shape[0])
        batches += 1
        if max_batches is not None and batches >= max_batches:
            break
    seconds = time.perf_counter() - first_at
    del it, loader  # stops persistent workers
    return {"samples_per_s": samples / seconds, "first_batch_seconds": first_at - start, "samples": samples,
            "batches": batches + 1, "batch_size": int(first["signal"].shape[0]), "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--max-batches", type=int, default=None, help="default: one whole epoch")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    env = environment()
    start = time.perf_counter()
    cfg = load_config(None, [], environ={})
    dm = ABRDataModule(cfg.data, seed=cfg.project.seed)
    setup_start = time.perf_counter()
    dm.setup("fit")
    setup_seconds = time.perf_counter() - setup_start
    records = dm.records

    runs, figures = {}, {}
    for workers in args.workers:
        wcfg = load_config(None, [f"data.dataloader.num_workers={workers}"], environ={})
        wdm = ABRDataModule(wcfg.data, seed=wcfg.project.seed, records=records)
        wdm.setup("fit")
        runs[str(workers)] = read_epoch(wdm, args.max_batches)
        r = runs[str(workers)]
        figures[f"train_loader_workers_{workers}_samples_per_s"] = figure(
            r["samples_per_s"], TRAINING_GOAL_SAMPLES_PER_S, unit="samples/s",
            what=f"default cohort, batch {r['batch_size']}, num_workers={workers} "
                 f"(first batch after {r['first_batch_seconds']:.2f} s)",
            note="yardstick, not an issue goal: the training throughput goal")
    figures["cohort_setup_seconds"] = figure(setup_seconds, None, unit="s", higher_is_better=False,
                                             what=f"simulate + split + normalise {len(records):,} recordings")
    result = {"environment": env, "figures": figures, "recordings": len(records),
              "train_recordings": len(dm.split["train"]), "setup_seconds": setup_seconds, "runs": runs,
              "seconds": round(time.perf_counter() - start, 1)}
    write_result("data_loading", result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
