"""What every command shares: the argument parser that exits 2, logging set-up, output files."""

from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line message (its default too, made explicit)."""

    def error(self, message: str):  # noqa: D401
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def configure_logging(level: str) -> None:
    import logging

    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def write_npz(path, arrays: dict) -> str:
    import numpy as np

    from ..io import atomic_open

    clean = {}
    for key, value in arrays.items():
        arr = np.asarray(value)
        clean[key] = arr.astype(str) if arr.dtype == object else arr
    with atomic_open(path, "wb") as fh:
        np.savez_compressed(fh, **clean)
    return str(path)


def write_json(path, obj) -> str:
    """Strict JSON for people and programs (``abrflow.io.write_json``); returns the path written."""
    from ..io import write_json as _write

    return str(_write(path, obj))
