"""`abrflow threshold` (and `inference.py --series`): per ear, the model's threshold with its interval,
the classical methods' and split-half replication's, and the wave V latency–intensity function."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import write_json, write_npz
from .format import format_series


def load_recordings(model, paths):
    """The files at ``paths`` as one set of records on the model's time base (clinic-table filters from
    the model's config)."""
    from ..data.readers import load_many

    table = {"polarity": model.cfg.data.table.polarity, "max_sweeps_rejected": model.cfg.data.table.max_sweeps_rejected}
    return load_many(paths, table_options=table, signal_length=model.signal_length,
                     sampling_rate_hz=model.sampling_rate_hz)


def report_series(inference, paths, out_dir, fmt: str) -> int:
    from ..inference.series import series_report
    from ..inference.tables import series_tables, write_csv

    results = series_report(inference, load_recordings(inference, paths))
    members = getattr(inference, "members", None)  # an ABREnsemble
    if members:
        print(f"model: ensemble of {len(members)} checkpoints (wave-V probabilities averaged)")
    print(format_series(results))
    if fmt == "json":
        written = [write_json(out_dir / "thresholds.json", results)]
    else:
        ears, levels = series_tables(results)
        if fmt == "npz":
            written = [write_npz(out_dir / "thresholds.npz",
                                  {**ears, **{f"li_{k}": v for k, v in levels.items()}})]
        else:
            written = [write_csv(out_dir / "thresholds.csv", ears),
                       write_csv(out_dir / "latency_intensity.csv", levels)]
    print(f"results:           {', '.join(written)}")
    return 0


def run(args: argparse.Namespace) -> int:
    """`abrflow threshold PATH…`: `inference.py --series` under a clinic's name for it."""
    from ..inference.ensemble import load_model

    inference = load_model(args.checkpoint, device=args.device, backend=args.backend, onnx_model=args.onnx_model)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return report_series(inference, args.paths, out_dir, args.output_format or "json")


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="run the analysis of recorded waveforms in PyTorch or ONNX Runtime (default torch)")
    p.add_argument("--onnx_model", help="with --backend onnx: model.onnx or model.int8.onnx written by `abrflow export` "
                                        "for this checkpoint (default: export one on the fly)")


def add_parser(sub) -> None:
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
    p_thr.set_defaults(func=run)
