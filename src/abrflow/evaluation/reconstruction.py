"""Reconstruction: recordings noised to a diffusion time t and run back by the sampler (x̂0), scored
against the recording itself (after the model's input high-pass)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data.records import ABRRecords
from . import metrics, stratify

#: Diffusion times (of T = 1000) at which recordings are noised and reconstructed.
RECONSTRUCTION_T = (100, 300, 500)
#: Recordings reconstructed per t (a fixed-seed subsample of the split): the sampler runs per t.
RECONSTRUCTION_MAX = 512

def _generators(device: torch.device, seeds: np.ndarray) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def reconstruct(inference, records: ABRRecords, t_values: Sequence[int], *, sampler: str,
                steps: int, seed: int) -> dict[int, tuple[int, np.ndarray]]:
    """t → (first sampler timestep ≤ t actually used, x̂0 [N, T] in the records' unit): each recording
    noised to t and run back by the sampler (``ABRDiffusion.denoise``), without class conditions."""
    x0 = inference.stats.normalize_signal(records.signal).astype(np.float32)
    static = inference.stats.normalize_static(records.static).astype(np.float32)
    scheduler = inference.diffusion.make_scheduler(sampler, steps)
    out = {}
    for t in t_values:
        used = scheduler.timesteps[scheduler.timesteps <= int(t)]
        parts = []
        for start in range(0, len(x0), inference.batch_size):
            rows = slice(start, start + inference.batch_size)
            x = torch.from_numpy(x0[rows][:, None, :]).to(inference.device)
            s = torch.from_numpy(static[rows]).to(inference.device)
            gens = _generators(inference.device, seed + int(t) * 100_003 + np.arange(len(x)) + start)
            y = inference.diffusion.denoise(inference.model, x, int(t), s, sampler=sampler, steps=steps,
                                            generator=gens)
            parts.append(y[:, 0].float().cpu().numpy())
        out[int(t)] = (int(used[0]) if len(used) else 0, inference.stats.denormalize_signal(np.concatenate(parts)))
    return out


def signal_group(records: ABRRecords, recon: dict[int, tuple[int, np.ndarray]], generation: dict | None,
                 true_signal: np.ndarray | None = None) -> dict:
    """``true_signal``: the recordings as the model sees them (after its input high-pass)."""
    fs = records.sampling_rate_hz
    true = (records.signal if true_signal is None else true_signal).astype(np.float64)
    age = records.age_years.astype(np.float64)
    rec = {}
    for t, (t_used, x) in recon.items():
        rec[f"t{t}"] = {"t_requested": t, "t_used": t_used, **metrics.signal_metrics(x, true, fs),
                        "by_age": stratify.by_age_stratum(age, metrics.signal_metrics, pred=x.astype(np.float64),
                                                         true=true, sampling_rate_hz=fs)}
    return {
        "unit": records.signal_unit,
        "reconstruction": {"what": "x̂0 of recordings noised to diffusion time t (of 1000) and denoised by the "
                                   "sampler, against the recording itself (after the model's input high-pass)",
                           "n": len(records), **rec},
        "generation": generation["signal"] if generation and "signal" in generation else
        {"reason": "no waveforms generated (generate_samples = 0)"},
    }
