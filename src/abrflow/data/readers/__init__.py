"""Readers: one module per source format, each returning validated ``ABRRecords``.

``load_records(path)`` picks the reader from the file's extension and content.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import DataError
from ..records import ABRRecords


def load_records(path: str | os.PathLike, **options) -> ABRRecords:
    """Read any supported file into validated records.

    ``options`` are passed to the chosen reader (e.g. table filters ``polarity=``,
    ``max_sweeps_rejected=``, and the time base ``sampling_rate_hz=``, ``signal_length=``).
    """
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", file=str(p))
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return ABRRecords.load(p)
    if suffix in (".pkl", ".pickle"):
        from .legacy_pickle import read_legacy_pickle
        return read_legacy_pickle(p)
    if suffix in (".csv", ".xlsx", ".xls", ".tsv"):
        from .table import read_table
        return read_table(p, **options)
    raise DataError(f"unsupported file type {suffix!r}; expected .npz, .pkl, .csv or .xlsx", file=str(p))
