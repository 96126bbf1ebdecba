"""The `abrflow` command: the only place that parses arguments and prints for people.

Every user error (AbrflowError: bad file, config, argument) becomes a one-line message on
stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from .errors import AbrflowError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line message (its default too, made explicit)."""

    def error(self, message: str):  # noqa: D401
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# --------------------------------------------------------------------------- config


def _cmd_config_show(args: argparse.Namespace) -> int:
    from .config import config_hash, load_config, to_yaml

    cfg = load_config(args.config, args.overrides)
    print(to_yaml(cfg), end="")
    print(f"# config hash: {config_hash(cfg)}")
    return 0


# --------------------------------------------------------------------------- simulate


def format_summary(summary: dict) -> str:
    """A cohort summary as a clinician reads it."""
    lines = [
        f"recordings:       {summary['recordings']:,}",
        f"patients:         {summary['patients']:,}  (series: {summary['series']:,})",
        "class shares:     " + ", ".join(f"{k} {v:.1%}" for k, v in summary["class_shares"].items()),
        f"wave V marked:    {summary['v_marked_share']:.1%}",
        f"median age:       {summary['median_age_years']:.2f} years",
    ]
    if summary["v_latency_ms_range"]:
        lo, hi = summary["v_latency_ms_range"]
        lines.append(f"V latency range:  {lo:.2f}–{hi:.2f} ms")
    lines.append(f"time base:        {summary['samples']} samples at {summary['sampling_rate_hz']:g} Hz "
                 f"({summary['signal_unit']})")
    return "\n".join(lines)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .config import load_config
    from .data.synthetic import simulate_cohort

    cfg = load_config(args.config, args.overrides)
    n_patients = args.patients if args.patients is not None else cfg.data.synthetic.n_patients
    seed = args.seed if args.seed is not None else cfg.data.synthetic.seed
    if n_patients < 1:
        raise AbrflowError(f"--patients must be ≥ 1, got {n_patients}")
    start = time.perf_counter()
    records = simulate_cohort(n_patients=n_patients, seed=seed, sampling_rate_hz=cfg.data.sampling_rate_hz,
                              signal_length=cfg.data.signal_length,
                              alternate_polarity=cfg.data.synthetic.alternate_polarity,
                              artifact_rate=cfg.data.synthetic.artifact_rate)
    seconds = time.perf_counter() - start
    summary = records.summary()
    if args.out:
        path = records.save(args.out)
        summary["saved_to"] = str(path)
    summary["seconds"] = round(seconds, 3)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"Synthetic cohort (seed {seed}, {n_patients} patients) in {seconds:.1f} s")
        print(format_summary(summary))
        if args.out:
            print(f"saved:            {summary['saved_to']}")
    return 0


# --------------------------------------------------------------------------- train

# One fixed batch, fixed noise, no regularisation: the loss can only fall if the whole
# forward/backward/optimiser path works. Huber keeps every term ≥ 0 so "falls by 90%" means it.
OVERFIT_OVERRIDES = (
    ("model.architecture.dropout", 0.0), ("model.conditioning.static_missing_prob", 0.0),
    ("model.conditioning.cond_drop_prob", 0.0), ("loss.regression_loss", "huber"),
    ("loss.uncertainty_weighting", False), ("training.scheduler.type", "constant"),
    ("training.scheduler.warmup_epochs", 0), ("training.ema.enabled", False),
    ("training.early_stopping.enabled", False), ("training.gradient_clip", None),
)


def _apply(cfg, items, origin: str):
    from .config import set_value

    for key, value in items:
        cfg = set_value(cfg, key, value, origin)
    return cfg


def _configure_logging(level: str) -> None:
    import logging

    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def train_config_from_args(args: argparse.Namespace):
    """The resolved config of a train.py invocation: file < env < dotlist < named flags."""
    from .config import load_config, set_value

    cfg = load_config(args.config, args.overrides)
    flags = {
        "training.epochs": args.epochs, "data.dataloader.batch_size": args.batch_size,
        "training.optimizer.learning_rate": args.learning_rate, "hardware.device": args.device,
        "hardware.mixed_precision": args.mixed_precision, "project.seed": args.seed,
        "logging.log_level": args.log_level, "hardware.devices": args.devices,
        "hardware.strategy": args.strategy, "hardware.num_nodes": args.num_nodes,
        "project.output_root": args.output_root,
    }
    for key, value in flags.items():
        if value is not None:
            cfg = set_value(cfg, key, value, f"--{key.rsplit('.', 1)[-1]}")
    if args.mixed_precision and cfg.hardware.device == "cpu" and not cfg.hardware.precision:
        cfg = set_value(cfg, "hardware.precision", "bf16-mixed", "--mixed_precision on CPU")
    if args.fast_dev_run:
        quick = [("training.epochs", 2), ("training.limit_train_batches", 4), ("training.limit_val_batches", 2),
                 ("data.dataloader.batch_size", min(8, cfg.data.dataloader.batch_size)),
                 ("training.checkpoint_every_n_epochs", 1)]
        if cfg.data.source == "synthetic":
            quick.append(("data.synthetic.n_patients", min(300, cfg.data.synthetic.n_patients)))
        cfg = _apply(cfg, quick, "--fast_dev_run")
    if args.overfit_batch:
        cfg = _apply(cfg, OVERFIT_OVERRIDES, "--overfit_batch")
        cfg = set_value(cfg, "training.epochs", args.overfit_steps, "--overfit_steps")
        if args.learning_rate is None:
            cfg = set_value(cfg, "training.optimizer.learning_rate", 1e-3, "--overfit_batch")
    return cfg


def _cmd_train(args: argparse.Namespace) -> int:
    from .training.trainer import ABRTrainer

    _configure_logging(args.log_level or "INFO")
    cfg = train_config_from_args(args)
    _configure_logging(cfg.logging.log_level)
    trainer = ABRTrainer(cfg, experiment=args.experiment, overfit_batches=1 if args.overfit_batch else 0)
    result = trainer.train(resume=args.resume)
    if args.overfit_batch:
        losses = trainer.module.recorded_train_losses
        result["overfit"] = {"first_loss": losses[0], "last_loss": losses[-1],
                             "fall": 1.0 - losses[-1] / losses[0], "steps": len(losses)}
    out = trainer.paths.outputs / "train_result.json"
    from .io import atomic_write_text

    atomic_write_text(out, json.dumps(result, indent=2))
    print(f"experiment {result['experiment']} (config {result['config_hash']}): "
          f"{result['epochs_completed']} epochs, {result['global_step']} steps")
    for key in ("val/loss", "val/v_f1", "val/latency_mae_ms", "val/macro_f1", "val/threshold_mae_db"):
        if key in result["metrics"]:
            print(f"  {key:22s} {result['metrics'][key]:.4f}")
    if result["best_model"]:
        print(f"best checkpoint:   {result['best_model']}")
    print(f"latest checkpoint: {result['latest_model']}")
    if args.overfit_batch:
        o = result["overfit"]
        print(f"overfit one batch: loss {o['first_loss']:.4f} → {o['last_loss']:.4f} "
              f"({o['fall']:.1%} lower over {o['steps']} steps)")
    print(f"result:            {out}")
    return 0


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """train.py's flags: the seed document's, plus multi-device ones."""
    p.add_argument("--config", help="configuration file (default: built-in defaults = configs/config.yaml)")
    p.add_argument("--experiment", default="default", help="name: writes checkpoints/NAME, logs/NAME, outputs/NAME")
    p.add_argument("--resume", help="checkpoint to continue from (epoch, optimiser, scheduler, EMA)")
    p.add_argument("--epochs", type=int, help="number of training epochs")
    p.add_argument("--batch_size", type=int, help="batch size override")
    p.add_argument("--learning_rate", type=float, help="learning rate override")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "gpu", "mps"], help="force a device")
    mp = p.add_mutually_exclusive_group()
    mp.add_argument("--mixed_precision", dest="mixed_precision", action="store_true", default=None,
                    help="enable mixed precision (bf16 on CPU when the device is cpu)")
    mp.add_argument("--no_mixed_precision", dest="mixed_precision", action="store_false", help="full fp32")
    p.add_argument("--fast_dev_run", action="store_true",
                   help="quick test: 2 epochs of 4 small batches (a 300-patient synthetic cohort)")
    p.add_argument("--overfit_batch", action="store_true", help="debug: train repeatedly on one fixed batch")
    p.add_argument("--overfit_steps", type=int, default=300, help="steps for --overfit_batch (default 300)")
    p.add_argument("--log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level")
    p.add_argument("--seed", type=int, help="global seed")
    p.add_argument("--devices", type=int, help="devices per node (Lightning)")
    p.add_argument("--strategy", help="Lightning strategy, e.g. ddp")
    p.add_argument("--num_nodes", type=int, help="number of nodes")
    p.add_argument("--output_root", help="folder holding checkpoints/, logs/, outputs/ (default: project.output_root)")
    p.add_argument("overrides", nargs="*", help="config dotlist overrides, e.g. training.scheduler.type=abr")


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="abrflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p_cfg = sub.add_parser("config", help="inspect the resolved configuration")
    cfg_sub = p_cfg.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    p_show = cfg_sub.add_parser("show", help="print the resolved YAML and its hash")
    p_show.add_argument("--config", help="YAML file (default: built-in defaults)")
    p_show.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. training.epochs=3")
    p_show.set_defaults(func=_cmd_config_show)

    p_sim = sub.add_parser("simulate", help="simulate a synthetic ABR cohort and print its summary")
    p_sim.add_argument("--patients", type=int, help="number of patients (default: data.synthetic.n_patients)")
    p_sim.add_argument("--seed", type=int, help="cohort seed (default: data.synthetic.seed)")
    p_sim.add_argument("--out", help="write the records to this .npz")
    p_sim.add_argument("--config", help="YAML file for the time base and simulator options")
    p_sim.add_argument("--json", action="store_true", help="print the summary as JSON")
    p_sim.add_argument("overrides", nargs="*", help="dotlist overrides")
    p_sim.set_defaults(func=_cmd_simulate)

    p_train = sub.add_parser("train", help="train the model (same flags as train.py)")
    add_train_arguments(p_train)
    p_train.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Dotlist overrides may stand anywhere among the flags ("a=b --epochs 3 c=d").
    dotlist = [tok for tok in extra if not tok.startswith("-") and "=" in tok]
    unknown = [tok for tok in extra if tok not in dotlist]
    if unknown or (dotlist and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or dotlist)}")
    if dotlist:
        args.overrides = [*args.overrides, *dotlist]
    try:
        return int(args.func(args) or 0)
    except AbrflowError as exc:
        print(f"abrflow: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("abrflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
