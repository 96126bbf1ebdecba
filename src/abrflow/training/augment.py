"""Training augmentations for the analysis heads: what differs between our simulator and a clinic.

Real systems filter differently (SmartEP records low-passed near 1.5 kHz), define stimulus onset
differently (a few tenths of a millisecond), amplify differently, and their noise is not our 1/f
noise. Each training recording is, with probability ``p`` per transform, band-limited by a random
zero-phase Butterworth band-pass, shifted in time, stretched in time (later, broader waves: tone
bursts, immaturity), scaled in amplitude, given a baseline offset and slow drift (exports without
a high-pass), and — where it has no marked wave — extra noise of a random colour. The targets follow the transform (latency shifts and stretches, amplitude scales);
a transform that would change a label we cannot recompute is not applied (no extra noise on a
recording with a marked wave, no stretch that pushes a mark out of the window).

Only the heads' half of the step sees augmented recordings: the diffusion model keeps learning the
cohort's own waveforms, so generation is unchanged. Randomness comes from torch's generator, which
the module seeds per step, so a resumed run augments exactly as an uninterrupted one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Latest wave latency a stretch may move a mark to, as a share of the window.
_MAX_LATENCY_SHARE = 0.95


def enabled(aug_cfg) -> bool:
    return aug_cfg is not None and float(aug_cfg.probability) > 0


def _log_uniform(lo: float, hi: float, n: int, device) -> torch.Tensor:
    u = torch.rand(n, device=device)
    return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)


def _chosen(p: float, n: int, device) -> torch.Tensor:
    return torch.rand(n, device=device) < p


def _butterworth_power(freqs_hz: torch.Tensor, low_hz: torch.Tensor, high_hz: torch.Tensor,
                       order: int) -> torch.Tensor:
    """|H(f)|² of a Butterworth high-pass at ``low_hz`` times a low-pass at ``high_hz`` [N, F]: the
    response of filtering forward and backward (zero phase: peaks keep their latency)."""
    f = freqs_hz[None, :].clamp_min(1e-3)
    hp = 1.0 / (1.0 + (low_hz[:, None] / f) ** (2 * order))
    lp = 1.0 / (1.0 + (f / high_hz[:, None]) ** (2 * order))
    return hp * lp


def _band_limit(x: torch.Tensor, rows: torch.Tensor, low_hz: torch.Tensor, high_hz: torch.Tensor,
                fs_hz: float, order: int = 2) -> torch.Tensor:
    """Zero-phase band-pass of ``rows`` of x [N, T] in the frequency domain, on a reflect-padded copy
    so that the circular transform does not wrap the end of the trace onto its start."""
    if not bool(rows.any()):
        return x
    sub = x[rows]
    pad = min(sub.shape[-1] - 1, sub.shape[-1] // 2)
    padded = F.pad(sub[:, None, :], (pad, pad), mode="reflect")[:, 0, :]
    n = padded.shape[-1]
    freqs = torch.fft.rfftfreq(n, d=1.0 / fs_hz).to(x.device)
    gain = _butterworth_power(freqs, low_hz[rows], high_hz[rows], order)
    filtered = torch.fft.irfft(torch.fft.rfft(padded, dim=-1) * gain, n=n, dim=-1)[:, pad:pad + sub.shape[-1]]
    out = x.clone()
    out[rows] = filtered.to(x.dtype)
    return out


def _resample(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x [N, T] read at fractional sample ``positions`` [N, T] (linear; held at the edges)."""
    t = x.shape[-1]
    pos = positions.clamp(0, t - 1)
    i0 = pos.floor().long().clamp(max=t - 2)
    frac = pos - i0
    return torch.gather(x, 1, i0) * (1 - frac) + torch.gather(x, 1, i0 + 1) * frac


def _coloured_noise(n: int, t: int, exponent: torch.Tensor, device) -> torch.Tensor:
    """Unit-SD noise [N, T] with power ∝ 1/f^exponent (0 white … 2 brown), one exponent per row."""
    freqs = torch.arange(t // 2 + 1, device=device, dtype=torch.float32).clamp_min(1.0)
    amp = freqs[None, :] ** (-exponent[:, None] / 2)
    amp[:, 0] = 0.0
    spec = torch.complex(torch.randn(n, freqs.numel(), device=device), torch.randn(n, freqs.numel(), device=device))
    noise = torch.fft.irfft(spec * amp, n=t, dim=-1)
    return noise / noise.std(dim=-1, keepdim=True).clamp_min(1e-12)


def augment_batch(batch: dict[str, torch.Tensor], aug_cfg, sampling_rate_hz: float) -> dict[str, torch.Tensor]:
    """A copy of ``batch`` with augmented signals and the targets that follow them (see module doc)."""
    p = float(aug_cfg.probability)
    x = batch["signal"][:, 0, :].float()
    n, t = x.shape
    dev = x.device
    ms_per_sample = 1000.0 / sampling_rate_hz
    lat = batch["wave_latency_ms"].float().clone()  # [n, 3]: waves I, III, V
    lat_mask = batch["wave_latency_mask"].float()
    amp = batch["wave_amplitude_uv"].float().clone()
    marked = (batch["wave_present"] > 0).any(dim=1)

    # Band limit: corners drawn log-uniformly; applied to whole recording (response and noise alike).
    rows = _chosen(p, n, dev)
    nyquist = sampling_rate_hz / 2
    low = _log_uniform(float(aug_cfg.highpass_hz[0]), float(aug_cfg.highpass_hz[1]), n, dev)
    high = _log_uniform(float(aug_cfg.lowpass_hz[0]), min(float(aug_cfg.lowpass_hz[1]), 0.99 * nyquist), n, dev)
    x = _band_limit(x, rows, low, high, sampling_rate_hz)

    # Time stretch (≥ 1: later and broader waves) and shift; marked latencies move with the trace.
    stretch = 1.0 + (float(aug_cfg.time_stretch_max) - 1.0) * torch.rand(n, device=dev)
    latest_ms = _MAX_LATENCY_SHARE * (t - 1) * ms_per_sample
    room = torch.where(lat_mask > 0, latest_ms / lat.clamp_min(1e-3), torch.full_like(lat, float("inf"))).amin(dim=1)
    stretch = torch.where(_chosen(p, n, dev), torch.minimum(stretch, room.clamp_min(1.0)), torch.ones_like(stretch))
    shift_ms = (2 * torch.rand(n, device=dev) - 1) * float(aug_cfg.time_shift_ms)
    shift_ms = torch.where(_chosen(p, n, dev), shift_ms, torch.zeros_like(shift_ms))
    new_lat = lat * stretch[:, None] + shift_ms[:, None]
    outside = ((lat_mask > 0) & ((new_lat < 0) | (new_lat > (t - 1) * ms_per_sample))).any(dim=1)
    shift_ms = torch.where(outside, torch.zeros_like(shift_ms), shift_ms)
    if bool((stretch != 1).any() or (shift_ms != 0).any()):
        grid = torch.arange(t, device=dev, dtype=torch.float32)[None, :]
        x = _resample(x, (grid - shift_ms[:, None] / ms_per_sample) / stretch[:, None])
    lat = torch.where(lat_mask > 0, lat * stretch[:, None] + shift_ms[:, None], lat)

    # Amplitude: one gain per recording; the marked amplitude scales with it.
    gain_max = float(aug_cfg.amplitude_scale_max)
    gain = torch.where(_chosen(p, n, dev), _log_uniform(1.0 / gain_max, gain_max, n, dev), torch.ones(n, device=dev))
    x = x * gain[:, None]
    amp = amp * gain[:, None]

    # Baseline: an offset, a trend and a slow wave (recordings without a high-pass drift; EARNDB's do).
    drifting = _chosen(p, n, dev)
    if bool(drifting.any()):
        size = float(aug_cfg.drift_sd_max) * torch.rand(n, device=dev) * x.std(dim=-1)
        u = torch.linspace(-1.0, 1.0, t, device=dev)[None, :]
        period = 2.0 + 4.0 * torch.rand(n, 1, device=dev)  # in window lengths: 20–60 ms for a 10 ms window
        phase = 2 * math.pi * torch.rand(n, 1, device=dev)
        parts = torch.randn(n, 3, device=dev)
        shape = parts[:, :1] + parts[:, 1:2] * u + parts[:, 2:3] * torch.sin(2 * math.pi * u / period + phase)
        shape = shape / shape.abs().amax(dim=-1, keepdim=True).clamp_min(1e-6)
        x = torch.where(drifting[:, None], x + size[:, None] * shape, x)

    # Extra noise of random colour, only where no wave is marked (the labels stay true).
    noisy = _chosen(p, n, dev) & ~marked
    if bool(noisy.any()):
        level = float(aug_cfg.noise_sd_max) * torch.rand(n, device=dev) * x.std(dim=-1)
        colour = float(aug_cfg.noise_exponent_max) * torch.rand(n, device=dev)
        noise = _coloured_noise(n, t, colour, dev) * level[:, None]
        x = torch.where(noisy[:, None], x + noise, x)

    out = dict(batch)
    out["signal"] = x[:, None, :].to(batch["signal"].dtype)
    out["wave_latency_ms"] = lat.to(batch["wave_latency_ms"].dtype)
    out["wave_amplitude_uv"] = amp.to(batch["wave_amplitude_uv"].dtype)
    return out
