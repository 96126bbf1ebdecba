"""Physiological ABR cohort simulator (DESIGN.md §5): the data set abrflow runs on out of the box.

The simulation is patient-level so that splits, level series and thresholds mean what they mean
clinically: a patient gets an age and a hearing-loss class, each ear a threshold θ, each ear a
descending level series, and every recording a waveform built from the physiology (waves I, III, V
with their after-negativities, SN10, baseline drift, cochlear microphonic, stimulus artefact) plus
band-passed 1/f EEG noise averaged over a realistic number of sweeps. Every number is a named
parameter with its literature value or meaning cited beside it (:class:`Physiology`).

Labels are what a clinician would write (wave V marked only where it is visible, with marking
jitter); the true physiological values travel alongside in ``ABRRecords.extra``.

Units are in the names. Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``,
and signal synthesis runs in fixed-size row chunks, so a seed always gives the same arrays.

One job per module, each importing only those before it: :mod:`.physiology` (parameters, class
codes, validation) → :mod:`.plan` (patients, ears, thresholds, level series) → :mod:`.waveform`
(waves, non-neural parts, Fmp, clinician marks) and :mod:`.noise` (averaged EEG, amplifier,
half-averages) → :mod:`.cohort` (:func:`simulate_cohort` and friends).
"""

from .cohort import simulate_cohort, simulate_cohort_to_dir, simulator_options
from .noise import amplifier_sos, eeg_noise_uv
from .physiology import (
    CONDUCTIVE,
    MAX_EEG_EXPONENT,
    N_CLASSES,
    NEURAL_CLASSES,
    NEUROPATHY,
    NORMAL,
    PHYSIOLOGY_FIELDS,
    SENSORINEURAL,
    TOTAL,
    Physiology,
    make_physiology,
)
from .plan import COARSE_LEVELS_DB, HIGH_LEVELS_DB, LEVEL_GRID_DB, NO_RESPONSE_LEVELS_DB
from .waveform import STIMULUS_ARTIFACT_PEAK_MS, STIMULUS_ARTIFACT_WIDTH_MS, cochlear_delay_ms

__all__ = [
    "COARSE_LEVELS_DB", "CONDUCTIVE", "HIGH_LEVELS_DB", "LEVEL_GRID_DB", "MAX_EEG_EXPONENT", "NEURAL_CLASSES",
    "NEUROPATHY", "NORMAL", "NO_RESPONSE_LEVELS_DB", "N_CLASSES", "PHYSIOLOGY_FIELDS", "SENSORINEURAL",
    "STIMULUS_ARTIFACT_PEAK_MS", "STIMULUS_ARTIFACT_WIDTH_MS", "TOTAL", "Physiology", "amplifier_sos",
    "cochlear_delay_ms", "eeg_noise_uv", "make_physiology", "simulate_cohort", "simulate_cohort_to_dir",
    "simulator_options",
]
