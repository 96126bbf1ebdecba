"""`abrflow simulate`: a synthetic ABR cohort, its summary, optionally saved."""

from __future__ import annotations

import argparse
import json
import time

from ..errors import AbrflowError
from .format import format_summary


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..data.synthetic import simulate_cohort, simulator_options

    cfg = load_config(args.config, args.overrides)
    n_patients = args.patients if args.patients is not None else cfg.data.synthetic.n_patients
    seed = args.seed if args.seed is not None else cfg.data.synthetic.seed
    if n_patients < 1:
        raise AbrflowError(f"--patients must be ≥ 1, got {n_patients}")
    start = time.perf_counter()
    options = simulator_options(cfg.data)
    if args.out_dir:  # any size: simulated and written a chunk of patients at a time, then memory-mapped
        from ..data.records import ABRRecords
        from ..data.synthetic import simulate_cohort_to_dir

        path = simulate_cohort_to_dir(args.out_dir, n_patients, seed, chunk_patients=args.chunk_patients, **options)
        records = ABRRecords.load(path, mmap=True)
    else:
        records = simulate_cohort(n_patients=n_patients, seed=seed, **options)
    seconds = time.perf_counter() - start
    summary = records.summary()
    if args.out_dir:
        summary["saved_to"] = str(path)
    elif args.out:
        path = records.save(args.out)
        summary["saved_to"] = str(path)
    summary["seconds"] = round(seconds, 3)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"Synthetic cohort (seed {seed}, {n_patients} patients) in {seconds:.1f} s")
        print(format_summary(summary))
        if "saved_to" in summary:
            print(f"saved:            {summary['saved_to']}")
    return 0


def add_parser(sub) -> None:
    p_sim = sub.add_parser("simulate", help="simulate a synthetic ABR cohort and print its summary")
    p_sim.add_argument("--patients", type=int, help="number of patients (default: data.synthetic.n_patients)")
    p_sim.add_argument("--seed", type=int, help="cohort seed (default: data.synthetic.seed)")
    out = p_sim.add_mutually_exclusive_group()
    out.add_argument("--out", help="write the records to this .npz")
    out.add_argument("--out_dir", help="write a memory-mapped records directory (for cohorts beyond memory; "
                                       "train with data.source=file data.dataset_path=DIR)")
    p_sim.add_argument("--chunk_patients", type=int, default=2000,
                       help="with --out_dir: patients simulated and written at a time (default 2000)")
    p_sim.add_argument("--config", help="YAML file for the time base and simulator options")
    p_sim.add_argument("--json", action="store_true", help="print the summary as JSON")
    p_sim.add_argument("overrides", nargs="*", help="dotlist overrides")
    p_sim.set_defaults(func=run)

