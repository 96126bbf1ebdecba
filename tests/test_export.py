"""ONNX export: both graphs agree with eager (< 1e-4), unknown (NaN) static inputs survive export,
the int8 model runs and agrees loosely, the export copy leaves the model untouched."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort  # a test dependency ([dev]): missing, the export tests fail, not skip
import pytest
import scipy.special

from abrflow.errors import AbrflowError
from abrflow.inference.export import (
    HEAD_OUTPUTS,
    TOLERANCE,
    _denoiser_inputs,
    _eager_denoiser,
    check_inputs,
    export_onnx,
)
from abrflow.inference.predictor import ABRInference
from abrflow.models.s4d import S4D

from .fixtures_checkpoint import exported, one_thread, trained  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def inference(trained):  # noqa: F811
    return ABRInference(trained.best, device="cpu")


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _heads_onnx(path, signal, static):
    session = _session(path)
    return dict(zip(HEAD_OUTPUTS, session.run(list(HEAD_OUTPUTS), {"signal": signal, "static": static})))


def _fresh_inputs(inference):
    signal, static = check_inputs(inference, n_patients=2, seed=7)  # not the export's own check rows
    return signal[:17], static[:17]


def test_export_writes_both_graphs_int8_and_a_manifest(exported):  # noqa: F811
    assert exported.exit_code == 0
    names = {p.name for p in exported.folder.iterdir()}
    assert {"model.onnx", "denoiser.onnx", "model.int8.onnx", "export.json"} <= names
    manifest = json.loads((exported.folder / "export.json").read_text())
    assert manifest["heads"]["max_abs_diff_all"] < TOLERANCE and manifest["denoiser"]["max_abs_diff"] < TOLERANCE
    assert manifest["heads"]["nan_static_rows"] == 5
    assert manifest["time_base"] == {"signal_length": 200, "sampling_rate_hz": 20000.0}
    assert manifest["calibration"]["level"] == 0.9 and set(manifest["calibration"]["temperature"]) == {
        "hearing_loss", "i_present", "iii_present", "v_present", "threshold_no_response"}
    assert set(manifest["latency_ms_p50_batch1"]) == {"eager", "onnx", "int8"}


def test_analysis_graph_matches_eager_on_new_inputs_at_any_batch_size(exported, inference):  # noqa: F811
    signal, static = _fresh_inputs(inference)
    eager = inference._heads(inference.stats.normalize_signal(signal[:, 0]), static)
    for rows in (slice(0, 1), slice(0, 17)):
        out = _heads_onnx(exported.folder / "model.onnx", signal[rows], static[rows])
        for name in HEAD_OUTPUTS:
            assert np.max(np.abs(out[name] - eager[name][rows])) < TOLERANCE, name


def test_unknown_static_inputs_survive_export(exported, inference):  # noqa: F811
    signal, static = _fresh_inputs(inference)
    known = int(np.flatnonzero(~np.isnan(static).any(axis=1))[0])
    signal, static = np.repeat(signal[known:known + 1], 3, 0), np.repeat(static[known:known + 1], 3, 0)
    static[1, 0] = np.nan  # unknown age
    static[2, :] = np.nan  # nothing known
    out = _heads_onnx(exported.folder / "model.onnx", signal, static)
    eager = inference._heads(inference.stats.normalize_signal(signal[:, 0]), static)
    for name in HEAD_OUTPUTS:
        assert np.all(np.isfinite(out[name])), name
        assert np.max(np.abs(out[name] - eager[name])) < TOLERANCE, name
    assert out["threshold_db"][0] != out["threshold_db"][1] != out["threshold_db"][2]  # NaN → learned embedding


def test_denoiser_graph_matches_eager_with_conditions(exported, inference):  # noqa: F811
    _, static = _fresh_inputs(inference)
    feeds = _denoiser_inputs(inference, static, seed=3)
    assert np.isnan(feeds["threshold_db"]).any() and np.isposinf(feeds["threshold_db"]).any()
    assert (feeds["hearing_loss"] == -1).any()
    session = _session(exported.folder / "denoiser.onnx")
    sample = session.run(["sample"], feeds)[0]
    assert sample.shape == feeds["x"].shape
    assert np.max(np.abs(sample - _eager_denoiser(inference, feeds))) < TOLERANCE


def test_int8_model_runs_and_agrees_loosely(exported, inference):  # noqa: F811
    signal, static = _fresh_inputs(inference)
    fp32 = _heads_onnx(exported.folder / "model.onnx", signal, static)
    int8 = _heads_onnx(exported.folder / "model.int8.onnx", signal, static)
    p32 = scipy.special.softmax(fp32["hearing_loss_logits"], 1)
    p8 = scipy.special.softmax(int8["hearing_loss_logits"], 1)
    assert np.max(np.abs(p32 - p8)) < 0.05
    assert np.max(np.abs(scipy.special.expit(fp32["v_present_logit"]) - scipy.special.expit(int8["v_present_logit"]))) < 0.05
    assert np.max(np.abs(fp32["v_latency_ms"] - int8["v_latency_ms"])) < 0.1
    assert np.max(np.abs(fp32["threshold_db"] - int8["threshold_db"])) < 2.0
    manifest = json.loads((exported.folder / "export.json").read_text())
    assert manifest["int8"]["class_agreement"] >= 0.9
    assert manifest["int8"]["size_bytes"]["int8"] < manifest["int8"]["size_bytes"]["fp32"]


def test_export_leaves_the_models_code_paths_untouched(inference):
    from abrflow.inference.export import HeadsGraph

    HeadsGraph(inference)
    assert "embed" not in vars(inference.model)  # the copy got the check-free embed, not the model
    assert not any("ssm" in vars(m) for m in inference.model.modules() if isinstance(m, S4D))


def test_export_without_onnxruntime_is_a_clear_error(inference, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError in here
    with pytest.raises(AbrflowError, match=r"pip install 'abrflow\[onnx\]'"):
        export_onnx(inference, tmp_path)


def test_onnx_backend_analyses_like_eager(exported, inference, trained):  # noqa: F811
    from abrflow.data.synthetic import simulate_cohort

    rec = simulate_cohort(n_patients=3, seed=11)
    onnx = ABRInference(trained.best, device="cpu", backend="onnx", onnx_model=exported.folder / "model.onnx")
    assert onnx.backend == "onnx"
    a, b = inference.analyse_records(rec), onnx.analyse_records(rec)
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], atol=1e-3, rtol=1e-4, err_msg=key)
    one = onnx.analyse(rec.signal[0], age=None, intensity=float(rec.intensity_db[0]))
    assert one["peaks"]["V"]["present_probability"] == pytest.approx(
        inference.analyse(rec.signal[0], age=None, intensity=float(rec.intensity_db[0]))["peaks"]["V"][
            "present_probability"], abs=1e-5)
    thr = onnx.estimate_threshold(rec)
    assert thr.keys() == inference.estimate_threshold(rec).keys()
    int8 = ABRInference(trained.best, device="cpu", backend="onnx", onnx_model=exported.folder / "model.int8.onnx")
    assert np.mean(int8.analyse_records(rec)["hearing_loss"] == a["hearing_loss"]) >= 0.9


def test_onnx_backend_exports_on_the_fly_when_no_model_is_given(trained):  # noqa: F811
    onnx = ABRInference(trained.best, device="cpu", backend="onnx")
    assert onnx._onnx.path.name == "model.onnx" and onnx._onnx.path.is_file()


def test_onnx_backend_refuses_a_graph_from_another_checkpoint(exported, trained, tmp_path):  # noqa: F811
    import shutil

    import torch

    other = tmp_path / "other.pt"  # the same weights re-saved: another file, so another fingerprint
    torch.save(torch.load(trained.best, weights_only=True), other)
    with pytest.raises(AbrflowError, match="exported from another checkpoint"):
        ABRInference(other, device="cpu", backend="onnx", onnx_model=exported.folder / "model.onnx")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(exported.folder / "model.onnx", lonely / "model.onnx")
    with pytest.raises(AbrflowError, match="export.json"):
        ABRInference(trained.best, device="cpu", backend="onnx", onnx_model=lonely / "model.onnx")
    with pytest.raises(AbrflowError, match="backend must be one of"):
        ABRInference(trained.best, device="cpu", backend="tensorrt")
