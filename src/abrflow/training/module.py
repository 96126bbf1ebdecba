"""LightningModule: one step trains both the denoiser and the clinical heads.

The batch is doubled: the first half is the recording noised at a random timestep (diffusion
loss, with its class/threshold as generation conditions), the second half is the clean recording
at t = 0 with no label conditions (the heads' task losses) — one forward pass for both.
"""

from __future__ import annotations

import logging
import math

import lightning as L
import torch
from torchmetrics import MeanAbsoluteError
from torchmetrics.classification import BinaryF1Score, MulticlassF1Score

from ..checkpoint import metadata
from ..config import config_hash, to_dict
from ..data.records import CLASS_NAMES, STATIC_FIELDS
from ..diffusion import ABRDiffusion
from ..errors import NonFiniteLossError
from ..models.heads import WAVE_KEYS
from ..models.unet import build_model
from .augment import augment_batch
from .augment import enabled as augmentation_enabled
from .losses import MultiTaskLoss
from .lr_scheduler import ABRScheduler, build_scheduler

log = logging.getLogger(__name__)
VALIDATION_SEED = 12345


def threshold_condition(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Threshold in dB as the model's condition: a number, +inf for no response, NaN if unknown."""
    nan = torch.full_like(batch["threshold_db"], float("nan"))
    inf = torch.full_like(batch["threshold_db"], float("inf"))
    no_resp = torch.where((batch["no_response_mask"] > 0) & (batch["no_response"] > 0), inf, nan)
    return torch.where(batch["threshold_mask"] > 0, batch["threshold_db"], no_resp)


class ABRLightningModule(L.LightningModule):
    """Model + diffusion + multi-task loss; checkpoints carry everything inference needs."""

    def __init__(self, cfg, model=None, *, normalization: dict | None = None,
                 target_stats: dict | None = None, class_counts=None, stimulus: dict | None = None):
        super().__init__()
        self.cfg = cfg
        self.model = model if model is not None else build_model(cfg)
        self.diffusion = ABRDiffusion.from_config(cfg.diffusion)
        self.loss_fn = MultiTaskLoss(cfg.loss, class_counts, sample_ms=1000.0 / float(cfg.data.sampling_rate_hz))
        self.normalization = normalization
        self.stimulus = stimulus
        self.target_stats = {k: tuple(map(float, v)) for k, v in (target_stats or {}).items()}
        if self.target_stats:
            self.model.set_target_stats(**self.target_stats)
        n_classes = cfg.data.n_classes
        self.val_v_f1 = BinaryF1Score()
        self.val_latency_mae = MeanAbsoluteError()
        self.val_macro_f1 = MulticlassF1Score(num_classes=n_classes, average="macro", ignore_index=-1)
        self.val_threshold_mae = MeanAbsoluteError()
        self._val_generator: torch.Generator | None = None
        # --overfit_batch: the same noise and timesteps every step, and the loss of each step kept.
        self.fixed_train_noise_seed: int | None = None
        self.recorded_train_losses: list[float] = []
        self.nonfinite_steps_skipped = 0

    # ------------------------------------------------------------------ one step
    def _noise(self, x0: torch.Tensor, generator: torch.Generator | None):
        batch = x0.shape[0]
        t = self.diffusion.sample_timesteps(batch, generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return t, noise

    def shared_step(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None,
                    head_batch: dict[str, torch.Tensor] | None = None):
        """Loss of one batch. ``head_batch`` (an augmented copy) is what the heads see and are scored
        on; the diffusion half always learns from ``batch`` itself."""
        head_batch = batch if head_batch is None else head_batch
        x0 = batch["signal"]
        b = x0.shape[0]
        t, noise = self._noise(x0, generator)
        x_t = self.diffusion.add_noise(x0, noise, t)
        null_class = torch.full_like(batch["hearing_loss"], -1)
        null_thr = torch.full_like(batch["threshold_db"], float("nan"))
        out = self.model(
            torch.cat([x_t, head_batch["signal"]]), torch.cat([t, torch.zeros_like(t)]), torch.cat([batch["static"]] * 2),
            hearing_loss=torch.cat([batch["hearing_loss"], null_class]),
            threshold_db=torch.cat([threshold_condition(batch), null_thr]))
        heads = out.heads[b:]
        terms = self.loss_fn.task_terms(heads, head_batch, self.model.heads.normalise)
        terms["diffusion"] = self.loss_fn.diffusion_term(
            out.sample[:b], self.diffusion.target(x0, noise, t), self.diffusion.loss_weight(t))
        return self.loss_fn.combine(terms), terms, heads

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # Randomness of a step (noise, timesteps, dropout, condition masking) depends only on
        # (seed, step, rank): a resumed run continues exactly as an uninterrupted one would.
        seed = int(self.cfg.project.seed)
        torch.manual_seed((seed * 1_000_003 + self.global_step * 7919 + self.global_rank) % (2**63 - 1))

    def training_step(self, batch, batch_idx):
        generator = None
        if self.fixed_train_noise_seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(self.fixed_train_noise_seed)
        head_batch = None
        aug = self.cfg.training.augmentation
        if augmentation_enabled(aug) and self.fixed_train_noise_seed is None:
            head_batch = augment_batch(batch, aug, float(self.cfg.data.sampling_rate_hz))
        loss, terms, _ = self.shared_step(batch, generator, head_batch)
        if self._skip_nonfinite(loss, terms, batch_idx):
            return None  # Lightning skips backward and the optimiser step
        if self.fixed_train_noise_seed is not None:
            self.recorded_train_losses.append(float(loss.detach()))
        b = batch["signal"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=b)
        return loss

    def _skip_nonfinite(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], batch_idx: int) -> bool:
        """A NaN/inf loss (any term, or their weighted sum): ``training.nonfinite_loss`` = ``stop`` raises
        NonFiniteLossError naming the step and the term (before backward: the weights, and every
        checkpoint written so far, stay as they were); ``skip`` drops the step with a warning.
        Under DDP every process takes the same decision (a step skipped on one rank only would hang)."""
        names = [*terms, "total (weighted sum)"]
        values = torch.stack([v.detach().float().reshape(()) for v in (*terms.values(), loss)])
        finite = torch.isfinite(values)
        local_bad = not bool(finite.all())
        strategy = getattr(self._trainer, "strategy", None)
        bad = strategy.reduce_boolean_decision(local_bad, all=False) if strategy is not None else local_bad
        if not bad:
            return False
        if local_bad:
            i = int((~finite).nonzero()[0])
            value = float(values[i])
            what = f"loss term {names[i]!r} is {'nan' if math.isnan(value) else value}"
            others = [n for n, ok in zip(names[i + 1:-1], finite[i + 1:-1].tolist()) if not ok]
            if others:
                what += f" (also non-finite: {', '.join(map(repr, others))})"
        else:
            what = "a loss term is non-finite on another process"
        where = f"at step {self.global_step} (epoch {self.current_epoch + 1}, batch {batch_idx})"
        if self.cfg.training.nonfinite_loss == "skip":
            self.nonfinite_steps_skipped += 1
            log.warning("%s %s: step skipped (training.nonfinite_loss = skip; %d skipped so far)", what, where,
                        self.nonfinite_steps_skipped)
            return True
        raise NonFiniteLossError(f"{what} {where}: training stopped before the update, so the weights and the "
                                 "checkpoints already written are the last good ones (training.nonfinite_loss = "
                                 "skip drops such steps instead)")

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        # Same noise and timesteps every validation: epochs are compared on equal terms.
        self._val_generator = torch.Generator(device=self.device).manual_seed(VALIDATION_SEED)

    def validation_step(self, batch, batch_idx):
        loss, terms, heads = self.shared_step(batch, self._val_generator)
        b = batch["signal"].shape[0]
        self.log("val/loss", loss, prog_bar=True, batch_size=b, sync_dist=True)
        for name, value in terms.items():
            self.log(f"val/{name}", value, batch_size=b, sync_dist=True)
        self.val_v_f1.update(torch.sigmoid(heads.v_present_logit), batch["wave_present"][:, WAVE_KEYS.index("v")].long())
        # Updated on every batch, even with no marked row (an empty update): under DDP every process
        # must reach the same metric syncs, whatever labels its shard happens to hold. All waves' marks.
        marked = batch["wave_latency_mask"] > 0
        predicted = torch.stack([heads.wave(key, "latency_ms") for key in WAVE_KEYS], dim=1)
        self.val_latency_mae.update(predicted[marked], batch["wave_latency_ms"][marked])
        self.val_macro_f1.update(heads.hearing_loss_logits, batch["hearing_loss"])
        known = batch["threshold_mask"] > 0
        self.val_threshold_mae.update(heads.threshold_db[known], batch["threshold_db"][known])

    def on_validation_epoch_end(self) -> None:
        for name, metric in (("val/v_f1", self.val_v_f1), ("val/latency_mae_ms", self.val_latency_mae),
                             ("val/macro_f1", self.val_macro_f1), ("val/threshold_mae_db", self.val_threshold_mae)):
            if metric.update_count:
                value = metric.compute()  # gathered over all processes: the same value on every rank
                if torch.isfinite(value):  # NaN: no labelled row in the whole split
                    self.log(name, value, sync_dist=True)
            metric.reset()
        monitored = self.trainer.callback_metrics.get(self.cfg.training.early_stopping.monitor)
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, ABRScheduler) and monitored is not None:
                config.scheduler.report(float(monitored))

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        opt_cfg = self.cfg.training.optimizer
        params = [p for p in self.parameters() if p.requires_grad]
        # On the CPU torch's default Adam(W) loops over ~10 ops per tensor; the fused kernel updates
        # all at once (a training step ~15-25% faster on 2 cores, benchmarks/train_speed.py). Not under
        # Lightning's mixed precision, which refuses to clip the gradients of a fused optimizer.
        fused = all(p.device.type == "cpu" and p.is_floating_point() for p in params) and (
            "mixed" not in str(self.trainer.precision))
        if opt_cfg.type == "adamw":
            optimizer = torch.optim.AdamW(params, lr=opt_cfg.learning_rate, weight_decay=opt_cfg.weight_decay,
                                          betas=tuple(opt_cfg.betas), fused=fused or None)
        elif opt_cfg.type == "adam":
            optimizer = torch.optim.Adam(params, lr=opt_cfg.learning_rate, weight_decay=opt_cfg.weight_decay,
                                         betas=tuple(opt_cfg.betas), fused=fused or None)
        else:
            optimizer = torch.optim.SGD(params, lr=opt_cfg.learning_rate, weight_decay=opt_cfg.weight_decay,
                                        momentum=opt_cfg.betas[0], nesterov=True)
        epochs = max(1, int(self.trainer.max_epochs or self.cfg.training.epochs))
        total = self.trainer.estimated_stepping_batches
        steps_per_epoch = max(1, math.ceil(total / epochs)) if math.isfinite(total) else 1
        sched = build_scheduler(optimizer, self.cfg.training.scheduler, steps_per_epoch=steps_per_epoch,
                                epochs=epochs, learning_rate=opt_cfg.learning_rate,
                                monitor=self.cfg.training.early_stopping.monitor)
        return {"optimizer": optimizer, "lr_scheduler": sched}

    # ------------------------------------------------------------------ checkpoint
    def abrflow_metadata(self) -> dict:
        """Everything ABRInference needs besides the weights, as plain (weights_only-safe) types."""
        return metadata(config=to_dict(self.cfg), config_hash=config_hash(self.cfg),
                        normalization=self.normalization, target_stats=self.target_stats,
                        class_names=CLASS_NAMES, static_fields=STATIC_FIELDS,
                        signal_length=self.cfg.data.signal_length, sampling_rate_hz=self.cfg.data.sampling_rate_hz,
                        stimulus=self.stimulus)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["abrflow"] = self.abrflow_metadata()
