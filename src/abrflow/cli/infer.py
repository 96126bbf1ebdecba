"""`abrflow infer` / inference.py: predictions for static inputs, analysis of recordings, level series,
and generation (the seed document's flags, plus series, generation conditions and output formats)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import AbrflowError
from .common import write_json, write_npz
from .format import format_batch, format_prediction
from .threshold import add_backend_arguments, load_recordings, report_series


def _generate(inference, args, out_dir) -> int:
    from ..inference.generated import generated_records, generation_summary

    conditions = {k: v for k, v in (("age_years", args.age), ("intensity_db", args.intensity),
                                    ("stimulus_rate_hz", args.rate), ("fmp", args.fmp),
                                    ("hearing_loss", args.hearing_loss), ("threshold_db", args.threshold))
                  if v is not None}
    sampler, steps, guidance = inference.sampling(args.sampler, args.steps, args.guidance)
    waveforms, used = inference.generate(args.generate, conditions, sampler=sampler, steps=steps,
                                         guidance=guidance, seed=args.seed)
    path = generated_records(inference, waveforms, used).save(out_dir / "generated.npz")
    summary = {**generation_summary(inference, waveforms, used, sampler=sampler, steps=steps, guidance=guidance),
               "output": str(path)}
    write_json(out_dir / "generated_summary.json", summary)
    unit = "µV" if inference.signal_unit == "uV" else "z"
    print(f"generated {summary['n']} waveforms ({sampler}, {steps} steps, guidance {guidance:g}, seeds from "
          f"{summary['first_seed']})")
    for key, value in summary["conditions"].items():
        print(f"  {key:18s} {value}")
    print(f"  peak-to-peak      median {summary['peak_to_peak']['median']:.3f} {unit} "
          f"(5–95%: {summary['peak_to_peak']['p5']:.3f}–{summary['peak_to_peak']['p95']:.3f})")
    print(f"waveforms:         {path}")
    print(f"summary:           {out_dir / 'generated_summary.json'}")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..inference.ensemble import load_model
    from ..inference.inputs import is_static_input_file, read_static_inputs

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
        return report_series(inference, args.series, out_dir, fmt)
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
        arrays = inference.predict_arrays(load_recordings(inference, [args.input_file]), args.confidence)
    rows = inference.to_rows(arrays)
    print(format_prediction(rows[0]) if single else format_batch(rows))
    name = "prediction" if single else "predictions"
    if fmt == "json":
        path = write_json(out_dir / f"{name}.json", rows[0] if single else rows)
    elif fmt == "csv":
        from ..inference.tables import prediction_table, write_csv

        path = write_csv(out_dir / f"{name}.csv", prediction_table(arrays, inference.class_names, inference.time_ms))
    else:
        path = write_npz(out_dir / f"{name}.npz", {**arrays, "time_ms": inference.time_ms,
                                                     "class_names": list(inference.class_names)})
    print(f"results:           {path}")
    return 0


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


def add_parser(sub) -> None:
    p_infer = sub.add_parser("infer", help="predict, analyse recordings, estimate thresholds, generate "
                                           "(same flags as inference.py)")
    add_infer_arguments(p_infer)
    p_infer.set_defaults(func=run)

