"""ABRTrainer: builds the Lightning Trainer, callbacks and loggers from the config, then fits.

Experiment layout (the seed document's): ``checkpoints/NAME/`` (best_model.pt, latest_model.pt,
checkpoint_epoch_N.pt), ``logs/NAME/`` (TensorBoard, W&B, train.log), ``outputs/NAME/`` (resolved
config, its hash, per-epoch history).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    WeightAveraging,
)
from torch.optim.swa_utils import get_ema_multi_avg_fn

from ..clinical.levels import TrainedStimulus
from ..config import config_hash, to_yaml
from ..data.datamodule import ABRDataModule
from ..errors import AbrflowError
from ..io import atomic_write_text
from .calibration import CalibrationCallback
from .checkpoint_io import AtomicCheckpointIO
from .module import ABRLightningModule

log = logging.getLogger(__name__)


class PtCheckpoint(ModelCheckpoint):
    """ModelCheckpoint writing the seed document's names: best_model.pt and latest_model.pt."""

    FILE_EXTENSION = ".pt"
    CHECKPOINT_NAME_LAST = "latest_model"


class PeriodicCheckpoint(Callback):
    """checkpoint_epoch_N.pt every N completed epochs (N counted from 1, as people count)."""

    def __init__(self, dirpath: Path, every_n_epochs: int):
        self.dirpath = Path(dirpath)
        self.every = int(every_n_epochs)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = trainer.current_epoch + 1
        if trainer.sanity_checking or done % self.every:
            return
        trainer.save_checkpoint(self.dirpath / f"checkpoint_epoch_{done}.pt", weights_only=False)  # full state


class HistoryWriter(Callback):
    """outputs/NAME/history.json: one entry of logged metrics per validation (rank 0)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.history: list[dict] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        entry = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step}
        for k, v in trainer.callback_metrics.items():
            entry[k] = float(v)
        for i, opt in enumerate(trainer.optimizers):
            entry[f"lr/{i}"] = float(opt.param_groups[0]["lr"])
        self.history.append(entry)
        atomic_write_text(self.path, json.dumps(self.history, indent=1))

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))


@dataclass
class RunPaths:
    checkpoints: Path
    logs: Path
    outputs: Path

    @classmethod
    def for_experiment(cls, root: str | Path, name: str) -> RunPaths:
        root = Path(root)
        return cls(root / "checkpoints" / name, root / "logs" / name, root / "outputs" / name)

    def create(self) -> None:
        for p in (self.checkpoints, self.logs, self.outputs):
            p.mkdir(parents=True, exist_ok=True)


def resolve_accelerator(device: str) -> str:
    return {"auto": "auto", "cpu": "cpu", "cuda": "gpu", "gpu": "gpu", "mps": "mps"}[device]


def resolve_precision(hardware_cfg, accelerator: str) -> str:
    """bf16/fp16 mixed precision on GPU when asked; on CPU fp32 unless `precision` is set explicitly."""
    if hardware_cfg.precision:
        return str(hardware_cfg.precision)
    on_gpu = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    if hardware_cfg.mixed_precision and on_gpu:
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _add_file_log(path: Path, level: str) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    for name in ("abrflow", "lightning.pytorch"):
        logging.getLogger(name).addHandler(handler)
    return handler


class ABRTrainer:
    """Train from a config; model and loaders are built from the config when omitted.

    ``ABRTrainer(config=config, model=model, train_loader=train_loader, val_loader=val_loader,
    device=device).train()`` as the seed document shows. Loaders given without a data module must
    come from an ``ABRDataModule`` (their dataset carries the normalisation statistics that the
    checkpoint must store).
    """

    def __init__(self, config, model=None, train_loader=None, val_loader=None, device: str | None = None, *,
                 experiment: str = "default", datamodule: ABRDataModule | None = None,
                 overfit_batches: int = 0, extra_callbacks: list[Callback] | None = None):
        self.cfg = config
        if device is not None:
            from ..config import set_value

            self.cfg = set_value(self.cfg, "hardware.device", str(device), "device argument")
        self.experiment = experiment
        self.paths = RunPaths.for_experiment(self.cfg.project.output_root, experiment)
        self.overfit_batches = int(overfit_batches)
        self.extra_callbacks = list(extra_callbacks or [])
        if (train_loader is None) != (val_loader is None):
            raise AbrflowError("give both train_loader and val_loader, or neither")
        self.train_loader, self.val_loader = train_loader, val_loader
        if datamodule is None and train_loader is None:
            datamodule = ABRDataModule(self.cfg.data, seed=self.cfg.project.seed)
        self.datamodule = datamodule
        self._model = model
        self.module: ABRLightningModule | None = None
        self.trainer: L.Trainer | None = None
        self.checkpoint_callback: PtCheckpoint | None = None

    # ------------------------------------------------------------------ building
    def _data_statistics(self) -> tuple[dict, dict, object]:
        if self.datamodule is not None:
            self.datamodule.setup("fit")
            dm = self.datamodule
            return dm.stats.to_dict(), dm.target_stats(), dm.class_counts()
        ds = self.train_loader.dataset
        meta = getattr(ds, "metadata", None)
        if meta is None:
            raise AbrflowError("train_loader's dataset carries no normalisation statistics; build the loaders "
                               "with abrflow.data.datamodule.ABRDataModule (or pass datamodule=)")
        return meta["normalization"], meta["target_stats"], meta["class_counts"]

    def build_module(self) -> ABRLightningModule:
        L.seed_everything(self.cfg.project.seed, workers=True, verbose=False)
        normalization, target_stats, class_counts = self._data_statistics()
        stimulus = (TrainedStimulus.of(self.datamodule.split_records("train")).as_dict()
                    if self.datamodule is not None else None)
        self.module = ABRLightningModule(self.cfg, self._model, normalization=normalization,
                                         target_stats=target_stats, class_counts=class_counts, stimulus=stimulus)
        if self.overfit_batches:
            self.module.fixed_train_noise_seed = int(self.cfg.project.seed)
        if self.cfg.hardware.compile:
            self.module.model = torch.compile(self.module.model, backend=self.cfg.hardware.compile_backend)
        return self.module

    def _loggers(self) -> list:
        lg = self.cfg.logging
        loggers = []
        if lg.use_tensorboard:
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(save_dir=str(self.paths.logs), name="tensorboard", version=""))
        if lg.use_wandb:
            try:
                import wandb  # noqa: F401
                from lightning.pytorch.loggers import WandbLogger
            except ImportError as exc:
                raise AbrflowError("logging.use_wandb is true but wandb is not installed: "
                                   "pip install 'abrflow[wandb]'") from exc
            loggers.append(WandbLogger(project=lg.wandb_project, name=self.experiment, save_dir=str(self.paths.logs),
                                       offline=lg.wandb_offline))
        if not loggers:
            from lightning.pytorch.loggers import CSVLogger

            loggers.append(CSVLogger(save_dir=str(self.paths.logs), name="csv", version=""))
        return loggers

    def _callbacks(self) -> list[Callback]:
        t = self.cfg.training
        monitor = t.early_stopping.monitor
        self.checkpoint_callback = PtCheckpoint(
            dirpath=str(self.paths.checkpoints), filename="best_model", monitor=monitor, mode=t.early_stopping.mode,
            save_top_k=1, save_last=True, enable_version_counter=False, auto_insert_metric_name=False)
        callbacks: list[Callback] = [
            self.checkpoint_callback,
            PeriodicCheckpoint(self.paths.checkpoints, t.checkpoint_every_n_epochs),
            HistoryWriter(self.paths.outputs / "history.json"),
            LearningRateMonitor(logging_interval="step"),
        ]
        if t.early_stopping.enabled and not self.overfit_batches:
            callbacks.append(EarlyStopping(monitor=monitor, mode=t.early_stopping.mode,
                                           patience=t.early_stopping.patience, min_delta=t.early_stopping.min_delta))
        if t.ema.enabled and not self.overfit_batches:
            # EMA after every optimiser step as one fused lerp over all weights: Lightning's
            # EMAWeightAveraging updates tensor by tensor (~23 ms a step on 2 cores, a tenth of the step;
            # benchmarks/train_speed.py reports the before/after).
            callbacks.append(WeightAveraging(use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(t.ema.decay)))
        callbacks.append(CalibrationCallback())
        return callbacks + self.extra_callbacks

    def build_trainer(self) -> L.Trainer:
        t, hw, lg = self.cfg.training, self.cfg.hardware, self.cfg.logging
        accelerator = resolve_accelerator(hw.device)
        kwargs = {}
        if t.limit_train_batches is not None:
            kwargs["limit_train_batches"] = t.limit_train_batches
        if t.limit_val_batches is not None:
            kwargs["limit_val_batches"] = t.limit_val_batches
        if self.overfit_batches:
            kwargs["overfit_batches"] = self.overfit_batches
            kwargs["limit_val_batches"] = 0
        self.trainer = L.Trainer(
            accelerator=accelerator, devices=hw.devices, strategy=hw.strategy, num_nodes=hw.num_nodes,
            precision=resolve_precision(hw, accelerator), max_epochs=t.epochs,
            gradient_clip_val=t.gradient_clip, accumulate_grad_batches=t.accumulation_steps,
            callbacks=self._callbacks(), logger=self._loggers(), log_every_n_steps=lg.log_every_n_steps,
            enable_progress_bar=lg.progress_bar, default_root_dir=str(self.paths.logs),
            num_sanity_val_steps=0, enable_model_summary=False, plugins=[AtomicCheckpointIO()],
            # ABRDataModule shards its own loaders across DDP ranks (each row once, exact resume);
            # loaders passed in directly get Lightning's DistributedSampler.
            use_distributed_sampler=self.datamodule is None, **kwargs)
        return self.trainer

    # ------------------------------------------------------------------ running
    def save_run_config(self) -> str:
        digest = config_hash(self.cfg)
        atomic_write_text(self.paths.outputs / "config.yaml", f"# config hash: {digest}\n" + to_yaml(self.cfg))
        atomic_write_text(self.paths.outputs / "config_hash.txt", digest + "\n")
        return digest

    def train(self, resume: str | os.PathLike | None = None) -> dict:
        """Fit; returns the paths written and the final logged metrics."""
        self.paths.create()
        handler = _add_file_log(self.paths.logs / "train.log", self.cfg.logging.log_level)
        try:
            digest = self.save_run_config()
            module = self.build_module()
            trainer = self.build_trainer()
            if resume is not None and not Path(resume).is_file():
                raise AbrflowError(f"--resume checkpoint not found: {resume}")
            if self.datamodule is not None:
                trainer.fit(module, datamodule=self.datamodule, ckpt_path=str(resume) if resume else None,
                            weights_only=True)
            else:
                trainer.fit(module, self.train_loader, self.val_loader, ckpt_path=str(resume) if resume else None,
                            weights_only=True)
        finally:
            for name in ("abrflow", "lightning.pytorch"):
                logging.getLogger(name).removeHandler(handler)
            handler.close()
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        return {
            "experiment": self.experiment,
            "config_hash": digest,
            "epochs_completed": trainer.current_epoch,
            "global_step": trainer.global_step,
            "best_model": self.checkpoint_callback.best_model_path or None,
            "latest_model": str(self.paths.checkpoints / "latest_model.pt"),
            "metrics": metrics,
            "paths": {k: str(v) for k, v in vars(self.paths).items()},
        }
