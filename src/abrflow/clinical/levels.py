"""Stimulus level units and the model's view of a series.

Clinic formats give levels in dB nHL, the unit the model was trained on. Some exports do not
(EARNDB's tone bursts are in dB peSPL, ``extra["level_unit"]``): the model must not read those as
dB nHL, so it is told the intensity is unknown there, while the per-ear rule still fits the
threshold on the recorded levels in their own unit.
"""

from __future__ import annotations

import numpy as np

from ..data.records import ABRRecords
from ..data.schema import DEFAULT_LEVEL_UNIT


def level_units(records: ABRRecords) -> np.ndarray:
    """Per row, the unit of ``intensity_db`` as its reader recorded it (``extra["level_unit"]``, e.g.
    EARNDB's "dB peSPL"); rows without one are dB nHL."""
    unit = records.extra.get("level_unit")
    if unit is None:
        return np.full(len(records), DEFAULT_LEVEL_UNIT)
    return np.asarray(unit).astype(str)


def model_view(records: ABRRecords) -> ABRRecords:
    """The records as the model may read them: intensity unknown (NaN) where it is not in dB nHL."""
    nhl = level_units(records) == DEFAULT_LEVEL_UNIT
    if nhl.all():
        return records
    return records.replace(intensity_db=np.where(nhl, records.intensity_db, np.nan).astype(np.float32))
