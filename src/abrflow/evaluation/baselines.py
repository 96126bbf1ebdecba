"""Classical methods measured beside the model, with the same metric functions.

The methods themselves are clinical and live in :mod:`abrflow.clinical` (the wave V picker, the
cross-covariance, lowest-peak and protocol-floor thresholds, hand features); here they are fitted
and scored:

- :class:`HandFeatureClassifier`: gradient boosting on the features a clinician reads off a series.
- :func:`majority_baseline`: the floor every classifier must clear (class priors of the training set).
- :func:`calibrate_criterion`: how the picker's presence criterion was set (F1-optimal).
- :func:`run_baselines`: every baseline on a test set.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score

from ..clinical.classical import ClassicalReading, read_classical
from ..clinical.classical_thresholds import CROSSCOV_CRITERION
from ..clinical.features import hand_features
from ..clinical.picker import V_PRESENT_CRITERION
from ..clinical.thresholds import aligned_thresholds, true_series_thresholds
from ..data.records import CLASS_NAMES, ABRRecords
from . import metrics, stratify


def calibrate_criterion(score: np.ndarray, truth: np.ndarray, grid: np.ndarray | None = None) -> float:
    """The criterion on ``score`` that maximises F1 of ``score ≥ criterion`` against ``truth``."""
    grid = np.round(np.arange(0.2, 0.951, 0.025), 3) if grid is None else np.asarray(grid)
    f1 = [f1_score(truth, score >= c, zero_division=0.0) for c in grid]
    return float(grid[int(np.argmax(f1))])


# ---------------------------------------------------------------------------- hand-feature classifier
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
def _threshold_block(estimated: dict[str, float], recorded: dict[str, float], attainable: dict[str, float]
                     ) -> dict:
    """Per-series scores against the recorded threshold (with severity and diagnosis) and against the
    attainable one (what the tested levels can show: see ``true_series_thresholds``)."""
    est, true, _ = aligned_thresholds(estimated, recorded)
    est_att, true_att, _ = aligned_thresholds(estimated, attainable)
    return {"recorded": metrics.clinical_metrics(est, true),
            "attainable": metrics.threshold_metrics(est_att, true_att)}


def run_baselines(train_records: ABRRecords, test_records: ABRRecords, *, n_boot: int = 200,
                  seed: int = 0, reading: ClassicalReading | None = None,
                  classifier: HandFeatureClassifier | None = None) -> dict:
    """Every baseline on ``test_records`` (the classifier and the priors fitted on ``train_records``).

    Thresholds are scored per series (one ear = one threshold) against the recorded and the
    attainable threshold; classes per recording, with a patient-level bootstrap interval of
    macro-F1 and per-age strata. Signal metrics are not computed: a classical method has no clean
    reference waveform to be compared with on recorded data. ``reading`` (``read_classical`` of the
    test records) and ``classifier`` (fitted on the training records) when the caller has them.
    """
    test = test_records
    names = list(CLASS_NAMES)
    reading = read_classical(test) if reading is None else reading
    picked, crosscov, lowest = reading.picked, reading.crosscov_db, reading.lowest_peak_db
    truth = true_series_thresholds(test)
    attainable = true_series_thresholds(test, attainable=True)

    classifier = HandFeatureClassifier().fit(train_records) if classifier is None else classifier
    hand_probs = classifier.predict_proba(test, features=reading.features(test))
    majority_probs = majority_baseline(train_records.hearing_loss)(len(test))
    y = test.hearing_loss.astype(int)
    row_keys = test.series_key
    crosscov_per_row = np.array([crosscov[k] for k in row_keys])

    def classification_block(probs: np.ndarray) -> dict:
        return {
            "classification": metrics.classification_metrics(probs, y, names),
            "macro_f1_ci": stratify.bootstrap_ci(metrics.macro_f1, test.patient_id, n_boot=n_boot, seed=seed,
                                                probs=probs, y_true=y),
            "by_age": stratify.by_age_stratum(test.age_years, metrics.classification_metrics, probs=probs,
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
        "threshold_protocol_floor": _threshold_block(reading.lowest_tested_db, truth, attainable),
        "hand_features": {
            **classification_block(hand_probs),
            "clinical": metrics.clinical_metrics(crosscov_per_row, test.threshold_db,
                                                 hand_probs.argmax(axis=1), y),
        },
        "majority": classification_block(majority_probs),
    }
