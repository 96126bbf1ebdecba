"""abrflow from the command line: the entry point that dispatches to one module per command.

Every user error (AbrflowError: bad file, config, argument) becomes a one-line message on stderr
and exit code 2; anything else is a bug and keeps its traceback. ``cli/`` is the only place that
parses arguments and prints for people.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..errors import AbrflowError
from . import config_cmd, evaluate, export, infer, simulate, threshold, train
from .common import EXIT_USAGE, Parser

#: What ``abrflow --help`` opens with: what the tool does for its user.
DESCRIPTION = (
    "abrflow: Auditory Brainstem Response (ABR) analysis with a conditional diffusion model. "
    "Train it on the built-in synthetic cohort or your own recordings, evaluate it beside classical "
    "methods, mark wave V and estimate each ear's hearing threshold with confidence intervals from "
    "clinical exports (Interacoustics, IHS SmartEP, spreadsheets, PhysioNet), generate realistic "
    "waveforms, and export the model to ONNX.")
EPILOG = ("examples: abrflow simulate --patients 200 --out cohort.npz | "
          "abrflow train --config configs/demo.yaml --experiment demo | "
          "abrflow threshold ../shared/real/ihs-smartep-human/P6 --checkpoint checkpoints/demo/best_model.pt")


def build_parser() -> Parser:
    parser = Parser(prog="abrflow", description=DESCRIPTION, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in (config_cmd, simulate, train, evaluate, infer, export, threshold):
        command.add_parser(sub)
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
