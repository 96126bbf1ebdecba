"""A checkpoint rebuilt for inference: the network (EMA weights, eval mode, on CPU) and everything
``ABRInference`` needs from the checkpoint alone. Reading, format and version checks are the
checkpoint contract's (:mod:`abrflow.checkpoint`); this module only turns its contents into objects.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import check_metadata, model_weights, read_checkpoint
from ..clinical.calibration import Calibration
from ..config import from_dict
from ..data.normalization import NormalizationStats
from ..data.records import STATIC_FIELDS
from ..errors import AbrflowError, CheckpointError
from ..models.unet import HierarchicalUNet, build_model


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


def _weights(path: Path, ckpt: dict) -> dict:
    """The network's weights of the file, or a CheckpointError when it holds none."""
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: no 'state_dict' with the model weights")
    weights = model_weights(state)
    if not weights:
        raise CheckpointError(f"{path}: state_dict holds no 'model.' weights")
    return weights


def load_checkpoint(path: str | os.PathLike) -> LoadedCheckpoint:
    """Read, check and rebuild (model on CPU in eval mode) or raise CheckpointError saying why."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    meta = check_metadata(path, ckpt)
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
