"""Diffusion process and samplers: the predecessor walked timesteps upwards, never stepped its
scheduler, clamped x̂0 and returned zeros (DESIGN.md §9). Each of those gets a test here, and an
end-to-end toy proves that training + sampling produce the waveform the condition asks for."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler
from torch import nn

from abrflow.config import load_config
from abrflow.diffusion import SAMPLERS, ABRDiffusion
from abrflow.models.unet import ModelOutput, build_model

from .conftest import small_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: thread barriers cost more than they save


@pytest.fixture(scope="module")
def diffusion() -> ABRDiffusion:
    return ABRDiffusion.from_config(load_config(environ={}).diffusion)


@pytest.fixture(scope="module")
def untrained():
    return small_model(length=64, seed=0)


class Oracle(nn.Module):
    """The ideal network for data that is always ``x0``: outputs the exact v/ε/x0 for it."""

    signal_length = 32

    def __init__(self, diffusion: ABRDiffusion, x0: torch.Tensor):
        super().__init__()
        self.diffusion, self.x0 = diffusion, x0
        self.calls: list[dict] = []

    def forward(self, x, timesteps, static, hearing_loss=None, threshold_db=None):
        self.calls.append({"batch": x.shape[0], "hearing_loss": hearing_loss, "threshold_db": threshold_db,
                           "training": self.training})
        a = self.diffusion.alphas_cumprod[timesteps.long()].view(-1, 1, 1)
        noise = (x - a.sqrt() * self.x0) / (1 - a).sqrt()
        return ModelOutput(sample=self.diffusion.target(self.x0.expand_as(x), noise, timesteps), heads=None)


# ----------------------------------------------------------------- schedule and targets


def test_configuration_is_the_designs(diffusion):
    s = diffusion.scheduler
    assert s.config.num_train_timesteps == 1000 and s.config.beta_schedule == "squaredcos_cap_v2"
    assert s.config.prediction_type == "v_prediction" and not s.config.clip_sample
    assert not s.config.thresholding
    with pytest.raises(ValueError, match="sampler"):
        ABRDiffusion(sampler="euler")


@pytest.mark.parametrize("sampler,steps", [(s, n) for s in SAMPLERS for n in (1, 7, 20, 50)] + [("ddpm", 1000)])
def test_timesteps_descend_strictly(diffusion, sampler, steps):
    scheduler = diffusion.make_scheduler(sampler, steps)
    ts = scheduler.timesteps
    assert len(ts) == steps
    assert bool((ts[1:] < ts[:-1]).all()), ts.tolist()
    assert ts[0] >= 900 and ts.min() >= 0
    for key in ("clip_sample", "thresholding"):
        assert not scheduler.config.get(key, False)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon", "sample"])
def test_targets_and_x0_prediction_are_consistent_and_unclamped(prediction_type):
    d = ABRDiffusion(prediction_type=prediction_type)
    g = torch.Generator().manual_seed(0)
    x0 = 5.0 * torch.randn(6, 1, 40, generator=g)  # far outside [−1, 1]
    noise = torch.randn(6, 1, 40, generator=g)
    t = torch.tensor([0, 1, 250, 500, 900, 999])
    x_t = d.add_noise(x0, noise, t)
    x0_hat = d.predict_x0(d.target(x0, noise, t), x_t, t)
    torch.testing.assert_close(x0_hat[:5], x0[:5], atol=1e-3, rtol=1e-3)
    assert x0_hat.abs().max() > 10, "x̂0 must not be clamped"
    for i in (1, 3):  # the same identity the diffusers scheduler uses in its step
        ref = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type, clip_sample=False)
        out = ref.step(d.target(x0, noise, t)[i:i + 1], int(t[i]), x_t[i:i + 1],
                       generator=torch.Generator().manual_seed(0)).pred_original_sample
        torch.testing.assert_close(x0_hat[i:i + 1], out, atol=1e-4, rtol=1e-4)


def test_velocity_target_and_noising_come_from_the_scheduler(diffusion):
    x0, noise, t = torch.randn(3, 1, 16), torch.randn(3, 1, 16), torch.tensor([10, 500, 990])
    s = diffusion.scheduler
    torch.testing.assert_close(diffusion.add_noise(x0, noise, t), s.add_noise(x0, noise, t))
    torch.testing.assert_close(diffusion.target(x0, noise, t), s.get_velocity(x0, noise, t))


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon", "sample"])
def test_min_snr_weights(prediction_type):
    d = ABRDiffusion(prediction_type=prediction_type, min_snr_gamma=5.0)
    t = torch.arange(1000)
    w = d.loss_weight(t)
    snr = d.snr
    x0_weight = torch.minimum(snr, torch.tensor(5.0))  # the weight on the x0-space error
    # error on the trained output -> x0-space error: ×1/(snr+1) for v, ×1/snr for ε, ×1 for x0
    factor = {"v_prediction": snr + 1, "epsilon": snr, "sample": torch.ones_like(snr)}[prediction_type]
    assert torch.isfinite(w).all() and (w >= 0).all()
    torch.testing.assert_close(w[1:-1] * factor[1:-1], x0_weight[1:-1], rtol=1e-4, atol=1e-6)
    assert torch.equal(ABRDiffusion(min_snr_gamma=None).loss_weight(t), torch.ones(1000))


def test_sample_timesteps_cover_the_range_and_follow_the_generator(diffusion):
    t = diffusion.sample_timesteps(4000, torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and t.min() == 0 and t.max() == 999
    torch.testing.assert_close(t, diffusion.sample_timesteps(4000, torch.Generator().manual_seed(0)))


# ----------------------------------------------------------------- samplers


@pytest.mark.parametrize("sampler,steps", [("ddpm", 1000), ("ddpm", 20), ("ddim", 50), ("dpm_solver", 20)])
def test_sampler_reaches_the_oracles_waveform_without_clamping(diffusion, sampler, steps):
    target = 3.0 * torch.sin(torch.linspace(0, 6.28, 32)).view(1, 1, 32)  # peaks at ±3
    x = diffusion.sample(Oracle(diffusion, target), torch.zeros(4, 4), sampler=sampler, steps=steps,
                         generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 32)
    torch.testing.assert_close(x, target.expand(4, 1, 32), atol=2e-2, rtol=0)
    assert x.max() > 2.5, "x̂0 must not be clamped to [−1, 1]"


@pytest.mark.parametrize("sampler,steps", [("ddpm", 50), ("ddim", 10), ("dpm_solver", 10)])
def test_untrained_network_gives_real_waveforms(diffusion, untrained, sampler, steps):
    static = torch.randn(3, 4)
    static[0, 1] = float("nan")
    x = diffusion.sample(untrained, static, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 64)
    assert torch.isfinite(x).all()
    assert (x.std(dim=-1) > 1e-3).all(), "waveforms must not be constant"
    assert (x.abs().amax(dim=-1) > 1e-3).all(), "waveforms must not be zero"
    assert untrained.training, "sampling puts the network in eval mode and restores it"


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_gives_identical_samples(diffusion, untrained, sampler):
    static = torch.randn(2, 4)

    def run(seed):
        return diffusion.sample(untrained, static, sampler=sampler, steps=8, length=48,
                                generator=torch.Generator().manual_seed(seed))

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_classifier_free_guidance_batches_both_passes(diffusion):
    oracle = Oracle(diffusion, torch.zeros(1, 1, 32))
    out = diffusion.guided_output(oracle, torch.randn(3, 1, 32), torch.tensor(500), torch.zeros(3, 4),
                                  torch.tensor([0, 2, 4]), None, guidance_scale=3.0)
    call = oracle.calls[-1]
    assert call["batch"] == 6
    assert call["hearing_loss"].tolist() == [0, 2, 4, -1, -1, -1] and call["threshold_db"] is None
    assert out.shape == (3, 1, 32)

    class Shift(nn.Module):  # output = class index: the guided output must be uncond + s·(cond − uncond)
        def forward(self, x, timesteps, static, hearing_loss=None, threshold_db=None):
            return ModelOutput(sample=hearing_loss.float().view(-1, 1, 1).expand_as(x).clone(), heads=None)

    out = diffusion.guided_output(Shift(), torch.zeros(2, 1, 4), torch.tensor(10), torch.zeros(2, 4),
                                  torch.tensor([1, 3]), torch.tensor([20.0, float("inf")]), guidance_scale=2.0)
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([-1 + 2.0 * 2, -1 + 2.0 * 4]))
    oracle.calls.clear()
    diffusion.sample(oracle, torch.zeros(2, 4), hearing_loss=torch.tensor([1, 1]), guidance_scale=1.0,
                     sampler="ddim", steps=3)
    assert [c["batch"] for c in oracle.calls] == [2, 2, 2], "scale 1: one pass, no unconditional batch"
    assert not any(c["training"] for c in oracle.calls)


def test_denoise_starts_from_the_noised_recording(diffusion, untrained):
    target = torch.sin(torch.linspace(0, 6.28, 32)).view(1, 1, 32).expand(2, 1, 32)
    oracle = Oracle(diffusion, target[:1])
    out = diffusion.denoise(oracle, target, 300, torch.zeros(2, 4), sampler="dpm_solver", steps=20,
                            generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, target, atol=2e-2, rtol=0)
    assert len(oracle.calls) == 6, "from t ≤ 300, 6 of the 20 steps remain"
    x = torch.randn(2, 1, 64)
    assert torch.equal(diffusion.denoise(untrained, x, 10, torch.zeros(2, 4), sampler="ddim", steps=20), x)
    y = diffusion.denoise(untrained, x, 500, torch.zeros(2, 4), sampler="ddim", steps=20)
    assert y.shape == x.shape and torch.isfinite(y).all() and not torch.equal(x, y)


# ----------------------------------------------------------------- end to end


def test_toy_training_then_sampling_reproduces_the_conditioned_template():
    """Two ABR-like templates chosen by the class condition: a small network trained for 200 AdamW
    steps must generate, from pure noise, the template its class asks for (every sample r > 0.9)."""
    length = 64
    n = torch.arange(length, dtype=torch.float32)

    def bump(centre, width):
        return torch.exp(-0.5 * ((n - centre) / width) ** 2)

    templates = torch.stack([bump(18, 2.5) - 0.6 * bump(26, 3.0),
                             0.8 * bump(40, 2.0) - bump(47, 3.5) + 0.3 * bump(12, 2.0)])
    templates = templates / templates.std(dim=1, keepdim=True)
    arch = "model.architecture"
    cfg = load_config(overrides=[f"data.signal_length={length}", f"{arch}.base_channels=16",
                                 f"{arch}.time_embed_dim=32", f"{arch}.encoder.d_state=8",
                                 f"{arch}.decoder.n_heads=2", f"{arch}.dropout=0",
                                 "diffusion.min_snr_gamma=null"], environ={})
    torch.manual_seed(0)
    model = build_model(cfg)
    diffusion = ABRDiffusion.from_config(cfg.diffusion)
    steps, batch = 200, 16
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)  # quiet final weights
    for _ in range(steps):
        cls = torch.randint(0, 2, (batch,))
        x0 = templates[cls][:, None]
        t = diffusion.sample_timesteps(batch)
        noise = torch.randn_like(x0)
        out = model(diffusion.add_noise(x0, noise, t), t, torch.randn(batch, 4), hearing_loss=cls)
        mse = (out.sample - diffusion.target(x0, noise, t)).square().mean(dim=(1, 2))
        loss = (diffusion.loss_weight(t) * mse).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()

    cls = torch.tensor([0, 1] * 6)
    for sampler, steps in [("ddim", 50), ("dpm_solver", 20)]:
        g = torch.Generator().manual_seed(0)
        x = diffusion.sample(model, torch.randn(12, 4, generator=g), hearing_loss=cls, sampler=sampler,
                             steps=steps, generator=g)[:, 0]
        r = torch.stack([torch.corrcoef(torch.stack([x[i], templates[cls[i]]]))[0, 1] for i in range(12)])
        assert (r > 0.9).all(), f"{sampler}: correlations with the conditioned template {r.tolist()}"
        assert torch.isfinite(x).all() and 0.5 < x.std(dim=1).mean() < 2.0
