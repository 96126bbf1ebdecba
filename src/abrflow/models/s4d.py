"""Diagonal state-space layer S4D (Gu et al. 2022, "On the Parameterization and Initialization of
Diagonal State Space Models").

Why S4D in the encoder: a 10 ms ABR window has structure at every scale (wave I at ~1.5 ms, the
SN10 trough after wave V); one S4D layer sees the whole sequence at O(L log L) cost with a handful
of parameters per channel, where a conv stack would need many layers for the same receptive field.

Convention (checked against the step-by-step recurrence in tests/test_s4d.py):
ZOH discretisation Ā = exp(Δ·A), B̄ = (exp(Δ·A) − 1)/A · B, state x_k = Ā x_{k−1} + B̄ u_k,
output y_k = 2·Re(Σ_n C_n x_{k,n}) + D·u_k. ``d_state`` counts real state dimensions: the layer
keeps d_state // 2 complex modes, each standing for a conjugate pair (hence the factor 2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Parameters of the state-space dynamics: weight decay would pull A towards 0 (no decay) and Δ
# towards 1, destroying the initialisation. Optimiser set-ups can read ``param._optim``.
_SSM_OPTIM = {"weight_decay": 0.0}


def _ssm_param(value: Tensor) -> nn.Parameter:
    p = nn.Parameter(value)
    p._optim = dict(_SSM_OPTIM)  # type: ignore[attr-defined]
    return p


class S4DKernel(nn.Module):
    """Convolution kernels K[d, h, l] = 2·Re(Σ_n C[d,h,n] · B̄[h,n] · Ā[h,n]^l), Vandermonde form.

    ``n_directions`` = 2 gives a second C (the backward kernel) sharing A, B and Δ.
    """

    def __init__(self, channels: int, d_state: int = 64, init: str = "lin", n_directions: int = 1,
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        n_modes = max(1, d_state // 2)
        n = torch.arange(n_modes, dtype=torch.float32)
        if init == "lin":  # S4D-Lin: A_n = −1/2 + iπn
            a_imag = math.pi * n
        elif init == "inv":  # S4D-Inv: A_n = −1/2 + i·N/π·(N/(2n+1) − 1)
            a_imag = d_state / math.pi * (d_state / (2 * n + 1) - 1)
        else:
            raise ValueError(f"s4_init = {init!r} is not one of ['lin', 'inv']")
        self.init, self.d_state = init, d_state
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = _ssm_param(log_dt)
        self.log_a_real = _ssm_param(torch.full((channels, n_modes), math.log(0.5)))
        self.a_imag = _ssm_param(a_imag.repeat(channels, 1))
        self.b = _ssm_param(torch.view_as_real(torch.ones(channels, n_modes, dtype=torch.cfloat)).clone())
        # C ~ CN(0, 1) per mode, scaled so the kernel's energy does not grow with d_state.
        c = torch.randn(n_directions, channels, n_modes, dtype=torch.cfloat) * math.sqrt(0.5)
        self.c = nn.Parameter(torch.view_as_real(c).clone())
        self._cache: tuple | None = None

    def continuous(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(Δ [H], A [H,N], B [H,N], C [D,H,N]) as complex tensors: the model before discretisation."""
        dt = self.log_dt.exp()
        a = torch.complex(-self.log_a_real.exp(), self.a_imag)
        return dt, a, torch.view_as_complex(self.b), torch.view_as_complex(self.c)

    def forward(self, length: int) -> Tensor:
        if torch.is_grad_enabled():
            return self._kernel(length)
        # Without autograd (sampling calls the network hundreds of times with the same weights) the
        # kernel is reused. The key sees in-place updates (version counters) and swapped or moved
        # storage (data pointers), so a stale kernel is never used.
        key = (length, *((p.data_ptr(), p._version) for p in self.parameters()))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._kernel(length))
        return self._cache[1]

    def _kernel(self, length: int) -> Tensor:
        dt, a, b, c = self.continuous()
        dt_a = a * dt[:, None]  # [H, N]
        cb = c * (b * (dt_a.exp() - 1.0) / a)  # C·B̄  [D, H, N]
        steps = torch.arange(length, device=a.device, dtype=a.real.dtype)
        vandermonde = torch.exp(dt_a[..., None] * steps)  # Ā^l  [H, N, L]
        return 2.0 * torch.einsum("dhn,hnl->dhl", cb, vandermonde).real

    def extra_repr(self) -> str:
        return f"d_state={self.d_state}, init={self.init!r}, n_directions={self.c.shape[0]}"


class S4D(nn.Module):
    """S4D layer on [B, H, L]: FFT convolution with the SSM kernel(s) + D skip, GELU, then a GLU
    1×1 output projection (the S4D paper's block). Bidirectional: a causal and an anti-causal kernel,
    because an averaged ABR is available whole and later waves inform earlier ones."""

    def __init__(self, channels: int, d_state: int = 64, init: str = "lin", bidirectional: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        self.bidirectional = bidirectional
        self.kernel = S4DKernel(channels, d_state, init, n_directions=2 if bidirectional else 1)
        self.d = nn.Parameter(torch.randn(channels))
        self.dropout = nn.Dropout1d(dropout)  # whole channels, see blocks.py
        self.out = nn.Conv1d(channels, 2 * channels, 1)

    def ssm(self, u: Tensor) -> Tensor:
        """The linear state-space map y = K ∗ u + D·u (before the nonlinearity)."""
        dtype, u = u.dtype, u.float()  # FFTs in float32: half-precision FFTs need power-of-2 lengths
        length = u.shape[-1]
        k = self.kernel(length)
        if self.bidirectional:  # backward kernel flipped into the negative lags, both in one FFT
            k = F.pad(k[0], (0, length)) + F.pad(k[1].flip(-1), (length, 0))
        else:
            k = k[0]
        n_fft = 2 * length  # zero padding to 2L turns the circular FFT product into a linear convolution
        y = torch.fft.irfft(torch.fft.rfft(u, n=n_fft) * torch.fft.rfft(k, n=n_fft), n=n_fft)[..., :length]
        return (y + u * self.d[:, None]).to(dtype)

    def forward(self, u: Tensor) -> Tensor:
        y = self.dropout(F.gelu(self.ssm(u)))
        return F.glu(self.out(y), dim=1)
