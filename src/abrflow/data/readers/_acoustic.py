"""Stimulus onset from an ear-canal microphone channel: when the sound reached the ear.

A recording's first sample is not always the stimulus onset. EARNDB records both the ABR and the
OAE probe microphone in the ear canal (its signal 1); that microphone shows the tone burst itself.
In most EARNDB series the burst starts 0.3–0.6 ms after sample 0, but in N3 (1 and 4 kHz), N6
(1 kHz) and N8 (1 and 4 kHz) it starts 5.3–5.7 ms after it: a window cut at sample 0 held mostly
pre-stimulus EEG and put wave V near its end or past it. Reading the onset from the sound the ear
received corrects both cases with one rule; it needs no knowledge of the recording set-up.

The onset is where the envelope of the microphone signal (band-passed an octave around the
stimulus frequency, zero-phase) first reaches :data:`ONSET_FRACTION` of its peak. It is only
trusted where the burst stands far above the microphone's noise (peak / median envelope ≥
:data:`MIN_PEAK_TO_MEDIAN`): on the loudest level of a series that ratio is 800–32 000 in EARNDB,
near behavioural threshold it falls to 3–30 and noise crosses the 10% line early.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

#: Fraction of the burst envelope's peak that marks its onset.
ONSET_FRACTION = 0.1
#: Peak-to-median envelope ratio below which the microphone cannot place the onset.
MIN_PEAK_TO_MEDIAN = 100.0


def burst_onset_index(microphone: np.ndarray, sampling_rate_hz: float,
                      stimulus_frequency_hz: float) -> tuple[int | None, float]:
    """(first sample of the burst or None where the burst is too faint, its peak-to-median ratio)."""
    mic = np.asarray(microphone, np.float64)
    mic = mic - np.median(mic)
    nyquist = sampling_rate_hz / 2.0
    band = (stimulus_frequency_hz / 2.0, min(stimulus_frequency_hz * 2.0, 0.9 * nyquist))
    if not 0 < band[0] < band[1]:
        return None, 0.0
    sos = scipy.signal.butter(2, band, btype="bandpass", fs=sampling_rate_hz, output="sos")
    envelope = np.abs(scipy.signal.hilbert(scipy.signal.sosfiltfilt(sos, mic)))
    peak, floor = float(envelope.max()), float(np.median(envelope))
    ratio = peak / floor if floor > 0 else (np.inf if peak > 0 else 0.0)
    if not ratio >= MIN_PEAK_TO_MEDIAN:
        return None, ratio
    return int(np.argmax(envelope >= ONSET_FRACTION * peak)), ratio
