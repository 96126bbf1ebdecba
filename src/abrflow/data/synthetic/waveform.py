"""Waveforms: true wave parameters, the neural response, its non-neural parts, Fmp and clinician marks.

Waves I, III and V follow the latency–intensity, rate and maturation rules of DESIGN.md §5 (the
minor waves II, IV, VI, V' and SN10 are placed around them in :mod:`.components`); the cochlear microphonic (neuropathy), stimulus artefact and
baseline drift are added beside them. Labels are what a clinician would mark on the noisy trace.
"""

from __future__ import annotations

import numpy as np

from .components import _components_uv
from .physiology import NEURAL_CLASSES, SENSORINEURAL, Physiology, _uniform

#: Biphasic stimulus artefact (derivative of a Gaussian): centre and width, gone well before 1 ms.
STIMULUS_ARTIFACT_PEAK_MS, STIMULUS_ARTIFACT_WIDTH_MS = 0.15, 0.08


def cochlear_delay_ms(effective_level_db: np.ndarray, phys: Physiology) -> np.ndarray:
    """Latency added to every wave at a level, relative to 80 dB: ≈0.02–0.03 ms/dB at high levels,
    ≈0.05 ms/dB and more near 0 dB (the normal latency–intensity function, DESIGN.md §5)."""
    lvl = np.asarray(effective_level_db, dtype=float)
    tau = phys.li_knee_db
    return phys.li_slope_high_ms_per_db * (80.0 - lvl) + phys.li_near_threshold_ms * (
        np.exp(-lvl / tau) - np.exp(-80.0 / tau))


def _wave_parameters(plan: dict, ear_phys: dict, phys: Physiology) -> dict:
    """True latencies, amplitudes and widths [N, 3] of waves I, III, V for every recording."""
    e = plan["ear"]
    cls = plan["ear_class"][e]
    level = plan["intensity_db"]
    rate = plan["stimulus_rate_hz"]
    theta = plan["threshold_db"][e]
    gap = plan["air_bone_gap_db"][e]
    imm = ear_phys["imm"][e]
    sl_db = level - theta  # −inf where there is no threshold
    neural = np.isin(cls, NEURAL_CLASSES)
    sn = cls == SENSORINEURAL

    # Latencies: conductive loss shifts the whole function right by the gap; sensorineural loss
    # adds a recruitment delay that fades ≈20 dB above θ; faster rates delay V more than I.
    finite_sl = np.where(np.isfinite(sl_db), sl_db, 0.0)
    cochlear = ear_phys["li_scale"][e] * cochlear_delay_ms(level - gap, phys) + \
        np.where(sn, phys.recruitment_latency_ms * np.exp(-np.maximum(finite_sl, 0) / phys.recruitment_sl_db), 0.0)
    rate_shift = phys.rate_latency_ms_per_hz * np.maximum(rate - phys.reference_rate_hz, 0) * (
        1 + (phys.infant_rate_factor - 1) * imm)
    lat_i = ear_phys["i80_ms"][e] + cochlear + 0.3 * rate_shift
    lat_v = ear_phys["v80_ms"][e] + cochlear + rate_shift
    v_imm = ear_phys["v_imm"][e]
    i_iii_fraction = phys.i_iii_fraction_of_i_v + (phys.newborn_i_iii_fraction_of_i_v - phys.i_iii_fraction_of_i_v) * v_imm
    lat_iii = lat_i + i_iii_fraction * (lat_v - lat_i)
    latency = np.stack([lat_i, lat_iii, lat_v], axis=1)
    timing = latency.copy()

    # Amplitudes: grow with SL above each wave's vanishing point and saturate; faster rates lower
    # them, I and III more than V.
    growth_db = phys.v_amplitude_growth_db * np.where(sn, phys.recruitment_growth_factor, 1.0)
    above = np.where(neural, finite_sl, -np.inf)[:, None] - ear_phys["vanish_sl_db"][e]
    rate_loss = np.clip(1 - phys.rate_amplitude_loss_per_hz * np.maximum(rate - phys.reference_rate_hz, 0),
                        0.5, 1.0)
    amplitude = ear_phys["v_amp_max_uv"][e, None] * ear_phys["amp_ratio"][e] * \
        (1 - np.exp(-np.maximum(above, 0) / growth_db[:, None])) * rate_loss[:, None] ** [2, 1.5, 1]

    def growth(vanish_sl_db: np.ndarray) -> np.ndarray:
        """V's growth law above other waves' vanishing points (minor components), rate loss as III's."""
        over = np.where(neural, finite_sl, -np.inf)[:, None] - vanish_sl_db
        g = (1 - np.exp(-np.maximum(over, 0) / growth_db[:, None])) * rate_loss[:, None] ** 1.5
        return np.where(over > 0, g, 0.0)
    amplitude = np.where(above > 0, amplitude, 0.0)
    latency = np.where(amplitude > 0, latency, np.nan)
    w_lo, w_hi = phys.wave_width_ms_range
    width = np.clip(ear_phys["base_width_ms"][e] * (1 + 0.25 * np.exp(-np.maximum(finite_sl, 0) / 20))[:, None],
                    w_lo, w_hi)
    return {"latency_ms": latency, "amplitude_uv": amplitude, "width_ms": width, "timing_ms": timing,
            "v_amp_max_uv": ear_phys["v_amp_max_uv"][e], "growth": growth,
            "sl_db": sl_db, "sn10_uv": ear_phys["sn10_ratio"][e] * amplitude[:, 2]}


# ---------------------------------------------------------------------------- waveforms
def _response_window(t_ms: np.ndarray, phys: Physiology) -> np.ndarray:
    """Samples after the stimulus artefact: where noise is judged and Fmp is computed."""
    window = t_ms >= phys.fmp_window_start_ms
    return window if window.sum() >= 2 else np.ones_like(window)


def _response_uv(t_ms: np.ndarray, waves: dict, rows: slice, phys: Physiology) -> np.ndarray:
    """Noise-free neural response of ``rows``: waves I–VI, V' and SN10 (:mod:`.components`)."""
    return _components_uv(t_ms, waves["components"], waves["sn10_uv"], rows, phys)


def _marked_truth(waves: dict) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free latencies [N, 3] of I, III and V as marked (V by the convention of
    :mod:`.components`), and the amplitudes [N, 3] of those components."""
    latency = waves["latency_ms"].copy()
    latency[:, 2] = waves["v_mark_ms"]
    return latency, waves["amplitude_uv"]


def _non_neural_uv(rng: np.random.Generator, t_ms: np.ndarray, level_db: np.ndarray, neuropathy: np.ndarray,
                   alternate_polarity: bool, phys: Physiology) -> np.ndarray:
    """Stimulus artefact (< 1 ms), cochlear microphonic in neuropathy, slow baseline drift."""
    n = len(level_db)
    residual = _uniform(rng, phys.alternate_residual_range, n) if alternate_polarity else np.ones(n)
    stim = _uniform(rng, phys.stimulus_artifact_100db_uv_range, n) * 10 ** ((level_db - 100) / 20) * residual
    x = (t_ms - np.float32(STIMULUS_ARTIFACT_PEAK_MS)) / np.float32(STIMULUS_ARTIFACT_WIDTH_MS)
    out = stim.astype(np.float32)[:, None] * (-x * np.exp(np.float32(0.5) - np.float32(0.5) * x ** 2))

    cm_amp = _uniform(rng, phys.cm_amplitude_80db_uv_range, n) * 10 ** ((level_db - 80) / 20) * residual
    cm_freq_hz = _uniform(rng, phys.cm_frequency_hz_range, n)
    onset = _uniform(rng, phys.cm_onset_ms_range, n)
    end = _uniform(rng, phys.cm_end_ms_range, n)
    rows = np.flatnonzero(neuropathy)
    if rows.size:
        dt = t_ms[None, :] - onset[rows, None]
        envelope = np.exp(-4 * dt / (end - onset)[rows, None]) * (dt >= 0) * (t_ms[None, :] <= end[rows, None])
        out[rows] += (cm_amp[rows, None] * envelope * np.sin(2 * np.pi * cm_freq_hz[rows, None] * dt / 1000))

    drift = _uniform(rng, phys.drift_uv_range, n).astype(np.float32)
    cycles_per_ms = (2 * np.pi / _uniform(rng, phys.drift_period_ms_range, n)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    out += drift[:, None] * np.sin(cycles_per_ms[:, None] * t_ms[None, :] + phase[:, None])
    return out


# ---------------------------------------------------------------------------- labels and Fmp
def _fmp(signal: np.ndarray, residual_noise_uv: np.ndarray, t_ms: np.ndarray, phys: Physiology) -> np.ndarray:
    """Fmp: variance of the averaged waveform in the response window over the single-point estimate
    of the residual noise variance (σ_EEG² / N, broadband), times ``fmp_scale``. Noise alone scores
    the in-band share of the 1/f noise (≈0.37 × 0.81 ≈ 0.3 with the defaults), so 3.1 needs a
    response with about nine times the noise power: a high-confidence response."""
    window = _response_window(t_ms, phys)
    return phys.fmp_scale * signal[:, window].var(axis=1) / residual_noise_uv ** 2


def _value_at(signal: np.ndarray, latency_ms: np.ndarray, fs_hz: float) -> np.ndarray:
    """Linear interpolation of each row at its own latency (NaN latencies give NaN)."""
    pos = np.nan_to_num(latency_ms, nan=0.0) * fs_hz / 1000.0
    i0 = np.clip(np.floor(pos).astype(int), 0, signal.shape[1] - 2)
    frac = np.clip(pos - i0, 0.0, 1.0)
    rows = np.arange(len(signal))
    value = signal[rows, i0] * (1 - frac) + signal[rows, i0 + 1] * frac
    return np.where(np.isfinite(latency_ms), value, np.nan)


def _clinician_marks(rng: np.random.Generator, waves: dict, noise_sd_uv: np.ndarray, signal: np.ndarray,
                     fs_hz: float, phys: Physiology) -> tuple[np.ndarray, np.ndarray]:
    """Marked latencies and amplitudes [N, 3] (NaN = not marked).

    A wave is marked where its peak-to-trough amplitude (peak plus its after-negativity, what a
    clinician measures; for V, from the marked point to the V' trough 0.25–1.75 ms later) clearly
    exceeds the in-band residual noise SD; V is marked where the convention puts it (the last peak
    before its major negative slope, or the shoulder, :func:`.components._mark_v`); V additionally needs
    SL ≥ ~5 dB, and I and III are marked only alongside V. Marks carry uniform ±jitter; the
    amplitude is read off the trace at the marked latency, as a clinician's cursor would.
    """
    last_ms = (signal.shape[1] - 2) * 1000.0 / fs_hz
    lat, amp = _marked_truth(waves)
    peak_to_trough_uv = amp * (1 + phys.after_negativity_ratio)
    peak_to_trough_uv[:, 2] = waves["v_peak_to_trough_uv"]  # V to V' on the noise-free trace
    visible = (peak_to_trough_uv >= phys.visibility_snr * noise_sd_uv[:, None]) & np.isfinite(lat) \
        & (lat <= last_ms)
    visible[:, 2] &= waves["sl_db"] >= phys.v_visible_min_sl_db
    visible[:, :2] &= visible[:, 2:3]
    jitter = rng.uniform(-phys.marking_jitter_ms, phys.marking_jitter_ms, lat.shape)
    marked_lat = np.where(visible, np.clip(lat + jitter, 0.0, None), np.nan)
    marked_amp = np.stack([_value_at(signal, marked_lat[:, w], fs_hz) for w in range(3)], axis=1)
    return marked_lat, marked_amp
