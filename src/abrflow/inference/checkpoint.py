"""Load an abrflow checkpoint safely and rebuild everything inference needs from it alone.

Safety: ``torch.load(weights_only=True)`` only; a file that needs code execution to load (a pickle
with arbitrary globals) is refused, never retried with ``weights_only=False``.
Compatibility: the stored ``format`` must be the one this version reads, and a checkpoint written
by a newer abrflow is refused (it may hold fields this version would silently ignore).
"""

from __future__ import annotations

import math
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..config import from_dict
from ..data.normalization import NormalizationStats
from ..data.records import STATIC_FIELDS
from ..errors import AbrflowError, CheckpointError
from ..evaluation.calibration import Calibration
from ..models.unet import HierarchicalUNet, build_model

#: The checkpoint format this version reads (written by ``abrflow.training.module.CHECKPOINT_FORMAT``).
SUPPORTED_FORMAT = "abrflow.checkpoint/1"
_REQUIRED = ("format", "package_version", "config", "normalization", "target_stats", "class_names",
             "static_fields", "time_base")


@dataclass
class LoadedCheckpoint:
    path: Path
    cfg: object  # the validated DictConfig
    model: HierarchicalUNet  # on CPU, eval mode, EMA weights
    stats: NormalizationStats
    target_stats: dict[str, tuple[float, float]]
    class_names: tuple[str, ...]
    static_fields: tuple[str, ...]
    signal_length: int
    sampling_rate_hz: float
    calibration: Calibration | None
    metadata: dict


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _read(path: Path) -> dict:
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint is not a file: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsupported = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln), "")
        if "weights only load failed" in str(exc).lower() and "global" in unsupported.lower():
            first = unsupported  # a GLOBAL opcode: the pickle names a callable to run
            raise CheckpointError(
                f"{path}: refused: the file holds objects that only load with weights_only=False, i.e. by "
                f"running code from the file{f' ({first})' if first else ''}; abrflow checkpoints never need "
                "that — do not load this file") from None
        raise CheckpointError(f"{path}: corrupted or not a checkpoint ({exc})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupted or not a PyTorch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: not an abrflow checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    return dict(ckpt)


def _metadata(path: Path, ckpt: dict) -> dict:
    meta = ckpt.get("abrflow")
    if not isinstance(meta, Mapping):
        raise CheckpointError(f"{path}: not an abrflow checkpoint (no 'abrflow' metadata section); "
                              "train with `abrflow train` / train.py")
    meta = dict(meta)
    fmt = meta.get("format")
    if fmt != SUPPORTED_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {fmt!r} is not supported; abrflow {__version__} "
                              f"reads {SUPPORTED_FORMAT!r}")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: abrflow metadata lacks {missing}")
    written = str(meta["package_version"])
    if _version_tuple(written) > _version_tuple(__version__):
        raise CheckpointError(f"{path}: written by abrflow {written}, newer than the installed {__version__}; "
                              "upgrade abrflow to read it")
    return meta


def _weights(path: Path, ckpt: dict) -> dict[str, torch.Tensor]:
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: no 'state_dict' with the model weights")
    weights = {}
    for key, value in state.items():
        if key.startswith("model."):
            weights[key[len("model."):].replace("_orig_mod.", "", 1)] = value  # torch.compile prefix
    if not weights:
        raise CheckpointError(f"{path}: state_dict holds no 'model.' weights")
    return weights


def load_checkpoint(path: str | os.PathLike) -> LoadedCheckpoint:
    """Read, check and rebuild (model on CPU in eval mode) or raise CheckpointError saying why."""
    path = Path(path)
    ckpt = _read(path)
    meta = _metadata(path, ckpt)
    try:
        cfg = from_dict(meta["config"])
        stats = NormalizationStats.from_dict(meta["normalization"])
        target_stats = {str(k): (float(v[0]), float(v[1])) for k, v in dict(meta["target_stats"]).items()}
        time_base = dict(meta["time_base"])
        signal_length, sampling_rate_hz = int(time_base["signal_length"]), float(time_base["sampling_rate_hz"])
        class_names = tuple(str(c) for c in meta["class_names"])
        static_fields = tuple(str(f) for f in meta["static_fields"])
    except (AbrflowError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{path}: stored metadata is invalid ({exc})") from None
    if signal_length != cfg.data.signal_length or not math.isclose(sampling_rate_hz, cfg.data.sampling_rate_hz):
        raise CheckpointError(f"{path}: stored time base {time_base} disagrees with its config")
    if len(class_names) != cfg.data.n_classes:
        raise CheckpointError(f"{path}: {len(class_names)} class names for a {cfg.data.n_classes}-class model")
    if static_fields != STATIC_FIELDS:
        raise CheckpointError(f"{path}: static inputs {list(static_fields)}; this version feeds {list(STATIC_FIELDS)}")
    model = build_model(cfg)
    try:
        model.load_state_dict(_weights(path, ckpt), strict=True)
        if target_stats:
            model.set_target_stats(**target_stats)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored model config "
                              f"({str(exc).splitlines()[0]})") from None
    model.eval()
    calibration = None
    if meta.get("calibration") is not None:
        try:
            calibration = Calibration.from_dict(meta["calibration"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: stored calibration is invalid ({exc})") from None
    return LoadedCheckpoint(path=path, cfg=cfg, model=model, stats=stats, target_stats=target_stats,
                            class_names=class_names, static_fields=static_fields, signal_length=signal_length,
                            sampling_rate_hz=sampling_rate_hz, calibration=calibration, metadata=meta)
