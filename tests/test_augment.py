"""Training augmentations: targets follow the transformed trace, labels never become false."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from abrflow.config import load_config
from abrflow.data.datamodule import records_to_tensors
from abrflow.data.normalization import NormalizationStats
from abrflow.data.synthetic import simulate_cohort
from abrflow.errors import ConfigError
from abrflow.training.augment import augment_batch
from abrflow.training.module import ABRLightningModule

FS_HZ = 20_000.0
T = 200
MS = 1000.0 / FS_HZ


def _cfg(**changes) -> SimpleNamespace:
    """Every transform off (identity) unless named in ``changes``; probability 1."""
    base = dict(probability=1.0, lowpass_hz=[9000.0, 9000.0], highpass_hz=[0.01, 0.01], time_shift_ms=0.0,
                time_stretch_max=1.0, amplitude_scale_max=1.0, noise_sd_max=0.0, noise_exponent_max=0.0,
                drift_sd_max=0.0)
    return SimpleNamespace(**{**base, **changes})


def _peak_batch(latency_ms: list[float], amplitude: float = 1.0, present: bool = True) -> dict[str, torch.Tensor]:
    t_ms = torch.arange(T) * MS
    lat = torch.tensor(latency_ms)
    signal = amplitude * torch.exp(-0.5 * ((t_ms[None, :] - lat[:, None]) / 0.3) ** 2)
    n = len(latency_ms)
    flag = torch.zeros(n, 3)
    flag[:, 2] = float(present)  # wave V only
    lat3 = torch.zeros(n, 3)
    lat3[:, 2] = lat
    return {"signal": signal[:, None, :], "wave_present": flag, "wave_present_mask": torch.ones(n, 3),
            "wave_latency_ms": lat3, "wave_latency_mask": flag.clone(),
            "wave_amplitude_uv": flag * amplitude, "wave_amplitude_mask": flag.clone(),
            "hearing_loss": torch.zeros(n, dtype=torch.long)}


def test_every_marked_wave_moves_with_the_trace():
    """Waves I, III and V are all shifted and stretched with the recording (issue 19)."""
    torch.manual_seed(5)
    t_ms = torch.arange(T) * MS
    marks = torch.tensor([[1.6, 3.8, 5.8]] * 16)
    signal = sum(torch.exp(-0.5 * ((t_ms[None, :] - marks[:, j, None]) / 0.15) ** 2) for j in range(3))
    batch = _peak_batch([5.8] * 16)
    batch.update(signal=signal[:, None, :], wave_present=torch.ones(16, 3), wave_latency_ms=marks.clone(),
                 wave_latency_mask=torch.ones(16, 3), wave_amplitude_uv=torch.ones(16, 3),
                 wave_amplitude_mask=torch.ones(16, 3))
    out = augment_batch(batch, _cfg(time_shift_ms=0.4, time_stretch_max=1.25), FS_HZ)
    moved = out["wave_latency_ms"].numpy()
    assert np.abs(moved - marks.numpy()).max() > 0.2
    trace = out["signal"][:, 0, :].numpy()
    for row in range(16):  # each mark sits on a local maximum of the moved trace
        for j in range(3):
            k = int(round(moved[row, j] / MS))
            assert trace[row, k] >= trace[row, max(k - 2, 0)] and trace[row, k] >= trace[row, k + 2]


def _peak_ms(batch) -> np.ndarray:
    return batch["signal"][:, 0, :].argmax(dim=-1).numpy() * MS


def test_shift_and_stretch_move_the_latency_target_with_the_peak():
    torch.manual_seed(0)
    batch = _peak_batch([2.0, 5.5, 6.0, 7.0] * 8)
    out = augment_batch(batch, _cfg(time_shift_ms=0.4, time_stretch_max=1.25), FS_HZ)
    moved = out["wave_latency_ms"][:, 2].numpy()
    assert np.abs(moved - batch["wave_latency_ms"][:, 2].numpy()).max() > 0.2  # something happened
    np.testing.assert_allclose(_peak_ms(out), moved, atol=MS)  # the target is where the peak now is
    assert moved.max() <= 0.95 * (T - 1) * MS + 0.4 + 1e-6  # a stretch never pushes V out of the window


def test_amplitude_target_scales_with_the_trace():
    batch = _peak_batch([5.0] * 16, amplitude=2.0)
    torch.manual_seed(1)
    plain = augment_batch(batch, _cfg(), FS_HZ)
    torch.manual_seed(1)  # the same draws: only the gain differs
    scaled = augment_batch(batch, _cfg(amplitude_scale_max=1.6), FS_HZ)
    gains = scaled["wave_amplitude_uv"][:, 2].numpy() / 2.0
    ratio = (scaled["signal"][:, 0, :].max(dim=-1).values / plain["signal"][:, 0, :].max(dim=-1).values).numpy()
    np.testing.assert_allclose(ratio, gains, rtol=1e-4)
    assert gains.min() >= 1 / 1.6 - 1e-6 and gains.max() <= 1.6 + 1e-6 and gains.std() > 0.05


def test_extra_noise_never_touches_a_recording_with_a_marked_v():
    with_v = _peak_batch([5.0] * 8)
    without = _peak_batch([5.0] * 8, amplitude=0.0, present=False)
    without["signal"] = 0.1 * torch.randn(8, 1, T)  # noise alone: the extra noise is scaled to the trace's SD
    batch = {k: torch.cat([with_v[k], without[k]]) for k in with_v}
    torch.manual_seed(2)
    quiet = augment_batch(batch, _cfg(), FS_HZ)
    torch.manual_seed(2)  # the same draws: only the extra noise differs
    out = augment_batch(batch, _cfg(noise_sd_max=0.5, noise_exponent_max=2.0), FS_HZ)
    assert torch.equal(out["signal"][:8], quiet["signal"][:8])
    assert (out["signal"][8:] != quiet["signal"][8:]).any(dim=-1).all()  # every trace without V got noise
    assert torch.equal(out["wave_present"], batch["wave_present"])


def test_baseline_drift_changes_the_trace_not_the_targets():
    torch.manual_seed(4)
    batch = _peak_batch([5.0] * 8)
    torch.manual_seed(4)
    plain = augment_batch(batch, _cfg(), FS_HZ)
    torch.manual_seed(4)
    out = augment_batch(batch, _cfg(drift_sd_max=1.0), FS_HZ)
    extra = out["signal"] - plain["signal"]
    assert (extra.abs().amax(dim=-1) > 0).all()
    assert (extra.abs().amax(dim=-1) <= plain["signal"].std(dim=-1) + 1e-6).all()  # ≤ drift_sd_max × SD
    for key in ("wave_latency_ms", "wave_amplitude_uv", "wave_present"):
        assert torch.equal(out[key], plain[key])


def test_band_limit_removes_what_lies_above_the_low_pass_corner():
    torch.manual_seed(3)
    t_s = torch.arange(T) / FS_HZ
    tone = torch.sin(2 * np.pi * 4000 * t_s) + torch.sin(2 * np.pi * 500 * t_s)
    batch = _peak_batch([5.0] * 4)
    batch["signal"] = tone.expand(4, 1, T).clone()
    out = augment_batch(batch, _cfg(lowpass_hz=[1200.0, 1500.0], highpass_hz=[20.0, 50.0]), FS_HZ)
    spectrum = torch.fft.rfft(out["signal"][:, 0, 50:150], dim=-1).abs()
    freqs = torch.fft.rfftfreq(100, 1 / FS_HZ)
    high = spectrum[:, freqs == 4000].squeeze(-1)
    low = spectrum[:, freqs == 600].squeeze(-1) + spectrum[:, freqs == 400].squeeze(-1)  # 500 Hz leaks to both
    assert (high < 0.05 * low).all()
    np.testing.assert_allclose(_peak_ms(_band(_peak_batch([5.0]))), [5.0], atol=MS)  # zero phase: no delay


def _band(batch):
    return augment_batch(batch, _cfg(lowpass_hz=[1200.0, 1200.0], highpass_hz=[100.0, 100.0]), FS_HZ)


def test_training_step_augments_only_the_heads_half():
    """The diffusion term is computed on the recordings as they are; the heads' terms on the copy."""
    cfg = load_config(None, ["training.augmentation.probability=1.0"], environ={})
    records = simulate_cohort(4, seed=3)
    batch = records_to_tensors(records.select(np.arange(16)), NormalizationStats.fit(records))
    module = ABRLightningModule(cfg).eval()
    torch.manual_seed(0)
    head_batch = augment_batch(batch, cfg.training.augmentation, FS_HZ)
    assert not torch.equal(head_batch["signal"], batch["signal"])
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    _, plain, _ = module.shared_step(batch, g())
    _, augmented, _ = module.shared_step(batch, g(), head_batch)
    assert torch.equal(plain["diffusion"], augmented["diffusion"])
    assert not torch.equal(plain["peak_exist"], augmented["peak_exist"])


@pytest.mark.parametrize("override, named", [
    ("training.augmentation.lowpass_hz=[3000,1000]", "training.augmentation.lowpass_hz"),
    ("training.augmentation.lowpass_hz=[1000,12000]", "training.augmentation.lowpass_hz"),
    ("training.augmentation.highpass_hz=[0,100]", "training.augmentation.highpass_hz"),
    ("training.augmentation.highpass_hz=[100,2000]", "training.augmentation.highpass_hz"),
    ("training.augmentation.probability=1.5", "training.augmentation.probability"),
    ("training.augmentation.time_stretch_max=0.8", "training.augmentation.time_stretch_max"),
])
def test_bad_augmentation_settings_are_named(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(None, [override], environ={})
