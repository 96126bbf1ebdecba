"""Which labels a set of recordings carries, and what to say where one is missing.

A clinic's export carries some labels and not others: wave marks on some traces, a threshold per
ear from its raters, rarely a hearing-loss class. Each metric group of an evaluation runs where its
labels exist; where they do not, the group is replaced by a ``{"reason": …}`` that the report
prints ("no hearing-loss labels in these files"), never left silently empty.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..data.records import ABRRecords
from ..data.schema import WAVE_NAMES

#: What the report says for each missing kind of label.
MISSING: dict[str, str] = {
    "classes": "no hearing-loss labels in these files",
    "v_marks": "no wave V marks in these files",
    "i_marks": "no wave I marks in these files",
    "iii_marks": "no wave III marks in these files",
    "thresholds": "no thresholds in these files",
}


@dataclass(frozen=True)
class Labels:
    """Counts of the labels present: recordings with a class, with wave V marked, with a threshold
    (a number, or +inf for no response); ears with a threshold; marks per wave (I, III, V)."""

    recordings: int
    classes: int
    v_marks: int
    thresholds: int
    ears_with_threshold: int
    wave_marks: dict[str, int]

    @property
    def i_marks(self) -> int:
        return self.wave_marks["I"]

    @property
    def iii_marks(self) -> int:
        return self.wave_marks["III"]

    def has(self, kind: str) -> bool:
        return getattr(self, kind) > 0

    def missing(self, kind: str) -> dict | None:
        """``{"reason": …}`` where ``kind`` (classes, v_marks, i_marks, iii_marks, thresholds) is absent, else None."""
        return None if self.has(kind) else {"reason": MISSING[kind]}

    def as_dict(self) -> dict:
        return asdict(self)


def labels_of(records: ABRRecords) -> Labels:
    known_threshold = ~np.isnan(records.threshold_db.astype(np.float64))
    keys = records.series_key
    return Labels(
        recordings=len(records), classes=int(np.sum(records.hearing_loss >= 0)),
        v_marks=int(np.sum(records.v_present)), thresholds=int(known_threshold.sum()),
        ears_with_threshold=int(np.unique(keys[known_threshold]).size),
        wave_marks={name: int(np.isfinite(records.wave_latency_ms[:, j]).sum()) for j, name in enumerate(WAVE_NAMES)})
