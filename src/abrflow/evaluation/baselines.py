"""Classical methods measured beside the model, with the same metric functions.

- :func:`pick_wave_v`: band-pass + peak picking of wave V in a normative latency window, and a
  presence score (correlation with a normative waveform template).
- :func:`series_threshold_crosscov`: the cross-covariance threshold of Suthakar & Liberman (2019).
- :func:`series_threshold_lowest_peak`: the lowest level where the picker finds V.
- :func:`series_threshold_lowest_tested`: the protocol floor, which reads no waveform at all.
- :class:`HandFeatureClassifier`: gradient boosting on the features a clinician reads off a series.
- :func:`majority_baseline`: the floor every classifier must clear (class priors of the training set).

Criteria were set once on ``simulate_cohort(600, seed=1234)`` (not the test cohorts). The presence
criterion maximises F1 of the call against the marked wave V. The cross-covariance criterion is
NOT tuned for threshold error: the simulated protocol stops one or two steps below θ, so the
lowest tested level alone is within 2 dB of the attainable θ on average, and error-tuning drives the
criterion down to the median of pure noise (≈0.27). It is set instead at the 90th percentile of
the cross-covariance of sub-threshold levels (0.49 → 0.5): a level without a response passes by
chance about one time in ten, which is what a clinic testing further below θ needs.

Presence statistic: correlation with a normative template rather than an Fsp-like ratio, because a
ratio needs half-averages (or sweeps) and neither the simulator nor most clinical exports carry
them; correlation is scale-free and needs only the averaged trace.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.signal
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score

from ..data.records import CLASS_NAMES, ABRRecords
from . import metrics
from .thresholds import aligned_thresholds, true_series_thresholds

#: Analysis band (Hz): keeps wave V and SN10, drops the high-frequency residual noise.
ANALYSIS_BAND_HZ: tuple[float, float] = (100.0, 1500.0)
#: Normative adult wave-V latency (ms) by click level (dB nHL): 5.7 ms at 80 dB, ≈0.015–0.03 ms/dB at
#: high levels, steepening towards threshold (DESIGN.md §5; Picton, Human Auditory Evoked Potentials).
NORM_LEVELS_DB = np.array([0.0, 10.0, 20.0, 30.0, 40.0, 60.0, 80.0, 100.0])
NORM_V_LATENCY_MS = np.array([8.9, 8.0, 7.25, 6.75, 6.45, 6.05, 5.75, 5.45])
#: Newborn prolongation of V (ms) and its maturation time constant (adult values by ~18 months).
NEWBORN_V_DELAY_MS, MATURATION_YEARS = 0.85, 0.5
#: Search window around the normative latency: conductive loss and recruitment only delay V.
V_WINDOW_BEFORE_MS, V_WINDOW_AFTER_MS = 0.7, 1.5
#: Wave I window at the highest level (ms), for the I–V interval feature.
WAVE_I_WINDOW_MS: tuple[float, float] = (1.0, 2.8)
#: Earliest sample analysed (ms): the stimulus artefact lies before it.
ANALYSIS_START_MS = 1.0
#: Normative template of the III–V–SN10 complex relative to V: (relative amplitude, centre ms, σ ms).
TEMPLATE_COMPONENTS: tuple[tuple[float, float, float], ...] = (
    (0.6, -2.0, 0.3), (1.0, 0.0, 0.35), (-0.5, 0.9, 0.35), (-0.5, 3.0, 1.2))
TEMPLATE_SPAN_MS: tuple[float, float] = (-2.5, 4.0)
#: Presence criterion on the template correlation (F1-optimal against marked V on the calibration cohort).
V_PRESENT_CRITERION = 0.5
#: Cross-covariance criterion (Suthakar & Liberman 2019), for each level against the highest level and
#: for the reproducibility of the highest level's runs (see the module docstring for how it was set).
CROSSCOV_CRITERION = 0.5
#: Lag search (ms) around the normative latency shift between a level and the highest level.
CROSSCOV_LAG_MS: tuple[float, float] = (-0.5, 1.0)
#: Lag search (ms) between runs at the same (highest) level.
REPLICATE_LAG_MS = 0.5
#: Threshold stand-in for "no response" in features (beyond any tested level) for the classifier.
NO_RESPONSE_FEATURE_DB = 130.0


# ---------------------------------------------------------------------------- shared signal steps
def band_pass(records: ABRRecords) -> np.ndarray:
    """Zero-phase band-pass of every trace (float64 [N, T]): the view a clinician marks peaks on."""
    sos = scipy.signal.butter(2, ANALYSIS_BAND_HZ, btype="bandpass", fs=records.sampling_rate_hz, output="sos")
    return scipy.signal.sosfiltfilt(sos, records.signal.astype(np.float64), axis=1)


def normative_v_latency_ms(intensity_db: np.ndarray, age_years: np.ndarray) -> np.ndarray:
    """Expected wave-V latency for level and age (unknown age taken as adult)."""
    age = np.nan_to_num(np.asarray(age_years, np.float64), nan=30.0)
    adult = np.interp(np.asarray(intensity_db, np.float64), NORM_LEVELS_DB, NORM_V_LATENCY_MS)
    return adult + NEWBORN_V_DELAY_MS * np.exp(-age / MATURATION_YEARS)


def _template(sampling_rate_hz: float) -> tuple[np.ndarray, int]:
    """Unit-norm, zero-mean, band-passed template and the index of its V peak."""
    dt_ms = 1000.0 / sampling_rate_hz
    t_ms = np.arange(TEMPLATE_SPAN_MS[0], TEMPLATE_SPAN_MS[1] + dt_ms / 2, dt_ms)
    shape = sum(a * np.exp(-0.5 * ((t_ms - c) / s) ** 2) for a, c, s in TEMPLATE_COMPONENTS)
    sos = scipy.signal.butter(2, ANALYSIS_BAND_HZ, btype="bandpass", fs=sampling_rate_hz, output="sos")
    pad = len(t_ms)
    shape = scipy.signal.sosfiltfilt(sos, np.pad(shape, pad))[pad:-pad]
    shape = shape - shape.mean()
    return shape / np.linalg.norm(shape), int(np.argmin(np.abs(t_ms)))


def template_correlation(filtered: np.ndarray, sampling_rate_hz: float) -> np.ndarray:
    """Pearson r [N, T] of the template placed with its V peak at each sample (zeros outside the trace).

    Computed with an FFT correlation and running sums, so the whole cohort is one array operation.
    """
    template, v_index = _template(sampling_rate_hz)
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
        corr = np.where(spread > 0, numerator / spread, 0.0)
    # Window starting at padded index k puts the V peak at trace sample k + v_index − n_tpl.
    start = np.arange(n_samples) - v_index + n_tpl
    return corr[:, start]


def _largest_peak(filtered: np.ndarray, t_ms: np.ndarray, lo_ms: np.ndarray, hi_ms: np.ndarray
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
    """Latency window for V per recording: normative latency −0.7/+1.5 ms, clipped to the trace."""
    expected = normative_v_latency_ms(records.intensity_db, records.age_years)
    last_ms = records.time_ms[-1]
    lo = np.clip(expected - V_WINDOW_BEFORE_MS, ANALYSIS_START_MS, last_ms)
    hi = np.clip(expected + V_WINDOW_AFTER_MS, ANALYSIS_START_MS, last_ms)
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
    peak = _largest_peak(filtered, t_ms, lo, hi)
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


def calibrate_criterion(score: np.ndarray, truth: np.ndarray, grid: np.ndarray | None = None) -> float:
    """The criterion on ``score`` that maximises F1 of ``score ≥ criterion`` against ``truth``."""
    grid = np.round(np.arange(0.2, 0.951, 0.025), 3) if grid is None else np.asarray(grid)
    f1 = [f1_score(truth, score >= c, zero_division=0.0) for c in grid]
    return float(grid[int(np.argmax(f1))])


# ---------------------------------------------------------------------------- series helpers
def _series_rows(records: ABRRecords) -> dict[str, np.ndarray]:
    """Row indices of each level series, keyed by ``series_key``."""
    keys = records.series_key
    unique, codes = np.unique(keys, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(unique) + 1))
    return {str(k): order[bounds[i]:bounds[i + 1]] for i, k in enumerate(unique)}


def _max_crosscov(a: np.ndarray, b: np.ndarray, lags: np.ndarray, lag_lo: int, lag_hi: int) -> float:
    """Largest normalised cross-covariance ('coeff') of two traces within a lag range (samples)."""
    a = a - a.mean()
    b = b - b.mean()
    norm = np.sqrt((a @ a) * (b @ b))
    if norm <= 0:
        return 0.0
    xc = scipy.signal.correlate(a, b, mode="full") / norm
    sel = (lags >= lag_lo) & (lags <= lag_hi)
    return float(xc[sel].max())


def crosscov_by_level(records: ABRRecords, rows: np.ndarray, filtered: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(levels_db descending, cross-covariance per level) for one series.

    The reference is the mean trace at the highest level. Each lower level's mean trace is compared
    with it at lags from 0.5 ms before to 1.0 ms after the normative latency shift between the two
    levels (V moves later as the level falls; more so in conductive loss): a narrow lag range
    keeps the chance maximum of noise low. The highest level itself is scored by its own
    reproducibility: the first run against the mean of the others, ±0.5 ms (NaN with a single run:
    it cannot be judged, and is taken as responding).
    """
    fs = records.sampling_rate_hz
    start = int(np.ceil(ANALYSIS_START_MS * fs / 1000.0))
    levels = records.intensity_db[rows]
    tested = np.unique(levels)[::-1]
    top_rows = rows[levels == tested[0]]
    reference = filtered[top_rows, start:].mean(axis=0)
    n = filtered.shape[1] - start
    lags = scipy.signal.correlation_lags(n, n, mode="full")
    age = records.age_years[rows[:1]]
    expected_top = normative_v_latency_ms(tested[:1], age)[0]
    values = np.empty(len(tested))
    if len(top_rows) >= 2:
        half = int(round(REPLICATE_LAG_MS * fs / 1000.0))
        values[0] = _max_crosscov(filtered[top_rows[0], start:], filtered[top_rows[1:], start:].mean(axis=0),
                                  lags, -half, half)
    else:
        values[0] = np.nan
    for j, level in enumerate(tested[1:], start=1):
        shift_ms = normative_v_latency_ms(np.array([level]), age)[0] - expected_top
        lag_lo = int(np.floor((shift_ms + CROSSCOV_LAG_MS[0]) * fs / 1000.0))
        lag_hi = int(np.ceil((shift_ms + CROSSCOV_LAG_MS[1]) * fs / 1000.0))
        trace = filtered[rows[levels == level], start:].mean(axis=0)
        values[j] = _max_crosscov(trace, reference, lags, lag_lo, lag_hi)
    return tested, values


def _threshold_from_crosscov(levels_db: np.ndarray, values: np.ndarray, criterion: float) -> float:
    """Lowest level whose cross-covariance reaches the criterion, interpolated towards the next lower
    level (linear in cross-covariance); +inf when the highest level itself does not reproduce.

    The lowest passing level rather than the first failure on the way down: one noisy level above
    threshold then cannot raise the estimate (on the calibration cohort the first-failure rule had
    ~3 dB more error at every criterion)."""
    if np.isfinite(values[0]) and values[0] < criterion:
        return float("inf")
    passing = np.flatnonzero(np.nan_to_num(values, nan=1.0) >= criterion)
    j = int(passing.max())  # levels are in descending order: the lowest passing level
    if j == len(levels_db) - 1:
        return float(levels_db[j])
    v_hi, v_lo = values[j], values[j + 1]
    frac = (v_hi - criterion) / (v_hi - v_lo) if np.isfinite(v_hi) and v_hi > v_lo else 0.5
    return float(levels_db[j] - frac * (levels_db[j] - levels_db[j + 1]))


def series_threshold_crosscov(records: ABRRecords, criterion: float = CROSSCOV_CRITERION,
                              filtered: np.ndarray | None = None) -> dict[str, float]:
    """Cross-covariance threshold per series (Suthakar & Liberman 2019), +inf for no response."""
    filtered = band_pass(records) if filtered is None else filtered
    out = {}
    for key, rows in _series_rows(records).items():
        levels, values = crosscov_by_level(records, rows, filtered)
        out[key] = _threshold_from_crosscov(levels, values, criterion)
    return out


def series_threshold_lowest_peak(records: ABRRecords, picked: dict[str, np.ndarray]) -> dict[str, float]:
    """Lowest level at which the picker calls V present in at least half of the runs (+inf: none)."""
    present = np.asarray(picked["v_present"], dtype=bool)
    out = {}
    for key, rows in _series_rows(records).items():
        levels = records.intensity_db[rows]
        responding = [lv for lv in np.unique(levels) if present[rows][levels == lv].mean() >= 0.5]
        out[key] = float(min(responding)) if responding else float("inf")
    return out


def series_threshold_lowest_tested(records: ABRRecords) -> dict[str, float]:
    """The lowest tested level of each series, reading no waveform: the protocol floor.

    Testers stop a step or two below the threshold they see, so where the series ends already says
    much about θ. A threshold method that does not beat this floor has learned the protocol, not
    the response.
    """
    return {key: float(records.intensity_db[rows].min()) for key, rows in _series_rows(records).items()}


# ---------------------------------------------------------------------------- hand-feature classifier
FEATURE_NAMES: tuple[str, ...] = (
    "age_years", "intensity_db", "stimulus_rate_hz", "fmp",
    "v_present_score", "v_latency_ms", "v_amplitude_uv", "v_latency_excess_ms",
    "top_v_present_score", "top_v_latency_ms", "top_v_latency_excess_ms",
    "top_v_amplitude_uv", "top_i_v_interval_ms",
    "threshold_crosscov_db", "no_response_crosscov", "threshold_lowest_peak_db", "no_response_lowest_peak",
)


def _wave_i_latency_ms(filtered: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
    """Largest positive peak in the wave-I window (NaN where there is none)."""
    lo = np.full(len(filtered), WAVE_I_WINDOW_MS[0])
    hi = np.full(len(filtered), WAVE_I_WINDOW_MS[1])
    peak = _largest_peak(filtered, t_ms, lo, hi)
    return np.where(peak >= 0, t_ms[np.maximum(peak, 0)], np.nan)


def hand_features(records: ABRRecords, *, filtered: np.ndarray | None = None,
                  picked: dict[str, np.ndarray] | None = None, crosscov: dict[str, float] | None = None
                  ) -> np.ndarray:
    """Feature matrix [N, len(FEATURE_NAMES)]: this recording's picks plus its series' summary.

    Series features are what a clinician reads first: V at the highest level (latency, its excess
    over the norm, amplitude), the I–V interval there, and the two classical thresholds.
    "No response" thresholds become NO_RESPONSE_FEATURE_DB plus a 0/1 flag (trees split on both).
    ``filtered``, ``picked`` and ``crosscov`` may be passed when the caller computed them already.
    """
    filtered = band_pass(records) if filtered is None else filtered
    picked = pick_wave_v(records, filtered=filtered) if picked is None else picked
    crosscov = series_threshold_crosscov(records, filtered=filtered) if crosscov is None else crosscov
    excess = picked["v_latency_ms"] - normative_v_latency_ms(records.intensity_db, records.age_years)
    wave_i = _wave_i_latency_ms(filtered, records.time_ms)
    lowest = series_threshold_lowest_peak(records, picked)
    feats = np.full((len(records), len(FEATURE_NAMES)), np.nan)
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}
    feats[:, col["age_years"]] = records.age_years
    feats[:, col["intensity_db"]] = records.intensity_db
    feats[:, col["stimulus_rate_hz"]] = records.stimulus_rate_hz
    feats[:, col["fmp"]] = records.fmp
    feats[:, col["v_present_score"]] = picked["v_present_score"]
    feats[:, col["v_latency_ms"]] = picked["v_latency_ms"]
    feats[:, col["v_amplitude_uv"]] = picked["v_amplitude_uv"]
    feats[:, col["v_latency_excess_ms"]] = excess
    for key, rows in _series_rows(records).items():
        levels = records.intensity_db[rows]
        top = rows[levels == levels.max()]
        feats[rows, col["top_v_present_score"]] = picked["v_present_score"][top].mean()
        feats[rows, col["top_v_latency_ms"]] = np.nanmedian(picked["v_latency_ms"][top])
        feats[rows, col["top_v_latency_excess_ms"]] = np.nanmedian(excess[top])
        feats[rows, col["top_v_amplitude_uv"]] = np.nanmedian(picked["v_amplitude_uv"][top])
        feats[rows, col["top_i_v_interval_ms"]] = np.nanmedian(picked["v_latency_ms"][top] - wave_i[top])
        for name, flag, value in (("threshold_crosscov_db", "no_response_crosscov", crosscov[key]),
                                  ("threshold_lowest_peak_db", "no_response_lowest_peak", lowest[key])):
            feats[rows, col[name]] = value if np.isfinite(value) else NO_RESPONSE_FEATURE_DB
            feats[rows, col[flag]] = float(not np.isfinite(value))
    return feats


class HandFeatureClassifier:
    """Hearing-loss class from hand features (:func:`hand_features`) with gradient boosting.

    ``class_weight='balanced'`` because the classes are 80/11/6/3/1 %: without it the trees learn
    the NORMAL floor. Missing features (no wave I, no V at the top level) stay NaN: the model routes
    them natively.
    """

    def __init__(self, random_state: int = 0, max_iter: int = 100, **params):
        self.model = HistGradientBoostingClassifier(class_weight="balanced", random_state=random_state,
                                                    max_iter=max_iter, **params)
        self.n_classes = len(CLASS_NAMES)

    def fit(self, records: ABRRecords, features: np.ndarray | None = None) -> HandFeatureClassifier:
        """Fit on the recordings with a known class (``features``: :func:`hand_features`, if at hand)."""
        known = records.hearing_loss >= 0
        if not known.any():
            raise ValueError("no recording with a known hearing-loss class to fit on")
        feats = hand_features(records) if features is None else features
        self.model.fit(feats[known], records.hearing_loss[known].astype(int))
        return self

    def predict_proba(self, records: ABRRecords, features: np.ndarray | None = None) -> np.ndarray:
        """Probabilities [N, 5] in class-code order (0 for a class absent from training)."""
        feats = hand_features(records) if features is None else features
        proba = self.model.predict_proba(feats)
        out = np.zeros((len(records), self.n_classes))
        out[:, self.model.classes_.astype(int)] = proba
        return out


def majority_baseline(y_train: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> Callable[[object], np.ndarray]:
    """A predictor returning the training class priors for every row: its argmax is the majority
    class (macro-F1 ≈ 0.18, balanced accuracy 0.2 on the clinic's 80 % NORMAL mix)."""
    y = np.asarray(y_train).astype(int)
    y = y[y >= 0]
    if y.size == 0:
        raise ValueError("majority baseline needs at least one known class")
    priors = np.bincount(y, minlength=n_classes)[:n_classes] / y.size

    def predict_proba(rows: object) -> np.ndarray:
        n = rows if isinstance(rows, (int, np.integer)) else len(rows)  # type: ignore[arg-type]
        return np.tile(priors, (int(n), 1))

    return predict_proba


# ---------------------------------------------------------------------------- everything at once
def _macro_f1(probs: np.ndarray, y_true: np.ndarray) -> float:
    known = y_true >= 0
    if not known.any():
        return float("nan")
    return float(f1_score(y_true[known], probs[known].argmax(axis=1), average="macro", zero_division=0.0))


def _threshold_block(estimated: dict[str, float], recorded: dict[str, float], attainable: dict[str, float]
                     ) -> dict:
    """Per-series scores against the recorded threshold (with severity and diagnosis) and against the
    attainable one (what the tested levels can show: see ``true_series_thresholds``)."""
    est, true, _ = aligned_thresholds(estimated, recorded)
    est_att, true_att, _ = aligned_thresholds(estimated, attainable)
    return {"recorded": metrics.clinical_metrics(est, true),
            "attainable": metrics.threshold_metrics(est_att, true_att)}


def run_baselines(train_records: ABRRecords, test_records: ABRRecords, *, n_boot: int = 200,
                  seed: int = 0) -> dict:
    """Every baseline on ``test_records`` (the classifier and the priors fitted on ``train_records``).

    Thresholds are scored per series (one ear = one threshold) against the recorded and the
    attainable threshold; classes per recording, with a patient-level bootstrap interval of
    macro-F1 and per-age strata. Signal metrics are not computed: a classical method has no clean
    reference waveform to be compared with on recorded data.
    """
    test = test_records
    names = list(CLASS_NAMES)
    filtered = band_pass(test)
    picked = pick_wave_v(test, filtered=filtered)
    truth = true_series_thresholds(test)
    attainable = true_series_thresholds(test, attainable=True)
    crosscov = series_threshold_crosscov(test, filtered=filtered)
    lowest = series_threshold_lowest_peak(test, picked)

    classifier = HandFeatureClassifier().fit(train_records)
    hand_probs = classifier.predict_proba(
        test, features=hand_features(test, filtered=filtered, picked=picked, crosscov=crosscov))
    majority_probs = majority_baseline(train_records.hearing_loss)(len(test))
    y = test.hearing_loss.astype(int)
    row_keys = test.series_key
    crosscov_per_row = np.array([crosscov[k] for k in row_keys])

    def classification_block(probs: np.ndarray) -> dict:
        return {
            "classification": metrics.classification_metrics(probs, y, names),
            "macro_f1_ci": metrics.bootstrap_ci(_macro_f1, test.patient_id, n_boot=n_boot, seed=seed,
                                                probs=probs, y_true=y),
            "by_age": metrics.by_age_stratum(test.age_years, metrics.classification_metrics, probs=probs,
                                             y_true=y, class_names=names),
        }

    return {
        "n_recordings": len(test),
        "n_series": len(truth),
        "n_patients": int(np.unique(test.patient_id).size),
        "criteria": {"v_present_template_correlation": V_PRESENT_CRITERION,
                     "crosscov": CROSSCOV_CRITERION},
        "peak_picker": {
            "wave_v": metrics.peak_metrics(picked["v_present_score"], test.v_present, picked["v_latency_ms"],
                                           test.v_latency_ms, picked["v_amplitude_uv"], test.v_amplitude_uv,
                                           threshold=V_PRESENT_CRITERION),
            "threshold_lowest_peak": _threshold_block(lowest, truth, attainable),
        },
        "threshold_crosscov": _threshold_block(crosscov, truth, attainable),
        "threshold_protocol_floor": _threshold_block(series_threshold_lowest_tested(test), truth, attainable),
        "hand_features": {
            **classification_block(hand_probs),
            "clinical": metrics.clinical_metrics(crosscov_per_row, test.threshold_db,
                                                 hand_probs.argmax(axis=1), y),
        },
        "majority": classification_block(majority_probs),
    }
