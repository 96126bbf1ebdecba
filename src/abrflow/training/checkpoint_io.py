"""Checkpoint files for Lightning, through the checkpoint contract (:mod:`abrflow.checkpoint`).

Lightning's own writer stages the bytes in the system temp folder and moves them over without an
fsync, so a crash can leave a half-copied ``latest_model.pt`` (or a copy across file systems).
Here every checkpoint (best, latest, periodic) is written by ``save_checkpoint`` (a temporary file
in the checkpoint's own folder, fsynced, then renamed over the old one) and read (``--resume``) by
``read_checkpoint``, weights-only: a checkpoint that needs code to load is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..checkpoint import read_checkpoint, save_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with an atomic local write and a weights-only read."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        save_checkpoint(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path, map_location=map_location or "cpu")

    def remove_checkpoint(self, path) -> None:
        Path(os.fspath(path)).unlink(missing_ok=True)
