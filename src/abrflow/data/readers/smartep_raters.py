"""The SmartEP data set's five experts' thresholds, keyed like the records' level series.

``thres_data_v2.mat`` (read by ``read_smartep_expert_thresholds``) holds one threshold per rater
and subject; the records of a subject folder carry the folder's name (``P6``) as ``patient_id``
and one level series (one ear, one session). This joins the two: per series key, the raters as
``[("expert 1", dB), …, ("expert 5", dB)]``, the shape ``read_thresholds_csv`` returns.

SmartEP records keep only file names in ``source``, not the folder they were read from, so the
``.mat`` file is found from ``mat_path``: the file itself, or the folder that was read (a subject
folder or the folder of subject folders), searched together with its parent. Without ``mat_path``
only folders named by ``dir:``/``npz:`` sources are searched (records saved and read back).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..records import ABRRecords
from .smartep import read_smartep_expert_thresholds

MAT_NAME = "thres_data_v2.mat"


def _source_folders(records: ABRRecords) -> list[Path]:
    """Folders named by the records' ``source`` (``dir:/path``, ``npz:/path/file.npz``; SmartEP names no folder)."""
    folders = []
    for part in (records.source or "").split(";"):
        kind, _, where = part.strip().partition(":")
        if kind in ("dir", "npz") and where:
            path = Path(where)
            folders.append(path if kind == "dir" else path.parent)
    return folders


def find_thresholds_file(records: ABRRecords, mat_path: str | os.PathLike | None = None) -> Path | None:
    """The experts' ``.mat`` file: ``mat_path`` itself, or ``thres_data_v2.mat`` in or above a folder; else None."""
    if mat_path is not None and Path(mat_path).is_file():
        return Path(mat_path)
    if mat_path is not None and not Path(mat_path).exists():
        raise DataError("file not found", file=str(mat_path))
    folders = [Path(mat_path)] if mat_path is not None else _source_folders(records)
    for folder in folders:
        for candidate in (folder / MAT_NAME, folder.parent / MAT_NAME):
            if candidate.is_file():
                return candidate
    return None


def smartep_rater_thresholds(records: ABRRecords,
                             mat_path: str | os.PathLike | None = None) -> dict[str, list[tuple[str, float]]]:
    """Per series key, the experts' thresholds ``[("expert 1", dB), …]``; {} when no ``.mat`` file is found.

    Subjects the file does not hold are left out, and so are a rater's missing (NaN) values. A
    subject with more than one level series is an error: the experts rated one series per subject.
    """
    path = find_thresholds_file(records, mat_path)
    if path is None:
        return {}
    table = read_smartep_expert_thresholds(path)
    keys = np.asarray(records.series_key)
    patients = np.asarray(records.patient_id)
    result: dict[str, list[tuple[str, float]]] = {}
    for patient in dict.fromkeys(patients.tolist()):
        if patient not in table:
            continue
        series = list(dict.fromkeys(keys[patients == patient].tolist()))
        if len(series) > 1:
            raise DataError(f"subject {patient!r} has {len(series)} level series {series}; the experts' "
                            "thresholds are one per subject", file=str(path), field=patient)
        ratings = [(f"expert {k + 1}", value) for k, value in enumerate(table[patient]) if not math.isnan(value)]
        if ratings:
            result[series[0]] = ratings
    return result
