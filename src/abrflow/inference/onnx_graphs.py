"""The two graphs ``abrflow export`` writes, as PyTorch modules the exporter can trace.

What the exporter cannot take is replaced inside an export-only copy of the network, never in the
model itself: S4D kernels are complex-valued functions of the weights and the (fixed) window length,
so they are evaluated once and stored as constants; the conditioning's input checks branch on tensor
values (data-dependent control flow), so the copy embeds conditions with the same arithmetic and no
checks. Both graphs carry the checkpoint's normalisation, so a deployment feeds raw units.
"""

from __future__ import annotations

import copy
import types
from dataclasses import fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.normalization import highpass_matrix
from ..models.heads import HeadOutput
from ..models.s4d import S4D

#: The analysis graph's outputs, in order: the heads' fields.
HEAD_OUTPUTS: tuple[str, ...] = tuple(f.name for f in fields(HeadOutput))

# --------------------------------------------------------------------------- export-only network copy


class _ExportSSM(nn.Module):
    """S4D's linear map y = K ∗ u + D·u for the one window length its layer sees, exportable.

    The kernel, a complex-valued function of the weights and the length (ONNX has no complex type),
    is evaluated once. The FFT size is rounded up to a power of two: onnxruntime's DFT is a radix-2
    FFT there and a slower, less exact direct DFT otherwise. Any size ≥ 2L − 1 gives the same
    linear convolution; the anti-causal half of a bidirectional kernel goes to the top of the buffer.
    """

    def __init__(self, s4d: S4D, length: int):
        super().__init__()
        with torch.no_grad():
            k = s4d.kernel(length)  # [directions, H, L]
        self.length, self.n_fft = int(length), 1 << (2 * int(length) - 1).bit_length()
        pad = self.n_fft - self.length
        full = F.pad(k[0], (0, pad))
        if s4d.bidirectional:
            full = full + F.pad(k[1].flip(-1), (pad, 0))
        self.register_buffer("kernel", full.detach().clone())
        self.d = s4d.d

    def forward(self, u: Tensor) -> Tensor:
        dtype, u = u.dtype, u.float()
        spectrum = torch.fft.rfft(u, n=self.n_fft) * torch.fft.rfft(self.kernel, n=self.n_fft)
        y = torch.fft.irfft(spectrum, n=self.n_fft)[..., : self.length]
        return (y + u * self.d[:, None]).to(dtype)


def _embed_without_checks(self, timesteps: Tensor, static: Tensor, hearing_loss: Tensor | None = None,
                          threshold_db: Tensor | None = None) -> Tensor:
    """HierarchicalUNet.embed in eval mode, minus its value checks (data-dependent branches)."""
    batch = static.shape[0]
    cond = self.time_embed(timesteps.expand(batch) if timesteps.ndim == 0 else timesteps)
    cond = cond + self.static_embed(static)
    if self.class_embed is not None:
        null = torch.full((batch,), self.n_classes, dtype=torch.long, device=static.device)
        idx = null if hearing_loss is None else torch.where(hearing_loss < 0, null, hearing_loss.long())
        cond = cond + self.class_embed(idx)
    if self.threshold_embed is not None:
        te = self.threshold_embed
        if threshold_db is None:
            cond = cond + te.null
        else:
            null, no_resp = torch.isnan(threshold_db), torch.isposinf(threshold_db)
            finite = torch.where(null | no_resp, torch.zeros_like(threshold_db), threshold_db)
            emb = te.value((finite / te.scale_db)[:, None])
            emb = torch.where(no_resp[:, None], te.no_response, emb)
            cond = cond + torch.where(null[:, None], te.null, emb)
    return F.silu(cond)


def exportable_copy(model: nn.Module, signal_length: int) -> nn.Module:
    """A copy of ``model`` (eval mode) that torch.onnx can export for windows of ``signal_length``."""
    net = copy.deepcopy(model).cpu().eval()
    lengths: dict[S4D, int] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args: lengths.__setitem__(mod, args[0].shape[-1]))
             for m in net.modules() if isinstance(m, S4D)]
    with torch.inference_mode():
        net(torch.zeros(1, 1, signal_length), torch.zeros(1, dtype=torch.long), torch.zeros(1, net.static_dim))
    for h in hooks:
        h.remove()
    for s4d, length in lengths.items():
        ssm = _ExportSSM(s4d, length)
        s4d.add_module("export_ssm", ssm)
        object.__setattr__(s4d, "ssm", ssm)  # an instance attribute shadows the S4D.ssm method
    net.embed = types.MethodType(_embed_without_checks, net)
    return net


class _Normalise(nn.Module):
    """The checkpoint's NormalizationStats as graph operations."""

    def __init__(self, inference):
        super().__init__()
        s = inference.stats
        self.per_sample = s.mode == "per_sample"
        self.signal_scale = float(s.signal_scale)
        self.register_buffer("static_mean", torch.tensor(s.static_mean, dtype=torch.float32))
        self.register_buffer("static_std", torch.tensor(s.static_std, dtype=torch.float32))
        self.highpass = s.highpass_hz is not None
        if self.highpass:  # the input high-pass as the same fixed matrix NormalizationStats applies
            self.register_buffer("highpass_matrix", torch.from_numpy(np.array(highpass_matrix(
                inference.signal_length, float(s.sampling_rate_hz), float(s.highpass_hz)))))

    def signal(self, x: Tensor) -> Tensor:
        if self.highpass:
            x = x @ self.highpass_matrix
        if self.per_sample:
            mean = x.mean(dim=-1, keepdim=True)
            sd = ((x - mean) ** 2).mean(dim=-1, keepdim=True).sqrt()
            return (x - mean) / torch.where(sd > 0, sd, torch.ones_like(sd))
        return x / self.signal_scale

    def static(self, s: Tensor) -> Tensor:
        return (s - self.static_mean) / self.static_std


class HeadsGraph(nn.Module):
    """signal [B, 1, T] + raw static [B, 4] → the head outputs (the analysis path at t = 0)."""

    def __init__(self, inference):
        super().__init__()
        self.net = exportable_copy(inference.model, inference.signal_length)
        self.norm = _Normalise(inference)

    def forward(self, signal: Tensor, static: Tensor) -> tuple[Tensor, ...]:
        t = torch.zeros(signal.shape[0], dtype=torch.long, device=signal.device)
        heads = self.net(self.norm.signal(signal), t, self.norm.static(static)).heads
        return tuple(getattr(heads, name) for name in HEAD_OUTPUTS)


class DenoiserGraph(nn.Module):
    """(x, timestep, raw static, hearing_loss, threshold_db) → the network's diffusion prediction."""

    def __init__(self, inference):
        super().__init__()
        self.net = exportable_copy(inference.model, inference.signal_length)
        self.norm = _Normalise(inference)

    def forward(self, x: Tensor, timestep: Tensor, static: Tensor, hearing_loss: Tensor,
                threshold_db: Tensor) -> Tensor:
        return self.net(x, timestep, self.norm.static(static), hearing_loss, threshold_db).sample
