"""The checkpoint contract: format version, the metadata a checkpoint carries, the one safe loader,
atomic save and attaching calibration. Every reader and writer of ``.pt`` files goes through here.

A checkpoint is self-contained (DESIGN.md §1): Lightning's training state plus ``ckpt["abrflow"]``,
plain types only: the format, the package version, the resolved config and its hash, normalisation
and target statistics, class names, static input names, time base and (after training) the
calibration fitted on the validation split.

Safety: ``torch.load(weights_only=True)`` only. A file that needs code execution to load (a pickle
naming a callable with a GLOBAL opcode) is refused with a :class:`CheckpointError` and nothing in it
runs; there is no retry with ``weights_only=False``. Writes are atomic (temporary file in the same
folder, fsync, rename): a run killed at any instant leaves the old complete file or the new one.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .errors import CheckpointError
from .io import atomic_open

#: The checkpoint format this version writes and reads.
CHECKPOINT_FORMAT = "abrflow.checkpoint/2"  # 2: heatmap heads for waves I, III and V (issue 19)
#: Keys of ``ckpt["abrflow"]`` every checkpoint must carry (``calibration`` is added after training).
REQUIRED_METADATA: tuple[str, ...] = ("format", "package_version", "config", "normalization", "target_stats",
                                      "class_names", "static_fields", "time_base")


def metadata(*, config: dict, config_hash: str, normalization: dict | None, target_stats: Mapping,
             class_names, static_fields, signal_length: int, sampling_rate_hz: float,
             stimulus: Mapping | None = None) -> dict:
    """``ckpt["abrflow"]``: everything inference needs besides the weights, as weights_only-safe types.
    ``stimulus``: the stimulus types and level units the training recordings were played with
    (``{"types": [...], "level_units": [...]}``; a checkpoint without it was trained on clicks in dB nHL)."""
    out = {
        "format": CHECKPOINT_FORMAT,
        "package_version": __version__,
        "config": config,
        "config_hash": config_hash,
        "normalization": normalization,
        "target_stats": {str(k): [float(x) for x in v] for k, v in target_stats.items()},
        "class_names": [str(c) for c in class_names],
        "static_fields": [str(f) for f in static_fields],
        "time_base": {"signal_length": int(signal_length), "sampling_rate_hz": float(sampling_rate_hz)},
    }
    if stimulus is not None:
        out["stimulus"] = {"types": [str(t) for t in stimulus["types"]],
                           "level_units": [str(u) for u in stimulus["level_units"]]}
    return out


def version_tuple(text: str) -> tuple[int, ...]:
    """``"0.1.0"`` → (0, 1, 0); non-digits in a part are ignored (``"1.2rc1"`` → (1, 21))."""
    parts = []
    for piece in str(text).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _refusal(path: Path, exc: pickle.UnpicklingError) -> CheckpointError:
    """The error for a file ``weights_only`` would not load: refused where the pickle names a callable
    (a GLOBAL opcode: loading it would run code), corrupted otherwise."""
    unsupported = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln), "")
    if "weights only load failed" in str(exc).lower() and "global" in unsupported.lower():
        return CheckpointError(
            f"{path}: refused: the file holds objects that only load with weights_only=False, i.e. by running "
            f"code from the file ({unsupported}); abrflow checkpoints never need that — do not load this file")
    return CheckpointError(f"{path}: corrupted or not a checkpoint ({exc})")


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """The checkpoint at ``path`` as a dict, loaded weights-only, or a CheckpointError saying why not."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint is not a file: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupted or not a PyTorch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: not an abrflow checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    return dict(ckpt)


def check_metadata(path: str | os.PathLike, ckpt: Mapping) -> dict:
    """``ckpt["abrflow"]`` checked: this format, every required key, not written by a newer abrflow
    (it may hold fields this version would silently ignore)."""
    meta = ckpt.get("abrflow")
    if not isinstance(meta, Mapping):
        raise CheckpointError(f"{path}: not an abrflow checkpoint (no 'abrflow' metadata section); "
                              "train with `abrflow train` / train.py")
    meta = dict(meta)
    fmt = meta.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {fmt!r} is not supported; abrflow {__version__} "
                              f"reads {CHECKPOINT_FORMAT!r}")
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: abrflow metadata lacks {missing}")
    written = str(meta["package_version"])
    if version_tuple(written) > version_tuple(__version__):
        raise CheckpointError(f"{path}: written by abrflow {written}, newer than the installed {__version__}; "
                              "upgrade abrflow to read it")
    return meta


def model_weights(state_dict: Mapping) -> dict[str, torch.Tensor]:
    """The network's weights from a LightningModule state_dict (its "model." prefix, torch.compile's
    "_orig_mod." too, removed)."""
    return {k[len("model."):].replace("_orig_mod.", "", 1): v for k, v in state_dict.items()
            if k.startswith("model.")}


def save_checkpoint(ckpt: Mapping, path: str | os.PathLike) -> None:
    """Write ``ckpt`` atomically (temporary file in the same folder, fsync, rename)."""
    ckpt = ckpt if isinstance(ckpt, dict) else dict(ckpt)
    with atomic_open(path, "wb") as fh:
        torch.save(ckpt, fh)


def attach_calibration(path: str | os.PathLike, calibration: Mapping, ckpt: dict | None = None) -> None:
    """Store ``calibration`` (``Calibration.to_dict()``) as ``ckpt["abrflow"]["calibration"]`` of the file
    at ``path`` and re-save it atomically; an interruption leaves the trained checkpoint intact.
    ``ckpt``: the file's content when the caller has read it already."""
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    ckpt.setdefault("abrflow", {})["calibration"] = dict(calibration)
    save_checkpoint(ckpt, path)
