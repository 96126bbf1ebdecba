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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
