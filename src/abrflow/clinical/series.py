"""Level series: an ear's recordings grouped by ``ABRRecords.series_key`` (patient + ear + session)."""

from __future__ import annotations

import numpy as np

from ..data.records import ABRRecords


def series_rows(records: ABRRecords) -> dict[str, np.ndarray]:
    """Row indices of each level series, keyed by ``series_key`` in sorted key order; within a series
    the rows keep their order in ``records``."""
    keys = records.series_key
    unique, codes = np.unique(keys, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(unique) + 1))
    return {str(k): order[bounds[i]:bounds[i + 1]] for i, k in enumerate(unique)}
