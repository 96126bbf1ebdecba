"""The burst-onset finder on bursts whose onset is known."""

from __future__ import annotations

import numpy as np
import pytest

from abrflow.data.readers._acoustic import burst_onset_index

RATE_HZ = 48_000.0


def _burst(onset_ms: float, frequency_hz: float, rise_ms: float, noise: float, seed: int = 0) -> np.ndarray:
    t_ms = np.arange(2002) / 48.0
    since = t_ms - onset_ms
    envelope = np.clip(since / rise_ms, 0, 1) * np.clip((onset_ms + 3 * rise_ms - t_ms) / rise_ms, 0, 1)
    tone = envelope * np.sin(2 * np.pi * frequency_hz * since / 1000.0)
    return 1000.0 * tone + noise * np.random.default_rng(seed).standard_normal(t_ms.size) + 37.0  # offset: raw counts


@pytest.mark.parametrize(("onset_ms", "frequency_hz", "rise_ms"), [(0.3, 4000.0, 0.5), (5.5, 1000.0, 2.0),
                                                                   (12.0, 2000.0, 1.0)])
def test_onset_of_a_loud_burst_is_found_to_within_its_rise(onset_ms, frequency_hz, rise_ms):
    index, ratio = burst_onset_index(_burst(onset_ms, frequency_hz, rise_ms, noise=1.0), RATE_HZ, frequency_hz)
    assert ratio > 100
    # The 10% envelope crossing of a linear rise lies 0.1 × rise after the onset (± the filter's smear).
    assert index / 48.0 == pytest.approx(onset_ms + 0.1 * rise_ms, abs=0.15)


def test_a_faint_burst_or_noise_alone_places_no_onset():
    index, ratio = burst_onset_index(_burst(5.5, 1000.0, 2.0, noise=300.0), RATE_HZ, 1000.0)
    assert index is None and ratio < 100
    assert burst_onset_index(np.full(2002, 5.0), RATE_HZ, 1000.0) == (None, 0.0)  # a flat channel
