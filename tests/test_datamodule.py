"""Data module: statistics fitted on train only, tensors and masks, balanced sampler, time-base check."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from abrflow.config import load_config
from abrflow.data.datamodule import ABRDataModule, class_balanced_weights
from abrflow.data.normalization import NormalizationStats, highpass_matrix
from abrflow.errors import ConfigError, DataError

from .conftest import make_records


def _dm(records=None, *overrides):
    cfg = load_config(overrides=["data.dataloader.batch_size=16", *overrides], environ={})
    dm = ABRDataModule(cfg.data, seed=0, records=records if records is not None else make_records(60))
    dm.setup("fit")
    return dm


def _whole(dm, name):
    """Every row of a split as one batch."""
    ds = dm._datasets[name]
    return ds.__getitems__(list(range(len(ds))))


def test_stats_fitted_on_train_only():
    rec = make_records(60)
    dm = _dm(rec)
    train = rec.select(dm.split.train)
    expected = NormalizationStats.fit(train, highpass_hz=dm.cfg.input_highpass_hz)
    assert dm.stats == expected and expected.highpass_hz == 30.0
    # scaling the test split's signals must not change the statistics
    rec2 = make_records(60)
    rec2.signal[dm.split.test] *= 100
    assert _dm(rec2).stats.signal_scale == pytest.approx(expected.signal_scale)


def test_batch_shapes_and_masks():
    dm = _dm()
    batch = next(iter(dm.train_dataloader()))
    assert batch["signal"].shape == (16, 1, 200) and batch["static"].shape == (16, 4)
    assert batch["hearing_loss"].dtype == torch.int64
    assert batch["wave_present"].shape == (16, 3) and batch["wave_latency_ms"].shape == (16, 3)
    unmarked = batch["wave_present"] == 0
    assert (batch["wave_latency_mask"][unmarked] == 0).all() and (batch["wave_amplitude_mask"][unmarked] == 0).all()
    # make_records marks V only: I and III were never judged there, so their presence is masked
    assert (batch["wave_present_mask"][:, 2] == 1).all() and (batch["wave_present_mask"][:, :2] == 0).all()
    no_resp = batch["no_response"] == 1
    assert (batch["threshold_mask"][no_resp] == 0).all() and (batch["no_response_mask"][no_resp] == 1).all()
    assert torch.isfinite(batch["threshold_db"]).all()


def test_normalised_train_signal_has_unit_robust_scale():
    dm = _dm()
    sig = _whole(dm, "train")["signal"].numpy().ravel()
    mad = 1.4826 * np.median(np.abs(sig - np.median(sig)))
    assert mad == pytest.approx(1.0, rel=1e-3)


def test_unknown_static_stays_nan_for_the_model():
    rec = make_records(60)
    rec.age_years[:] = np.nan
    dm = _dm(rec)
    static = _whole(dm, "train")["static"]
    assert torch.isnan(static[:, 0]).all() and torch.isfinite(static[:, 1:]).all()


def test_every_training_sample_once_per_epoch():
    dm = _dm(None, "data.dataloader.drop_last=false")
    seen = torch.cat([b["index"] for b in dm.train_dataloader()])
    assert sorted(seen.tolist()) == list(range(len(dm.split.train)))


def test_balanced_sampler_equalises_classes():
    rec = make_records(100)
    rec.hearing_loss[rec.hearing_loss == 2] = 0  # NORMAL now 2/5 of recordings, SNIK gone
    rec.hearing_loss[rec.patient_id == "P002"] = 2
    rec.hearing_loss[rec.patient_id == "P007"] = 2
    rec.hearing_loss[rec.patient_id == "P012"] = 2
    dm = _dm(rec, "data.dataloader.balanced_sampler=true", "data.splits.seed=1")
    counts = np.zeros(5)
    for _ in range(5):
        for b in dm.train_dataloader():
            counts += np.bincount(b["hearing_loss"].numpy(), minlength=5)
    shares = counts / counts.sum()
    assert np.all(np.abs(shares - 0.2) < 0.06), shares
    w = class_balanced_weights(np.array([0, 0, 0, 1]))
    assert w[3] == pytest.approx(3 * w[0])


def test_time_base_mismatch_is_an_error():
    rec = make_records(60, length=100)
    with pytest.raises(DataError, match="data.signal_length = 200"):
        _dm(rec)


def test_file_source(tmp_path):
    path = make_records(60).save(tmp_path / "rec.npz")
    cfg = load_config(overrides=["data.source=file", f"data.dataset_path={path}"], environ={})
    dm = ABRDataModule(cfg.data)
    dm.setup()
    assert len(dm.records) == 240
    assert set(dm.target_stats()) == {"i_amplitude_uv", "iii_amplitude_uv", "v_amplitude_uv", "threshold_db"}
    assert dm.class_counts().sum() == len(dm.split.train)


def test_stats_round_trip():
    stats = _dm().stats
    assert NormalizationStats.from_dict(stats.to_dict()) == stats
    with pytest.raises(DataError, match="incomplete"):
        NormalizationStats.from_dict({"mode": "global_robust"})


def test_input_highpass_is_sosfiltfilt_and_removes_drift_not_the_response():
    fs, t = 20_000.0, 200
    x = np.random.default_rng(0).normal(size=(5, t)).astype(np.float32)
    sos = scipy.signal.butter(2, 30.0, btype="highpass", fs=fs, output="sos")
    np.testing.assert_allclose(x @ highpass_matrix(t, fs, 30.0), scipy.signal.sosfiltfilt(sos, x, axis=-1), atol=1e-5)
    rec = make_records(20)
    stats = NormalizationStats.fit(rec, highpass_hz=30.0)
    t_s = np.arange(t) / fs
    response = np.sin(2 * np.pi * 800 * t_s)  # ABR-band content passes
    drift = 2.0 + 3.0 * t_s / t_s[-1]  # an offset and a ramp (an export without a high-pass) do not
    out = stats.normalize_signal((response + drift)[None]) * stats.signal_scale
    plain = NormalizationStats.fit(rec).normalize_signal((response + drift)[None]) * stats.signal_scale
    assert np.abs(out[0, 40:160] - response[40:160]).max() < 0.15 * np.abs(drift).max()
    assert np.abs(plain[0] - response).max() > 1.5  # without the filter the drift stays
    assert NormalizationStats.from_dict(stats.to_dict()) == stats
    old = {k: v for k, v in stats.to_dict().items() if k not in ("highpass_hz", "sampling_rate_hz")}
    assert NormalizationStats.from_dict(old).highpass_hz is None  # checkpoints from before the filter
    with pytest.raises(ConfigError, match="data.input_highpass_hz"):
        load_config(overrides=["data.input_highpass_hz=12000"], environ={})
    with pytest.raises(ConfigError, match="data.input_highpass_hz"):
        load_config(overrides=["data.input_highpass_hz=0"], environ={})


def test_real_exports_load_in_the_models_time_base():
    from .conftest import REAL

    cfg = load_config(overrides=["data.source=file", f"data.dataset_path={REAL / 'ihs-smartep-human'}"], environ={})
    rec = ABRDataModule(cfg.data).load()
    assert rec.n_samples == 200 and rec.sampling_rate_hz == 20000.0
    assert set(np.unique(rec.patient_id)) == {"P3", "P6", "P8"}


def test_synthetic_source_simulates_with_the_configured_noise_colour():
    cfg = load_config(overrides=["data.synthetic.n_patients=500", "data.synthetic.eeg_exponent_range=[2.0,2.0]"],
                      environ={})
    dm = ABRDataModule(cfg.data)
    dm.setup()
    assert len(dm.records) > 0 and (dm.records.extra["eeg_exponent"] == 2.0).all()


def test_a_source_that_marks_waves_i_and_iii_has_them_judged_everywhere():
    from abrflow.data.synthetic import simulate_cohort
    from abrflow.data.wave_labels import wave_labels

    records = simulate_cohort(40, seed=3)
    labels = wave_labels(records)
    assert labels["judged"].all()
    assert labels["present"][:, 0].any() and not labels["present"][:, 0].all()  # I marked on some, absent on others
    np.testing.assert_array_equal(labels["present"][:, 2], records.v_present)
    np.testing.assert_array_equal(np.isfinite(labels["latency_ms"]), labels["present"])
