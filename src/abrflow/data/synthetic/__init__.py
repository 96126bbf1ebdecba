"""Physiological ABR cohort simulator (DESIGN.md §5): the data set abrflow runs on out of the box.

The simulation is patient-level so that splits, level series and thresholds mean what they mean
clinically: a patient gets an age and a hearing-loss class, each ear a threshold θ, each ear a
descending level series, and every recording a waveform built from the physiology (waves I–VI: I, III
and V with their latency rules, the minor waves II, IV and VI, the IV–V complex in one of its shapes
per ear, V's major negative slope into V' and SN10, baseline drift, cochlear microphonic, stimulus
artefact) plus
band-passed 1/f EEG noise averaged over a realistic number of sweeps. Every number is a named
parameter with its literature value or meaning cited beside it (:class:`Physiology`).

Labels are what a clinician would write (wave V marked only where it is visible, with marking
jitter, at the last peak before V's major negative slope or on its shoulder: :mod:`.components`);
the true values travel alongside in ``ABRRecords.extra``:

- ``true_v_present``, ``true_v_latency_ms``, ``true_v_amplitude_uv``, ``true_wave_latency_ms`` and
  ``true_wave_amplitude_uv`` [N, 3] (I, III, V): latencies where the convention marks them on the
  noise-free trace (before jitter), amplitudes of the components themselves;
- ``true_component_latency_ms`` / ``true_component_amplitude_uv`` [N, 6] float32: the components
  I, II, III, IV, V, VI (:data:`COMPONENT_NAMES`), NaN / 0 where absent; ``iv_v_shape`` [N] int8:
  index into :data:`IV_V_SHAPES`, −1 where there is no wave IV;
- ``sensation_level_db``, ``air_bone_gap_db``, sweeps, σ_EEG, residual and in-band noise,
  ``artifact_burst``, ``eeg_exponent``, stimulus type/frequency/polarity and ``level_unit``.

Units are in the names. Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``,
and signal synthesis runs in fixed-size row chunks, so a seed always gives the same arrays.

One job per module, each importing only those before it: :mod:`.physiology` (parameters, class
codes, validation) → :mod:`.plan` (patients, ears, thresholds, level series) → :mod:`.waveform`
(waves I/III/V, non-neural parts, Fmp, clinician marks; the whole I–VI response and V's marking
convention in :mod:`.components`) and :mod:`.noise` (averaged EEG, amplifier,
half-averages) → :mod:`.cohort` (:func:`simulate_cohort` and friends).
"""

from .cohort import noise_free_waves, simulate_cohort, simulate_cohort_to_dir, simulator_options
from .components import COMPONENT_NAMES, IV_V_SHAPES, complex_shape
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
    "COARSE_LEVELS_DB", "COMPONENT_NAMES", "CONDUCTIVE", "IV_V_SHAPES", "complex_shape", "noise_free_waves", "HIGH_LEVELS_DB", "LEVEL_GRID_DB", "MAX_EEG_EXPONENT", "NEURAL_CLASSES",
    "NEUROPATHY", "NORMAL", "NO_RESPONSE_LEVELS_DB", "N_CLASSES", "PHYSIOLOGY_FIELDS", "SENSORINEURAL",
    "STIMULUS_ARTIFACT_PEAK_MS", "STIMULUS_ARTIFACT_WIDTH_MS", "TOTAL", "Physiology", "amplifier_sos",
    "cochlear_delay_ms", "eeg_noise_uv", "make_physiology", "simulate_cohort", "simulate_cohort_to_dir",
    "simulator_options",
]
