"""Multi-task heads: waves I, III and V (presence, latency, amplitude), hearing-loss class, threshold.

Wave latencies are localised, not regressed: a per-wave heatmap over time from the full-resolution
decoder features (one logit per sample), as keypoint detectors in vision and R-peak detectors in ECG
do (DESIGN.md §6). Regressing one number from pooled features pulled every latency toward the
cohort's mean (wave V +0.16 ms late for adults on synthetic data, issue 19). The latency is read as
the heatmap's mode refined by a soft-argmax within ``LOCAL_WINDOW_MS`` of it (integral regression
restricted to the mode's neighbourhood, so a second hump — wave VI, or IV of a IV–V complex — cannot
pull it); its spread is the heatmap's SD in the same neighbourhood. The amplitude is a second map read
at the same place. Presence adds two kinds of evidence: pooled features (the global view: is there a
response at all) and a third map read at the located peak (the local view: is this hump a wave or
noise). Pooled features alone never called the small wave I present on the recipe's training run.

Class and threshold heads read mean- and max-pooled bottleneck and decoder features. Regression
outputs come out in physical units; internally each predicts a normalised value that ``denormalise``
maps to units with stored target statistics (``heads.normalise`` gives losses the same scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

#: The heads' wave order: the columns of ``ABRRecords.wave_latency_ms``. The network knows no data
#: layer, so it spells them out; a test holds them equal to ``abrflow.data.schema.WAVE_KEYS``.
WAVE_KEYS: tuple[str, ...] = ("i", "iii", "v")

#: Half-width (ms) of the neighbourhood of the heatmap's mode that the latency and amplitude are read
#: from: below the closest spacing of neighbouring positive waves (IV–V about 0.6–1 ms apart), so the
#: readout stays on one peak.
LOCAL_WINDOW_MS = 0.4
#: Maps per wave: heatmap logit, amplitude, amplitude log-spread, local presence evidence.
MAPS_PER_WAVE = 4

DEFAULT_TARGET_STATS: dict[str, tuple[float, float]] = {
    "i_amplitude_uv": (0.15, 0.1),
    "iii_amplitude_uv": (0.2, 0.15),
    "v_amplitude_uv": (0.3, 0.2),
    "threshold_db": (30.0, 25.0),
}
# log-spread output -> the value whose units it measures
_LOG_STD_OF = {f"{w}_amplitude_log_std": f"{w}_amplitude_uv" for w in WAVE_KEYS} | {
    "threshold_log_std": "threshold_db"}


@dataclass
class HeadOutput:
    """Per-recording predictions, [B] each except ``hearing_loss_logits`` [B, n_classes] and
    ``wave_heatmap_logits`` [B, 3, T] (per wave, a logit per sample; softmax over time)."""

    i_present_logit: Tensor
    i_latency_ms: Tensor
    i_latency_log_std: Tensor
    i_amplitude_uv: Tensor
    i_amplitude_log_std: Tensor
    iii_present_logit: Tensor
    iii_latency_ms: Tensor
    iii_latency_log_std: Tensor
    iii_amplitude_uv: Tensor
    iii_amplitude_log_std: Tensor
    v_present_logit: Tensor
    v_latency_ms: Tensor
    v_latency_log_std: Tensor
    v_amplitude_uv: Tensor
    v_amplitude_log_std: Tensor
    wave_heatmap_logits: Tensor
    hearing_loss_logits: Tensor
    threshold_db: Tensor
    threshold_log_std: Tensor
    threshold_no_response_logit: Tensor

    def __getitem__(self, index) -> HeadOutput:
        """Rows of every field, e.g. ``heads[batch:]`` for the t = 0 half of a doubled batch."""
        return HeadOutput(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def wave(self, key: str, what: str) -> Tensor:
        """One wave's output, e.g. ``wave("iii", "latency_ms")``."""
        return getattr(self, f"{key}_{what}")


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    out = nn.Linear(hidden, out_dim)
    with torch.no_grad():  # start every head near its normalised mean (n ≈ 0), yet not at exactly 0
        out.weight.mul_(0.1)
        out.bias.zero_()
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Dropout(dropout), out)


def local_readout(logits: Tensor, maps: Tensor, sample_ms: float, half_width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Latency (ms), its log-SD and the ``maps`` [B, W, M, T] read at it, from heatmap ``logits`` [B, W, T].

    The softmax restricted to ``half_width`` samples around the mode: its mean is the latency, its SD
    (plus the sample grid's own ±½-sample uncertainty) the spread; ``maps`` are averaged with the same
    weights, detached (they read what lies at the peak; they do not move it).
    """
    length = logits.shape[-1]
    grid = torch.arange(length, device=logits.device, dtype=torch.float32)
    mode = logits.argmax(dim=-1, keepdim=True).float()
    near = (grid - mode).abs() <= half_width
    local = torch.softmax(logits.float().masked_fill(~near, float("-inf")), dim=-1)
    position = (local * grid).sum(-1)
    variance = (local * (grid - position[..., None]) ** 2).sum(-1) + 1.0 / 12.0
    # The maps are read with the weights detached: only the heatmap's own loss may move the located
    # peak (an amplitude or presence loss read through the weights would drag it to wherever its map
    # fits best — on the recipe's run that put V on wave I).
    read = (local.detach()[:, :, None, :] * maps.float()).sum(-1)
    return position * sample_ms, 0.5 * torch.log(variance) + math.log(sample_ms), read


class MultiTaskHeads(nn.Module):
    def __init__(self, bottleneck_channels: int, decoder_channels: int, n_classes: int = 5,
                 hidden: int = 128, dropout: float = 0.0, sample_ms: float = 0.05):
        super().__init__()
        in_dim = 2 * (bottleneck_channels + decoder_channels)
        n_waves = len(WAVE_KEYS)
        self.trunk = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.SiLU(),
                                   nn.Dropout(dropout))
        self.presence = _mlp(hidden, hidden, n_waves, dropout)
        # Per sample and wave: heatmap logit, amplitude (normalised), amplitude log-spread, presence evidence.
        self.wave_maps = nn.Sequential(nn.Conv1d(decoder_channels, decoder_channels, 5, padding=2), nn.SiLU(),
                                       nn.Conv1d(decoder_channels, MAPS_PER_WAVE * n_waves, 1))
        self.hearing_loss = _mlp(hidden, hidden, n_classes, dropout)
        self.threshold = _mlp(hidden, hidden, 3, dropout)  # value, log-std, no-response logit
        self.sample_ms = float(sample_ms)
        self.half_width = max(1, round(LOCAL_WINDOW_MS / self.sample_ms))
        for name, (mean, std) in DEFAULT_TARGET_STATS.items():
            self.register_buffer(f"{name}_stats", torch.tensor([mean, std], dtype=torch.float32))

    # ----------------------------------------------------------------- target statistics

    def set_target_stats(self, **stats: tuple[float, float]) -> None:
        """Set (mean, std) of any of the wave amplitudes and threshold_db (training split)."""
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
        return (value - mean) / std

    def denormalise(self, name: str, value: Tensor) -> Tensor:
        """Internal scale -> physical units (exact inverse of ``normalise``)."""
        mean, std = self._stats(name)
        if name in _LOG_STD_OF:
            return value + std.log()
        return mean + std * value

    # ----------------------------------------------------------------- forward

    @staticmethod
    def pool(h: Tensor) -> Tensor:
        return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)

    def forward(self, bottleneck: Tensor, decoder: Tensor) -> HeadOutput:
        z = self.trunk(torch.cat([self.pool(bottleneck), self.pool(decoder)], dim=-1))
        presence, thr = self.presence(z), self.threshold(z)
        maps = self.wave_maps(decoder).unflatten(1, (len(WAVE_KEYS), MAPS_PER_WAVE))  # [B, W, 4, T]
        logits = maps[:, :, 0]
        latency, log_std, read = local_readout(logits, maps[:, :, 1:], self.sample_ms, self.half_width)
        d = self.denormalise
        waves = {}
        for i, key in enumerate(WAVE_KEYS):
            waves[f"{key}_present_logit"] = presence[:, i] + read[:, i, 2]
            waves[f"{key}_latency_ms"] = latency[:, i]
            waves[f"{key}_latency_log_std"] = log_std[:, i]
            waves[f"{key}_amplitude_uv"] = d(f"{key}_amplitude_uv", read[:, i, 0])
            waves[f"{key}_amplitude_log_std"] = d(f"{key}_amplitude_log_std", read[:, i, 1])
        return HeadOutput(
            **waves,
            wave_heatmap_logits=logits,
            hearing_loss_logits=self.hearing_loss(z),
            threshold_db=d("threshold_db", thr[:, 0]),
            threshold_log_std=d("threshold_log_std", thr[:, 1]),
            threshold_no_response_logit=thr[:, 2],
        )
