"""Readers: one module per source format, each returning validated ``ABRRecords``.

``load_records(path)`` picks the reader from the file's extension and content.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from pathlib import Path

from ...errors import ConfigError, DataError
from ..records import ABRRecords
from ..stimulus import STIMULUS_FIELDS, unrecorded_fields

SUPPORTED = (".npz (abrflow records), .pkl (legacy pickle), .csv/.tsv/.xlsx (clinic table), "
             ".csv (Interacoustics Eclipse export), .TXT (IHS SmartEP export), .hea/.dat (PhysioNet WFDB, "
             "EARNDB), or a folder of SmartEP exports or WFDB records")
SNIFF_BYTES = 4096
_ECLIPSE_PREAMBLE = re.compile(r"^[^,:\"]+:")  # "Patient ID: 123" — a key and a colon before any comma
_SMARTEP_KEYS = {"Identifier:", "File Name:", "Smp. Period:", "Zero Position:", "Data Pnt:"}


def _head_lines(path: Path) -> list[str]:
    """The first lines of a file, decoded leniently: only to recognise the format, not to read it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror or exc})", file=str(path)) from None
    return [line for line in head.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines() if line.strip()]


def _is_smartep(path: Path) -> bool:
    """SmartEP rows start with ``Key:,`` — the first row's key is one of its known header keys."""
    lines = _head_lines(path)
    return bool(lines) and lines[0].split(",", 1)[0].strip() in _SMARTEP_KEYS


def is_eclipse(path: Path) -> bool:
    """True for an Interacoustics Eclipse CSV export (a ``Key: value`` preamble or a ``Mod No`` header)."""
    lines = _head_lines(path)
    if not lines:
        return False
    first = lines[0].strip()
    return "Mod No" in (f.strip().strip('"') for f in first.split(",")) or bool(_ECLIPSE_PREAMBLE.match(first))


def _is_smartep_folder(folder: Path) -> bool:
    """A subject folder of SmartEP .TXT files, or a folder of such subject folders."""
    candidates = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".txt"]
    if not candidates:
        candidates = [p for sub in folder.iterdir() if sub.is_dir()
                      for p in sub.iterdir() if p.is_file() and p.suffix.lower() == ".txt"]
    return bool(candidates) and _is_smartep(sorted(candidates)[0])


def _call(reader: Callable[..., ABRRecords], path: Path, options: dict) -> ABRRecords:
    """Run ``reader``; an option it does not take is a ConfigError naming the reader, not a TypeError."""
    accepted = [name for name, p in inspect.signature(reader).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"{path} is read by {reader.__name__}, which takes no option(s) {unknown}; "
                          f"it takes {accepted}")
    return reader(path, **options)


def _load_folder(p: Path, options: dict) -> ABRRecords:
    if any(f.suffix in (".hea", ".dat") for f in p.iterdir() if f.is_file()):
        from .wfdb import read_wfdb
        return _call(read_wfdb, p, options)
    if _is_smartep_folder(p):
        from .smartep import read_smartep
        return _call(read_smartep, p, options)
    raise DataError(f"the folder holds no SmartEP .TXT exports or WFDB .hea/.dat records; supported: {SUPPORTED}",
                    file=str(p))


def load_records(path: str | os.PathLike, *, table_options: dict | None = None, **options) -> ABRRecords:
    """Read any supported file or folder into validated records.

    ``options`` are passed to the chosen reader (e.g. the time base ``sampling_rate_hz=``,
    ``signal_length=``); ``table_options`` (filters ``polarity=``, ``max_sweeps_rejected=``) only
    when the clinic-table reader is the one chosen.
    A ``.csv`` whose first non-blank line is a ``Key: value`` preamble line or a header with a
    ``Mod No`` column is an Eclipse export; any other ``.csv`` is the clinic table.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    bare_record = bool(p.name) and not p.exists() and any(p.with_name(p.name + s).exists() for s in (".hea", ".dat"))
    if suffix in (".hea", ".dat") or bare_record:
        from .wfdb import read_wfdb
        return _call(read_wfdb, p, options)
    if not p.exists():
        raise DataError("file not found", file=str(p))
    if p.is_dir():
        return _load_folder(p, options)
    if suffix == ".npz":
        return ABRRecords.load(p)
    if suffix in (".pkl", ".pickle"):
        from .legacy_pickle import read_legacy_pickle
        return read_legacy_pickle(p)
    if suffix == ".txt":
        if not _is_smartep(p):
            raise DataError("a .txt file that is not an IHS SmartEP export (its first row must be a SmartEP "
                            f"header row such as 'Identifier:,…'); supported: {SUPPORTED}", file=str(p))
        from .smartep import read_smartep
        return _call(read_smartep, p, options)
    if suffix == ".csv" and is_eclipse(p):
        from .eclipse import read_eclipse
        return _call(read_eclipse, p, options)
    if suffix in (".csv", ".xlsx", ".xls", ".tsv"):
        from .table import read_table
        return _call(read_table, p, {**(table_options or {}), **options})
    raise DataError(f"unsupported file type {suffix!r}; supported: {SUPPORTED}", file=str(p))


def load_many(paths, *, table_options: dict | None = None, **options) -> ABRRecords:
    """Several files or folders read as one set of records (:func:`load_records` each, then joined).

    Files from different readers share the core fields; per-reader metadata (``extra``) is kept where
    every file has it (SmartEP and EARNDB half-averages, for instance), since rows of one table must
    align. What was played is never dropped: each stimulus field (``abrflow.data.stimulus``: type,
    frequency, polarity, level unit) that any file records is kept, and rows of a file without it get
    the field's unrecorded value (type "unknown", frequency NaN, polarity "", unit dB nHL), so dB
    peSPL tone bursts are never taken for dB nHL clicks and no stimulus is guessed to be a click.
    """
    parts = [load_records(p, table_options=table_options, **options) for p in paths]
    if len(parts) == 1:
        return parts[0]
    for name in STIMULUS_FIELDS:
        if any(name in p.extra for p in parts):
            parts = [p if name in p.extra else p.replace(extra={**p.extra, name: unrecorded_fields(len(p))[name]})
                     for p in parts]
    common = set.intersection(*(set(p.extra) for p in parts))
    return ABRRecords.concatenate([p.replace(extra={k: v for k, v in p.extra.items() if k in common})
                                   for p in parts])
