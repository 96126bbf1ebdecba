"""Building blocks of the U-Net: embeddings of the timestep and conditions, FiLM, residual conv,
S4D and transformer blocks.

Every block takes ``(h, cond)`` with h [B, C, L] and cond [B, E] (the summed timestep + static +
condition embedding), and applies FiLM from cond after its first normalisation: the timestep and
the conditions reach every block, which the predecessor's network failed to do (DESIGN.md §9).

Dropout on feature maps drops whole channels (``nn.Dropout1d``): neighbouring samples of a 20 kHz
ABR are strongly correlated, so element-wise dropout regularises little, and drawing one random
number per element costs more than the convolution around it on a CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .s4d import S4D


def group_norm(channels: int, affine: bool = True) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups; ``affine=False`` where FiLM follows and supplies scale and shift."""
    return nn.GroupNorm(math.gcd(8, channels), channels, affine=affine)


def sinusoidal_embedding(positions: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """[N] positions (timesteps or sample indices, int or float) -> [N, dim] sin/cos features."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=positions.device) / half)
    args = positions.float()[:, None] * freqs[None]
    emb = torch.cat([args.sin(), args.cos()], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of the diffusion timestep, then an MLP (DDPM/ADM style)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, timesteps: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(timesteps, self.dim))


class StaticEmbedding(nn.Module):
    """Embedding of the z-scored static inputs where each may be unknown (NaN).

    Input i becomes ``w_i·z_i + b_i`` when known and a learned ``missing_i`` vector when not, so NaN
    never enters the arithmetic. ``missing_prob`` masks known inputs at random while training so that
    the missing vectors learn what "unknown age / Fmp / intensity" means.
    """

    def __init__(self, n_inputs: int, dim: int, missing_prob: float = 0.0):
        super().__init__()
        self.n_inputs, self.missing_prob = n_inputs, missing_prob
        self.weight = nn.Parameter(torch.randn(n_inputs, dim))
        self.bias = nn.Parameter(torch.randn(n_inputs, dim) * 0.1)
        self.missing = nn.Parameter(torch.randn(n_inputs, dim))
        self.mlp = nn.Sequential(nn.Linear(n_inputs * dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, static: Tensor) -> Tensor:
        if static.ndim != 2 or static.shape[1] != self.n_inputs:
            raise ValueError(f"static must have shape [batch, {self.n_inputs}], got {list(static.shape)}")
        missing = torch.isnan(static)
        if self.training and self.missing_prob > 0:
            missing = missing | (torch.rand(static.shape, device=static.device) < self.missing_prob)
        z = torch.where(missing, torch.zeros_like(static), static)[..., None]  # [B, S, 1]
        emb = torch.where(missing[..., None], self.missing, z * self.weight + self.bias)  # [B, S, E]
        return self.mlp(emb.flatten(1))


class ThresholdEmbedding(nn.Module):
    """Embedding of a threshold condition in dB nHL: finite -> MLP of the value; NaN -> learned null
    token (unconditional); +inf -> learned "no response" token (profound loss, neuropathy)."""

    def __init__(self, dim: int, scale_db: float = 50.0):
        super().__init__()
        self.scale_db = scale_db
        self.value = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null = nn.Parameter(torch.randn(dim))
        self.no_response = nn.Parameter(torch.randn(dim))

    def forward(self, threshold_db: Tensor) -> Tensor:
        null, no_resp = torch.isnan(threshold_db), torch.isposinf(threshold_db)
        finite = torch.where(null | no_resp, torch.zeros_like(threshold_db), threshold_db)
        # Checked in eager mode only: a data-dependent branch would split a torch.compile graph.
        if not torch.compiler.is_compiling() and not torch.isfinite(finite).all():
            raise ValueError("threshold_db may be finite, NaN (unknown) or +inf (no response), not -inf")
        emb = self.value((finite / self.scale_db)[:, None])
        emb = torch.where(no_resp[:, None], self.no_response, emb)
        return torch.where(null[:, None], self.null, emb)


class FiLM(nn.Module):
    """Feature-wise affine modulation h·(1 + scale) + shift, scale and shift predicted from cond."""

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)

    def forward(self, h: Tensor, cond: Tensor, channel_dim: int = 1) -> Tensor:
        scale, shift = self.proj(cond).chunk(2, dim=-1)
        shape = [h.shape[0]] + [1] * (h.ndim - 1)
        shape[channel_dim] = -1
        return torch.addcmul(shift.view(shape), h, 1 + scale.view(shape))


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv → GroupNorm → FiLM → SiLU → dropout → conv, plus a (1×1) skip."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv1d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, affine=False)
        self.film = FiLM(cond_dim, out_channels)
        self.dropout = nn.Dropout1d(dropout)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        y = self.conv1(F.silu(self.norm1(h)))
        y = self.conv2(self.dropout(F.silu(self.film(self.norm2(y), cond))))
        return self.skip(h) + y


class S4Block(nn.Module):
    """Pre-norm residual S4D: h + S4D(FiLM(GroupNorm(h)))."""

    def __init__(self, channels: int, cond_dim: int, d_state: int, init: str = "lin",
                 bidirectional: bool = True, dropout: float = 0.0):
        super().__init__()
        self.norm = group_norm(channels, affine=False)
        self.film = FiLM(cond_dim, channels)
        self.s4 = S4D(channels, d_state, init, bidirectional, dropout)

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        return h + self.s4(self.film(self.norm(h), cond))


class TransformerBlock(nn.Module):
    """Pre-norm transformer layer over the sequence (FiLM after each LayerNorm, adaLN style).

    ``add_positions`` adds sinusoidal sample-index features first: fixed, so any length works.
    """

    def __init__(self, channels: int, cond_dim: int, n_heads: int, dropout: float = 0.0,
                 mlp_ratio: int = 2, add_positions: bool = False):
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"n_heads = {n_heads} must divide the width {channels}")
        self.n_heads, self.add_positions = n_heads, add_positions
        self.norm1 = nn.LayerNorm(channels, elementwise_affine=False)
        self.film1 = FiLM(cond_dim, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels, elementwise_affine=False)
        self.film2 = FiLM(cond_dim, channels)
        self.mlp = nn.Sequential(nn.Linear(channels, mlp_ratio * channels), nn.GELU(),
                                 nn.Linear(mlp_ratio * channels, channels))
        self.dropout = nn.Dropout1d(dropout)  # on both residual branches, whole channels

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        batch, channels, length = h.shape
        x = h.transpose(1, 2)  # [B, L, C]
        if self.add_positions:
            x = x + sinusoidal_embedding(torch.arange(length, device=h.device), channels).to(x.dtype)
        q, k, v = (self.qkv(self.film1(self.norm1(x), cond, channel_dim=2))
                   .view(batch, length, 3, self.n_heads, channels // self.n_heads).permute(2, 0, 3, 1, 4))
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self._drop(self.proj(a.transpose(1, 2).reshape(batch, length, channels)))
        x = x + self._drop(self.mlp(self.film2(self.norm2(x), cond, channel_dim=2)))
        return x.transpose(1, 2)

    def _drop(self, y: Tensor) -> Tensor:  # [B, L, C] -> channel dropout as on the conv feature maps
        return self.dropout(y.transpose(1, 2)).transpose(1, 2)

    def extra_repr(self) -> str:
        return f"n_heads={self.n_heads}, add_positions={self.add_positions}"
