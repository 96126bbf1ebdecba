"""The classical wave pickers (V, and I and III beside it): band-pass, the largest peak in a
normative latency window, and a presence score (correlation with a normative waveform template).

Each wave's window is its normative latency for level and age (:mod:`abrflow.clinical.norms`)
minus/plus a margin; the pick is the largest local maximum of the band-passed trace in it. For V
that is BrainWave.jl's ``findABRPeaks`` convention (Carcagno; "wave V is the largest peak in its
latency window"): in a IV–V complex it takes whichever of IV and V is higher, and no rule about
the peak before the slope into SN10 is applied (no published clinical rule for the fused complex
was found, ``shared/reference/abr-physiology.md`` §4). I and III are picked after V: I's window
ends MIN_I_V_MS before the picked V, III's lies between the picked I (+MIN_I_III_MS) and V
(−MIN_III_V_MS), so III is always between I and V; I and III are called present only where V is
(a clinician marks them alongside V).

Constants were fixed once on the calibration cohort ``simulate_cohort(600, seed=1234)`` (never the
test cohorts, never a real recording), against the marked waves ``wave_latency_ms[:, k]``, by
``experiments/picker_constants_synthetic.py`` (results in ``experiments/results/``), on the simulator
with waves I–VI and the IV–V complex (issue 19) and the norms of :mod:`abrflow.clinical.norms`:

- V window −1.0/+0.8 ms: the margins (0.2–2.0 ms, 0.2 ms grid) with the lowest latency MAE against
  marked V among those finding a peak for ≥ 97.5 % of marked V: 0.167 ms.
- I window −0.6/+0.4 ms, III window −0.6/+0.4 ms: the narrowest margins holding a peak for ≥ 97.5 %
  of the marked waves; latency MAE I 0.110, III 0.112 ms.
- Presence criteria, F1-optimal against the marked wave: V 0.425 (F1 0.89), I 0.85 (F1 0.52),
  III 0.725 (F1 0.72). I/III's score is the best correlation in the window with a one-wave
  template (peak and after-trough); the peak-to-trough ratio to V did worse (F1 0.43 / 0.70).

Presence statistic: correlation with a normative template rather than an Fsp-like ratio, because a
ratio needs half-averages (or sweeps) and neither the simulator nor most clinical exports carry
them; correlation is scale-free and needs only the averaged trace.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from ..data.records import ABRRecords
from .norms import normative_latency_ms, normative_v_latency_ms

#: Analysis band (Hz): keeps wave V and SN10, drops the high-frequency residual noise.
ANALYSIS_BAND_HZ: tuple[float, float] = (100.0, 1500.0)
#: Search window around each wave's normative latency (ms before, after): see the module docstring.
WAVE_WINDOW_MS: dict[str, tuple[float, float]] = {"i": (0.6, 0.4), "iii": (0.6, 0.4), "v": (1.0, 0.8)}
#: Shortest intervals a pick may imply (ms): each more than 5 SD below the adult norm
#: (I–V 3.95 ± 0.23, III–V 2.07 ± 0.19, I–III 1.88 ± 0.13; abrflow.clinical.norms).
MIN_I_V_MS, MIN_III_V_MS, MIN_I_III_MS = 2.5, 1.0, 0.5
#: Earliest sample analysed (ms): the stimulus artefact lies before it.
ANALYSIS_START_MS = 1.0
#: Normative template of the III–V–SN10 complex relative to V: (relative amplitude, centre ms, σ ms).
TEMPLATE_COMPONENTS: tuple[tuple[float, float, float], ...] = (
    (0.6, -2.0, 0.3), (1.0, 0.0, 0.35), (-0.5, 0.9, 0.35), (-0.5, 3.0, 1.2))
TEMPLATE_SPAN_MS: tuple[float, float] = (-2.5, 4.0)
#: One-wave template for I and III: the peak and its after-trough.
WAVE_TEMPLATE_COMPONENTS: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.25), (-0.5, 0.65, 0.25))
WAVE_TEMPLATE_SPAN_MS: tuple[float, float] = (-0.7, 1.2)
#: Presence criteria on the template correlation (F1-optimal against the marked wave, calibration cohort).
V_PRESENT_CRITERION = 0.425
WAVE_PRESENT_CRITERION: dict[str, float] = {"i": 0.85, "iii": 0.725, "v": V_PRESENT_CRITERION}


# ---------------------------------------------------------------------------- shared signal steps
def band_pass(records: ABRRecords) -> np.ndarray:
    """Zero-phase band-pass of every trace (float64 [N, T]): the view a clinician marks peaks on."""
    sos = scipy.signal.butter(2, ANALYSIS_BAND_HZ, btype="bandpass", fs=records.sampling_rate_hz, output="sos")
    return scipy.signal.sosfiltfilt(sos, records.signal.astype(np.float64), axis=1)


def _template(sampling_rate_hz: float, components=TEMPLATE_COMPONENTS, span_ms=TEMPLATE_SPAN_MS
              ) -> tuple[np.ndarray, int]:
    """Unit-norm, zero-mean, band-passed template and the index of its peak (time 0)."""
    dt_ms = 1000.0 / sampling_rate_hz
    t_ms = np.arange(span_ms[0], span_ms[1] + dt_ms / 2, dt_ms)
    shape = sum(a * np.exp(-0.5 * ((t_ms - c) / s) ** 2) for a, c, s in components)
    sos = scipy.signal.butter(2, ANALYSIS_BAND_HZ, btype="bandpass", fs=sampling_rate_hz, output="sos")
    pad = len(t_ms)
    shape = scipy.signal.sosfiltfilt(sos, np.pad(shape, pad))[pad:-pad]
    shape = shape - shape.mean()
    return shape / np.linalg.norm(shape), int(np.argmin(np.abs(t_ms)))


def template_correlation(filtered: np.ndarray, sampling_rate_hz: float, components=TEMPLATE_COMPONENTS,
                         span_ms=TEMPLATE_SPAN_MS) -> np.ndarray:
    """Pearson r [N, T] of the template placed with its peak at each sample (zeros outside the trace);
    by default the III–V–SN10 template with V at the sample.

    Computed with an FFT correlation and running sums, so the whole cohort is one array operation.
    """
    template, v_index = _template(sampling_rate_hz, components, span_ms)
    n_tpl = len(template)
    n, n_samples = filtered.shape
    padded = np.pad(filtered, ((0, 0), (n_tpl, n_tpl)))
    numerator = scipy.signal.fftconvolve(padded, template[None, ::-1], mode="valid", axes=1)
    c1 = np.concatenate([np.zeros((n, 1)), np.cumsum(padded, axis=1)], axis=1)
    c2 = np.concatenate([np.zeros((n, 1)), np.cumsum(padded ** 2, axis=1)], axis=1)
    s1 = c1[:, n_tpl:] - c1[:, :-n_tpl]
    s2 = c2[:, n_tpl:] - c2[:, :-n_tpl]
    spread = np.sqrt(np.maximum(s2 - s1 ** 2 / n_tpl, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(spread > 1e-12, numerator / spread, 0.0)
    # Window starting at padded index k puts the V peak at trace sample k + v_index − n_tpl.
    start = np.arange(n_samples) - v_index + n_tpl
    return corr[:, start]


def largest_peak(filtered: np.ndarray, t_ms: np.ndarray, lo_ms: np.ndarray, hi_ms: np.ndarray
                  ) -> np.ndarray:
    """Sample index of the largest local maximum inside [lo, hi] per row; −1 where there is none."""
    out = np.full(len(filtered), -1)
    for i, row in enumerate(filtered):
        peaks, _ = scipy.signal.find_peaks(row)
        peaks = peaks[(t_ms[peaks] >= lo_ms[i]) & (t_ms[peaks] <= hi_ms[i])]
        if peaks.size:
            out[i] = peaks[np.argmax(row[peaks])]
    return out


# ---------------------------------------------------------------------------- wave V picker
def v_search_window_ms(records: ABRRecords) -> tuple[np.ndarray, np.ndarray]:
    """Latency window for V per recording: normative latency −/+ ``WAVE_WINDOW_MS["v"]``, clipped to the trace."""
    expected = normative_v_latency_ms(records.intensity_db, records.age_years)
    last_ms = records.time_ms[-1]
    before, after = WAVE_WINDOW_MS["v"]
    lo = np.clip(expected - before, ANALYSIS_START_MS, last_ms)
    hi = np.clip(expected + after, ANALYSIS_START_MS, last_ms)
    return lo, hi


def pick_wave_v(records: ABRRecords, criterion: float = V_PRESENT_CRITERION,
                filtered: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Classical wave-V picking: the largest positive peak of the band-passed trace in the window.

    Returns per recording ``v_present_score`` (best template correlation in the window: scale-free,
    so it judges shape, not size), ``v_present`` (score ≥ criterion), ``v_latency_ms``,
    ``v_amplitude_uv`` (the recorded trace's value at the picked latency: the baseline-to-peak
    amplitude the records' labels use, as a clinician's cursor reads it) and
    ``v_peak_to_trough_uv`` (peak to the following trough within 1.5 ms on the band-passed trace).
    Latency and amplitudes are NaN where the window holds no peak. ``filtered`` is
    :func:`band_pass` of the records when the caller has it already.
    """
    filtered = band_pass(records) if filtered is None else filtered
    t_ms = records.time_ms
    lo, hi = v_search_window_ms(records)
    peak = largest_peak(filtered, t_ms, lo, hi)
    found = peak >= 0
    rows = np.arange(len(records))
    idx = np.where(found, peak, 0)
    corr = template_correlation(filtered, records.sampling_rate_hz)
    in_window = (t_ms[None, :] >= lo[:, None]) & (t_ms[None, :] <= hi[:, None])
    score = np.where(in_window, corr, -1.0).max(axis=1)

    trough_span = int(round(1.5e-3 * records.sampling_rate_hz))
    following = np.minimum(idx[:, None] + np.arange(trough_span + 1)[None, :], records.n_samples - 1)
    peak_to_trough = filtered[rows, idx] - filtered[rows[:, None], following].min(axis=1)
    return {
        "v_present_score": score.astype(np.float64),
        "v_present": score >= criterion,
        "v_latency_ms": np.where(found, t_ms[idx], np.nan),
        "v_amplitude_uv": np.where(found, records.signal[rows, idx], np.nan).astype(np.float64),
        "v_peak_to_trough_uv": np.where(found, peak_to_trough, np.nan),
    }


# ---------------------------------------------------------------------------- waves I and III
def _pick_in_window(filtered: np.ndarray, t_ms: np.ndarray, score_trace: np.ndarray, lo: np.ndarray,
                    hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest peak in [lo, hi] (−1 where none) and the best template correlation there (−1 if empty)."""
    last_ms = t_ms[-1]
    lo = np.clip(np.nan_to_num(lo, nan=last_ms), ANALYSIS_START_MS, last_ms)
    hi = np.clip(np.nan_to_num(hi, nan=ANALYSIS_START_MS), ANALYSIS_START_MS, last_ms)
    peak = largest_peak(filtered, t_ms, lo, hi)
    in_window = (t_ms[None, :] >= lo[:, None]) & (t_ms[None, :] <= hi[:, None])
    return peak, np.where(in_window, score_trace, -1.0).max(axis=1)


def pick_waves(records: ABRRecords, filtered: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Waves I, III and V per recording: ``{w}_present`` (bool), ``{w}_present_score``,
    ``{w}_latency_ms`` and ``{w}_amplitude_uv`` (NaN where the window holds no peak) for w in i,
    iii, v, plus ``v_peak_to_trough_uv``. V's entries are :func:`pick_wave_v`'s. I's window ends
    MIN_I_V_MS before the picked V; III's lies between the picked I and V; I and III are present
    only where V is. Amplitudes are the recorded trace's value at the pick (as for V).
    """
    filtered = band_pass(records) if filtered is None else filtered
    t_ms = records.time_ms
    rows = np.arange(len(records))
    out = dict(pick_wave_v(records, filtered=filtered))
    v_lat = out["v_latency_ms"]
    corr = template_correlation(filtered, records.sampling_rate_hz, WAVE_TEMPLATE_COMPONENTS, WAVE_TEMPLATE_SPAN_MS)
    lat: dict[str, np.ndarray] = {}
    for w in ("i", "iii"):
        expected = normative_latency_ms(w, records.intensity_db, records.age_years)[0]
        before, after = WAVE_WINDOW_MS[w]
        lo, hi = expected - before, expected + after
        if w == "i":
            hi = np.where(np.isfinite(v_lat), np.minimum(hi, v_lat - MIN_I_V_MS), hi)
        else:
            lo = np.where(np.isfinite(lat["i"]), np.maximum(lo, lat["i"] + MIN_I_III_MS), lo)
            hi = np.where(np.isfinite(v_lat), np.minimum(hi, v_lat - MIN_III_V_MS), hi)
        peak, score = _pick_in_window(filtered, t_ms, corr, lo, hi)
        found = peak >= 0
        idx = np.maximum(peak, 0)
        lat[w] = np.where(found, t_ms[idx], np.nan)
        out[f"{w}_present_score"] = score.astype(np.float64)
        out[f"{w}_present"] = found & (score >= WAVE_PRESENT_CRITERION[w]) & out["v_present"]
        out[f"{w}_latency_ms"] = lat[w]
        out[f"{w}_amplitude_uv"] = np.where(found, records.signal[rows, idx], np.nan).astype(np.float64)
    keys = [f"{w}_{k}" for w in ("i", "iii", "v") for k in ("present", "present_score", "latency_ms", "amplitude_uv")]
    return {k: out[k] for k in keys + ["v_peak_to_trough_uv"]}
