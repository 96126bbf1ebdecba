"""Multi-task loss: diffusion (v-prediction MSE, min-SNR weighted) + waves I/III/V, class and threshold.

Every task term is masked (a missing label contributes nothing, not a zero target), computed on
normalised targets (the heads' own scale), and shape-checked: the predecessor silently
broadcast [B, 200] against [B, 1, 200] (DESIGN.md §9).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.heads import WAVE_KEYS, HeadOutput

TASKS = ("diffusion", "peak_exist", "peak_latency", "peak_amplitude", "classification", "threshold")
#: SD (ms) of the target heatmap around a marked latency: how far two experts' marks of the same wave
#: usually lie apart (most pairwise differences below 0.1 ms; Naves et al. 2012, BioMed Eng OnLine 11:86).
MARK_SD_MS = 0.1


def _same_shape(a: Tensor, b: Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: prediction shape {tuple(a.shape)} != target shape {tuple(b.shape)}")


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over entries where mask is 1; exactly 0 (with zero gradient) when nothing is labelled."""
    _same_shape(values, mask, "masked_mean")
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def gaussian_nll(mean: Tensor, log_std: Tensor, target: Tensor) -> Tensor:
    """Per-element Gaussian negative log-likelihood (constant dropped), log-spread clamped for stability."""
    log_std = log_std.clamp(-7.0, 7.0)
    return 0.5 * ((target - mean) * torch.exp(-log_std)) ** 2 + log_std


def heatmap_divergence(logits: Tensor, latency_ms: Tensor, sample_ms: float) -> Tensor:
    """Per-row KL(q ‖ softmax(logits)) of a Gaussian target heatmap q (SD ``MARK_SD_MS``)
    centred on each marked latency: 0 when the heatmap is the target, so the term's scale does not
    depend on the window length."""
    grid = torch.arange(logits.shape[-1], device=logits.device, dtype=torch.float32) * sample_ms
    log_q = -0.5 * ((grid - latency_ms.float()[..., None]) / MARK_SD_MS) ** 2
    log_q = torch.log_softmax(log_q, dim=-1)
    return (log_q.exp() * (log_q - torch.log_softmax(logits.float(), dim=-1))).sum(-1)


def class_weights_from_counts(counts: np.ndarray | Tensor) -> Tensor:
    """Inverse-frequency weights, mean 1 over the classes that occur (absent classes weigh 0)."""
    counts = torch.as_tensor(np.asarray(counts), dtype=torch.float32)
    present = counts > 0
    weights = torch.zeros_like(counts)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return weights / weights[present].mean()


def focal_loss(logits: Tensor, target: Tensor, gamma: float, weight: Tensor | None) -> Tensor:
    """Per-sample focal loss (Lin et al. 2017): down-weights easy, mostly NORMAL, recordings."""
    log_p = F.log_softmax(logits, dim=-1)
    log_pt = log_p.gather(1, target[:, None]).squeeze(1)
    loss = -((1 - log_pt.exp()) ** gamma) * log_pt
    if weight is not None:
        loss = loss * weight[target]
    return loss


class MultiTaskLoss(nn.Module):
    """Weighted sum of the six task losses; optional learned uncertainty weighting (Kendall et al.)."""

    def __init__(self, loss_cfg, class_counts: np.ndarray | None = None, sample_ms: float = 0.05):
        super().__init__()
        self.sample_ms = float(sample_ms)  # the heatmaps' time step
        self.weights = {k: float(loss_cfg.weights[k]) for k in TASKS}
        self.classification_loss = str(loss_cfg.classification_loss)
        self.regression_loss = str(loss_cfg.regression_loss)
        self.focal_gamma = float(loss_cfg.focal_gamma)
        if self.classification_loss in ("weighted_ce", "focal") and class_counts is not None:
            self.register_buffer("class_weights", class_weights_from_counts(class_counts))
        else:
            self.class_weights = None
        self.log_vars = nn.Parameter(torch.zeros(len(TASKS))) if loss_cfg.uncertainty_weighting else None

    # ------------------------------------------------------------------ terms
    def diffusion_term(self, prediction: Tensor, target: Tensor, weight: Tensor) -> Tensor:
        """Per-recording MSE of the network's prediction, weighted per timestep (min-SNR)."""
        _same_shape(prediction, target, "diffusion")
        if prediction.dim() != 3 or weight.shape != prediction.shape[:1]:
            raise ValueError(f"diffusion: expected [B,1,T] predictions and [B] weights, got "
                             f"{tuple(prediction.shape)} and {tuple(weight.shape)}")
        per_sample = ((prediction.float() - target.float()) ** 2).mean(dim=(1, 2))
        return (per_sample * weight).mean()

    def _regression(self, heads, name: str, log_std_name: str, target: Tensor, mask: Tensor,
                    normalise) -> Tensor:
        pred = getattr(heads, name)
        _same_shape(pred, target, name)
        z_pred = normalise(name, pred.float())
        z_target = normalise(name, target.float())
        if self.regression_loss == "gaussian_nll":
            per = gaussian_nll(z_pred, normalise(log_std_name, getattr(heads, log_std_name).float()), z_target)
        else:
            per = F.huber_loss(z_pred, z_target, reduction="none", delta=1.0)
        return masked_mean(torch.where(mask > 0, per, torch.zeros_like(per)), mask)

    def task_terms(self, heads: HeadOutput, batch: Mapping[str, Tensor], normalise) -> dict[str, Tensor]:
        """The five task losses of the t = 0 path, each masked where its label is missing. The wave
        terms add one term per wave (I, III, V): presence where it was judged, the heatmap's
        divergence from the mark where a mark lies inside the window, amplitude where marked;
        latency and amplitude are averaged over the waves, presence summed."""
        present, judged = batch["wave_present"].float(), batch["wave_present_mask"].float()
        lat, lat_mask = batch["wave_latency_ms"].float(), batch["wave_latency_mask"].float()
        amp, amp_mask = batch["wave_amplitude_uv"], batch["wave_amplitude_mask"]
        logits = heads.wave_heatmap_logits
        if logits.dim() != 3 or logits.shape[:2] != lat.shape:
            raise ValueError(f"peak_latency: heatmaps {tuple(logits.shape)} vs latencies {tuple(lat.shape)}")
        last_ms = (logits.shape[-1] - 1) * self.sample_ms
        locatable = lat_mask * ((lat >= 0) & (lat <= last_ms)).float()
        divergence = heatmap_divergence(logits, torch.where(locatable > 0, lat, torch.zeros_like(lat)), self.sample_ms)
        per_wave: dict[str, list[Tensor]] = {"peak_exist": [], "peak_latency": [], "peak_amplitude": []}
        for j, key in enumerate(WAVE_KEYS):
            logit = heads.wave(key, "present_logit")
            _same_shape(logit, present[:, j], "peak_exist")
            bce = F.binary_cross_entropy_with_logits(logit.float(), present[:, j], reduction="none")
            per_wave["peak_exist"].append(masked_mean(bce, judged[:, j]))
            per_wave["peak_latency"].append(masked_mean(divergence[:, j], locatable[:, j]))
            per_wave["peak_amplitude"].append(self._regression(
                heads, f"{key}_amplitude_uv", f"{key}_amplitude_log_std", amp[:, j], amp_mask[:, j], normalise))
        # Latency and amplitude: the mean over the waves, so the dense heatmaps of waves I and III do
        # not outweigh the diffusion term (summed, they cost the reconstruction r 0.956 → 0.912 on the
        # quality gate's run). Presence: the sum, so wave V's call keeps the weight it had alone (it
        # drives the per-ear threshold; at a third of it, deaf ears of the tuning cohort were called
        # deaf 35/46 times instead of 41/46).
        terms = {name: torch.stack(values).mean() for name, values in per_wave.items()}
        terms["peak_exist"] = torch.stack(per_wave["peak_exist"]).sum()
        target = batch["hearing_loss"]
        logits = heads.hearing_loss_logits.float()
        if logits.dim() != 2 or logits.shape[0] != target.shape[0]:
            raise ValueError(f"classification: logits {tuple(logits.shape)} vs targets {tuple(target.shape)}")
        known = (target >= 0).float()
        safe = target.clamp_min(0)
        if self.classification_loss == "focal":
            per = focal_loss(logits, safe, self.focal_gamma, self.class_weights)
        else:
            weight = self.class_weights if self.classification_loss == "weighted_ce" else None
            per = F.cross_entropy(logits, safe, weight=weight, reduction="none")
            if weight is not None:  # weighted mean, as cross_entropy's own reduction would give
                denom = (weight[safe] * known).sum().clamp_min(1e-8)
                terms["classification"] = (per * known).sum() / denom
        if "classification" not in terms:
            terms["classification"] = masked_mean(per, known)
        value = self._regression(heads, "threshold_db", "threshold_log_std", batch["threshold_db"],
                                 batch["threshold_mask"], normalise)
        no_resp = F.binary_cross_entropy_with_logits(
            heads.threshold_no_response_logit.float(), batch["no_response"].float(), reduction="none")
        terms["threshold"] = value + masked_mean(no_resp, batch["no_response_mask"].float())
        return terms

    # ------------------------------------------------------------------ total
    def combine(self, terms: Mapping[str, Tensor]) -> Tensor:
        """Weighted sum (with learned uncertainty weights when enabled)."""
        total = 0.0
        for i, name in enumerate(TASKS):
            if name not in terms or self.weights[name] == 0:
                continue
            term = self.weights[name] * terms[name]
            if self.log_vars is not None:
                term = torch.exp(-self.log_vars[i]) * term + self.log_vars[i]
            total = total + term
        return total
