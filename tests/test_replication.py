"""The replication criterion from an export's own noise: the simulator's where that noise is 1/f, stricter on real exports."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from abrflow.clinical.replication import (
    REPLICATION_MIN_R,
    own_noise_criterion,
    replicates,
    replication_criterion,
)
from abrflow.data.readers import load_records
from abrflow.data.synthetic import simulate_cohort

from .conftest import REAL


def test_own_noise_criterion_recovers_the_simulators_and_follows_the_noise_colour():
    pink = simulate_cohort(20, seed=4, half_averages=True)
    brown = simulate_cohort(20, seed=4, half_averages=True, eeg_exponent_range=(2.0, 2.0))
    # The halves' difference is the simulated noise itself, so its 5% point is the simulator's criterion.
    assert own_noise_criterion(pink) == pytest.approx(REPLICATION_MIN_R, abs=0.04)
    assert own_noise_criterion(brown) > REPLICATION_MIN_R + 0.05   # redder noise correlates more by chance
    assert replication_criterion(brown) == own_noise_criterion(brown)


def test_real_exports_need_a_stricter_criterion_than_the_simulators():
    smartep = load_records(REAL / "ihs-smartep-human" / "P3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EARNDB's header-less half
        earndb = load_records(REAL / "earndb")
    for records in (smartep, earndb):
        own = own_noise_criterion(records)
        assert 0.47 < own < 0.62  # measured 0.52 (P3) and 0.54 (EARNDB): their noise is ≈ 1/f² in the ABR band
        assert replicates(records, own).sum() <= replicates(records, REPLICATION_MIN_R).sum()


def test_too_few_recordings_or_no_halves_fall_back_to_the_simulators_criterion():
    few = simulate_cohort(1, seed=4, half_averages=True).select(np.arange(12))  # 66 pairs < 100
    assert own_noise_criterion(few) is None and replication_criterion(few) == REPLICATION_MIN_R
    plain = simulate_cohort(2, seed=4)
    assert own_noise_criterion(plain) is None and replication_criterion(plain) == REPLICATION_MIN_R
