"""Data module: statistics fitted on train only, tensors and masks, balanced sampler, time-base check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abrflow.config import load_config
from abrflow.data.datamodule import ABRDataModule, class_balanced_weights
from abrflow.data.normalization import NormalizationStats
from abrflow.errors import DataError

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
    expected = NormalizationStats.fit(train)
    assert dm.stats == expected
    # scaling the test split's signals must not change the statistics
    rec2 = make_records(60)
    rec2.signal[dm.split.test] *= 100
    assert _dm(rec2).stats.signal_scale == pytest.approx(expected.signal_scale)


def test_batch_shapes_and_masks():
    dm = _dm()
    batch = next(iter(dm.train_dataloader()))
    assert batch["signal"].shape == (16, 1, 200) and batch["static"].shape == (16, 4)
    assert batch["hearing_loss"].dtype == torch.int64
    unmarked = batch["v_present"] == 0
    assert (batch["v_latency_mask"][unmarked] == 0).all()
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
    assert set(dm.target_stats()) == {"v_latency_ms", "v_amplitude_uv", "threshold_db"}
    assert dm.class_counts().sum() == len(dm.split.train)


def test_stats_round_trip():
    stats = _dm().stats
    assert NormalizationStats.from_dict(stats.to_dict()) == stats
    with pytest.raises(DataError, match="incomplete"):
        NormalizationStats.from_dict({"mode": "global_robust"})


def test_real_exports_load_in_the_models_time_base():
    from .conftest import REAL

    cfg = load_config(overrides=["data.source=file", f"data.dataset_path={REAL / 'ihs-smartep-human'}"], environ={})
    rec = ABRDataModule(cfg.data).load()
    assert rec.n_samples == 200 and rec.sampling_rate_hz == 20000.0
    assert set(np.unique(rec.patient_id)) == {"P3", "P6", "P8"}
