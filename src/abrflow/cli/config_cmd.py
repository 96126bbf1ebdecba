"""`abrflow config show`: the resolved configuration and its hash."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ..config import config_hash, load_config, to_yaml

    cfg = load_config(args.config, args.overrides)
    print(to_yaml(cfg), end="")
    print(f"# config hash: {config_hash(cfg)}")
    return 0


def add_parser(sub) -> None:
    from .common import Parser

    p_cfg = sub.add_parser("config", help="inspect the resolved configuration")
    cfg_sub = p_cfg.add_subparsers(dest="config_command", required=True, parser_class=Parser)
    p_show = cfg_sub.add_parser("show", help="print the resolved YAML and its hash")
    p_show.add_argument("--config", help="YAML file (default: built-in defaults)")
    p_show.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. training.epochs=3")
    p_show.set_defaults(func=run)
