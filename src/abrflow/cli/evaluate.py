"""`abrflow evaluate` / evaluate.py: metrics.json, report.txt and figures, model beside the baselines."""

from __future__ import annotations

import argparse

from .common import configure_logging


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..evaluation.report import RECONSTRUCTION_MAX, default_output_dir, evaluate_checkpoint, format_report

    configure_logging("WARNING")
    # A dotlist override written after --data or --checkpoint (which take several paths) is an override.
    overrides = list(args.overrides)
    for name in ("checkpoint", "data"):
        values = getattr(args, name)
        if values:
            moved = [v for v in values if "=" in v and not Path(v).exists()]
            overrides += moved
            setattr(args, name, [v for v in values if v not in moved])
    out_dir = Path(args.output_dir) if args.output_dir else default_output_dir(args.checkpoint[0])
    recon = RECONSTRUCTION_MAX if args.reconstruction_samples is None else args.reconstruction_samples
    result = evaluate_checkpoint(
        args.checkpoint, config=args.config, overrides=overrides, split=args.split, data=args.data,
        thresholds=args.thresholds,
        generate_samples=args.generate_samples, sampler=args.sampler, steps=args.steps, bootstrap=args.bootstrap,
        batch_size=args.batch_size, device=args.device, output_dir=out_dir, seed=args.seed,
        reconstruction_samples=recon)
    print(format_report(result), end="")
    print(f"metrics:           {result['files']['metrics']}")
    print(f"report:            {result['files']['report']}")
    print(f"printable report:  {result['files']['html']}")
    return 0


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """evaluate.py's flags (the seed document's, plus split, data, sampler and bootstrap)."""
    p.add_argument("--checkpoint", required=True, nargs="+", metavar="PATH",
                   help="trained checkpoint (best_model.pt); several are read as one ensemble by the per-ear rule")
    p.add_argument("--config", help="YAML whose data section replaces the checkpoint's (model stays the checkpoint's)")
    p.add_argument("--output_dir", help="default: outputs/<experiment or checkpoint stem>/evaluation")
    p.add_argument("--generate_samples", type=int, default=0, metavar="N",
                   help="generate N waveforms and score their distribution against real twins (default 0)")
    p.add_argument("--split", choices=["test", "val", "all"], help="split of the checkpoint's data (default test)")
    p.add_argument("--data", nargs="+", metavar="PATH",
                   help="evaluate these files or folders whole, joined (any format load_records reads)")
    p.add_argument("--thresholds", metavar="CSV",
                   help="expert thresholds per ear (patient_id, ear, threshold_db[, rater]) to compare with")
    p.add_argument("--sampler", choices=["ddpm", "ddim", "dpm_solver"], help="sampler (default: the checkpoint's)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the checkpoint's)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="patient-bootstrap resamples (default 1000)")
    p.add_argument("--batch_size", type=int, default=256, help="recordings per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=0, help="seed of reconstruction noise, generation and bootstrap")
    p.add_argument("--reconstruction_samples", type=int, metavar="N",
                   help="recordings noised and reconstructed at each diffusion time (default 512)")
    p.add_argument("overrides", nargs="*", help="data.* dotlist overrides, e.g. data.synthetic.n_patients=300")


def add_parser(sub) -> None:
    p_eval = sub.add_parser("evaluate", help="evaluate a checkpoint: metrics.json, report.txt, figures "
                                             "(same flags as evaluate.py)")
    add_evaluate_arguments(p_eval)
    p_eval.set_defaults(func=run)

