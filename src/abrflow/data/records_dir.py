"""Records directories: ``ABRRecords`` on disk as one ``.npy`` file per field, memory-mapped on load.

A cohort larger than memory (500k recordings × 200 samples is 400 MB of signal, and a clinic's
archive can be many times that) is written chunk by chunk (:class:`RecordsDirWriter`, so it is
never held whole) and opened with ``numpy.load(mmap_mode="r")``: reading a batch touches only the
pages of its rows. Layout::

    cohort/
      abrflow_records.json     format, row count, time base, units, source, the field list
      signal.npy               float32 [N, T]
      age_years.npy …          one file per per-row field (strings as fixed-width unicode)
      extra__NAME.npy          each extra per-row array

Plain ``.npy`` files (no pickle: object arrays are refused), so any NumPy can read one field alone.
The directory is written under a temporary name and renamed into place when complete: an
interrupted write never leaves a directory that looks finished.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import struct
import tempfile
import weakref
from pathlib import Path

import numpy as np

from ..errors import DataError
from .schema import ROW_FIELDS

META_NAME = "abrflow_records.json"
FORMAT = "abrflow.records-dir/1"
#: Every .npy header is padded to this size: the row count is only known at close, when the
#: header is rewritten in place; a multiple of 64 keeps the data aligned for memory mapping.
_HEADER_BYTES = 256
#: Rows per chunk of a full pass over a memory-mapped signal (validation, statistics): 8192 rows of
#: 200 float32 samples is 6.5 MB.
CHUNK_ROWS = 8192


def is_records_dir(path: str | os.PathLike) -> bool:
    """True for a folder written by :class:`RecordsDirWriter` (it holds ``abrflow_records.json``)."""
    p = Path(path)
    return p.is_dir() and (p / META_NAME).is_file()


def release_pages(array: np.ndarray) -> None:
    """Drop the resident pages of a read-only memory-mapped array from this process.

    Pages of a file mapping that were read count in the process's resident set until unmapped;
    after a pass over a 400 MB signal file they would all be there. ``MADV_DONTNEED`` returns them
    (they stay in the page cache; the next read maps them again), so resident memory is bounded
    by what one chunk or batch touches. A no-op for in-memory arrays and where madvise is missing.
    """
    while isinstance(array, np.ndarray):
        mm = getattr(array, "_mmap", None)
        if isinstance(array, np.memmap) and mm is not None:
            if array.mode == "r" and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
                try:
                    mm.madvise(mmap.MADV_DONTNEED)
                except (OSError, ValueError):
                    pass
            return
        array = array.base


def _attach_reader(array: np.memmap) -> None:
    """Open a descriptor of the file ``array`` maps, kept with the array (closed when it goes), for
    :func:`read_rows`. Opened with the mapping, so both always see the same file."""
    if hasattr(os, "pread") and array.filename:
        fd = os.open(array.filename, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        array._abrflow_fd = fd
        weakref.finalize(array, os.close, fd)


def read_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` as an in-memory copy. A signal memory-mapped by :func:`load_records_dir` is
    read with ``pread`` instead of through the mapping: a page fault maps a whole page-cache folio
    (up to 2 MiB on current Linux) into the process, so random rows read through the mapping soon
    make the whole file resident; read this way, a batch costs its own rows and nothing more."""
    rows = np.asarray(rows, dtype=np.int64)
    fd = getattr(array, "_abrflow_fd", None)
    if fd is None or not isinstance(array.base, mmap.mmap) or not array.flags.c_contiguous:
        return np.array(array[rows])
    n = len(array)
    if rows.size and (rows.min() < -n or rows.max() >= n):
        raise IndexError(f"row index out of range for {n} rows")
    out = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
    stride = array.strides[0]
    if not len(rows) or not stride:
        return out
    flat = out.view(np.uint8).reshape(len(rows), stride)
    for i, r in enumerate(np.where(rows < 0, rows + n, rows).tolist()):
        offset = array.offset + r * stride
        if hasattr(os, "preadv"):  # straight into the output row
            got = os.preadv(fd, [flat[i]], offset)
        else:
            data = os.pread(fd, stride, offset)
            got = len(data)
            flat[i, :got] = np.frombuffer(data, np.uint8)
        if got != stride:
            raise DataError(f"short read of row {r} ({got} of {stride} bytes)", file=array.filename)
    return out


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 ``.npy`` header padded to exactly ``_HEADER_BYTES`` bytes (format spec of NumPy)."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)})
    magic = b"\x93NUMPY\x01\x00"
    body_len = _HEADER_BYTES - len(magic) - 2
    body = text.encode("latin1")
    if len(body) + 1 > body_len:
        raise DataError(f"array header too long for shape {shape}")
    return magic + struct.pack("<H", body_len) + body + b" " * (body_len - len(body) - 1) + b"\n"


def _fields(records) -> dict[str, np.ndarray]:
    out = {"signal": records.signal}
    out.update({name: getattr(records, name) for name in ROW_FIELDS})
    out.update({f"extra__{k}": v for k, v in records.extra.items()})
    return out


class RecordsDirWriter:
    """Append ``ABRRecords`` chunks to a records directory without holding the cohort in memory.

    ``with RecordsDirWriter(path) as w: w.append(chunk) …`` — on leaving the block the headers and
    ``abrflow_records.json`` are written and the directory is renamed into place (an existing
    records directory at ``path`` is replaced; any other existing path is an error). Every chunk is
    validated and must share the first one's time base, signal unit and extra fields. String fields
    take the width of the first chunk unless ``string_widths`` sets it (a longer string later is an
    error that says which width to pass).
    """

    def __init__(self, path: str | os.PathLike, *, string_widths: dict[str, int] | None = None,
                 source: str | None = None):
        self.path = Path(path)
        if self.path.exists() and not is_records_dir(self.path):
            raise DataError("exists and is not an abrflow records directory; refusing to replace it",
                            file=str(self.path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent))
        self.string_widths = dict(string_widths or {})
        self.source = source
        self.rows = 0
        self._files: dict[str, object] = {}
        self._dtypes: dict[str, np.dtype] = {}
        self._trailing: dict[str, tuple[int, ...]] = {}
        self._first = None
        self._sources: list[str] = []
        self._threshold_sources: set[str] = set()
        self._closed = False

    def __enter__(self) -> RecordsDirWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _dtype_for(self, name: str, value: np.ndarray) -> np.dtype:
        if value.dtype == object:
            raise DataError("object arrays cannot be stored", field=name)
        if value.dtype.kind == "U":
            width = max(int(self.string_widths.get(name, 0)), value.dtype.itemsize // 4, 1)
            return np.dtype(f"<U{width}")
        return value.dtype.newbyteorder("<") if value.dtype.byteorder == ">" else value.dtype

    def append(self, records) -> None:
        """Write the rows of ``records`` (validated first) after those already written."""
        if self._closed:
            raise DataError("the records directory is already closed", file=str(self.path))
        records.validate()
        first = self._first
        if first is None:
            self._first = first = {"sampling_rate_hz": records.sampling_rate_hz, "n_samples": records.n_samples,
                                   "signal_unit": records.signal_unit, "extra": sorted(records.extra)}
        else:
            where = records.source or "<records>"
            if records.sampling_rate_hz != first["sampling_rate_hz"] or records.n_samples != first["n_samples"]:
                raise DataError(f"time base differs: {records.n_samples} samples at {records.sampling_rate_hz} Hz, "
                                f"the directory has {first['n_samples']} at {first['sampling_rate_hz']} Hz", file=where)
            if records.signal_unit != first["signal_unit"]:
                raise DataError(f"signal unit {records.signal_unit} differs from the directory's "
                                f"{first['signal_unit']}", file=where)
            if sorted(records.extra) != first["extra"]:
                raise DataError(f"extra fields {sorted(records.extra)} differ from {first['extra']}", file=where)
        for name, value in _fields(records).items():
            value = np.asarray(value)
            if name not in self._files:
                self._dtypes[name] = self._dtype_for(name, value)
                self._trailing[name] = tuple(value.shape[1:])
                fh = open(self._tmp / f"{name}.npy", "wb")
                fh.write(b"\0" * _HEADER_BYTES)
                self._files[name] = fh
            dtype = self._dtypes[name]
            if value.dtype.kind == "U" and value.dtype.itemsize > dtype.itemsize:
                raise DataError(f"strings up to {value.dtype.itemsize // 4} characters, but the directory stores "
                                f"{dtype.itemsize // 4}; pass string_widths={{{name!r}: N}} to the writer",
                                file=str(self.path), field=name)
            self._files[name].write(np.ascontiguousarray(value, dtype=dtype).tobytes())
        self.rows += len(records)
        if records.source and records.source not in self._sources:
            self._sources.append(records.source)
        self._threshold_sources.add(records.threshold_source)

    def close(self) -> Path:
        """Write the headers and the description, then rename the directory into place."""
        if self._closed:
            return self.path
        if self._first is None:
            self.abort()
            raise DataError("no records were written", file=str(self.path))
        fields = {}
        for name, fh in self._files.items():
            shape = (self.rows, *self._trailing[name])
            fh.seek(0)
            fh.write(_npy_header(self._dtypes[name], shape))
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            fields[name] = {"dtype": self._dtypes[name].str, "shape": list(shape)}
        tsrc = self._threshold_sources
        meta = {
            "format": FORMAT, "rows": self.rows, "sampling_rate_hz": self._first["sampling_rate_hz"],
            "n_samples": self._first["n_samples"], "signal_unit": self._first["signal_unit"],
            "threshold_source": tsrc.pop() if len(tsrc) == 1 else "unknown",
            "source": self.source if self.source is not None else "; ".join(self._sources),
            "fields": fields,
        }
        (self._tmp / META_NAME).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.{os.getpid()}.old")
            os.replace(self.path, old)
        os.replace(self._tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything written (the temporary directory)."""
        for fh in self._files.values():
            fh.close()
        self._files.clear()
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._closed = True


def read_records_dir(path: str | os.PathLike, *, mmap: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays of a records directory (read-only memory maps with ``mmap``) and its metadata;
    ``ABRRecords.load`` builds the container from them."""
    p = Path(path)
    try:
        meta = json.loads((p / META_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"not an abrflow records directory (no {META_NAME})", file=str(p)) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable {META_NAME} ({exc})", file=str(p)) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{META_NAME} does not describe format {FORMAT!r}", file=str(p))
    fields = meta.get("fields", {})
    required = ["signal", *ROW_FIELDS]
    missing = [k for k in required if k not in fields]
    if missing:
        raise DataError(f"missing fields {missing}", file=str(p))
    arrays = {}
    for name, desc in fields.items():
        f = p / f"{name}.npy"
        try:
            arr = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise DataError("field file missing", file=str(f)) from None
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"not a readable .npy file without pickle ({exc})", file=str(f)) from exc
        if list(arr.shape) != list(desc.get("shape", [])) or arr.shape[:1] != (meta["rows"],):
            raise DataError(f"shape {arr.shape} differs from {META_NAME}'s {desc.get('shape')} "
                            f"({meta['rows']} rows)", file=str(f))
        arrays[name] = arr
    if mmap:
        _attach_reader(arrays["signal"])
    return arrays, meta


def maps_directory(records) -> str | None:
    """The directory every array of ``records`` is still a memory map of, or None."""
    path = getattr(records, "_records_dir", None)
    if path is None:
        return None
    for arr in _fields(records).values():
        if not isinstance(arr, np.memmap) or arr.filename is None or os.path.dirname(arr.filename) != path:
            return None
    return path
