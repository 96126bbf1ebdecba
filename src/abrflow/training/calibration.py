"""CalibrationCallback: at the end of fit, calibrate the saved models' uncertainty on the validation split.

For each of best_model.pt and latest_model.pt, the weights that file holds (EMA when EMA was on)
are run over the whole validation split at t = 0; temperatures and split-conformal scores
(``abrflow.clinical.calibration``) are fitted and attached to that file
(``abrflow.checkpoint.attach_calibration``: re-saved atomically, so an interrupted calibration
leaves the trained checkpoint intact). Periodic checkpoint_epoch_N.pt
files are resume points and stay uncalibrated.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from ..checkpoint import attach_calibration, model_weights, read_checkpoint
from ..clinical.calibration import DEFAULT_LEVEL, TEMPERATURE_BOUNDS, Calibration, calibrate_heads
from ..data.schema import WAVE_KEYS
from ..models.unet import build_model

log = logging.getLogger(__name__)


def _targets(batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Labels of a datamodule batch back in units with NaN/inf where the masks say so."""
    def np_(name):
        return batch[name].detach().float().cpu().numpy().astype(np.float64)

    thr = np.where(np_("threshold_mask") > 0, np_("threshold_db"), np.nan)
    thr = np.where((np_("no_response_mask") > 0) & (np_("no_response") > 0), np.inf, thr)
    out = {"hearing_loss": batch["hearing_loss"].cpu().numpy().astype(np.int64), "threshold_db": thr}
    for j, w in enumerate(WAVE_KEYS):
        out[f"{w}_present"] = np.where(np_("wave_present_mask")[:, j] > 0, np_("wave_present")[:, j], np.nan)
        out[f"{w}_latency_ms"] = np.where(np_("wave_latency_mask")[:, j] > 0, np_("wave_latency_ms")[:, j], np.nan)
        out[f"{w}_amplitude_uv"] = np.where(np_("wave_amplitude_mask")[:, j] > 0,
                                            np_("wave_amplitude_uv")[:, j], np.nan)
    return out


@torch.inference_mode()
def collect_heads(model: torch.nn.Module, loader, device: torch.device) -> tuple[dict, dict]:
    """Head outputs (t = 0, no label conditions) and labels over a loader of datamodule batches."""
    was_training = model.training
    model.eval()
    outputs: dict[str, list] = {}
    targets: dict[str, list] = {}
    try:
        for batch in loader:
            x = batch["signal"].to(device)
            t = torch.zeros(x.shape[0], dtype=torch.long, device=device)
            heads = model(x, t, batch["static"].to(device)).heads
            for k, v in heads.to_dict().items():
                outputs.setdefault(k, []).append(v.float().cpu().numpy().astype(np.float64))
            for k, v in _targets(batch).items():
                targets.setdefault(k, []).append(v)
    finally:
        model.train(was_training)
    if not outputs:
        return {}, {}
    return ({k: np.concatenate(v) for k, v in outputs.items()}, {k: np.concatenate(v) for k, v in targets.items()})


class CalibrationCallback(Callback):
    """Writes ``abrflow["calibration"]`` into the best and latest checkpoints at ``on_fit_end``."""

    def __init__(self, level: float = DEFAULT_LEVEL):
        if not 0.0 < level < 1.0:
            raise ValueError(f"calibration level must be in (0, 1), got {level}")
        self.level = float(level)
        self.calibrated: dict[str, Calibration] = {}

    @staticmethod
    def _val_loader(trainer: L.Trainer):
        dm = getattr(trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "full_dataloader"):
            return dm.full_dataloader("val")  # the whole split: not limited by limit_val_batches, not sharded
        if dm is not None and hasattr(dm, "val_dataloader"):
            return dm.val_dataloader()  # the whole split, not limited by limit_val_batches
        loaders = trainer.val_dataloaders
        if isinstance(loaders, (list, tuple)):
            return loaders[0] if loaders else None
        return loaders

    @staticmethod
    def _checkpoint_paths(trainer: L.Trainer) -> list[Path]:
        paths: list[Path] = []
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint):
                for p in (cb.best_model_path, cb.last_model_path):
                    if p and Path(p).is_file() and Path(p).resolve() not in paths:
                        paths.append(Path(p).resolve())
        return paths

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._calibrate(trainer, pl_module)
        trainer.strategy.barrier("abrflow-calibration")

    def _calibrate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        paths = self._checkpoint_paths(trainer)
        loader = self._val_loader(trainer) if paths else None
        if not paths or loader is None:
            log.warning("calibration skipped: %s", "no checkpoint written" if not paths else "no validation data")
            return
        previous: tuple[dict, Calibration] | None = None
        for path in paths:
            ckpt = read_checkpoint(path)
            weights = model_weights(ckpt["state_dict"])
            if previous is not None and weights.keys() == previous[0].keys() and all(
                    torch.equal(weights[k], previous[0][k]) for k in weights):
                calibration = previous[1]  # best and latest hold the same weights
            else:
                calibration = self._fit(pl_module, weights, loader, path.name)
                if calibration is None:
                    return
                previous = (weights, calibration)
            attach_calibration(path, calibration.to_dict(), ckpt)
            self.calibrated[str(path)] = calibration

    def _fit(self, pl_module: L.LightningModule, weights: dict, loader, name: str) -> Calibration | None:
        model = build_model(pl_module.cfg)
        model.load_state_dict(weights)
        outputs, targets = collect_heads(model.to(pl_module.device), loader, pl_module.device)
        if not outputs:
            log.warning("calibration skipped: the validation split is empty")
            return None
        calibration = calibrate_heads(outputs, targets, level=self.level, split="val")
        log.info("calibrated %s on %d validation recordings: temperature %s, %d%% quantiles %s", name,
                 calibration.n_recordings, calibration.temperatures, round(100 * self.level),
                 {k: round(calibration.quantile(k), 3) for k in calibration.scores})
        lo, hi = TEMPERATURE_BOUNDS
        at_bound = [k for k, t in calibration.temperatures.items() if t is not None and not lo * 1.01 < t < hi / 1.01]
        if at_bound:
            log.warning("%s: temperature of %s at the search bound %s: those logits carry almost no information "
                        "(an undertrained model, or EMA weights of a run much shorter than 1/(1 − decay) steps)",
                        name, at_bound, TEMPERATURE_BOUNDS)
        return calibration
