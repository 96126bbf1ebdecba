"""The ``abrflow`` command (``python -m abrflow.cli``): one module per command, one shared formatter."""

from .main import build_parser, main
from .train import train_config_from_args

__all__ = ["build_parser", "main", "train_config_from_args"]
