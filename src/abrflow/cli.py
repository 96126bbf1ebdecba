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
    from .data.synthetic import simulate_cohort, simulator_options

    cfg = load_config(args.config, args.overrides)
    n_patients = args.patients if args.patients is not None else cfg.data.synthetic.n_patients
    seed = args.seed if args.seed is not None else cfg.data.synthetic.seed
    if n_patients < 1:
        raise AbrflowError(f"--patients must be ≥ 1, got {n_patients}")
    start = time.perf_counter()
    options = simulator_options(cfg.data)
    if args.out_dir:  # any size: simulated and written a chunk of patients at a time, then memory-mapped
        from .data.records import ABRRecords
        from .data.synthetic import simulate_cohort_to_dir

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
    if not trainer.trainer.is_global_zero:  # multi-process (DDP): rank 0 writes and prints the result
        return 0
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


# --------------------------------------------------------------------------- evaluate


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .evaluation.report import RECONSTRUCTION_MAX, default_output_dir, evaluate_checkpoint, format_report

    _configure_logging("WARNING")
    out_dir = Path(args.output_dir) if args.output_dir else default_output_dir(args.checkpoint)
    recon = RECONSTRUCTION_MAX if args.reconstruction_samples is None else args.reconstruction_samples
    result = evaluate_checkpoint(
        args.checkpoint, config=args.config, overrides=args.overrides, split=args.split, data=args.data,
        generate_samples=args.generate_samples, sampler=args.sampler, steps=args.steps, bootstrap=args.bootstrap,
        batch_size=args.batch_size, device=args.device, output_dir=out_dir, seed=args.seed,
        reconstruction_samples=recon)
    print(format_report(result), end="")
    print(f"metrics:           {result['files']['metrics']}")
    print(f"report:            {result['files']['report']}")
    return 0


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """evaluate.py's flags (the seed document's, plus split, data, sampler and bootstrap)."""
    p.add_argument("--checkpoint", required=True, help="trained checkpoint (best_model.pt)")
    p.add_argument("--config", help="YAML whose data section replaces the checkpoint's (model stays the checkpoint's)")
    p.add_argument("--output_dir", help="default: outputs/<experiment or checkpoint stem>/evaluation")
    p.add_argument("--generate_samples", type=int, default=0, metavar="N",
                   help="generate N waveforms and score their distribution against real twins (default 0)")
    p.add_argument("--split", choices=["test", "val", "all"], help="split of the checkpoint's data (default test)")
    p.add_argument("--data", help="evaluate this records file whole (any format load_records reads)")
    p.add_argument("--sampler", choices=["ddpm", "ddim", "dpm_solver"], help="sampler (default: the checkpoint's)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the checkpoint's)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="patient-bootstrap resamples (default 1000)")
    p.add_argument("--batch_size", type=int, default=256, help="recordings per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=0, help="seed of reconstruction noise, generation and bootstrap")
    p.add_argument("--reconstruction_samples", type=int, metavar="N",
                   help="recordings noised and reconstructed at each diffusion time (default 512)")
    p.add_argument("overrides", nargs="*", help="data.* dotlist overrides, e.g. data.synthetic.n_patients=300")


# --------------------------------------------------------------------------- infer


def _jsonable(obj):
    """Plain JSON types: NumPy → Python, NaN → null, ±inf → "inf"/"-inf" (strict JSON has neither)."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def _write_json(path, obj) -> str:
    from .io import atomic_write_text

    atomic_write_text(path, json.dumps(_jsonable(obj), indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    return str(path)


def _write_npz(path, arrays: dict) -> str:
    import numpy as np

    from .io import atomic_open

    clean = {}
    for key, value in arrays.items():
        arr = np.asarray(value)
        clean[key] = arr.astype(str) if arr.dtype == object else arr
    with atomic_open(path, "wb") as fh:
        np.savez_compressed(fh, **clean)
    return str(path)


def _num(value, fmt: str = ".1f", unit: str = "") -> str:
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unknown"
    if isinstance(value, float) and math.isinf(value):
        return "none" if value > 0 else "-inf"
    return f"{value:{fmt}}{unit}"


def _interval(d: dict, lo: str, hi: str, fmt: str) -> str:
    return f" [{_num(d[lo], fmt)}, {_num(d[hi], fmt)}]" if lo in d else ""


def format_prediction(result: dict) -> str:
    """One predict_single-structured result as a clinician reads it."""
    c, thr, v, w = result["classification"], result["threshold"], result["peaks"]["V"], result["waveform"]
    inputs = ", ".join(f"{k} {_num(val, 'g')}" for k, val in result["inputs"].items())
    level = f"{result['confidence']['level']:.0%} " if "confidence" in result else ""
    lines = [f"inputs:            {inputs}"]
    cls = f"hearing loss:      {c['predicted_category']} (p = {c['probabilities'][c['predicted_category']]:.2f})"
    if "prediction_set" in c:
        cls += f"; {level}set {{{', '.join(c['prediction_set'])}}}"
    lines.append(cls)
    lines.append(f"threshold:         {_num(thr['value'])} dB nHL{_interval(thr, 'lo', 'hi', '.1f')}; "
                 f"no response p = {thr['no_response_probability']:.2f}")
    lines.append(f"wave V:            present p = {v['present_probability']:.2f}; latency "
                 f"{_num(v['latency_ms'], '.2f')} ms{_interval(v, 'latency_ms_lo', 'latency_ms_hi', '.2f')}; "
                 f"amplitude {_num(v['amplitude_uv'], '.3f')} µV{_interval(v, 'amplitude_uv_lo', 'amplitude_uv_hi', '.3f')}")
    if w["source"] == "generated":
        lines.append(f"waveform:          generated ({w['sampler']}, {w['steps']} steps, seed {w['seed']}), "
                     f"analysed by the heads")
    else:
        lines.append("waveform:          measured")
    if level:
        lines.append(f"intervals:         {level}split-conformal (calibrated on the validation split)")
    return "\n".join(lines)


def _format_batch(rows: list[dict], limit: int = 20) -> str:
    from collections import Counter

    lines = [f"{'row':>4}  {'id':12} {'category':14} {'p':>5} {'threshold dB':>12} {'V p':>5} {'V lat ms':>8}"]
    for i, r in enumerate(rows[:limit]):
        ident = r.get("id") or (f"{r['patient_id']}/{r['ear']}" if "patient_id" in r else "")
        c = r["classification"]
        lines.append(f"{i:>4}  {ident[:12]:12} {c['predicted_category']:14} "
                     f"{c['probabilities'][c['predicted_category']]:5.2f} {_num(r['threshold']['value']):>12} "
                     f"{r['peaks']['V']['present_probability']:5.2f} {_num(r['peaks']['V']['latency_ms'], '.2f'):>8}")
    if len(rows) > limit:
        lines.append(f"… {len(rows) - limit} more rows in the output file")
    counts = Counter(r["classification"]["predicted_category"] for r in rows)
    lines.append("predicted:         " + ", ".join(f"{k} {n}" for k, n in counts.most_common()))
    return "\n".join(lines)


def _load_recordings(inference, paths):
    import numpy as np

    from .data.readers import load_records
    from .data.records import ABRRecords

    table = {"polarity": inference.cfg.data.table.polarity,
             "max_sweeps_rejected": inference.cfg.data.table.max_sweeps_rejected}
    parts = [load_records(p, table_options=table, signal_length=inference.signal_length,
                          sampling_rate_hz=inference.sampling_rate_hz) for p in paths]
    if len(parts) == 1:
        return parts[0]
    # Files from different readers share the core fields; per-reader metadata is kept where every
    # file has it (SmartEP and EARNDB halves, for instance), since rows of one table must align.
    units = [p.extra.get("level_unit") for p in parts]
    if any(u is not None for u in units):  # keep each file's level unit (dB peSPL next to dB nHL)
        parts = [p if u is not None else p.replace(extra={**p.extra, "level_unit": np.full(len(p), "dB nHL")})
                 for p, u in zip(parts, units)]
    common = set.intersection(*(set(p.extra) for p in parts))
    return ABRRecords.concatenate([p.replace(extra={k: v for k, v in p.extra.items() if k in common})
                                   for p in parts])


def _generate(inference, args, out_dir) -> int:
    import numpy as np

    from .data.records import ABRRecords, empty_rows

    conditions = {k: v for k, v in (("age_years", args.age), ("intensity_db", args.intensity),
                                    ("stimulus_rate_hz", args.rate), ("fmp", args.fmp),
                                    ("hearing_loss", args.hearing_loss), ("threshold_db", args.threshold))
                  if v is not None}
    waveforms, used = inference.generate(args.generate, conditions, sampler=args.sampler, steps=args.steps,
                                         guidance=args.guidance, seed=args.seed)
    n = len(waveforms)
    rows = empty_rows(n)
    rows["patient_id"] = np.array([f"generated-{i}" for i in range(n)])
    for name in ("age_years", "intensity_db", "stimulus_rate_hz", "fmp", "hearing_loss", "threshold_db"):
        rows[name] = used[name]
    records = ABRRecords(signal=waveforms, sampling_rate_hz=inference.sampling_rate_hz,
                         signal_unit=inference.signal_unit, source=f"abrflow generate ({inference.checkpoint_path})",
                         extra={"seed": used["seed"]}, **rows).validate()
    path = records.save(out_dir / "generated.npz")
    p2p = waveforms.max(axis=1) - waveforms.min(axis=1)
    sampler = args.sampler if args.sampler is not None else inference.cfg.diffusion.sampler
    steps = args.steps if args.steps is not None else inference.cfg.diffusion.sampling_steps
    guidance = args.guidance if args.guidance is not None else inference.cfg.diffusion.guidance_scale
    summary = {"n": n, "checkpoint": str(inference.checkpoint_path), "sampler": sampler, "steps": steps,
               "guidance": guidance, "first_seed": int(used["seed"][0]), "signal_unit": inference.signal_unit,
               "conditions": {k: (np.unique(v).tolist() if v.dtype.kind in "iu" else  # float32: 7 digits
                                  [float(f"{np.nanmin(v):.7g}"), float(f"{np.nanmax(v):.7g}")]
                                  if np.isfinite(v).any() else "unknown")
                              for k, v in used.items() if k != "seed"},
               "peak_to_peak": {"median": float(np.median(p2p)), "p5": float(np.percentile(p2p, 5)),
                                "p95": float(np.percentile(p2p, 95))},
               "output": str(path)}
    _write_json(out_dir / "generated_summary.json", summary)
    unit = "µV" if inference.signal_unit == "uV" else "z"
    print(f"generated {n} waveforms ({sampler}, {steps} steps, guidance {guidance:g}, seeds from "
          f"{summary['first_seed']})")
    for key, value in summary["conditions"].items():
        print(f"  {key:18s} {value}")
    print(f"  peak-to-peak      median {summary['peak_to_peak']['median']:.3f} {unit} "
          f"(5–95%: {summary['peak_to_peak']['p5']:.3f}–{summary['peak_to_peak']['p95']:.3f})")
    print(f"waveforms:         {path}")
    print(f"summary:           {out_dir / 'generated_summary.json'}")
    return 0


def _series(inference, paths, out_dir, fmt: str) -> int:
    from .inference.series import format_series, series_report
    from .inference.tables import series_tables, write_csv

    results = series_report(inference, _load_recordings(inference, paths))
    members = getattr(inference, "members", None)  # an ABREnsemble
    if members:
        print(f"model: ensemble of {len(members)} checkpoints (wave-V probabilities averaged)")
    print(format_series(results))
    if fmt == "json":
        written = [_write_json(out_dir / "thresholds.json", results)]
    else:
        ears, levels = series_tables(results)
        if fmt == "npz":
            written = [_write_npz(out_dir / "thresholds.npz",
                                  {**ears, **{f"li_{k}": v for k, v in levels.items()}})]
        else:
            written = [write_csv(out_dir / "thresholds.csv", ears),
                       write_csv(out_dir / "latency_intensity.csv", levels)]
    print(f"results:           {', '.join(written)}")
    return 0


def _cmd_threshold(args: argparse.Namespace) -> int:
    """`abrflow threshold PATH…`: `inference.py --series` under a clinic's name for it."""
    from pathlib import Path

    from .inference.ensemble import load_model

    inference = load_model(args.checkpoint, device=args.device, backend=args.backend, onnx_model=args.onnx_model)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _series(inference, args.paths, out_dir, args.output_format or "json")


def _cmd_infer(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .inference.ensemble import load_model
    from .inference.inputs import is_static_input_file, read_static_inputs

    single = any(v is not None for v in (args.age, args.intensity, args.rate, args.fmp))
    if args.input_file is None and args.generate is None and not args.series and not single:
        raise AbrflowError("nothing to do: give --age/--intensity/--rate/--fmp (single patient), --input_file, "
                           "--generate N or --series PATH")
    if single and (args.input_file is not None or args.series):
        raise AbrflowError("--age/--intensity/--rate/--fmp describe one patient; they cannot be combined with "
                           "--input_file or --series (with --generate they set the generation conditions)")
    if (args.hearing_loss is not None or args.threshold is not None or args.guidance is not None) \
            and args.generate is None:
        raise AbrflowError("--hearing_loss, --threshold and --guidance are generation conditions: use them with "
                           "--generate N")
    measured = args.series or (args.input_file is not None and not is_static_input_file(args.input_file))
    if measured and any(v is not None for v in (args.seed, args.sampler, args.steps)):
        raise AbrflowError("--seed, --sampler and --steps control generation; recordings are analysed as measured")
    if args.generate is not None and (args.confidence or args.output_format is not None):
        raise AbrflowError("--generate writes waveforms as .npz records with a JSON summary; --confidence and "
                           "--output apply to predictions")
    if args.batch_size < 1:
        raise AbrflowError(f"--batch_size must be ≥ 1, got {args.batch_size}")
    if len(args.checkpoint) > 1 and not args.series:
        raise AbrflowError(f"{len(args.checkpoint)} checkpoints form an ensemble, which serves --series only; "
                           "give one --checkpoint for predictions, recordings and generation")
    if args.backend != "torch" and not measured:
        raise AbrflowError("--backend onnx runs the analysis of recorded waveforms (--input_file recordings, "
                           "--series); generation and static-input predictions run in PyTorch")
    inference = load_model(args.checkpoint, device=args.device, batch_size=args.batch_size,
                           confidence_level=args.confidence_level, backend=args.backend,
                           onnx_model=args.onnx_model)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fmt = args.output_format or "json"
    if args.generate is not None:
        return _generate(inference, args, out_dir)
    if args.series:
        return _series(inference, args.series, out_dir, fmt)
    kwargs = {"seed": args.seed, "sampler": args.sampler, "steps": args.steps}
    if single:
        arrays = inference.predict_arrays([[args.age, args.intensity, args.rate, args.fmp]], args.confidence,
                                          **kwargs)
    elif is_static_input_file(args.input_file):
        static = read_static_inputs(args.input_file)
        arrays = inference.predict_arrays(static.values, args.confidence, **kwargs)
        if static.ids is not None:
            import numpy as np

            arrays["id"] = np.array(static.ids, dtype=str)
    else:
        arrays = inference.predict_arrays(_load_recordings(inference, [args.input_file]), args.confidence)
    rows = inference.to_rows(arrays)
    print(format_prediction(rows[0]) if single else _format_batch(rows))
    name = "prediction" if single else "predictions"
    if fmt == "json":
        path = _write_json(out_dir / f"{name}.json", rows[0] if single else rows)
    elif fmt == "csv":
        from .inference.tables import prediction_table, write_csv

        path = write_csv(out_dir / f"{name}.csv", prediction_table(arrays, inference.class_names, inference.time_ms))
    else:
        path = _write_npz(out_dir / f"{name}.npz", {**arrays, "time_ms": inference.time_ms,
                                                     "class_names": list(inference.class_names)})
    print(f"results:           {path}")
    return 0


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="run the analysis of recorded waveforms in PyTorch or ONNX Runtime (default torch)")
    p.add_argument("--onnx_model", help="with --backend onnx: model.onnx or model.int8.onnx written by `abrflow export` "
                                        "for this checkpoint (default: export one on the fly)")


def add_infer_arguments(p: argparse.ArgumentParser) -> None:
    """inference.py's flags (the seed document's, plus series, generation conditions and output)."""
    p.add_argument("--checkpoint", required=True, nargs="+", metavar="PATH",
                   help="trained checkpoint (best_model.pt); with --series, several form an ensemble whose "
                        "wave-V probabilities are averaged")
    p.add_argument("--age", type=float, help="age in years (single patient, or a generation condition)")
    p.add_argument("--intensity", type=float, help="stimulus intensity in dB nHL")
    p.add_argument("--rate", type=float, help="stimulus rate in stimuli/s")
    p.add_argument("--fmp", type=float, help="Fmp quality figure")
    p.add_argument("--confidence", action="store_true", help="add calibrated intervals and the class prediction set")
    p.add_argument("--confidence_level", type=float, help="nominal interval coverage (default: the calibration's, 0.9)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--input_file", help="static inputs (.json/.csv/.npz: age, intensity, rate, fmp) or "
                                           "recordings in any format load_records reads")
    mode.add_argument("--generate", type=int, metavar="N",
                      help="generate N waveforms; conditions not given by --age/--intensity/--rate/--fmp/"
                           "--hearing_loss/--threshold default to an infant (0.5 y) with normal hearing at 60 dB nHL, "
                           "33.1/s, Fmp and threshold unknown")
    mode.add_argument("--series", nargs="+", metavar="PATH",
                      help="recordings of level series: per-ear threshold and wave V latency–intensity function")
    p.add_argument("--class", "--hearing_loss", dest="hearing_loss",
                   help="generation condition: hearing-loss class (NORMAL, SNİK/SENSORINEURAL, … or 0–4; "
                        "-1 = unconditional)")
    p.add_argument("--threshold", type=float, help="generation condition: threshold dB nHL (inf = no response)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale for --generate")
    p.add_argument("--output", "--output_format", dest="output_format", choices=["json", "npz", "csv"],
                   help="results file format (default json)")
    add_backend_arguments(p)
    p.add_argument("--output_dir", default="outputs/inference", help="where results are written")
    p.add_argument("--sampler", choices=["ddpm", "ddim", "dpm_solver"], help="sampler (default: the checkpoint's)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the checkpoint's)")
    p.add_argument("--seed", type=int, help="seed of the generated waveforms (row i uses seed + i)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--batch_size", type=int, default=256, help="recordings per forward pass")


# --------------------------------------------------------------------------- export


def _cmd_export(args: argparse.Namespace) -> int:
    from .inference.export import TOLERANCE, export_onnx

    report = export_onnx(args.checkpoint, args.output_dir, int8=args.int8, time_it=not args.no_timing)
    heads, den = report["heads"], report["denoiser"]
    print(f"analysis graph:    {heads['path']}")
    print(f"  max |ONNX − eager| {heads['max_abs_diff_all']:.2e} over {report['n_check_rows']} recordings "
          f"({heads['nan_static_rows']} with unknown static inputs; tolerance {TOLERANCE:g})")
    print(f"denoiser graph:    {den['path']}")
    print(f"  max |ONNX − eager| {den['max_abs_diff']:.2e}")
    if "int8" in report:
        q = report["int8"]
        worst = max(q["max_abs_diff_vs_fp32"].items(), key=lambda kv: kv[1])
        print(f"int8 graph:        {q['path']} ({q['size_bytes']['int8'] / 1e6:.2f} MB vs "
              f"{q['size_bytes']['fp32'] / 1e6:.2f} MB)")
        print(f"  vs fp32: largest max |diff| {worst[1]:.3g} ({worst[0]}); class calls agree "
              f"{q['class_agreement']:.1%}, wave V calls agree {q['v_present_agreement']:.1%}")
    if "latency_ms_p50_batch1" in report:
        print("latency p50, one recording: " + ", ".join(f"{k} {v:.2f} ms"
                                                         for k, v in report["latency_ms_p50_batch1"].items()))
    print(f"manifest:          {report['manifest']}")
    return 0


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
    out = p_sim.add_mutually_exclusive_group()
    out.add_argument("--out", help="write the records to this .npz")
    out.add_argument("--out_dir", help="write a memory-mapped records directory (for cohorts beyond memory; "
                                       "train with data.source=file data.dataset_path=DIR)")
    p_sim.add_argument("--chunk_patients", type=int, default=2000,
                       help="with --out_dir: patients simulated and written at a time (default 2000)")
    p_sim.add_argument("--config", help="YAML file for the time base and simulator options")
    p_sim.add_argument("--json", action="store_true", help="print the summary as JSON")
    p_sim.add_argument("overrides", nargs="*", help="dotlist overrides")
    p_sim.set_defaults(func=_cmd_simulate)

    p_train = sub.add_parser("train", help="train the model (same flags as train.py)")
    add_train_arguments(p_train)
    p_train.set_defaults(func=_cmd_train)

    p_eval = sub.add_parser("evaluate", help="evaluate a checkpoint: metrics.json, report.txt, figures "
                                             "(same flags as evaluate.py)")
    add_evaluate_arguments(p_eval)
    p_eval.set_defaults(func=_cmd_evaluate)

    p_infer = sub.add_parser("infer", help="predict, analyse recordings, estimate thresholds, generate "
                                           "(same flags as inference.py)")
    add_infer_arguments(p_infer)
    p_infer.set_defaults(func=_cmd_infer)

    p_export = sub.add_parser("export", help="export the model to ONNX (+ int8) and check it against eager")
    p_export.add_argument("--checkpoint", required=True, help="trained checkpoint")
    p_export.add_argument("--output_dir", required=True, help="folder for model.onnx, denoiser.onnx, export.json")
    p_export.add_argument("--int8", action="store_true", help="also write model.int8.onnx (dynamic quantisation)")
    p_export.add_argument("--no_timing", action="store_true", help="skip the latency measurement")
    p_export.set_defaults(func=_cmd_export)

    p_thr = sub.add_parser("threshold", help="per-ear threshold from level series (model, classical methods, "
                                             "split-half replication) and the wave V latency–intensity function")
    p_thr.add_argument("paths", nargs="+", metavar="PATH", help="recordings: files or folders any reader takes "
                                                                "(Eclipse CSV, SmartEP folder, EARNDB folder, .npz, …)")
    p_thr.add_argument("--checkpoint", required=True, nargs="+", metavar="PATH",
                       help="trained checkpoint (best_model.pt); several form an ensemble whose wave-V "
                            "probabilities are averaged (e.g. runs of one recipe with different seeds)")
    p_thr.add_argument("--output_dir", default="outputs/thresholds", help="where results are written")
    p_thr.add_argument("--output", "--output_format", dest="output_format", choices=["json", "npz", "csv"],
                       help="results file format (default json)")
    p_thr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    add_backend_arguments(p_thr)
    p_thr.set_defaults(func=_cmd_threshold)
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
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # always one line
        print(f"abrflow: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("abrflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
