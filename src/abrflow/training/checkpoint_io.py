"""Checkpoint files for Lightning: written atomically, read with ``weights_only=True`` only.

Lightning's own writer stages the bytes in the system temp folder and moves them over without an
fsync, so a crash can leave a half-copied ``latest_model.pt`` (or a copy across file systems).
Here every checkpoint (best, latest, periodic) is a temporary file in the checkpoint's own folder,
fsynced, then renamed over the old one: a run killed at any instant leaves the previous complete
checkpoint or the new complete one. Reading (``--resume``) never unpickles code: a checkpoint that
needs ``weights_only=False`` is refused with a ``CheckpointError`` and nothing in it runs.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..errors import CheckpointError
from ..io import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with an atomic local write and a weights-only read."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        with atomic_open(path, "wb") as fh:
            torch.save(checkpoint, fh)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        try:
            checkpoint = torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "weights only load failed" in str(exc).lower():
                raise CheckpointError(
                    f"{path}: refused: the file holds objects that only load with weights_only=False, i.e. by "
                    "running code from the file; abrflow checkpoints never need that — do not load this file"
                ) from None
            raise CheckpointError(f"{path}: corrupted or not a checkpoint ({exc})") from None
        except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise CheckpointError(f"{path}: corrupted or not a PyTorch checkpoint ({type(exc).__name__}: "
                                  f"{first})") from None
        if not isinstance(checkpoint, dict):
            raise CheckpointError(f"{path}: not a training checkpoint (holds a {type(checkpoint).__name__})")
        return checkpoint

    def remove_checkpoint(self, path) -> None:
        Path(os.fspath(path)).unlink(missing_ok=True)
