"""NaN/inf loss during training: stop with the step and term named, last good checkpoint kept; or skip.

The fault is injected into one loss term at a chosen global step (a real NaN would come from data or
an overflow; what matters here is what training does with it).
"""

from __future__ import annotations

import math

import pytest
import torch

from abrflow.cli import main
from abrflow.config import load_config
from abrflow.errors import ConfigError
from abrflow.inference.checkpoint import load_checkpoint
from abrflow.training.module import ABRLightningModule

from .conftest import REPO, make_records

TINY = REPO / "tests" / "data" / "tiny.yaml"
# 3 epochs of 2 steps: steps 0–1 in epoch 1 (checkpointed at its end), the fault at step 3 in epoch 2.
QUICK = ["--epochs", "3", "training.limit_train_batches=2", "training.limit_val_batches=1",
         "training.checkpoint_every_n_epochs=1", "data.dataloader.batch_size=8", "training.ema.enabled=false",
         "logging.use_tensorboard=false", "logging.log_level=WARNING"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return make_records(n_patients=40, per_patient=6).save(tmp_path_factory.mktemp("data") / "rec.npz")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _poison(monkeypatch, term: str, value: float, step: int) -> None:
    original = ABRLightningModule.shared_step

    def poisoned(self, batch, generator=None, head_batch=None):
        loss, terms, heads = original(self, batch, generator, head_batch)
        if self.training and self.global_step == step:
            terms = dict(terms)
            terms[term] = terms[term] * 0 + value
            loss = self.loss_fn.combine(terms)
        return loss, terms, heads

    monkeypatch.setattr(ABRLightningModule, "shared_step", poisoned)


def _train(tmp_path, data_file, *args):
    return main(["train", "--config", str(TINY), "--output_root", str(tmp_path), "data.source=file",
                 f"data.dataset_path={data_file}", *QUICK, *args])


def test_the_option_is_validated():
    assert load_config(environ={}).training.nonfinite_loss == "stop"
    with pytest.raises(ConfigError, match="training.nonfinite_loss"):
        load_config(overrides=["training.nonfinite_loss=ignore"], environ={})


def test_stop_names_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path, data_file, monkeypatch, capsys):
    term, shown = "diffusion", "nan"
    _poison(monkeypatch, term, math.nan, step=3)
    assert _train(tmp_path, data_file) == 2
    err = capsys.readouterr().err.strip()  # Lightning's own INFO lines may come first
    ours = [line for line in err.splitlines() if line.startswith("abrflow: error:")]
    assert len(ours) == 1 and err.endswith(ours[0])
    assert f"loss term '{term}' is {shown} at step 3 (epoch 2, batch 1)" in ours[0]
    folder = tmp_path / "checkpoints" / "default"
    latest = torch.load(folder / "latest_model.pt", weights_only=True)
    assert (latest["epoch"], latest["global_step"]) == (0, 2)  # end of epoch 1: the last good state
    assert all(torch.isfinite(v).all() for v in latest["state_dict"].values() if v.is_floating_point())
    loaded = load_checkpoint(folder / "latest_model.pt")  # and it serves inference
    assert all(torch.isfinite(p).all() for p in loaded.model.parameters())
    assert not list(folder.glob("*.tmp"))


def test_skip_drops_the_step_and_finishes(tmp_path, data_file, monkeypatch, capsys):
    _poison(monkeypatch, "threshold", math.inf, step=3)
    assert _train(tmp_path, data_file, "training.nonfinite_loss=skip", "--experiment", "skip") == 0
    messages = [line for line in capsys.readouterr().err.splitlines() if "step skipped" in line]
    assert len(messages) == 1 and "loss term 'threshold' is inf at step 3 (epoch 2, batch 1)" in messages[0]
    latest = torch.load(tmp_path / "checkpoints" / "skip" / "latest_model.pt", weights_only=True)
    assert latest["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in latest["state_dict"].values() if v.is_floating_point())
