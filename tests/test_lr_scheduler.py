"""Every scheduler's learning-rate curve has its documented shape (the predecessor's never moved)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abrflow.config import load_config
from abrflow.training.lr_scheduler import ABRScheduler, build_scheduler

LR = 1e-3
STEPS_PER_EPOCH = 10
EPOCHS = 12


def _curve(kind: str, *overrides: str, plateau_metrics=None) -> np.ndarray:
    cfg = load_config(overrides=[f"training.scheduler.type={kind}", "training.scheduler.warmup_epochs=2",
                                 "training.scheduler.T_0=4", "training.scheduler.eta_min=1e-6",
                                 "training.scheduler.patience=1", "training.scheduler.min_lr=1e-6",
                                 *overrides], environ={})
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=LR)
    conf = build_scheduler(opt, cfg.training.scheduler, steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS,
                           learning_rate=LR)
    sched = conf["scheduler"]
    lrs = []
    for epoch in range(EPOCHS):
        for _ in range(STEPS_PER_EPOCH):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if conf["interval"] == "step":
                sched.step()
        if conf["interval"] == "epoch":
            sched.step(plateau_metrics[epoch])
        elif isinstance(sched, ABRScheduler) and plateau_metrics is not None:
            sched.report(plateau_metrics[epoch])
    return np.array(lrs)


def test_cosine_warm_restarts_shape():
    lr = _curve("cosine_annealing_warm_restarts")
    warm = lr[:20]
    assert warm[0] < 0.01 * LR and np.all(np.diff(warm) > 0)  # linear warmup over 2 epochs
    assert lr[20] == pytest.approx(LR, rel=1e-6)
    cycle = lr[20:60]
    assert np.all(np.diff(cycle) < 0) and cycle[-1] < 0.01 * LR  # cosine down over T_0 = 4 epochs
    assert lr[60] == pytest.approx(LR, rel=1e-6)  # restart


def test_one_cycle_shape():
    lr = _curve("one_cycle")
    peak = int(np.argmax(lr))
    assert 15 <= peak <= 22 and lr[peak] == pytest.approx(LR, rel=1e-3)
    assert np.all(np.diff(lr[:peak]) > 0) and np.all(np.diff(lr[peak:]) < 0)
    assert lr[-1] < 1e-3 * LR


def test_abr_schedule_warmup_cosine_floor_and_restart():
    lr = _curve("abr")
    assert np.all(np.diff(lr[:20]) > 0) and lr[20] == pytest.approx(LR, rel=1e-6)
    assert np.all(np.diff(lr[20:]) < 0) and 1e-6 <= lr[-1] < 2e-6  # floor = min_lr
    # With a plateau after epoch 5 and restart_patience 2, the cosine restarts from the base rate.
    metrics = [1.0, 0.9, 0.8, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    restarted = _curve("abr", "training.scheduler.restart_patience=2", plateau_metrics=metrics)
    jumps = np.flatnonzero(np.diff(restarted) > 0.5 * LR)
    assert len(jumps) >= 1 and jumps[0] > 20


def test_reduce_on_plateau_warmup_then_halves():
    metrics = [1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]
    lr = _curve("reduce_on_plateau", plateau_metrics=metrics)
    per_epoch = lr[::STEPS_PER_EPOCH]
    assert per_epoch[0] < 0.01 * LR and per_epoch[1] == pytest.approx(0.5 * LR)  # warmup epochs 1–2
    assert per_epoch[2] == pytest.approx(LR)
    assert per_epoch[-1] < 0.2 * LR  # repeatedly halved on the plateau
    assert np.all(np.diff(per_epoch[2:]) <= 0)


def test_constant_with_warmup():
    lr = _curve("constant")
    assert np.all(np.diff(lr[:20]) > 0) and np.allclose(lr[20:], LR)
