"""Splits: no patient in two splits, every class in every split, deterministic, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from abrflow.data.splits import split_records
from abrflow.errors import DataError

from .conftest import make_records


def test_patient_grouped_and_all_classes_everywhere():
    rec = make_records(n_patients=60)
    split = split_records(rec, 0.7, 0.15, 0.15, seed=1)
    sets = [set(rec.patient_id[split[n]]) for n in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(len(split[n]) for n in ("train", "val", "test")) == len(rec)
    for n in ("train", "val", "test"):
        assert set(rec.hearing_loss[split[n]]) == {0, 1, 2, 3, 4}
    assert 0.6 < len(split.train) / len(rec) < 0.8


def test_rare_class_reaches_every_split():
    rec = make_records(n_patients=100)
    # make class 1 rare: only 3 patients keep it
    keep = np.isin(rec.patient_id, ["P001", "P006", "P011"])
    rec.hearing_loss[(rec.hearing_loss == 1) & ~keep] = 0
    split = split_records(rec, seed=3)
    for n in ("train", "val", "test"):
        assert 1 in rec.hearing_loss[split[n]]


def test_deterministic_per_seed():
    rec = make_records(n_patients=60)
    a, b, c = split_records(rec, seed=5), split_records(rec, seed=5), split_records(rec, seed=6)
    np.testing.assert_array_equal(a.train, b.train)
    assert not np.array_equal(a.train, c.train)


def test_too_few_patients_of_a_class_is_named():
    rec = make_records(n_patients=60)
    rec.hearing_loss[(rec.hearing_loss == 1) & (rec.patient_id != "P001")] = 0
    with pytest.raises(DataError, match="NEUROPATHY has only 1 patient"):
        split_records(rec)


def test_bad_ratios():
    with pytest.raises(DataError, match="sum to 1"):
        split_records(make_records(), 0.5, 0.2, 0.2)
