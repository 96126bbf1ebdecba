"""Atomic file writes: a temporary file in the same folder, fsync, rename; and strict JSON.

An interrupted run (crash, SIGKILL, full disk) leaves either the old file or the new one,
never a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (the file's data is already synced); best effort where the
    platform cannot open folders (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_replace(written: str | os.PathLike, path: str | os.PathLike) -> None:
    """Publish a file some library wrote in full (``written``, in ``path``'s folder) as ``path``:
    fsync its data, rename it over ``path``, fsync the folder."""
    with open(written, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(written, path)
    fsync_directory(Path(path).parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def jsonable(obj):
    """Strict-JSON types: NumPy → Python, NaN → null (undefined on these data), ±inf → "inf"/"-inf"
    (strict JSON has neither)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def write_json(path: str | os.PathLike, obj) -> Path:
    """``obj`` as strict JSON (:func:`jsonable`), UTF-8, written atomically; every JSON file abrflow
    writes for people and programs (metrics, predictions, thresholds) goes through here."""
    path = Path(path)
    atomic_write_text(path, json.dumps(jsonable(obj), indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    return path
