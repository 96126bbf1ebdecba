"""Averaged EEG noise: per-recording noise parameters, 1/f (or 1/f^α) noise through the amplifier's
band-pass, artefact bursts, and the two interleaved half-averages of a recording.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.signal

from .physiology import Physiology, _gauss, _uniform

#: Rows synthesised at once: bounds memory and keeps the random stream independent of cohort size.
_CHUNK_ROWS = 8192


def _noise_parameters(rng: np.random.Generator, n: int, artifact_rate: float, phys: Physiology) -> dict:
    """σ_EEG, sweep counts and artefact flags per recording; residual noise = σ_EEG / √N_accepted."""
    lo, hi = phys.sigma_eeg_uv_range
    a, b = phys.sigma_eeg_beta
    sigma = np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * rng.beta(a, b, n))
    accepted = rng.integers(int(phys.sweeps_range[0]), int(phys.sweeps_range[1]) + 1, n)
    artifact = rng.random(n) < artifact_rate
    noisiness = (sigma - lo) / max(hi - lo, 1e-9)
    rejected = rng.poisson(2 + phys.rejected_sweeps_max_mean * noisiness ** 2 + artifact * 150)
    low, high = phys.eeg_exponent_range
    # Drawn only when it varies, so that the default cohort's random stream is unchanged.
    exponent = np.full(n, low) if low == high else rng.uniform(low, high, n)
    return {"sigma_eeg_uv": sigma, "sweeps_accepted": accepted, "sweeps_rejected": rejected,
            "residual_noise_uv": sigma / np.sqrt(accepted), "artifact": artifact, "eeg_exponent": exponent}


def amplifier_sos(fs_hz: float, phys: Physiology) -> np.ndarray:
    """The recording amplifier's band-pass (2nd-order Butterworth, ``phys.amplifier_band_hz``)."""
    return scipy.signal.butter(2, phys.amplifier_band_hz, btype="bandpass", fs=fs_hz, output="sos")


def eeg_noise_uv(rng: np.random.Generator, residual_noise_uv: np.ndarray, artifact: np.ndarray,
                 n_samples: int, fs_hz: float, sos: np.ndarray, phys: Physiology,
                 exponent: np.ndarray | None = None) -> np.ndarray:
    """Averaged EEG: 1/f noise whose broadband SD is the residual noise, plus artefact bursts,
    band-passed (zero phase) like the amplifier; a padded buffer keeps filter edges out.

    ``exponent`` [N] recolours row i to 1/f^α_i with the same power inside the amplifier band
    (``Physiology.eeg_exponent_range``); None or all 1 is the 1/f noise itself."""
    n = len(residual_noise_uv)
    pad = max(int(math.ceil(0.005 * fs_hz)), 16)
    n_buf = n_samples + 2 * pad + (n_samples % 2)
    freqs_hz = scipy.fft.rfftfreq(n_buf, 1 / fs_hz)
    # One-sided PSD ∝ 1/max(f, f_floor), normalised so that its integral over (0, fs/2] is 1.
    nyquist_hz, floor_hz = fs_hz / 2, phys.eeg_floor_hz
    total = 1.0 + math.log(nyquist_hz / floor_hz) if nyquist_hz > floor_hz else nyquist_hz / floor_hz
    psd = 1.0 / np.maximum(freqs_hz, floor_hz) / total
    bin_power = psd * (fs_hz / n_buf)
    weight = (n_buf * np.sqrt(bin_power) / 2).astype(np.float32)
    weight[0] = 0.0
    weight[-1] = 0.0
    if exponent is not None and np.any(exponent != 1.0):
        weight = weight * _recolouring(freqs_hz, psd, np.asarray(exponent, np.float64), phys)
    # Complex Gaussian coefficients (float32 pairs viewed as complex64): single precision is ample
    # for noise and halves the memory traffic of the FFT and the filter.
    coeffs = rng.standard_normal((n, 2 * freqs_hz.size), dtype=np.float32).view(np.complex64)
    noise = scipy.fft.irfft(coeffs * weight, n=n_buf, axis=1, workers=-1)
    noise *= residual_noise_uv.astype(np.float32)[:, None]
    rows = np.flatnonzero(artifact)
    if rows.size:
        t_ms = (np.arange(n_buf) - pad) * 1000.0 / fs_hz
        centre = rng.uniform(0, n_samples * 1000.0 / fs_hz, rows.size)
        width = _uniform(rng, phys.artifact_burst_width_ms_range, rows.size)
        size = _uniform(rng, phys.artifact_burst_uv_range, rows.size) * residual_noise_uv[rows]
        burst = size[:, None] * _gauss(t_ms, centre, width) * rng.standard_normal((rows.size, n_buf))
        noise[rows] += burst.astype(np.float32)
    filtered = scipy.signal.sosfiltfilt(sos.astype(np.float32), noise, axis=-1)
    return np.ascontiguousarray(filtered[:, pad:pad + n_samples], dtype=np.float32)


def _recolouring(freqs_hz: np.ndarray, psd_1f: np.ndarray, exponent: np.ndarray, phys: Physiology) -> np.ndarray:
    """Amplitude factors [N, F] that turn the 1/f PSD into 1/f^α_i with the same in-band power."""
    f = np.maximum(freqs_hz, phys.eeg_floor_hz)
    low_hz, high_hz = phys.amplifier_band_hz
    band = (freqs_hz >= low_hz) & (freqs_hz <= high_hz)
    psd = f[None, :] ** -exponent[:, None]
    psd *= psd_1f[band].sum() / psd[:, band].sum(axis=1, keepdims=True)
    return np.sqrt(psd / psd_1f[None, :]).astype(np.float32)


def _half_averages(seed: int, signal: np.ndarray, noise: dict, fs_hz: float, n_samples: int,
                   phys: Physiology) -> dict:
    """Two half-averages per recording whose mean is ``signal`` (see :func:`simulate_cohort`)."""
    rng = np.random.default_rng([int(seed), 1])
    sos = amplifier_sos(fs_hz, phys)
    no_burst = np.zeros(len(signal), dtype=bool)
    half_diff = np.empty_like(signal)
    for start in range(0, len(signal), _CHUNK_ROWS):
        rows = slice(start, min(start + _CHUNK_ROWS, len(signal)))
        half_diff[rows] = eeg_noise_uv(rng, noise["residual_noise_uv"][rows], no_burst[rows], n_samples, fs_hz,
                                       sos, phys, noise["eeg_exponent"][rows])
    return {"half_a": signal + half_diff, "half_b": signal - half_diff,
            "sweeps": noise["sweeps_accepted"].astype(np.float32)}
