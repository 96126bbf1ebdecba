"""Several checkpoints read as one model: averaged analysis, the same threshold rule, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abrflow.cli import main
from abrflow.data.readers import load_records
from abrflow.errors import AbrflowError
from abrflow.inference.ensemble import ABREnsemble, load_model
from abrflow.inference.predictor import ABRInference

from .conftest import REAL
from .fixtures_checkpoint import SECOND_SEED, one_thread, trained, trained_seed2  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def members(trained, trained_seed2):  # noqa: F811
    """Two runs of one recipe trained separately (two project seeds): members as an ensemble has them."""
    seeds = [torch.load(t.best, map_location="cpu", weights_only=True)["abrflow"]["config"]["project"]["seed"]
             for t in (trained, trained_seed2)]
    assert seeds[1] == SECOND_SEED and seeds[0] != seeds[1]
    return [trained.best, trained_seed2.best]


def test_ensemble_averages_its_members(members, trained):  # noqa: F811
    records = trained.test.select(np.arange(40))
    ensemble = ABREnsemble(members, device="cpu")
    singles = [ABRInference(p, device="cpu").analyse_records(records, return_confidence=False) for p in members]
    for name in ("v_present_prob", "hearing_loss_prob", "threshold_db"):  # they do disagree
        assert not np.allclose(singles[0][name], singles[1][name]), name
    out = ensemble.analyse_records(records)
    for name in ("v_present_prob", "v_latency_ms", "hearing_loss_prob", "threshold_db"):
        np.testing.assert_allclose(out[name], (singles[0][name] + singles[1][name]) / 2, rtol=1e-6)
    assert (out["hearing_loss"] == out["hearing_loss_prob"].argmax(axis=1)).all()
    assert ensemble.checkpoint_path == [m.checkpoint_path for m in ensemble.members] and len(ensemble.members) == 2
    with pytest.raises(AbrflowError, match="no conformal intervals"):
        ensemble.analyse_records(records, return_confidence=True)


def test_ensemble_thresholds_follow_the_single_model_rule(members):
    series = load_records(REAL / "ihs-smartep-human" / "P6")
    ensemble = load_model(members, device="cpu")
    (key, est), = ensemble.estimate_threshold(series).items()
    assert key.startswith("P6|R") and est["n_levels"] == 13 and est["level_unit"] == "dB nHL"
    probs = est["latency_intensity"]["v_present_prob"]
    single = [ABRInference(p, device="cpu").estimate_threshold(series)[key]["latency_intensity"]["v_present_prob"]
              for p in members]
    np.testing.assert_allclose(probs, np.mean(single, axis=0), rtol=1e-6)  # gated level means average too
    assert isinstance(load_model(members[:1], device="cpu"), ABRInference)


def test_members_must_share_the_window_and_one_is_not_an_ensemble(members, tmp_path):
    with pytest.raises(AbrflowError, match="at least 2 checkpoints"):
        ABREnsemble(members[:1], device="cpu")
    with pytest.raises(AbrflowError, match="each member itself"):
        ABREnsemble(members, device="cpu", backend="onnx", onnx_model=tmp_path / "model.onnx")
    ckpt = torch.load(members[1], map_location="cpu", weights_only=True)
    ckpt["abrflow"]["time_base"]["sampling_rate_hz"] = 10000.0  # a member trained at another rate
    ckpt["abrflow"]["config"]["data"]["sampling_rate_hz"] = 10000.0
    slower = tmp_path / "slower.pt"
    torch.save(ckpt, slower)
    with pytest.raises(AbrflowError, match="must share the window"):
        ABREnsemble([members[0], slower], device="cpu")


def test_threshold_cli_takes_several_checkpoints_and_infer_refuses_them_outside_series(members, tmp_path, capsys):
    paths = [str(p) for p in members]
    assert main(["threshold", str(REAL / "ihs-smartep-human" / "P3"), "--checkpoint", *paths, "--device", "cpu",
                 "--output_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ensemble of 2 checkpoints" in out and "P3 ear R" in out and (tmp_path / "thresholds.json").is_file()
    assert main(["infer", "--checkpoint", *paths, "--age", "30", "--intensity", "60", "--device", "cpu",
                 "--output_dir", str(tmp_path)]) == 2
    assert "serves --series only" in capsys.readouterr().err
