"""train.py end to end: every flag, checkpoints, resume, overfit, logging, errors (tiny model, CPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from abrflow.checkpoint import CHECKPOINT_FORMAT
from abrflow.cli import main

from .conftest import REPO, make_records

TINY = REPO / "tests" / "data" / "tiny.yaml"


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return make_records(n_patients=40, per_patient=6).save(tmp_path_factory.mktemp("data") / "rec.npz")


def _train(tmp_path, data_file, *args, env=None):
    argv = ["train", "--config", str(TINY), "--output_root", str(tmp_path), "data.source=file",
            f"data.dataset_path={data_file}", *args]
    return main(argv)


def _result(tmp_path, name="default"):
    return json.loads((tmp_path / "outputs" / name / "train_result.json").read_text())


def test_train_writes_the_experiment_layout_and_self_contained_checkpoints(tmp_path, data_file, capsys):
    assert _train(tmp_path, data_file, "--experiment", "exp1", "--epochs", "2", "--seed", "3",
                  "--log_level", "DEBUG") == 0
    ck = tmp_path / "checkpoints" / "exp1"
    assert {p.name for p in ck.iterdir()} >= {"best_model.pt", "latest_model.pt", "checkpoint_epoch_1.pt",
                                             "checkpoint_epoch_2.pt"}
    out = tmp_path / "outputs" / "exp1"
    assert (out / "config.yaml").read_text().startswith("# config hash: ")
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["lr/0"] != history[1]["lr/0"]  # the scheduler steps
    assert (tmp_path / "logs" / "exp1" / "train.log").stat().st_size > 0
    assert any((tmp_path / "logs" / "exp1" / "tensorboard").iterdir())
    ckpt = torch.load(ck / "best_model.pt", weights_only=True, map_location="cpu")
    meta = ckpt["abrflow"]
    assert meta["format"] == CHECKPOINT_FORMAT and meta["class_names"][1] == "NEUROPATHY"
    assert meta["time_base"] == {"signal_length": 200, "sampling_rate_hz": 20000.0}
    assert meta["normalization"]["signal_scale"] > 0 and len(meta["normalization"]["static_mean"]) == 4
    assert meta["config"]["project"]["seed"] == 3
    assert "current_model_state" in ckpt and "state_dict" in ckpt  # EMA and raw weights
    assert "optimizer_states" in ckpt and "lr_schedulers" in ckpt  # full state for resume
    res = _result(tmp_path, "exp1")
    assert res["epochs_completed"] == 2
    for key in ("val/loss", "val/v_f1", "val/latency_mae_ms", "val/macro_f1", "val/threshold_mae_db"):
        assert np.isfinite(res["metrics"][key])
    assert "best checkpoint" in capsys.readouterr().out


def test_resume_equals_uninterrupted(tmp_path, data_file):
    common = ["training.ema.enabled=false", "model.architecture.dropout=0.0", "training.scheduler.type=abr"]
    assert _train(tmp_path, data_file, "--experiment", "full", "--epochs", "3", *common) == 0
    # An interruption after epoch 2 of the same 3-epoch run: resume from its epoch-2 checkpoint.
    assert _train(tmp_path, data_file, "--experiment", "part", "--epochs", "3", "--resume",
                  str(tmp_path / "checkpoints" / "full" / "checkpoint_epoch_2.pt"), *common) == 0
    full, part = _result(tmp_path, "full"), _result(tmp_path, "part")
    assert (full["epochs_completed"], full["global_step"]) == (part["epochs_completed"], part["global_step"])
    assert full["metrics"]["lr-AdamW"] == pytest.approx(part["metrics"]["lr-AdamW"], rel=1e-6)
    a = torch.load(tmp_path / "checkpoints" / "full" / "latest_model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "checkpoints" / "part" / "latest_model.pt", weights_only=True)["state_dict"]
    diffs = [float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point()]
    assert max(diffs) < 1e-4


def test_overfit_batch_loss_falls_90_percent(tmp_path, data_file):
    assert _train(tmp_path, data_file, "--overfit_batch", "--overfit_steps", "150", "--experiment", "of") == 0
    o = _result(tmp_path, "of")["overfit"]
    assert o["steps"] == 150 and o["fall"] >= 0.9, o


def test_too_small_cohort_names_the_class(tmp_path, capsys):
    assert main(["train", "--config", str(TINY), "--output_root", str(tmp_path), "--fast_dev_run",
                 "data.synthetic.n_patients=120"]) == 2
    assert "NEUROPATHY has only 1 patient" in capsys.readouterr().err


def test_fast_dev_run_on_the_synthetic_cohort(tmp_path):
    # --fast_dev_run caps the cohort at 300 patients: the smallest default cohort with 3 neuropathy patients.
    assert main(["train", "--config", str(TINY), "--output_root", str(tmp_path), "--fast_dev_run"]) == 0
    res = _result(tmp_path)
    assert res["epochs_completed"] == 2 and res["global_step"] == 8


def test_flags_reach_the_config(tmp_path):
    from abrflow.cli import build_parser, train_config_from_args

    args = build_parser().parse_args(
        ["train", "--config", str(TINY), "--epochs", "5", "--batch_size", "4", "--learning_rate", "0.01",
         "--device", "cpu", "--mixed_precision", "--seed", "9", "--log_level", "WARNING", "--devices", "1",
         "--strategy", "auto", "--num_nodes", "1", "training.scheduler.type=one_cycle"])
    cfg = train_config_from_args(args)
    assert (cfg.training.epochs, cfg.data.dataloader.batch_size, cfg.training.optimizer.learning_rate) == (5, 4, 0.01)
    assert cfg.hardware.precision == "bf16-mixed" and cfg.project.seed == 9 and cfg.logging.log_level == "WARNING"
    assert cfg.training.scheduler.type == "one_cycle"
    args = build_parser().parse_args(["train", "--config", str(TINY), "--no_mixed_precision"])
    assert train_config_from_args(args).hardware.mixed_precision is False


def test_environment_overrides_reach_train(monkeypatch):
    from abrflow.cli import build_parser, train_config_from_args

    monkeypatch.setenv("ABR_EPOCHS", "11")
    monkeypatch.setenv("ABR_BATCH_SIZE", "12")
    cfg = train_config_from_args(build_parser().parse_args(["train", "--config", str(TINY)]))
    assert cfg.training.epochs == 11 and cfg.data.dataloader.batch_size == 12


def test_mixed_precision_bf16_on_cpu_runs(tmp_path, data_file):
    assert _train(tmp_path, data_file, "--epochs", "1", "--mixed_precision", "--experiment", "bf16",
                  "training.limit_train_batches=2", "training.limit_val_batches=1") == 0
    assert np.isfinite(_result(tmp_path, "bf16")["metrics"]["val/loss"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "training.epochs"),
        (["--learning_rate", "-1"], "learning_rate"),
        (["training.epochz=3"], "did you mean training.epochs?"),
        (["--resume", "nope.pt"], "nope.pt"),
    ],
)
def test_bad_values_exit_2_with_a_named_error(tmp_path, data_file, args, message, capsys):
    assert _train(tmp_path, data_file, *args) == 2
    assert message in capsys.readouterr().err


def test_train_py_script_bad_flag_exit_2():
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "--epochs", "many"], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 2 and "--epochs" in proc.stderr
