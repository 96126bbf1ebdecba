"""Diffusion process: noising, training targets, loss weights and samplers, all from ``diffusers``
schedulers (DESIGN.md §2: no hand-written schedule tables or sampler update rules).

Three failures of the predecessor are ruled out here (DESIGN.md §9): timesteps always run strictly
downwards (checked on every scheduler this module builds), the scheduler really steps the sample,
and x̂0 is never clamped (``clip_sample=False``, no thresholding): ABR amplitudes are not in [−1, 1].
"""

from __future__ import annotations

import math
import numbers
import warnings
from contextlib import contextmanager

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor, nn

from .errors import ConfigError

SAMPLERS = ("ddpm", "ddim", "dpm_solver")


def _per_sample(values: Tensor, t: Tensor, ndim: int) -> Tensor:
    """values[t] shaped [B, 1, …] to broadcast against a [B, …] tensor of ``ndim`` dimensions."""
    out = values.to(t.device)[t.long()]
    return out.view(-1, *([1] * (ndim - 1)))


@contextmanager
def _eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class ABRDiffusion:
    """The noise schedule and samplers of ``cfg.diffusion``; the network is passed in per call."""

    def __init__(self, num_train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2",
                 prediction_type: str = "v_prediction", sampler: str = "dpm_solver", sampling_steps: int = 20,
                 guidance_scale: float = 1.0, min_snr_gamma: float | None = 5.0):
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler = {sampler!r} is not one of {list(SAMPLERS)}")
        if prediction_type not in ("v_prediction", "epsilon", "sample"):
            raise ValueError(f"prediction_type = {prediction_type!r} is not one of "
                             "['v_prediction', 'epsilon', 'sample']")
        self.num_train_timesteps, self.beta_schedule = num_train_timesteps, beta_schedule
        self.prediction_type, self.sampler, self.sampling_steps = prediction_type, sampler, sampling_steps
        self.guidance_scale, self.min_snr_gamma = guidance_scale, min_snr_gamma
        self.scheduler = self.make_scheduler("ddpm", num_train_timesteps)  # training: noising, targets
        alphas_cumprod = self.scheduler.alphas_cumprod.clone()
        self.alphas_cumprod = alphas_cumprod
        self.snr = alphas_cumprod / (1 - alphas_cumprod)

    @classmethod
    def from_config(cls, diffusion_cfg) -> ABRDiffusion:
        c = diffusion_cfg
        return cls(num_train_timesteps=c.num_train_timesteps, beta_schedule=c.beta_schedule,
                   prediction_type=c.prediction_type, sampler=c.sampler, sampling_steps=c.sampling_steps,
                   guidance_scale=c.guidance_scale, min_snr_gamma=c.min_snr_gamma)

    # ----------------------------------------------------------------- schedulers

    def sampling(self, sampler: str | None = None, steps: int | None = None,
                 guidance: float | None = None) -> tuple[str, int, float]:
        """(sampler, steps, guidance scale) of a call: each given one checked, each missing one this
        diffusion's default (the checkpoint's ``diffusion`` config). The one place these defaults are
        resolved; a bad value is a ConfigError (0 steps is an error, not "the default")."""
        sampler = self.sampler if sampler is None else str(sampler)
        if sampler not in SAMPLERS:
            raise ConfigError(f"sampler = {sampler!r} is not one of {list(SAMPLERS)}")
        if steps is None:
            steps = self.sampling_steps
        elif isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ConfigError(f"steps must be an integer ≥ 1, got {steps!r}")
        if not 1 <= int(steps) <= self.num_train_timesteps:
            raise ConfigError(f"steps = {steps} must be in [1, {self.num_train_timesteps}]")
        if guidance is None:
            guidance = self.guidance_scale
        elif isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not (
                math.isfinite(guidance) and guidance >= 0):
            raise ConfigError(f"guidance must be a number ≥ 0, got {guidance}")
        return sampler, int(steps), float(guidance)

    def make_scheduler(self, sampler: str | None = None, steps: int | None = None):
        """A fresh diffusers scheduler with its timesteps set (fresh: multistep solvers keep state).

        "trailing" spacing starts every sampler at t = T − 1, the pure-noise end that generation starts
        from (Lin et al. 2024); DPM-Solver++ clips λ(t) at −5.1 as diffusers advises for the cosine
        schedule, whose last steps are numerically unstable.
        """
        sampler, steps, _ = self.sampling(sampler, steps)
        common = dict(num_train_timesteps=self.num_train_timesteps, beta_schedule=self.beta_schedule,
                      prediction_type=self.prediction_type, thresholding=False, timestep_spacing="trailing")
        if sampler == "ddpm":
            scheduler = DDPMScheduler(**common, clip_sample=False, variance_type="fixed_small")
        elif sampler == "ddim":
            scheduler = DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True)
        else:  # dpm_solver
            lambda_min = -5.1 if self.beta_schedule == "squaredcos_cap_v2" else -float("inf")
            scheduler = DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                                    lambda_min_clipped=lambda_min, final_sigmas_type="zero")
        with warnings.catch_warnings():  # diffusers' own numpy-2 conversion notice; nothing a caller can act on
            warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
            scheduler.set_timesteps(steps)
        ts = scheduler.timesteps
        if not bool((ts[1:] < ts[:-1]).all()):
            raise RuntimeError(f"{sampler} timesteps do not descend strictly: {ts.tolist()}")
        return scheduler

    # ----------------------------------------------------------------- training

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None,
                         device: torch.device | str | None = None) -> Tensor:
        """Uniform integer timesteps in [0, T)."""
        gen_device = generator.device if generator is not None else device
        t = torch.randint(0, self.num_train_timesteps, (batch,), generator=generator, device=gen_device)
        return t.to(device) if device is not None else t

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε (the scheduler's forward process)."""
        return self.scheduler.add_noise(x0, noise, t)

    def target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """What the network is trained to output: v, ε or x0 per ``prediction_type``."""
        if self.prediction_type == "v_prediction":
            return self.scheduler.get_velocity(x0, noise, t)
        return noise if self.prediction_type == "epsilon" else x0

    def loss_weight(self, t: Tensor) -> Tensor:
        """[B] per-sample weights of the MSE on the network's output.

        min-SNR-γ (Hang et al. 2023) weights the x0-space loss by min(SNR, γ); expressed on the
        prediction actually trained that is min(SNR, γ)/(SNR + 1) for v, min(SNR, γ)/SNR for ε and
        min(SNR, γ) for x0. Uniform (1) when ``min_snr_gamma`` is None.
        """
        if self.min_snr_gamma is None:
            return torch.ones(t.shape, device=t.device)
        snr = self.snr.to(t.device)[t.long()]
        gamma = float(self.min_snr_gamma)
        if self.prediction_type == "v_prediction":
            return snr.clamp(max=gamma) / (snr + 1)
        if self.prediction_type == "epsilon":
            return (gamma / snr).clamp(max=1.0)  # = min(SNR, γ)/SNR, finite at SNR = 0
        return snr.clamp(max=gamma)

    def predict_x0(self, model_output: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """x̂0 from the network output, per sample, unclamped (the identity the schedulers' step uses)."""
        if self.prediction_type == "sample":
            return model_output
        alpha = _per_sample(self.alphas_cumprod, t, x_t.ndim).to(x_t.dtype)
        if self.prediction_type == "v_prediction":
            return alpha.sqrt() * x_t - (1 - alpha).sqrt() * model_output
        return (x_t - (1 - alpha).sqrt() * model_output) / alpha.sqrt()

    # ----------------------------------------------------------------- generation

    def guided_output(self, model: nn.Module, x: Tensor, t: Tensor, static: Tensor,
                      hearing_loss: Tensor | None, threshold_db: Tensor | None, guidance_scale: float) -> Tensor:
        """The network's prediction at timestep ``t``, with classifier-free guidance when the scale is
        not 1 and a condition is given: conditional and null-condition passes in one batch."""
        batch = x.shape[0]
        timesteps = t.to(x.device).long().expand(batch)
        guided = guidance_scale != 1.0 and (hearing_loss is not None or threshold_db is not None)
        if not guided:
            return model(x, timesteps, static, hearing_loss, threshold_db).sample
        # out = uncond + s·(cond − uncond)
        hl = None if hearing_loss is None else torch.cat([hearing_loss, torch.full_like(hearing_loss, -1)])
        thr = None if threshold_db is None else torch.cat(
            [threshold_db, torch.full_like(threshold_db, float("nan"))])
        out = model(torch.cat([x, x]), timesteps.repeat(2), torch.cat([static, static]), hl, thr).sample
        cond, uncond = out.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    def _run(self, model, scheduler, x: Tensor, timesteps: Tensor, static, hearing_loss, threshold_db,
             guidance_scale, generator) -> Tensor:
        static = static.to(x.device)
        batch = x.shape[0]
        if hearing_loss is not None:
            hearing_loss = torch.as_tensor(hearing_loss, device=x.device).long().expand(batch)
        if threshold_db is not None:
            threshold_db = torch.as_tensor(threshold_db, device=x.device, dtype=x.dtype).expand(batch)
        _, _, scale = self.sampling(guidance=guidance_scale)
        with _eval_mode(model):
            for t in timesteps:
                out = self.guided_output(model, x, t, static, hearing_loss, threshold_db, scale)
                x = scheduler.step(out, t, x, generator=generator).prev_sample
        return x

    @torch.inference_mode()
    def sample(self, model: nn.Module, static: Tensor, *, hearing_loss: Tensor | None = None,
               threshold_db: Tensor | None = None, sampler: str | None = None, steps: int | None = None,
               guidance_scale: float | None = None, generator: torch.Generator | None = None,
               length: int | None = None) -> Tensor:
        """Generate [B, 1, length] waveforms from pure noise, one per row of ``static``.

        ``hearing_loss`` (−1 = none) and ``threshold_db`` (NaN = none, +inf = no response) condition
        the generation; with ``guidance_scale`` ≠ 1 classifier-free guidance is applied.
        """
        length = int(length or model.signal_length)
        scheduler = self.make_scheduler(sampler, steps)
        noise = randn_tensor((static.shape[0], 1, length), generator=generator, device=static.device,
                             dtype=torch.float32)
        return self._run(model, scheduler, noise * scheduler.init_noise_sigma, scheduler.timesteps, static,
                         hearing_loss, threshold_db, guidance_scale, generator)

    @torch.inference_mode()
    def denoise(self, model: nn.Module, x0: Tensor, t_start: int, static: Tensor, *,
                hearing_loss: Tensor | None = None, threshold_db: Tensor | None = None,
                sampler: str | None = None, steps: int | None = None, guidance_scale: float | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """SDEdit: noise a recording [B, 1, T] to the sampler's first timestep ≤ ``t_start`` and run the
        sampler from there. Small t_start keeps the recording's shape and removes fine noise; t_start
        near T − 1 is plain generation."""
        scheduler = self.make_scheduler(sampler, steps)
        timesteps = scheduler.timesteps[scheduler.timesteps <= int(t_start)]
        if len(timesteps) == 0:
            return x0.clone()
        if hasattr(scheduler, "set_begin_index"):  # multistep solvers index their sigma table
            scheduler.set_begin_index(len(scheduler.timesteps) - len(timesteps))
        noise = randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x = self.scheduler.add_noise(x0, noise, timesteps[:1].expand(x0.shape[0]))
        return self._run(model, scheduler, x, timesteps, static, hearing_loss, threshold_db, guidance_scale,
                         generator)
