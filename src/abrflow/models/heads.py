"""Multi-task heads: wave V (presence, latency, amplitude), hearing-loss class, threshold.

The heads see mean- and max-pooled bottleneck features (global context) and decoder features
(full-resolution detail, where a wave-V peak is localised). Regression outputs come out in physical
units; internally each head predicts a normalised value n that ``denormalise`` maps to units with
stored target statistics, so training can compute its losses on normalised targets
(``heads.normalise``) while callers read milliseconds, microvolts and dB.

Latency is ``softplus(mean + std·n)`` ms: positive and unbounded above (the predecessor squashed
latency into 1–8 ms although 39% of real V latencies are longer, DESIGN.md §9). Log-spreads are
natural logs of a standard deviation in the same units (for latency: of the pre-softplus value,
which equals ms to within 0.2% above 5 ms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_TARGET_STATS: dict[str, tuple[float, float]] = {
    "v_latency_ms": (6.5, 1.2),
    "v_amplitude_uv": (0.3, 0.2),
    "threshold_db": (30.0, 25.0),
}
# log-spread output -> the value whose units it measures
_LOG_STD_OF = {"v_latency_log_std": "v_latency_ms", "v_amplitude_log_std": "v_amplitude_uv",
               "threshold_log_std": "threshold_db"}


@dataclass
class HeadOutput:
    """Per-recording predictions, every field [B] except ``hearing_loss_logits`` [B, n_classes]."""

    v_present_logit: Tensor
    v_latency_ms: Tensor
    v_latency_log_std: Tensor
    v_amplitude_uv: Tensor
    v_amplitude_log_std: Tensor
    hearing_loss_logits: Tensor
    threshold_db: Tensor
    threshold_log_std: Tensor
    threshold_no_response_logit: Tensor

    def __getitem__(self, index) -> HeadOutput:
        """Rows of every field, e.g. ``heads[batch:]`` for the t = 0 half of a doubled batch."""
        return HeadOutput(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _softplus_inverse(y: Tensor) -> Tensor:
    return y + torch.log(-torch.expm1(-y))


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    out = nn.Linear(hidden, out_dim)
    with torch.no_grad():  # start every head near its normalised mean (n ≈ 0), yet not at exactly 0
        out.weight.mul_(0.1)
        out.bias.zero_()
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Dropout(dropout), out)


class MultiTaskHeads(nn.Module):
    def __init__(self, bottleneck_channels: int, decoder_channels: int, n_classes: int = 5,
                 hidden: int = 128, dropout: float = 0.0):
        super().__init__()
        in_dim = 2 * (bottleneck_channels + decoder_channels)
        self.trunk = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.SiLU(),
                                   nn.Dropout(dropout))
        self.peak = _mlp(hidden, hidden, 5, dropout)  # present, latency, log-std, amplitude, log-std
        self.hearing_loss = _mlp(hidden, hidden, n_classes, dropout)
        self.threshold = _mlp(hidden, hidden, 3, dropout)  # value, log-std, no-response logit
        for name, (mean, std) in DEFAULT_TARGET_STATS.items():
            self.register_buffer(f"{name}_stats", torch.tensor([mean, std], dtype=torch.float32))

    # ----------------------------------------------------------------- target statistics

    def set_target_stats(self, **stats: tuple[float, float]) -> None:
        """Set (mean, std) of any of v_latency_ms, v_amplitude_uv, threshold_db (training split)."""
        for name, value in stats.items():
            if name not in DEFAULT_TARGET_STATS:
                raise KeyError(f"unknown target {name!r}; expected one of {list(DEFAULT_TARGET_STATS)}")
            mean, std = (float(v) for v in value)
            if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
                raise ValueError(f"target stats for {name} must be a finite mean and std > 0, got {value}")
            getattr(self, f"{name}_stats").copy_(torch.tensor([mean, std]))

    def _stats(self, name: str) -> tuple[Tensor, Tensor]:
        key = _LOG_STD_OF.get(name, name)
        if key not in DEFAULT_TARGET_STATS:
            raise KeyError(f"unknown target {name!r}; expected one of "
                           f"{list(DEFAULT_TARGET_STATS) + list(_LOG_STD_OF)}")
        stats = getattr(self, f"{key}_stats")
        return stats[0], stats[1]

    def normalise(self, name: str, value: Tensor) -> Tensor:
        """Physical units -> the head's internal scale (the scale losses should be computed on)."""
        mean, std = self._stats(name)
        if name in _LOG_STD_OF:
            return value - std.log()
        if name == "v_latency_ms":
            value = _softplus_inverse(value)
        return (value - mean) / std

    def denormalise(self, name: str, value: Tensor) -> Tensor:
        """Internal scale -> physical units (exact inverse of ``normalise``)."""
        mean, std = self._stats(name)
        if name in _LOG_STD_OF:
            return value + std.log()
        value = mean + std * value
        return F.softplus(value) if name == "v_latency_ms" else value

    # ----------------------------------------------------------------- forward

    @staticmethod
    def pool(h: Tensor) -> Tensor:
        return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)

    def forward(self, bottleneck: Tensor, decoder: Tensor) -> HeadOutput:
        z = self.trunk(torch.cat([self.pool(bottleneck), self.pool(decoder)], dim=-1))
        peak, thr = self.peak(z), self.threshold(z)
        d = self.denormalise
        return HeadOutput(
            v_present_logit=peak[:, 0],
            v_latency_ms=d("v_latency_ms", peak[:, 1]),
            v_latency_log_std=d("v_latency_log_std", peak[:, 2]),
            v_amplitude_uv=d("v_amplitude_uv", peak[:, 3]),
            v_amplitude_log_std=d("v_amplitude_log_std", peak[:, 4]),
            hearing_loss_logits=self.hearing_loss(z),
            threshold_db=d("threshold_db", thr[:, 0]),
            threshold_log_std=d("threshold_log_std", thr[:, 1]),
            threshold_no_response_logit=thr[:, 2],
        )
