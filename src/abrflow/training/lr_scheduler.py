"""Learning-rate schedules, each with linear warmup, built from ``training.scheduler``.

Step-based schedules (cosine warm restarts, one-cycle, abr, constant) advance every optimiser
step, so short runs still see the whole shape; reduce-on-plateau advances once per validation.
Epoch-valued settings (T_0, warmup_epochs) are converted to steps with the loader's length.
The predecessor's scheduler never stepped (DESIGN.md §9): a test records every curve.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingWarmRestarts,
    LambdaLR,
    LinearLR,
    LRScheduler,
    OneCycleLR,
    ReduceLROnPlateau,
    SequentialLR,
)

WARMUP_START_FACTOR = 1e-3


class WarmupReduceLROnPlateau(ReduceLROnPlateau):
    """Reduce-on-plateau after a linear warmup of ``warmup_epochs`` validations."""

    def __init__(self, optimizer: Optimizer, warmup_epochs: int, **kwargs):
        super().__init__(optimizer, **kwargs)
        self.warmup_epochs = int(warmup_epochs)
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.validations = 0
        if self.warmup_epochs > 0:
            self._set_factor(WARMUP_START_FACTOR)

    def _set_factor(self, factor: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def step(self, metrics, epoch=None):  # noqa: D102
        self.validations += 1
        if self.validations <= self.warmup_epochs:
            self._set_factor(min(1.0, self.validations / self.warmup_epochs))
            return
        super().step(metrics)


class ABRScheduler(LRScheduler):
    """Linear warmup, cosine decay to a floor, and a restart of the cosine after a plateau.

    The restart (``restart_patience`` validations without improvement) starts a new cosine over
    the remaining steps from the base rate: a kick out of a flat region late in training.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr: float,
                 restart_patience: int | None = None, last_epoch: int = -1):
        self.warmup_steps = max(0, int(warmup_steps))
        self.total_steps = max(1, int(total_steps))
        self.min_lr = float(min_lr)
        self.restart_patience = restart_patience
        self.cycle_start = self.warmup_steps
        self.best = math.inf
        self.bad_validations = 0
        self.restarts = 0
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step < self.warmup_steps:
            factor = WARMUP_START_FACTOR + (1 - WARMUP_START_FACTOR) * step / self.warmup_steps
            return [base * factor for base in self.base_lrs]
        span = max(1, self.total_steps - self.cycle_start)
        progress = min(1.0, (step - self.cycle_start) / span)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return [self.min_lr + (base - self.min_lr) * cosine for base in self.base_lrs]

    def report(self, metric: float) -> None:
        """Called after each validation with the monitored value (lower is better)."""
        if self.restart_patience is None or not math.isfinite(metric):
            return
        if metric < self.best:
            self.best, self.bad_validations = metric, 0
            return
        self.bad_validations += 1
        if self.bad_validations >= self.restart_patience and self.last_epoch >= self.warmup_steps:
            self.cycle_start = self.last_epoch
            self.bad_validations = 0
            self.restarts += 1

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}


def _with_warmup(optimizer: Optimizer, main: LRScheduler, warmup_steps: int) -> LRScheduler:
    if warmup_steps <= 0:
        return main
    warm = LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, end_factor=1.0, total_iters=warmup_steps)
    return SequentialLR(optimizer, [warm, main], milestones=[warmup_steps])


def build_scheduler(optimizer: Optimizer, sched_cfg, *, steps_per_epoch: int, epochs: int,
                    learning_rate: float, monitor: str = "val/loss") -> dict | None:
    """A Lightning ``lr_scheduler_config`` dict for the configured type (None for no scheduler)."""
    steps_per_epoch = max(1, int(steps_per_epoch))
    total_steps = max(1, steps_per_epoch * int(epochs))
    warmup_steps = min(int(round(sched_cfg.warmup_epochs * steps_per_epoch)), max(total_steps - 1, 0))
    kind = sched_cfg.type
    if kind == "reduce_on_plateau":
        sched = WarmupReduceLROnPlateau(optimizer, warmup_epochs=sched_cfg.warmup_epochs, mode="min",
                                        factor=sched_cfg.factor, patience=sched_cfg.patience,
                                        min_lr=sched_cfg.min_lr)
        return {"scheduler": sched, "interval": "epoch", "frequency": 1, "monitor": monitor, "strict": True}
    if kind == "cosine_annealing_warm_restarts":
        main = CosineAnnealingWarmRestarts(optimizer, T_0=max(1, sched_cfg.T_0 * steps_per_epoch),
                                           T_mult=sched_cfg.T_mult, eta_min=sched_cfg.eta_min)
        sched = _with_warmup(optimizer, main, warmup_steps)
    elif kind == "one_cycle":
        max_lr = sched_cfg.max_lr if sched_cfg.max_lr is not None else learning_rate
        pct = warmup_steps / total_steps if warmup_steps > 0 else sched_cfg.pct_start
        sched = OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps + 1, pct_start=min(max(pct, 1e-3), 0.99),
                           anneal_strategy="cos", cycle_momentum=False)
    elif kind == "abr":
        sched = ABRScheduler(optimizer, warmup_steps=warmup_steps, total_steps=total_steps,
                             min_lr=sched_cfg.min_lr, restart_patience=sched_cfg.restart_patience)
    elif kind == "constant":
        sched = _with_warmup(optimizer, LambdaLR(optimizer, lambda _: 1.0), warmup_steps)
    else:
        raise ValueError(f"unknown scheduler type {kind!r}")
    return {"scheduler": sched, "interval": "step", "frequency": 1}
