"""S4D: the FFT convolution path equals the state-space recurrence it stands for."""

from __future__ import annotations

import math

import pytest
import torch

from abrflow.models.s4d import S4D, S4DKernel

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: thread barriers cost more than they save


def _recurrence(layer: S4D, u: torch.Tensor) -> torch.Tensor:
    """x_k = Ā x_{k−1} + B̄ u_k, y_k = 2·Re(C x_k) + D u_k, with ZOH Ā, B̄, step by step."""
    dt, a, b, c = (v.detach().to(torch.complex128) if v.is_complex() else v.detach().double()
                   for v in layer.kernel.continuous())
    a_bar = torch.exp(dt[:, None] * a)
    b_bar = (a_bar - 1) / a * b
    u = u.double()
    state = torch.zeros(u.shape[0], *a.shape, dtype=torch.complex128)
    ys = []
    for k in range(u.shape[-1]):
        state = a_bar * state + b_bar * u[:, :, k, None]
        ys.append(2 * (c[0] * state).sum(-1).real + layer.d.detach().double() * u[:, :, k])
    return torch.stack(ys, dim=-1)


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_fft_convolution_matches_recurrence(init):
    torch.manual_seed(0)
    layer = S4D(channels=6, d_state=16, init=init, bidirectional=False)
    u = torch.randn(3, 6, 37)
    torch.testing.assert_close(layer.ssm(u).double(), _recurrence(layer, u), atol=1e-4, rtol=1e-4)


def test_bidirectional_adds_anticausal_kernel():
    torch.manual_seed(0)
    layer = S4D(channels=4, d_state=8, bidirectional=True)
    u = torch.zeros(1, 4, 32)
    u[..., 16] = 1.0  # impulse in the middle
    y = layer.ssm(u)
    assert y[..., :16].abs().max() > 1e-2, "a bidirectional layer must respond before the impulse"
    causal = S4D(channels=4, d_state=8, bidirectional=False)
    assert causal.ssm(u)[..., :16].abs().max() < 1e-6, "a causal layer must not respond before the impulse"
    # its backward kernel, time-reversed, is what an impulse sees one step before it
    k = layer.kernel(32)
    torch.testing.assert_close(y[0, :, 15], k[1, :, 0], atol=1e-5, rtol=1e-5)


def test_initialisation_follows_s4d_lin_and_inv():
    n_state = 16
    lin = S4DKernel(channels=2, d_state=n_state, init="lin")
    inv = S4DKernel(channels=2, d_state=n_state, init="inv")
    n = torch.arange(n_state // 2, dtype=torch.float32)
    for kern, imag in [(lin, math.pi * n), (inv, n_state / math.pi * (n_state / (2 * n + 1) - 1))]:
        _, a, _, _ = kern.continuous()
        torch.testing.assert_close(a.real, torch.full_like(a.real, -0.5))
        torch.testing.assert_close(a.imag[0], imag)
    dt = lin.log_dt.exp()
    assert ((dt >= 1e-3) & (dt <= 1e-1)).all()
    with pytest.raises(ValueError, match="s4_init"):
        S4DKernel(channels=2, d_state=4, init="legs")


def test_layer_shapes_gradients_and_any_length():
    torch.manual_seed(0)
    layer = S4D(channels=8, d_state=8, bidirectional=True, dropout=0.1)
    for length in (1, 17, 200):
        u = torch.randn(2, 8, length, requires_grad=True)
        y = layer(u)
        assert y.shape == u.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_kernel_is_reused_without_autograd_and_never_stale():
    torch.manual_seed(0)
    kernel = S4DKernel(channels=4, d_state=8, n_directions=2)
    with torch.no_grad():
        first = kernel(50)
        assert kernel(50) is first  # sampling: computed once
        assert kernel(60).shape[-1] == 60
        kernel.log_dt.add_(0.5)  # an optimiser step or a loaded state dict
        torch.testing.assert_close(kernel(50), kernel._kernel(50))
        assert not torch.allclose(kernel(50), first)
    with torch.inference_mode():
        torch.testing.assert_close(kernel(50), kernel._kernel(50))
    trained = kernel(50)  # autograd on: always recomputed, differentiable
    assert trained.requires_grad and trained is not kernel(50)
