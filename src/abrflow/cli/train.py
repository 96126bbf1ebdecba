"""`abrflow train` / train.py: train the model (the seed document's flags, plus multi-device ones)."""

from __future__ import annotations

import argparse
import json

from .common import configure_logging

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
    from ..config import set_value

    for key, value in items:
        cfg = set_value(cfg, key, value, origin)
    return cfg


def train_config_from_args(args: argparse.Namespace):
    """The resolved config of a train.py invocation: file < env < dotlist < named flags."""
    from ..config import load_config, set_value

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


def run(args: argparse.Namespace) -> int:
    from ..training.trainer import ABRTrainer

    configure_logging(args.log_level or "INFO")
    cfg = train_config_from_args(args)
    configure_logging(cfg.logging.log_level)
    trainer = ABRTrainer(cfg, experiment=args.experiment, overfit_batches=1 if args.overfit_batch else 0)
    result = trainer.train(resume=args.resume)
    if not trainer.trainer.is_global_zero:  # multi-process (DDP): rank 0 writes and prints the result
        return 0
    if args.overfit_batch:
        losses = trainer.module.recorded_train_losses
        result["overfit"] = {"first_loss": losses[0], "last_loss": losses[-1],
                             "fall": 1.0 - losses[-1] / losses[0], "steps": len(losses)}
    out = trainer.paths.outputs / "train_result.json"
    from ..io import atomic_write_text

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


def add_parser(sub) -> None:
    p_train = sub.add_parser("train", help="train the model (same flags as train.py)")
    add_train_arguments(p_train)
    p_train.set_defaults(func=run)

