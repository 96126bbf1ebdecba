"""The whole brainstem response: waves I–VI, the IV–V complex in its shapes, and V as it is marked.

Waves I, III and V come from :func:`.waveform._wave_parameters` (latency–intensity, rate,
maturation); this module adds the minor components II, IV and VI around them, draws each ear's
IV–V shape, synthesises the noise-free neural response and finds the point a clinician marks as V.

Shapes (:data:`IV_V_SHAPES`; Chiappa et al. 1979, Arch Neurol 36:81, call all IV–V variants
normal and stable over months, hence one shape per ear):

- ``separate``: IV and V are two peaks with a dip between them;
- ``iv_shoulder``: IV is a shoulder on the rising limb of V (one peak, V);
- ``v_shoulder``: V is a shoulder on the falling limb of a larger IV;
- ``fused``: IV and V close together, one broad peak.

Marking convention (:func:`_mark_v`): wave V is the last peak before the major negative slope that
follows it (into the V' trough and SN10); where V is only a shoulder, the point of least |slope|
on that shoulder. This is the rule of BrainWave.jl ``findABRPeaks`` (Carcagno; V = the peak in
its window, a shoulder taken as the inflection with the smallest |slope|, the trough after V
searched 0.25–1.75 ms after it), which also gives V's peak-to-trough amplitude. Clinical guideline
wording for each shape (Hall 2007; ACNS guideline 9C; BSA) was located but not readable:
unsourced beyond that algorithm.
"""

from __future__ import annotations

import numpy as np

from .physiology import Physiology, _uniform

#: Component order of ``extra["true_component_latency_ms"]`` and ``..._amplitude_uv``.
COMPONENT_NAMES: tuple[str, ...] = ("I", "II", "III", "IV", "V", "VI")
#: IV–V shapes; ``extra["iv_v_shape"]`` holds the index (−1 where the recording has no wave IV).
IV_V_SHAPES: tuple[str, ...] = ("separate", "iv_shoulder", "v_shoulder", "fused")
SEPARATE, IV_SHOULDER, V_SHOULDER, FUSED = range(4)
#: Mark search grid around V (ms): step, start and end offsets; the V' trough is searched
#: 0.25–1.75 ms after the mark (BrainWave.jl findABRPeaks).
_GRID_STEP_MS, _GRID_FROM_MS, _GRID_TO_MS = 0.02, -0.6, 1.8
_TROUGH_FROM_MS, _TROUGH_TO_MS = 0.25, 1.75
_STEEPEST_WITHIN_MS = 0.7  # V's major negative slope is searched within this after V
_MARK_ROWS = 4096


def _ear_components(rng: np.random.Generator, imm: np.ndarray, phys: Physiology) -> dict:
    """Per-ear constants of the minor components and the IV–V shape (drawn once per ear)."""
    e = len(imm)
    shape = rng.choice(len(IV_V_SHAPES), size=e, p=np.asarray(phys.iv_v_shape_weights))
    sep_ranges = np.array([phys.iv_v_separation_sigma_separate_range, phys.iv_v_separation_sigma_iv_shoulder_range,
                           phys.iv_v_separation_sigma_v_shoulder_range, phys.iv_v_separation_sigma_fused_range])
    ratio_ranges = np.array([phys.wave_iv_ratio_separate_range, phys.wave_iv_ratio_iv_shoulder_range,
                             phys.wave_iv_ratio_v_shoulder_range, phys.wave_iv_ratio_fused_range])
    u = rng.random((e, 2))
    sep = sep_ranges[shape, 0] + u[:, 0] * (sep_ranges[shape, 1] - sep_ranges[shape, 0])
    iv_ratio = ratio_ranges[shape, 0] + u[:, 1] * (ratio_ranges[shape, 1] - ratio_ranges[shape, 0])
    return {
        "shape": shape, "iv_sep_sigma": sep, "iv_ratio": iv_ratio,
        "ii_ratio": _uniform(rng, phys.wave_ii_amplitude_ratio_range, e)
        * (rng.random(e) < phys.wave_ii_presence_probability),
        "vi_ratio": _uniform(rng, phys.wave_vi_amplitude_ratio_range, e)
        * (rng.random(e) < phys.wave_vi_presence_probability),
        "vanish_sl_db": np.stack([_uniform(rng, phys.wave_ii_vanish_sl_db_range, e),
                                  _uniform(rng, phys.wave_iv_vanish_sl_db_range, e),
                                  _uniform(rng, phys.wave_vi_vanish_sl_db_range, e)], axis=1),
        "vi_interval_ms": _uniform(rng, phys.v_vi_interval_ms_range, e) * (1 + phys.infant_vi_interval_factor * imm),
        "v_trough_ratio": _uniform(rng, phys.v_trough_ratio_range, e),
    }


def _component_parameters(waves: dict, ear_comp: dict, e: np.ndarray, growth: np.ndarray, phys: Physiology) -> dict:
    """Latency, amplitude, width [N, 6] of I–VI from I, III, V (``waves``) and the ear's constants.

    ``growth(vanish_sl_db [N, k]) -> [N, k]`` is V's growth law at the SL above each vanishing point
    (0 where the wave is absent), so II, IV and VI grow and vanish like I and III do."""
    lat3, amp3, wid3 = waves["latency_ms"], waves["amplitude_uv"], waves["width_ms"]
    v_amp_max = waves["v_amp_max_uv"]
    i, iii, v = lat3[:, 0], lat3[:, 1], lat3[:, 2]
    sig_v = wid3[:, 2]
    # II between I and III ([NEO] fraction); where I or III is absent their latencies still exist
    # in the underlying timing (waves["timing_ms"]), so II's place does not depend on visibility.
    t_i, t_iii, t_v = waves["timing_ms"].T
    lat_ii = t_i + phys.wave_ii_fraction_of_i_iii * (t_iii - t_i)
    sep = np.minimum(ear_comp["iv_sep_sigma"][e] * sig_v, phys.iv_max_fraction_of_iii_v * (t_v - t_iii))
    lat_iv = t_v - sep
    lat_vi = t_v + np.maximum(ear_comp["vi_interval_ms"][e], phys.vi_min_interval_sigma * sig_v)
    scale = growth(ear_comp["vanish_sl_db"][e]) * v_amp_max[:, None]
    amp_ii = ear_comp["ii_ratio"][e] * scale[:, 0]
    amp_iv = ear_comp["iv_ratio"][e] * np.minimum(scale[:, 1], amp3[:, 2])  # IV keeps its ratio to V
    amp_vi = ear_comp["vi_ratio"][e] * scale[:, 2]
    latency = np.stack([i, lat_ii, iii, lat_iv, v, lat_vi], axis=1)
    amplitude = np.stack([amp3[:, 0], amp_ii, amp3[:, 1], amp_iv, amp3[:, 2], amp_vi], axis=1)
    amplitude = np.where(amp3[:, 2:3] > 0, amplitude, 0.0)  # no minor wave without V
    latency = np.where(amplitude > 0, latency, np.nan)
    latency[:, [0, 2, 4]] = lat3  # I, III, V keep their own presence rules
    width = np.stack([wid3[:, 0], 0.5 * (wid3[:, 0] + wid3[:, 1]), wid3[:, 1],
                      phys.wave_iv_width_fraction_of_v * sig_v, sig_v, phys.wave_vi_width_fraction_of_v * sig_v], axis=1)
    shape = np.where(amplitude[:, 3] > 0, ear_comp["shape"][e], -1).astype(np.int8)
    return {"latency_ms": latency, "amplitude_uv": amplitude, "width_ms": width, "shape": shape,
            "v_trough_uv": ear_comp["v_trough_ratio"][e] * amplitude[:, 4]}


def _components_uv(t_ms: np.ndarray, comp: dict, sn10_uv: np.ndarray, rows, phys: Physiology,
                   waves: tuple[int, ...] = (0, 1, 2, 3, 4, 5)) -> np.ndarray:
    """Noise-free neural response of ``rows``: I and III with their after-negativities, II, IV,
    V with its V' trough (the major negative slope), VI, and SN10. ``t_ms`` is [T] (one time base)
    or [n, K] (a time grid per row); ``waves`` limits the components (I and II end > 2 ms before V,
    so the marking grid around V leaves them out)."""
    lat = comp["latency_ms"][rows].astype(np.float32)
    amp = comp["amplitude_uv"][rows].astype(np.float32)
    wid = comp["width_ms"][rows].astype(np.float32)
    v_trough = comp["v_trough_uv"][rows].astype(np.float32)
    sn10 = sn10_uv[rows].astype(np.float32)
    per_row = t_ms.ndim == 2
    out = np.zeros((lat.shape[0], t_ms.shape[-1]), np.float32)
    trough_ratio = np.float32(phys.after_negativity_ratio)

    def add(has, centre, sigma, size):
        t = t_ms[has] if per_row else t_ms
        mu, sg = centre[:, None], sigma[:, None]
        out[has] += size[:, None] * np.exp(np.float32(-0.5) * ((t - mu) / sg) ** 2)

    for w in waves:
        has = np.flatnonzero(amp[:, w] > 0)
        if not has.size:
            continue
        mu, sigma = lat[has, w], wid[has, w]
        add(has, mu, sigma, amp[has, w])
        if w in (0, 2):  # I and III: trough 2.5 σ later (moves the peak < 0.03 ms)
            add(has, mu + np.float32(2.5) * sigma, sigma, -trough_ratio * amp[has, w])
        elif w == 4:  # V': a deeper, narrower trough, V's major negative slope
            add(has, mu + np.float32(phys.v_trough_delay_sigma) * sigma,
                np.float32(phys.v_trough_width_fraction) * sigma, -v_trough[has])
    has = np.flatnonzero(sn10 > 0)
    if has.size:
        add(has, lat[has, 4] + np.float32(phys.sn10_delay_ms), np.full(has.size, phys.sn10_width_ms, np.float32),
            -sn10[has])
    return out


def _mark_v(comp: dict, sn10_uv: np.ndarray, phys: Physiology) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free V as marked by the convention, and its peak-to-trough amplitude [N] (NaN/0 where
    there is no V): the last downward zero crossing of the slope before V's steepest descent; if
    there is none after the window start (V a shoulder on IV), the point of least |slope|."""
    n = len(comp["latency_ms"])
    mark = np.full(n, np.nan)
    p2t = np.zeros(n)
    rows_v = np.flatnonzero(comp["amplitude_uv"][:, 4] > 0)
    offsets = np.arange(_GRID_FROM_MS, _GRID_TO_MS + 1e-9, _GRID_STEP_MS, dtype=np.float32)
    for start in range(0, rows_v.size, _MARK_ROWS):
        rows = rows_v[start:start + _MARK_ROWS]
        v = comp["latency_ms"][rows, 4].astype(np.float32)
        grid = v[:, None] + offsets[None, :]
        y = _components_uv(grid, comp, sn10_uv, rows, phys, waves=(2, 3, 4, 5))
        slope = np.diff(y, axis=1)  # slope[k] between grid k and k+1
        k = np.arange(slope.shape[1])[None, :]
        # Window start: just before IV where IV and V fuse; past the dip/IV peak otherwise.
        iv_gap = comp["latency_ms"][rows, 4] - comp["latency_ms"][rows, 3]
        iv_gap = np.where(np.isfinite(iv_gap), iv_gap, 0.0)
        fused = comp["shape"][rows] == FUSED
        first_ms = np.where(fused, -iv_gap - 0.05, -np.minimum(phys.mark_window_fraction_of_iv_v * iv_gap, 0.5))
        first_ms = np.where(iv_gap > 0, first_ms, -0.5)
        k0 = np.clip(np.round((first_ms - _GRID_FROM_MS) / _GRID_STEP_MS), 0, None).astype(int)[:, None]
        k_v = int(round(-_GRID_FROM_MS / _GRID_STEP_MS))
        k_end = k_v + int(round(_STEEPEST_WITHIN_MS / _GRID_STEP_MS))
        steep = np.where((k >= k_v) & (k < k_end), slope, np.inf).argmin(axis=1)[:, None]
        inside = (k >= k0) & (k < steep)
        crossing = inside[:, :-1] & (slope[:, :-1] >= 0) & (slope[:, 1:] < 0)
        last = np.where(crossing, k[:, :-1] + 1, -1).max(axis=1)
        flattest = np.where(inside, slope, -np.inf).argmax(axis=1)
        idx = np.where(last >= 0, last, flattest)
        mark[rows] = v + offsets[idx]
        kt = idx[:, None] + np.arange(int(_TROUGH_FROM_MS / _GRID_STEP_MS), int(_TROUGH_TO_MS / _GRID_STEP_MS) + 1)
        trough = np.take_along_axis(y, np.clip(kt, 0, y.shape[1] - 1), axis=1).min(axis=1)
        p2t[rows] = y[np.arange(len(rows)), idx] - trough
    return mark, p2t


def complex_shape(comp: dict, sn10_uv: np.ndarray, phys: Physiology, rows: np.ndarray) -> np.ndarray:
    """The IV–V shape [len(rows)] as read off the noise-free response (−1: no IV), for checks.

    Two peaks between IV and V → separate; one peak with a shoulder on its rising limb (slope dips
    but stays positive) → IV shoulder; with a shoulder on its falling limb (slope rises but stays
    negative) → V shoulder; one smooth peak → fused."""
    rows = np.asarray(rows)
    iv, v = comp["latency_ms"][rows, 3], comp["latency_ms"][rows, 4]
    out = np.full(len(rows), -1, np.int8)
    ok = np.isfinite(iv) & np.isfinite(v)
    if not ok.any():
        return out
    frac = np.linspace(-0.35, 1.25, 321, dtype=np.float32)  # in units of the IV–V gap, from IV
    gap = np.maximum(v[ok] - iv[ok], 0.05).astype(np.float32)
    grid = iv[ok, None].astype(np.float32) + frac[None, :] * gap[:, None]
    y = _components_uv(grid, comp, sn10_uv, rows[ok], phys)
    s = np.diff(y, axis=1)
    core = (frac[1:-1] >= -0.2) & (frac[1:-1] <= 1.15)
    peak = core & (s[:, :-1] >= 0) & (s[:, 1:] < 0)
    n_peaks = peak.sum(axis=1)
    # slope local minimum that stays positive / local maximum that stays negative
    s_mid = s[:, 1:-1]
    local_min = core[:-1] & (s[:, :-2] > s_mid) & (s[:, 2:] >= s_mid) & (s_mid > 0)
    local_max = core[:-1] & (s[:, :-2] < s_mid) & (s[:, 2:] <= s_mid) & (s_mid < 0)
    shape = np.where(n_peaks >= 2, SEPARATE, np.where(local_min.any(axis=1), IV_SHOULDER,
                                                      np.where(local_max.any(axis=1), V_SHOULDER, FUSED)))
    out[ok] = shape
    return out
