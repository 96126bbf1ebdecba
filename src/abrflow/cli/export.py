"""`abrflow export`: the model as ONNX (+ int8), checked against eager PyTorch."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ..inference.export import TOLERANCE, export_onnx
    from ..inference.predictor import ABRInference

    report = export_onnx(ABRInference(args.checkpoint, device="cpu"), args.output_dir, int8=args.int8, time_it=not args.no_timing)
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


def add_parser(sub) -> None:
    p_export = sub.add_parser("export", help="export the model to ONNX (+ int8) and check it against eager")
    p_export.add_argument("--checkpoint", required=True, help="trained checkpoint")
    p_export.add_argument("--output_dir", required=True, help="folder for model.onnx, denoiser.onnx, export.json")
    p_export.add_argument("--int8", action="store_true", help="also write model.int8.onnx (dynamic quantisation)")
    p_export.add_argument("--no_timing", action="store_true", help="skip the latency measurement")
    p_export.set_defaults(func=run)

