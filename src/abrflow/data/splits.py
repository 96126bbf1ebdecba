"""Patient-grouped, class-stratified splits.

No patient appears in two splits (recordings of one ear are strongly correlated, so a
recording-level split would leak), and every class present in the data appears in every
split, including the 0.8% neuropathy class: a split without it could not measure it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .records import CLASS_NAMES, ABRRecords

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Recording indices of each split (sorted)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {n: self[n] for n in SPLIT_NAMES}


def _patient_strata(records: ABRRecords) -> np.ndarray:
    """Each patient's stratum: the rarest class among its recordings (−1 if none is known).

    Taking the rarest class spreads the few neuropathy patients over the splits first.
    """
    codes = records.hearing_loss.astype(np.int64)
    counts = np.bincount(codes[codes >= 0], minlength=5)
    rarity = np.where(codes >= 0, counts[np.clip(codes, 0, 4)], np.iinfo(np.int64).max)
    _, inverse = np.unique(records.patient_id, return_inverse=True)
    order = np.lexsort((rarity, inverse))  # by patient, rarest class first
    first = order[np.r_[True, np.diff(inverse[order]) != 0]]
    return codes[first]


def _allocate(n: int, ratios: np.ndarray, need_each: bool) -> np.ndarray:
    """Patients per split for a stratum of n: proportional, at least one each when required."""
    raw = ratios * n
    alloc = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - alloc), kind="stable")[: n - alloc.sum()]:
        alloc[i] += 1
    if need_each:
        for i in range(len(alloc)):
            if alloc[i] == 0:
                donor = int(np.argmax(alloc))
                alloc[donor] -= 1
                alloc[i] += 1
    return alloc


def split_records(records: ABRRecords, train_ratio: float = 0.7, val_ratio: float = 0.15,
                  test_ratio: float = 0.15, seed: int = 42) -> Split:
    """Split recordings by patient, stratified by each patient's rarest class; deterministic per seed.

    Raises DataError when a class present in the data has fewer patients than there are
    splits (it could not be measured in every split), naming the class and its count.
    """
    ratios = np.array([train_ratio, val_ratio, test_ratio], dtype=np.float64)
    if (ratios <= 0).any() or abs(ratios.sum() - 1.0) > 1e-6:
        raise DataError(f"split ratios must be positive and sum to 1, got {ratios.tolist()}")
    if len(records) == 0:
        raise DataError("cannot split zero recordings", file=records.source or None)
    strata = _patient_strata(records)
    rng = np.random.default_rng(seed)
    assigned = np.empty(len(strata), np.int64)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        known = stratum >= 0
        if known and len(members) < 3:
            raise DataError(
                f"class {CLASS_NAMES[stratum]} has only {len(members)} patient(s); every class must be in "
                f"train, val and test, so each needs at least 3 patients (simulate more patients or "
                f"merge data)", file=records.source or None, field="hearing_loss")
        members = members[rng.permutation(len(members))]
        alloc = _allocate(len(members), ratios, need_each=known)
        bounds = np.cumsum(alloc)[:-1]
        for split_id, part in enumerate(np.split(members, bounds)):
            assigned[part] = split_id
    _, inverse = np.unique(records.patient_id, return_inverse=True)
    row_split = assigned[inverse]
    parts = [np.flatnonzero(row_split == i) for i in range(3)]
    for name, idx in zip(SPLIT_NAMES, parts):
        if idx.size == 0:
            raise DataError(f"split {name!r} would be empty ({len(strata)} patients)", file=records.source or None)
    present = np.unique(records.hearing_loss[records.hearing_loss >= 0])
    for name, idx in zip(SPLIT_NAMES, parts):
        missing = np.setdiff1d(present, records.hearing_loss[idx])
        if missing.size:
            raise DataError(f"split {name!r} has no recording of class "
                            f"{[CLASS_NAMES[c] for c in missing]}; too few patients of that class",
                            file=records.source or None, field="hearing_loss")
    return Split(*parts)
