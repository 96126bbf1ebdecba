"""Published norms a clinician reads an ABR against: wave V latency by click level and age."""

from __future__ import annotations

import numpy as np

#: Normative adult wave-V latency (ms) by click level (dB nHL): 5.7 ms at 80 dB, ≈0.015–0.03 ms/dB at
#: high levels, steepening towards threshold (DESIGN.md §5; Picton, Human Auditory Evoked Potentials).
NORM_LEVELS_DB = np.array([0.0, 10.0, 20.0, 30.0, 40.0, 60.0, 80.0, 100.0])
NORM_V_LATENCY_MS = np.array([8.9, 8.0, 7.25, 6.75, 6.45, 6.05, 5.75, 5.45])
#: Newborn prolongation of V (ms) and its maturation time constant (adult values by ~18 months).
NEWBORN_V_DELAY_MS, MATURATION_YEARS = 0.85, 0.5


def normative_v_latency_ms(intensity_db: np.ndarray, age_years: np.ndarray) -> np.ndarray:
    """Expected wave-V latency for level and age (unknown age taken as adult)."""
    age = np.nan_to_num(np.asarray(age_years, np.float64), nan=30.0)
    adult = np.interp(np.asarray(intensity_db, np.float64), NORM_LEVELS_DB, NORM_V_LATENCY_MS)
    return adult + NEWBORN_V_DELAY_MS * np.exp(-age / MATURATION_YEARS)
