"""Signal, wave-V, classification, threshold and clinical metrics: pure functions over NumPy arrays.

Every function returns a plain dict of floats, ints and lists (JSON-ready). A metric that is
undefined for the data it is given (AUC with one class, a correlation of a flat trace, an empty
stratum) is NaN, never an exception: an evaluation report must survive a small or lopsided test
set. Counting, F1, AUC, kappa and confusion matrices come from scikit-learn; envelopes and spectra
from scipy.signal. Only NumPy, SciPy and scikit-learn are imported here.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.signal
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
)

NAN = float("nan")

#: Hearing-loss severity by threshold (dB nHL): upper bounds (inclusive) of normal, mild, moderate, severe.
SEVERITY_UPPER_DB: tuple[float, ...] = (20.0, 40.0, 70.0, 90.0)
SEVERITY_NAMES: tuple[str, ...] = ("normal", "mild", "moderate", "severe", "profound")
#: Calibration bins of the expected calibration error.
ECE_BINS = 15


# ---------------------------------------------------------------------------- small helpers
def _f(x: float) -> float:
    """A plain Python float (NumPy scalars are not JSON-serialisable)."""
    return float(x)


def _nanmean(x: np.ndarray) -> float:
    """Mean of the finite entries; NaN (not a RuntimeWarning) when there are none."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else NAN


def _rowwise_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair; NaN where either row is flat (r is undefined there)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / denom
    return np.where(denom > 0, r, np.nan)


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name} must be [N, T], got shape {x.shape}")
    return x


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays differ in length: {lengths}")
    return next(iter(lengths.values()), 0)


def _kappa(a: np.ndarray, b: np.ndarray, weights: str | None = None) -> float:
    """Cohen's kappa; NaN where it is 0/0 (both raters use one and the same single category)."""
    if a.size == 0:
        return NAN
    if np.unique(np.concatenate([a, b])).size < 2:
        return NAN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _f(cohen_kappa_score(a, b, weights=weights))


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC; NaN when only one class is present (it is undefined, not 0.5)."""
    y = np.asarray(y, dtype=bool)
    if y.size == 0 or y.all() or not y.any():
        return NAN
    return _f(roc_auc_score(y, score))


# ---------------------------------------------------------------------------- signals
def signal_metrics(pred: np.ndarray, true: np.ndarray, sampling_rate_hz: float) -> dict:
    """Waveform fidelity of predicted (denoised or generated) traces against reference traces.

    Amplitude errors (MSE, MAE) say how far; Pearson r says whether the shape is right regardless of
    scale; SNR in dB is the clinician's view of residual error; magnitude-spectrum correlation and
    log-spectral distance judge frequency content (where a smoother would look good on MSE); the
    Hilbert-envelope correlation judges the peak/trough morphology regardless of small phase shifts.
    ``snr_db`` pools power over all recordings (one perfect row cannot make it infinite);
    ``snr_db_median`` is the median per-recording value; both are +inf for an exact reproduction.
    """
    pred, true = _as_2d(pred, "pred"), _as_2d(true, "true")
    if pred.shape != true.shape:
        raise ValueError(f"pred {pred.shape} and true {true.shape} differ in shape")
    n = len(true)
    if n == 0 or true.shape[1] < 2:
        keys = ("mse", "mae", "pearson_r", "snr_db", "snr_db_median", "spectral_correlation",
                "log_spectral_distance_db", "envelope_correlation")
        return {"n": n, **dict.fromkeys(keys, NAN)}
    err = true - pred
    signal_power = (true ** 2).sum(axis=1)
    error_power = (err ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr_rows = 10 * np.log10(signal_power / error_power)
        snr_pooled = 10 * np.log10(signal_power.sum() / error_power.sum())

    # Power spectra (Hann window: a 10 ms trace leaks badly with a rectangular one); DC excluded.
    _, p_true = scipy.signal.periodogram(true, fs=sampling_rate_hz, window="hann", detrend=False, axis=1)
    _, p_pred = scipy.signal.periodogram(pred, fs=sampling_rate_hz, window="hann", detrend=False, axis=1)
    p_true, p_pred = p_true[:, 1:], p_pred[:, 1:]
    floor = 1e-12 * max(float(p_true.max()), float(p_pred.max()), 1e-30)
    lsd = np.sqrt(np.mean((10 * np.log10((p_true + floor) / (p_pred + floor))) ** 2, axis=1))

    env_true = np.abs(scipy.signal.hilbert(true, axis=1))
    env_pred = np.abs(scipy.signal.hilbert(pred, axis=1))
    return {
        "n": n,
        "mse": _f(np.mean(err ** 2)),
        "mae": _f(np.mean(np.abs(err))),
        "pearson_r": _nanmean(_rowwise_corr(pred, true)),
        "snr_db": _f(snr_pooled),
        "snr_db_median": _f(np.median(snr_rows[~np.isnan(snr_rows)])) if (~np.isnan(snr_rows)).any() else NAN,
        "spectral_correlation": _nanmean(_rowwise_corr(np.sqrt(p_pred), np.sqrt(p_true))),
        "log_spectral_distance_db": _f(lsd.mean()),
        "envelope_correlation": _nanmean(_rowwise_corr(env_pred, env_true)),
    }


# ---------------------------------------------------------------------------- wave V
def peak_metrics(v_present_prob: np.ndarray, v_present_true: np.ndarray, lat_pred_ms: np.ndarray,
                 lat_true_ms: np.ndarray, amp_pred_uv: np.ndarray, amp_true_uv: np.ndarray,
                 threshold: float = 0.5) -> dict:
    """Wave-V detection (accuracy, F1, AUC) and measurement (latency, amplitude) errors.

    Latency and amplitude are scored where V is marked (true value finite). MAE/RMSE use rows
    where a prediction exists too; the ±0.2/±0.5 ms fractions count a missing prediction on a
    marked wave as outside the tolerance, so a method cannot look precise by abstaining.
    """
    prob = np.asarray(v_present_prob, dtype=np.float64)
    y = np.asarray(v_present_true, dtype=bool)
    lat_pred, lat_true = np.asarray(lat_pred_ms, np.float64), np.asarray(lat_true_ms, np.float64)
    amp_pred, amp_true = np.asarray(amp_pred_uv, np.float64), np.asarray(amp_true_uv, np.float64)
    _same_length(v_present_prob=prob, v_present_true=y, lat_pred_ms=lat_pred, lat_true_ms=lat_true,
                 amp_pred_uv=amp_pred, amp_true_uv=amp_true)
    known = np.isfinite(prob)
    pred = prob[known] >= threshold
    yk = y[known]
    out: dict = {"n": int(len(prob)), "n_present_true": int(y.sum()), "n_prob_missing": int((~known).sum()),
                 "threshold": _f(threshold)}
    if yk.size:
        out.update(
            presence_accuracy=_f(accuracy_score(yk, pred)),
            presence_f1=_f(f1_score(yk, pred, zero_division=0.0)) if (yk.any() or pred.any()) else NAN,
            presence_precision=_f(precision_score(yk, pred, zero_division=np.nan)),
            presence_recall=_f(recall_score(yk, pred, zero_division=np.nan)),
            presence_auc=_auc(yk, prob[known]))
    else:
        out.update(dict.fromkeys(
            ("presence_accuracy", "presence_f1", "presence_precision", "presence_recall", "presence_auc"), NAN))

    marked = np.isfinite(lat_true)
    both = marked & np.isfinite(lat_pred)
    lat_err = np.abs(lat_pred[both] - lat_true[both])
    abs_err_marked = np.where(both, np.abs(lat_pred - lat_true), np.inf)[marked]
    out.update(
        n_latency_marked=int(marked.sum()), n_latency_scored=int(both.sum()),
        latency_mae_ms=_f(lat_err.mean()) if lat_err.size else NAN,
        latency_rmse_ms=_f(np.sqrt(np.mean(lat_err ** 2))) if lat_err.size else NAN,
        latency_bias_ms=_f(np.mean(lat_pred[both] - lat_true[both])) if lat_err.size else NAN,
        latency_within_0_2ms=_f(np.mean(abs_err_marked <= 0.2 + 1e-9)) if marked.any() else NAN,
        latency_within_0_5ms=_f(np.mean(abs_err_marked <= 0.5 + 1e-9)) if marked.any() else NAN)
    amp_both = np.isfinite(amp_true) & np.isfinite(amp_pred)
    amp_err = amp_pred[amp_both] - amp_true[amp_both]
    out.update(
        n_amplitude_scored=int(amp_both.sum()),
        amplitude_mae_uv=_f(np.abs(amp_err).mean()) if amp_err.size else NAN,
        amplitude_rmse_uv=_f(np.sqrt(np.mean(amp_err ** 2))) if amp_err.size else NAN,
        amplitude_bias_uv=_f(amp_err.mean()) if amp_err.size else NAN)
    return out


# ---------------------------------------------------------------------------- classes
def macro_f1(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Macro-F1 of the argmax class over the rows whose class is known (y ≥ 0): scikit-learn's, averaged
    over the classes in the truth or the predictions (predicting a class that never occurs costs a
    zero F1). NaN when no row has a known class. The one macro-F1 of abrflow."""
    y = np.asarray(y_true).astype(int)
    known = y >= 0
    if not known.any():
        return NAN
    pred = np.asarray(probs)[known].argmax(axis=1)
    return _f(f1_score(y[known], pred, average="macro", zero_division=0.0))


def balanced_accuracy(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Mean recall over the known true classes of the argmax class (scikit-learn's); NaN with none known."""
    y = np.asarray(y_true).astype(int)
    known = y >= 0
    if not known.any():
        return NAN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true"
        return _f(balanced_accuracy_score(y[known], np.asarray(probs)[known].argmax(axis=1)))


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: |accuracy − confidence| per equal-width confidence bin, weighted by bin size."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true)
    if len(y) == 0:
        return NAN
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, weights=correct, minlength=n_bins)
                 - np.bincount(bins, weights=confidence, minlength=n_bins))
    return _f(gap.sum() / count.sum())


def classification_metrics(probs: np.ndarray, y_true: np.ndarray, class_names: tuple[str, ...] | list[str]) -> dict:
    """Hearing-loss classification: the imbalance-aware headline (macro-F1, balanced accuracy) first.

    Rows whose true class is −1 (unknown) are excluded and counted. Macro/weighted F1 average over
    the classes present in the true or predicted labels (scikit-learn's convention: predicting a
    class that never occurs costs a zero F1); per-class entries cover all K classes, NaN where a
    class has no true rows. One-vs-rest AUC is NaN for a class absent from the truth; its macro is
    the mean over the classes where it is defined.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true).astype(int)
    names = list(class_names)
    if probs.ndim != 2 or probs.shape[1] != len(names):
        raise ValueError(f"probs must be [N, {len(names)}] for classes {names}, got shape {probs.shape}")
    _same_length(probs=probs, y_true=y)
    if ((y < -1) | (y >= len(names))).any():
        raise ValueError(f"y_true holds codes outside -1..{len(names) - 1}")
    known = y >= 0
    probs, y = probs[known], y[known]
    k = len(names)
    labels = list(range(k))
    out: dict = {"n": int(len(y)), "n_unknown_excluded": int((~known).sum()), "class_names": names}
    if len(y) == 0:
        out.update(dict.fromkeys(("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_auc",
                                  "ece"), NAN))
        out.update(per_class={n: {"precision": NAN, "recall": NAN, "f1": NAN, "support": 0, "auc": NAN}
                              for n in names},
                   confusion_matrix=np.zeros((k, k), int).tolist())
        return out
    pred = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=0.0)
    aucs = [_auc(y == c, probs[:, c]) for c in labels]
    per_class = {}
    for c, name in enumerate(names):
        present = support[c] > 0
        per_class[name] = {
            "precision": _f(precision[c]) if (pred == c).any() else NAN,
            "recall": _f(recall[c]) if present else NAN,
            "f1": _f(f1[c]) if present else NAN,
            "support": int(support[c]),
            "auc": aucs[c],
        }
    out.update(
        accuracy=_f(accuracy_score(y, pred)),
        balanced_accuracy=balanced_accuracy(probs, y),
        macro_f1=macro_f1(probs, y),
        weighted_f1=_f(f1_score(y, pred, average="weighted", zero_division=0.0)),
        macro_auc=_nanmean(np.asarray(aucs)),
        ece=expected_calibration_error(probs, y),
        per_class=per_class,
        confusion_matrix=confusion_matrix(y, pred, labels=labels).tolist())
    return out


# ---------------------------------------------------------------------------- thresholds
def threshold_metrics(pred_db: np.ndarray, true_db: np.ndarray) -> dict:
    """Threshold agreement with "no response" (+inf) kept apart from the dB errors.

    dB errors (MAE, bias, within ±5/10/15 dB) use rows where both thresholds are finite. Both +inf
    is agreement on "no response"; one +inf and the other finite is a miss, counted, never turned
    into a number of dB. NaN rows (unknown) are excluded and counted. ``agreement_within_10db``
    is the single clinical figure over all comparable rows: finite pairs within 10 dB plus
    no-response agreements.
    """
    pred = np.asarray(pred_db, dtype=np.float64)
    true = np.asarray(true_db, dtype=np.float64)
    _same_length(pred_db=pred, true_db=true)
    if np.isneginf(pred).any() or np.isneginf(true).any():
        raise ValueError("a threshold of -inf has no meaning; use +inf for 'no response' and NaN for unknown")
    known = ~np.isnan(pred) & ~np.isnan(true)
    p, t = pred[known], true[known]
    finite = np.isfinite(p) & np.isfinite(t)
    both_inf = np.isinf(p) & np.isinf(t)
    pred_inf_only = np.isinf(p) & np.isfinite(t)
    true_inf_only = np.isfinite(p) & np.isinf(t)
    err = p[finite] - t[finite]
    abs_err = np.abs(err)
    n_true_inf = int(np.isinf(t).sum())

    def within(tol_db: float) -> float:
        return _f(np.mean(abs_err <= tol_db + 1e-9)) if abs_err.size else NAN

    return {
        "n": int(known.sum()),
        "n_unknown_excluded": int((~known).sum()),
        "n_finite_pairs": int(finite.sum()),
        "mae_db": _f(abs_err.mean()) if abs_err.size else NAN,
        "rmse_db": _f(np.sqrt(np.mean(err ** 2))) if err.size else NAN,
        "bias_db": _f(err.mean()) if err.size else NAN,
        "within_5db": within(5.0),
        "within_10db": within(10.0),
        "within_15db": within(15.0),
        "n_no_response_true": n_true_inf,
        "n_no_response_agree": int(both_inf.sum()),
        "no_response_agreement_rate": _f(both_inf.sum() / n_true_inf) if n_true_inf else NAN,
        "n_false_no_response": int(pred_inf_only.sum()),
        "n_missed_no_response": int(true_inf_only.sum()),
        "agreement_within_10db": _f((np.sum(abs_err <= 10.0 + 1e-9) + both_inf.sum()) / known.sum())
        if known.any() else NAN,
    }


def severity_grade(threshold_db: np.ndarray) -> np.ndarray:
    """Severity code per threshold: 0 normal ≤ 20, 1 mild ≤ 40, 2 moderate ≤ 70, 3 severe ≤ 90,
    4 profound > 90 dB (no response, +inf, is profound); −1 where the threshold is unknown (NaN)."""
    thr = np.asarray(threshold_db, dtype=np.float64)
    grade = np.digitize(thr, SEVERITY_UPPER_DB, right=True)
    return np.where(np.isnan(thr), -1, grade).astype(np.int64)


def _diagnosis(pred_loss: np.ndarray, true_loss: np.ndarray) -> dict:
    """Normal vs hearing loss as a binary test: sensitivity, specificity, kappa."""
    n = int(len(true_loss))
    if n == 0:
        return {"n": 0, "sensitivity": NAN, "specificity": NAN, "kappa": NAN, "agreement": NAN}
    tn, fp, fn, tp = confusion_matrix(true_loss, pred_loss, labels=[False, True]).ravel()
    return {
        "n": n,
        "sensitivity": _f(tp / (tp + fn)) if tp + fn else NAN,
        "specificity": _f(tn / (tn + fp)) if tn + fp else NAN,
        "kappa": _kappa(true_loss.astype(int), pred_loss.astype(int)),
        "agreement": _f((tp + tn) / n),
    }


def clinical_metrics(pred_thr: np.ndarray, true_thr: np.ndarray, pred_class: np.ndarray | None = None,
                     true_class: np.ndarray | None = None, normal_class: int = 0) -> dict:
    """What a clinician would check: is the normal / hearing-loss call right, is the severity right.

    ``diagnosis_by_class`` compares the class calls (loss = any class other than NORMAL; rows with
    an unknown true class, −1, are excluded); ``diagnosis_by_threshold`` the threshold calls (loss =
    threshold above 20 dB nHL). Severity concordance is the quadratic-weighted kappa of the
    severity grades, so normal-vs-profound costs more than mild-vs-moderate.
    """
    pred_thr = np.asarray(pred_thr, dtype=np.float64)
    true_thr = np.asarray(true_thr, dtype=np.float64)
    _same_length(pred_thr=pred_thr, true_thr=true_thr)
    pred_grade, true_grade = severity_grade(pred_thr), severity_grade(true_thr)
    known = (pred_grade >= 0) & (true_grade >= 0)
    pg, tg = pred_grade[known], true_grade[known]
    out: dict = {
        "thresholds": threshold_metrics(pred_thr, true_thr),
        "diagnosis_by_threshold": _diagnosis(pg > 0, tg > 0),
        "severity": {
            "n": int(known.sum()),
            "quadratic_kappa": _kappa(tg, pg, weights="quadratic"),
            "exact_agreement": _f(np.mean(pg == tg)) if known.any() else NAN,
            "within_one_grade": _f(np.mean(np.abs(pg - tg) <= 1)) if known.any() else NAN,
            "grade_names": list(SEVERITY_NAMES),
            "confusion_matrix": confusion_matrix(tg, pg, labels=list(range(len(SEVERITY_NAMES)))).tolist()
            if known.any() else np.zeros((len(SEVERITY_NAMES),) * 2, int).tolist(),
        },
    }
    if pred_class is not None and true_class is not None:
        pc, tc = np.asarray(pred_class).astype(int), np.asarray(true_class).astype(int)
        _same_length(pred_class=pc, true_class=tc)
        ok = tc >= 0
        out["diagnosis_by_class"] = _diagnosis(pc[ok] != normal_class, tc[ok] != normal_class)
    return out
