"""Split-half replication of a recording: the Pearson r of its two interleaved half-averages.

Readers that get half-averages from an export (SmartEP Buffer1/Buffer2, EARNDB R1/R2) store this r
per recording; the clinical layer (``abrflow.clinical.replication``) judges responses with it.
"""

from __future__ import annotations

import numpy as np


def split_half_r(half_a: np.ndarray, half_b: np.ndarray, sampling_rate_hz: float, *,
                 start_ms: float = 1.0, stop_ms: float = 10.0) -> np.ndarray:
    """Pearson r between two half-averages [N, T] over ``start_ms <= t < stop_ms`` after onset.

    Replication of the two halves is how clinicians judge that a response is real: a response
    gives r near 1, noise alone r near 0. The first millisecond is left out because it holds the
    stimulus artefact, which replicates whether or not the brainstem answered. NaN where the
    window holds fewer than 3 samples or a half is flat (r is undefined there).
    """
    half_a = np.asarray(half_a, np.float64)
    half_b = np.asarray(half_b, np.float64)
    t_ms = np.arange(half_a.shape[-1]) * 1000.0 / sampling_rate_hz
    inside = (t_ms >= start_ms) & (t_ms < stop_ms)
    if inside.sum() < 3:
        return np.full(half_a.shape[0], np.nan, np.float32)
    a = half_a[:, inside] - half_a[:, inside].mean(axis=1, keepdims=True)
    b = half_b[:, inside] - half_b[:, inside].mean(axis=1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denominator > 0, (a * b).sum(axis=1) / denominator, np.nan)
    return r.astype(np.float32)
