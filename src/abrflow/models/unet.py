"""Hierarchical 1-D U-Net for ABR diffusion (DESIGN.md §6).

Encoder levels: residual conv blocks + S4D layers (global context cheaply), then a stride-2 conv.
Bottleneck: residual block + transformer layer (global context at the coarsest, cheapest length). Decoder levels: upsample, concat the
skip, residual conv blocks + transformer layers. Every block is FiLM-modulated by the sum of the
timestep, static-input and (optional) class/threshold embeddings. The output is the full-length
diffusion prediction; the heads read pooled bottleneck and decoder features.

Conditions for generation (class, threshold) each have a learned null token and are dropped to it
while training (classifier-free guidance). For diagnosis, callers pass neither: the heads must not
be able to read the label they predict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import (
    ResBlock,
    S4Block,
    StaticEmbedding,
    ThresholdEmbedding,
    TimestepEmbedding,
    TransformerBlock,
    group_norm,
)
from .heads import HeadOutput, MultiTaskHeads


@dataclass
class ModelOutput:
    sample: Tensor  # [B, 1, T] the diffusion prediction (v, ε or x0 per diffusion.prediction_type)
    heads: HeadOutput

    def __getitem__(self, index) -> ModelOutput:
        return ModelOutput(sample=self.sample[index], heads=self.heads[index])


class _Level(nn.Module):
    """One resolution: its blocks plus the resampling into (decoder) or out of (encoder) it."""

    def __init__(self, blocks: list[nn.Module], resample: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample

    def run(self, h: Tensor, cond: Tensor) -> Tensor:
        for block in self.blocks:
            h = block(h, cond)
        return h


def _upsample(in_channels: int, out_channels: int) -> nn.Module:
    """×2 by a stride-2 transposed conv: each input sample yields two learned output samples (no
    overlap, so no checkerboard), computed at the coarse length: 4× cheaper than nearest + conv."""
    return nn.ConvTranspose1d(in_channels, out_channels, 2, stride=2)


class HierarchicalUNet(nn.Module):
    def __init__(self, *, signal_length: int = 200, sampling_rate_hz: float = 20000.0, static_dim: int = 4,
                 n_classes: int = 5,
                 base_channels: int = 16, n_levels: int = 3, channel_mults: tuple[int, ...] = (1, 2, 2),
                 n_res_blocks: int = 1, dropout: float = 0.1, time_embed_dim: int = 128,
                 n_s4_layers: int = 1, d_state: int = 32, s4_init: str = "lin", bidirectional: bool = True,
                 n_transformer_layers: int = 1, n_heads: int = 1,
                 static_missing_prob: float = 0.1, use_class_condition: bool = True,
                 use_threshold_condition: bool = True, cond_drop_prob: float = 0.1):
        super().__init__()
        if len(channel_mults) != n_levels:
            raise ValueError(f"channel_mults {list(channel_mults)} must have n_levels = {n_levels} entries")
        self.signal_length, self.static_dim, self.n_classes = signal_length, static_dim, n_classes
        self.n_levels, self.cond_drop_prob = n_levels, cond_drop_prob
        widths = [base_channels * m for m in channel_mults]
        emb = time_embed_dim

        self.time_embed = TimestepEmbedding(emb)
        self.static_embed = StaticEmbedding(static_dim, emb, static_missing_prob)
        # one extra row: index n_classes is the null (unconditional) token
        self.class_embed = nn.Embedding(n_classes + 1, emb) if use_class_condition else None
        self.threshold_embed = ThresholdEmbedding(emb) if use_threshold_condition else None

        def s4(c: int) -> S4Block:
            return S4Block(c, emb, d_state, s4_init, bidirectional, dropout)

        def attn(c: int, first: bool) -> TransformerBlock:
            return TransformerBlock(c, emb, n_heads, dropout, add_positions=first)

        self.in_conv = nn.Conv1d(1, widths[0], 3, padding=1)
        self.encoder = nn.ModuleList()
        c_prev = widths[0]
        for i, w in enumerate(widths):
            blocks = [ResBlock(c_prev if j == 0 else w, w, emb, dropout) for j in range(n_res_blocks)]
            blocks += [s4(w) for _ in range(n_s4_layers)]
            down = nn.Conv1d(w, w, 3, stride=2, padding=1) if i < n_levels - 1 else nn.Identity()
            self.encoder.append(_Level(blocks, down))
            c_prev = w
        w = widths[-1]
        self.mid = _Level([ResBlock(w, w, emb, dropout), attn(w, True)], nn.Identity())
        self.decoder = nn.ModuleList()
        for i in reversed(range(n_levels)):
            w = widths[i]
            up = _upsample(widths[i + 1], w) if i < n_levels - 1 else nn.Identity()
            blocks = [ResBlock(2 * w if j == 0 else w, w, emb, dropout) for j in range(n_res_blocks)]
            blocks += [attn(w, j == 0) for j in range(n_transformer_layers)]
            self.decoder.append(_Level(blocks, up))
        self.out = nn.Sequential(group_norm(widths[0]), nn.SiLU(), nn.Conv1d(widths[0], 1, 3, padding=1))
        self.heads = MultiTaskHeads(widths[-1], widths[0], n_classes, hidden=2 * max(widths), dropout=dropout,
                                    sample_ms=1000.0 / sampling_rate_hz)

    @classmethod
    def from_config(cls, model_cfg, data_cfg) -> HierarchicalUNet:
        """Build from ``cfg.model`` and ``cfg.data`` (signal_length, static_dim, n_classes)."""
        a, c = model_cfg.architecture, model_cfg.conditioning
        return cls(signal_length=data_cfg.signal_length, sampling_rate_hz=data_cfg.sampling_rate_hz,
                   static_dim=data_cfg.static_dim,
                   n_classes=data_cfg.n_classes, base_channels=a.base_channels, n_levels=a.n_levels,
                   channel_mults=tuple(a.channel_mults), n_res_blocks=a.n_res_blocks, dropout=a.dropout,
                   time_embed_dim=a.time_embed_dim, n_s4_layers=a.encoder.n_s4_layers,
                   d_state=a.encoder.d_state, s4_init=a.encoder.s4_init,
                   bidirectional=a.encoder.bidirectional, n_transformer_layers=a.decoder.n_transformer_layers,
                   n_heads=a.decoder.n_heads, static_missing_prob=c.static_missing_prob,
                   use_class_condition=c.use_class_condition,
                   use_threshold_condition=c.use_threshold_condition, cond_drop_prob=c.cond_drop_prob)

    def set_target_stats(self, **stats: tuple[float, float]) -> None:
        """(mean, std) of the wave amplitudes and threshold_db on the training split."""
        self.heads.set_target_stats(**stats)

    # ----------------------------------------------------------------- conditioning

    def _drop(self, batch: int, device: torch.device) -> Tensor:
        return torch.rand(batch, device=device) < self.cond_drop_prob

    def embed(self, timesteps: Tensor, static: Tensor, hearing_loss: Tensor | None = None,
              threshold_db: Tensor | None = None) -> Tensor:
        """The [B, E] vector that drives every block's FiLM."""
        batch, device = static.shape[0], static.device
        timesteps = torch.as_tensor(timesteps, device=device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(batch)
        cond = self.time_embed(timesteps) + self.static_embed(static)
        # Generation conditions: dropped jointly with p (the guidance's unconditional model) and
        # each alone with p (so class-only and threshold-only conditioning are learned too).
        drop_all = self._drop(batch, device) if self.training else None
        if self.class_embed is not None:
            null = torch.full((batch,), self.n_classes, device=device, dtype=torch.long)
            idx = null
            if hearing_loss is not None:
                idx = torch.as_tensor(hearing_loss, device=device).long().expand(batch)
                # Eager mode only: a data-dependent branch would split a torch.compile graph.
                if not torch.compiler.is_compiling() and ((idx < -1) | (idx >= self.n_classes)).any():
                    raise ValueError(f"hearing_loss must be in [-1, {self.n_classes - 1}] (−1 = unconditional)")
                idx = torch.where(idx < 0, null, idx)
            if drop_all is not None:
                idx = torch.where(drop_all | self._drop(batch, device), null, idx)
            cond = cond + self.class_embed(idx)
        if self.threshold_embed is not None:
            nan = torch.full((batch,), float("nan"), device=device)
            thr = nan if threshold_db is None else torch.as_tensor(threshold_db, device=device).float().expand(batch)
            if drop_all is not None:
                thr = torch.where(drop_all | self._drop(batch, device), nan, thr)
            cond = cond + self.threshold_embed(thr)
        return F.silu(cond)

    # ----------------------------------------------------------------- forward

    def forward(self, x: Tensor, timesteps: Tensor, static: Tensor, hearing_loss: Tensor | None = None,
                threshold_db: Tensor | None = None) -> ModelOutput:
        if x.ndim != 3 or x.shape[1] != 1:
            raise ValueError(f"x must have shape [batch, 1, length], got {list(x.shape)}")
        length = x.shape[-1]
        cond = self.embed(timesteps, static, hearing_loss, threshold_db)
        factor = 2 ** (self.n_levels - 1)
        h = self.in_conv(F.pad(x, (0, -length % factor)))  # pad to a multiple of 2^(levels−1)
        skips = []
        for level in self.encoder:
            h = level.run(h, cond)
            skips.append(h)
            h = level.resample(h)
        h = bottleneck = self.mid.run(h, cond)
        for level, skip in zip(self.decoder, reversed(skips)):
            h = level.run(torch.cat([level.resample(h), skip], dim=1), cond)
        h = h[..., :length]
        heads = self.heads(bottleneck[..., : -(-length // factor)], h)
        return ModelOutput(sample=self.out(h), heads=heads)


def build_model(cfg) -> HierarchicalUNet:
    """The network of a full ABRConfig."""
    return HierarchicalUNet.from_config(cfg.model, cfg.data)
