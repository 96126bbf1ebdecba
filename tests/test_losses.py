"""Multi-task loss: masks contribute nothing, class weights matter, shapes are asserted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abrflow.config import load_config
from abrflow.models.heads import WAVE_KEYS, HeadOutput, MultiTaskHeads
from abrflow.training.losses import MultiTaskLoss, class_weights_from_counts, heatmap_divergence, masked_mean

T = 200  # heatmap length: 200 samples at 0.05 ms


def _heads(b=6, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    def r(*shape, offset=0.0, scale=1.0):
        value = offset + scale * torch.randn(*shape, generator=g).abs()
        return value.requires_grad_(requires_grad)
    waves = {}
    for w, lat in zip(WAVE_KEYS, (1.6, 3.8, 6.0)):
        waves.update({f"{w}_present_logit": r(b), f"{w}_latency_ms": r(b, offset=lat),
                      f"{w}_latency_log_std": r(b, scale=0.1), f"{w}_amplitude_uv": r(b),
                      f"{w}_amplitude_log_std": r(b, scale=0.1)})
    return HeadOutput(**waves, wave_heatmap_logits=r(b, 3, T), hearing_loss_logits=r(b, 5),
                      threshold_db=r(b, offset=30, scale=10), threshold_log_std=r(b, scale=0.1),
                      threshold_no_response_logit=r(b))


def _batch(b=6):
    v = torch.tensor([1, 1, 0, 0, 1, 0], dtype=torch.float32)
    i = torch.tensor([1, 0, 0, 0, 1, 0], dtype=torch.float32)
    present = torch.stack([i, i, v], dim=1)
    return {
        "wave_present": present[:b],
        "wave_present_mask": torch.tensor([[1, 1, 1]] * 5 + [[0, 0, 1]], dtype=torch.float32)[:b],
        "wave_latency_ms": (torch.tensor([[1.6, 3.9, 6.1], [0, 0, 7.5], [0] * 3, [0] * 3, [1.9, 4.2, 9.2], [0] * 3]))[:b],
        "wave_latency_mask": present[:b].clone(),
        "wave_amplitude_uv": torch.tensor([[0.1, 0.2, 0.3], [0, 0, 0.2], [0] * 3, [0] * 3, [0.1, 0.1, 0.1], [0] * 3])[:b],
        "wave_amplitude_mask": present[:b].clone(),
        "hearing_loss": torch.tensor([0, 2, 3, -1, 4, 1])[:b],
        "threshold_db": torch.tensor([10.0, 50, 0, 0, 45, 0])[:b],
        "threshold_mask": torch.tensor([1, 1, 0, 0, 1, 0], dtype=torch.float32)[:b],
        "no_response": torch.tensor([0, 0, 1, 0, 0, 1], dtype=torch.float32)[:b],
        "no_response_mask": torch.tensor([1, 1, 1, 0, 1, 1], dtype=torch.float32)[:b],
    }


@pytest.fixture(params=["gaussian_nll", "huber"])
def loss_fn(request):
    cfg = load_config(overrides=[f"loss.regression_loss={request.param}"], environ={})
    return MultiTaskLoss(cfg.loss, class_counts=np.array([800, 8, 106, 33, 56]))


def test_masked_targets_contribute_nothing(loss_fn):
    norm = MultiTaskHeads(8, 8).normalise
    heads, batch = _heads(), _batch()
    terms = loss_fn.task_terms(heads, batch, norm)
    # Change every masked-out target (and the unknown class row's label): nothing moves.
    other = {k: v.clone() for k, v in batch.items()}
    other["wave_latency_ms"][other["wave_latency_mask"] == 0] = 123.0
    other["wave_amplitude_uv"][other["wave_amplitude_mask"] == 0] = -50.0
    other["wave_present"][other["wave_present_mask"] == 0] = 1.0
    other["threshold_db"][other["threshold_mask"] == 0] = 999.0
    other["no_response"][other["no_response_mask"] == 0] = 1.0
    terms2 = loss_fn.task_terms(heads, other, norm)
    for k in terms:
        assert torch.allclose(terms[k], terms2[k]), k
    # Gradients do not reach masked rows' regression outputs.
    loss_fn.combine(terms).backward()
    grad = heads.wave_heatmap_logits.grad
    assert grad[2].abs().sum() == 0 and grad[0, 2].abs().sum() > 0  # no mark: no pull on the heatmap
    assert grad[1, 0].abs().sum() == 0 and grad[1, 2].abs().sum() > 0  # V marked, I not
    assert heads.v_amplitude_uv.grad[2] == 0 and heads.v_amplitude_uv.grad[0] != 0
    assert heads.i_present_logit.grad[5] == 0 and heads.v_present_logit.grad[5] != 0  # I/III not judged
    assert heads.hearing_loss_logits.grad[3].abs().sum() == 0  # unknown class (-1)


def test_all_masked_is_zero_not_nan():
    assert masked_mean(torch.ones(4), torch.zeros(4)) == 0


def test_class_weights_change_the_loss():
    cfg = load_config(environ={})
    heads, batch = _heads(requires_grad=False), _batch()
    norm = MultiTaskHeads(8, 8).normalise
    weighted = MultiTaskLoss(cfg.loss, class_counts=np.array([800, 8, 106, 33, 56]))
    plain = MultiTaskLoss(load_config(overrides=["loss.classification_loss=ce"], environ={}).loss,
                          class_counts=np.array([800, 8, 106, 33, 56]))
    a = weighted.task_terms(heads, batch, norm)["classification"]
    b = plain.task_terms(heads, batch, norm)["classification"]
    assert not torch.isclose(a, b)
    w = class_weights_from_counts(np.array([800, 8, 106, 33, 56]))
    assert w[1] > w[2] > w[0] and torch.isclose(w.mean(), torch.tensor(1.0))
    focal = MultiTaskLoss(load_config(overrides=["loss.classification_loss=focal"], environ={}).loss,
                          class_counts=np.array([800, 8, 106, 33, 56]))
    assert not torch.isclose(focal.task_terms(heads, batch, norm)["classification"], a)


def test_shapes_are_asserted(loss_fn):
    pred = torch.zeros(4, 1, 200)
    with pytest.raises(ValueError, match="shape"):
        loss_fn.diffusion_term(pred, torch.zeros(4, 200), torch.ones(4))
    heads = _heads()
    heads.v_present_logit = heads.v_present_logit[:, None]
    with pytest.raises(ValueError, match="peak_exist"):
        loss_fn.task_terms(heads, _batch(), MultiTaskHeads(8, 8).normalise)


def test_weights_and_uncertainty_weighting():
    base = load_config(environ={})
    heads, batch = _heads(requires_grad=False), _batch()
    norm = MultiTaskHeads(8, 8).normalise
    terms = MultiTaskLoss(base.loss).task_terms(heads, batch, norm)
    terms["diffusion"] = torch.tensor(0.5)
    total = MultiTaskLoss(base.loss).combine(terms)
    expected = sum(float(base.loss.weights[k]) * float(v) for k, v in terms.items())
    assert float(total) == pytest.approx(expected, rel=1e-5)
    zero_cls = load_config(overrides=["loss.weights.classification=0"], environ={})
    assert float(MultiTaskLoss(zero_cls.loss).combine(terms)) == pytest.approx(
        expected - float(terms["classification"]), rel=1e-5)
    unc = MultiTaskLoss(load_config(overrides=["loss.uncertainty_weighting=true"], environ={}).loss)
    assert unc.log_vars is not None and unc.log_vars.shape == (6,)
    assert float(unc.combine(terms)) == pytest.approx(expected, rel=1e-5)  # log_vars start at 0


def test_heatmap_divergence_is_zero_at_the_target_and_grows_with_the_miss():
    grid = torch.arange(T) * 0.05
    target = torch.tensor([[6.0]])
    exact = (-0.5 * ((grid - 6.0) / 0.1) ** 2)[None, None, :]
    near = (-0.5 * ((grid - 6.1) / 0.1) ** 2)[None, None, :]
    far = (-0.5 * ((grid - 6.5) / 0.1) ** 2)[None, None, :]
    d = [float(heatmap_divergence(h, target, 0.05)) for h in (exact, near, far)]
    assert d[0] == pytest.approx(0.0, abs=1e-5) and 0 < d[1] < d[2]


def test_a_mark_outside_the_window_trains_presence_not_the_heatmap(loss_fn):
    heads, batch = _heads(), _batch()
    batch["wave_latency_ms"][1, 2] = 25.0  # a real V beyond a 10 ms window: presence yes, location unknown
    terms = loss_fn.task_terms(heads, batch, MultiTaskHeads(8, 8).normalise)
    loss_fn.combine(terms).backward()
    assert heads.wave_heatmap_logits.grad[1, 2].abs().sum() == 0
    assert torch.isfinite(terms["peak_latency"])
