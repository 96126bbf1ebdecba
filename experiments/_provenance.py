"""What an experiment's JSON says about the checkpoints it read."""

from __future__ import annotations

from pathlib import Path


def checkpoint_provenance(paths: list[str]) -> tuple[list[Path], dict]:
    """(the checkpoint paths, their provenance): one path, or several read as one ensemble."""
    if len(paths) > 1:
        return [Path(p) for p in paths], {"source": "given", "ensemble": [str(p) for p in paths]}
    return [Path(paths[0])], {"source": "given", "path": str(paths[0])}
