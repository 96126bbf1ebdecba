"""ABRRecords: the one columnar container every reader returns and every consumer takes.

One row per averaged recording; arrays carry their unit in their name (DESIGN.md §3).
Stored natively as ``.npz`` and loaded with ``allow_pickle=False``: no code runs on load.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_open
from . import records_dir
from .schema import (  # noqa: F401  (re-exported: the container's vocabulary, importable beside it)
    CLASS_NAMES,
    ORIGINAL_CLASS_CODES,
    ROW_FIELDS,
    SIGNAL_UNITS,
    STATIC_FIELDS,
    THRESHOLD_SOURCES,
    UNKNOWN_CLASS,
    VALID_RANGES,
    WAVE_NAMES,
    class_code,
    empty_rows,
)


@dataclass
class ABRRecords:
    """Columnar ABR recordings (DESIGN.md §3). All per-row arrays have length N.

    ``extra`` holds further per-row arrays a source provides (true simulator values, sweep
    counts, polarity, half-averages…); they travel through selection, concatenation and save.
    """

    signal: np.ndarray
    sampling_rate_hz: float
    age_years: np.ndarray
    intensity_db: np.ndarray
    stimulus_rate_hz: np.ndarray
    fmp: np.ndarray
    patient_id: np.ndarray
    ear: np.ndarray
    v_present: np.ndarray
    v_latency_ms: np.ndarray
    v_amplitude_uv: np.ndarray
    hearing_loss: np.ndarray
    threshold_db: np.ndarray
    wave_latency_ms: np.ndarray | None = None
    wave_amplitude_uv: np.ndarray | None = None
    session_id: np.ndarray | None = None
    signal_unit: str = "uV"
    threshold_source: str = "unknown"
    source: str = ""
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.signal)
        if self.wave_latency_ms is None:
            self.wave_latency_ms = np.full((n, 3), np.nan, np.float32)
            self.wave_latency_ms[:, 2] = np.asarray(self.v_latency_ms, np.float32)
        if self.wave_amplitude_uv is None:
            self.wave_amplitude_uv = np.full((n, 3), np.nan, np.float32)
            self.wave_amplitude_uv[:, 2] = np.asarray(self.v_amplitude_uv, np.float32)
        if self.session_id is None:
            self.session_id = np.full(n, "", dtype="<U1")
        # A read-only memory map of the right dtype (a records directory) is kept as it is: no copy.
        if not _is_mapped(self.signal, np.float32):
            self.signal = np.asarray(self.signal, dtype=np.float32)
        self.sampling_rate_hz = float(self.sampling_rate_hz)
        for name, (dtype, _) in ROW_FIELDS.items():
            value = getattr(self, name)
            if _is_mapped(value, dtype):
                continue
            value = np.asarray(value)
            if dtype is np.str_:
                value = value.astype(str)
            elif dtype is np.bool_:
                value = value.astype(bool)
            else:
                value = value.astype(dtype)
            setattr(self, name, value)
        self.extra = {k: v if isinstance(v, np.memmap) else np.asarray(v) for k, v in self.extra.items()}

    def __reduce_ex__(self, protocol):
        # Records memory-mapped from a directory pickle as its path (a DataLoader worker or a spawned
        # process maps the files again) instead of as a copy of every array.
        path = records_dir.maps_directory(self)
        if path is not None:
            return _reopen, (path,)
        return super().__reduce_ex__(protocol)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.signal.shape[0])

    @property
    def is_memory_mapped(self) -> bool:
        """True when the signal is read from a records directory's file rather than held in memory."""
        return isinstance(self.signal, np.memmap)

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def time_ms(self) -> np.ndarray:
        """Time of each sample in ms after stimulus onset."""
        return np.arange(self.n_samples, dtype=np.float64) * 1000.0 / self.sampling_rate_hz

    @property
    def static(self) -> np.ndarray:
        """Static inputs [N, 4] in raw units (age, intensity, rate, Fmp); NaN where unknown."""
        return np.stack([getattr(self, f) for f in STATIC_FIELDS], axis=1).astype(np.float32)

    @property
    def series_key(self) -> np.ndarray:
        """One key per row identifying its level series: patient + ear (+ session)."""
        return np.char.add(np.char.add(np.char.add(self.patient_id, "|"), self.ear),
                           np.char.add("|", self.session_id))

    @property
    def class_names(self) -> np.ndarray:
        names = np.array(list(CLASS_NAMES) + ["UNKNOWN"])
        return names[np.where(self.hearing_loss < 0, 5, self.hearing_loss)]

    # ------------------------------------------------------------ selection
    def select(self, index: np.ndarray | Sequence[int] | slice) -> ABRRecords:
        """Rows by integer index, boolean mask or slice (a copy)."""
        idx = index if isinstance(index, slice) else np.asarray(index)
        if not isinstance(idx, slice) and idx.dtype == bool and idx.shape != (len(self),):
            raise DataError(f"boolean mask of shape {idx.shape} for {len(self)} records")
        kwargs = {name: np.array(getattr(self, name)[idx]) for name in ROW_FIELDS}
        return ABRRecords(
            signal=np.array(self.signal[idx]), sampling_rate_hz=self.sampling_rate_hz,
            signal_unit=self.signal_unit, threshold_source=self.threshold_source, source=self.source,
            extra={k: np.array(v[idx]) for k, v in self.extra.items()}, **kwargs)

    def __getitem__(self, index: np.ndarray | Sequence[int] | slice) -> ABRRecords:
        return self.select(index)

    @staticmethod
    def concatenate(parts: Iterable[ABRRecords]) -> ABRRecords:
        """Join containers with the same time base, signal unit and extra fields."""
        parts = list(parts)
        if not parts:
            raise DataError("cannot concatenate zero record containers")
        first = parts[0]
        for p in parts[1:]:
            if p.sampling_rate_hz != first.sampling_rate_hz or p.n_samples != first.n_samples:
                raise DataError(
                    f"time base differs: {p.source} has {p.n_samples} samples at {p.sampling_rate_hz} Hz, "
                    f"{first.source} has {first.n_samples} at {first.sampling_rate_hz} Hz")
            if p.signal_unit != first.signal_unit:
                raise DataError(f"signal unit differs: {p.source} is {p.signal_unit}, "
                                f"{first.source} is {first.signal_unit}")
            if set(p.extra) != set(first.extra):
                raise DataError(f"extra fields differ: {sorted(p.extra)} vs {sorted(first.extra)}")
        kwargs = {name: np.concatenate([getattr(p, name) for p in parts]) for name in ROW_FIELDS}
        sources = list(dict.fromkeys(p.source for p in parts))
        tsrc = {p.threshold_source for p in parts}
        return ABRRecords(
            signal=np.concatenate([p.signal for p in parts]), sampling_rate_hz=first.sampling_rate_hz,
            signal_unit=first.signal_unit, threshold_source=tsrc.pop() if len(tsrc) == 1 else "unknown",
            source="; ".join(sources),
            extra={k: np.concatenate([p.extra[k] for p in parts]) for k in first.extra}, **kwargs)

    # ------------------------------------------------------------ validation
    def validate(self) -> ABRRecords:
        """Check shapes, dtypes, ranges and finiteness; raise DataError naming row and field."""
        src = self.source or "<records>"
        if self.signal.ndim != 2:
            raise DataError(f"signal must be [N, T], got shape {self.signal.shape}", file=src, field="signal")
        n, t = self.signal.shape
        if t < 2:
            raise DataError(f"signal has {t} samples per recording", file=src, field="signal")
        if not np.isfinite(self.sampling_rate_hz) or self.sampling_rate_hz <= 0:
            raise DataError(f"sampling_rate_hz must be positive, got {self.sampling_rate_hz}",
                            file=src, field="sampling_rate_hz")
        if self.signal_unit not in SIGNAL_UNITS:
            raise DataError(f"signal_unit must be one of {SIGNAL_UNITS}, got {self.signal_unit!r}",
                            file=src, field="signal_unit")
        if self.threshold_source not in THRESHOLD_SOURCES:
            raise DataError(f"threshold_source must be one of {THRESHOLD_SOURCES}, got "
                            f"{self.threshold_source!r}", file=src, field="threshold_source")
        chunk = records_dir.CHUNK_ROWS
        for start in range(0, n, chunk):  # in chunks: a memory-mapped signal is never read whole
            bad = ~np.isfinite(self.signal[start:start + chunk]).all(axis=1)
            records_dir.release_pages(self.signal)
            if bad.any():
                raise DataError("signal contains NaN or inf", file=src, row=start + int(np.argmax(bad)),
                                field="signal")
        for name, (_, trailing) in ROW_FIELDS.items():
            arr = getattr(self, name)
            if arr.shape != (n, *trailing):
                raise DataError(f"expected shape {(n, *trailing)}, got {arr.shape}", file=src, field=name)
        for name, arr in self.extra.items():
            if arr.ndim == 0 or len(arr) != n:
                raise DataError(f"extra field has shape {arr.shape}, expected {n} rows", file=src, field=name)
        for name, (lo, hi) in VALID_RANGES.items():
            arr = getattr(self, name)
            finite = np.isfinite(arr)
            if name == "threshold_db":
                bad = np.isneginf(arr)
            else:
                bad = np.isinf(arr)
            bad |= finite & ((arr < lo) | (arr > hi))
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise DataError(f"value {arr[row]!r} outside [{lo}, {hi}]", file=src, row=row, field=name)
        bad = ~np.isin(self.ear, ["L", "R", "?"])
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"ear must be L, R or ?, got {self.ear[row]!r}", file=src, row=row, field="ear")
        bad = (self.hearing_loss < -1) | (self.hearing_loss > 4)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"hearing_loss code {self.hearing_loss[row]} not in -1..4", file=src, row=row,
                            field="hearing_loss")
        # A marked wave V must carry a latency; an unmarked one must not.
        bad = self.v_present & ~np.isfinite(self.v_latency_ms)
        if bad.any():
            raise DataError("wave V marked present but latency is missing", file=src,
                            row=int(np.argmax(bad)), field="v_latency_ms")
        bad = ~self.v_present & np.isfinite(self.v_latency_ms)
        if bad.any():
            raise DataError("wave V latency given but V not marked present", file=src,
                            row=int(np.argmax(bad)), field="v_present")
        if (self.patient_id == "").any():
            raise DataError("empty patient_id", file=src, row=int(np.argmax(self.patient_id == "")),
                            field="patient_id")
        return self

    # ------------------------------------------------------------ storage
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.npz`` atomically (temporary file in the same folder, fsync, rename)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        arrays: dict[str, np.ndarray] = {
            "signal": self.signal,
            "sampling_rate_hz": np.array(self.sampling_rate_hz),
            "signal_unit": np.array(self.signal_unit),
            "threshold_source": np.array(self.threshold_source),
            "source": np.array(self.source),
            "format": np.array("abrflow.records/1"),
        }
        for name in ROW_FIELDS:
            arrays[name] = getattr(self, name)
        for k, v in self.extra.items():
            if v.dtype == object:
                raise DataError("object arrays cannot be stored", field=f"extra.{k}")
            arrays[f"extra__{k}"] = v
        with atomic_open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    def save_dir(self, path: str | os.PathLike, *, chunk_rows: int = 65536) -> Path:
        """Write a records directory (one ``.npy`` per field, memory-mappable; see ``records_dir``)."""
        widths = {name: getattr(self, name).dtype.itemsize // 4 for name in ROW_FIELDS
                  if getattr(self, name).dtype.kind == "U"}
        widths.update({f"extra__{k}": v.dtype.itemsize // 4 for k, v in self.extra.items() if v.dtype.kind == "U"})
        with records_dir.RecordsDirWriter(path, string_widths=widths, source=self.source) as writer:
            for start in range(0, max(len(self), 1), chunk_rows):
                writer.append(self.select(slice(start, start + chunk_rows)))
        return writer.path

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = True) -> ABRRecords:
        """Read an abrflow ``.npz`` or records directory (no pickle: object arrays are refused).

        A records directory is memory-mapped (read-only) unless ``mmap`` is false; an ``.npz`` is
        always read into memory.
        """
        if records_dir.is_records_dir(path):
            return load_records_dir(path, mmap=mmap)
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except ValueError as exc:
            raise DataError(f"cannot read as abrflow records without pickle ({exc})", file=str(path)) from exc
        except (OSError, EOFError) as exc:
            raise DataError(f"not a readable .npz file ({exc})", file=str(path)) from exc
        except Exception as exc:  # zipfile.BadZipFile, zlib.error, ...
            raise DataError(f"corrupted .npz file ({type(exc).__name__}: {exc})", file=str(path)) from exc
        required = ["signal", "sampling_rate_hz", *[f for f in ROW_FIELDS if f != "session_id"]]
        missing = [k for k in required if k not in data]
        if missing:
            raise DataError(f"missing arrays {missing}; not an abrflow records file", file=str(path))
        extra = {k[len("extra__"):]: v for k, v in data.items() if k.startswith("extra__")}
        kwargs = {name: data[name] for name in ROW_FIELDS if name in data}
        try:
            rec = cls(
                signal=data["signal"], sampling_rate_hz=float(data["sampling_rate_hz"]),
                signal_unit=str(data.get("signal_unit", "uV")),
                threshold_source=str(data.get("threshold_source", "unknown")),
                source=str(data.get("source", "")) or f"npz:{path}", extra=extra, **kwargs)
        except (TypeError, ValueError) as exc:
            raise DataError(f"arrays have the wrong type or shape ({exc})", file=str(path)) from exc
        rec.source = rec.source or f"npz:{path}"
        try:
            return rec.validate()
        except DataError as exc:
            raise DataError(exc.reason, file=str(path), row=exc.row, field=exc.field) from exc

    # ------------------------------------------------------------ summary
    def summary(self) -> dict:
        """Counts people read first: recordings, patients, class shares, V marked, ages, latencies."""
        n = len(self)
        shares = {name: float(np.mean(self.hearing_loss == i)) if n else 0.0 for i, name in enumerate(CLASS_NAMES)}
        lat = self.v_latency_ms[np.isfinite(self.v_latency_ms)]
        age = self.age_years[np.isfinite(self.age_years)]
        return {
            "recordings": n,
            "patients": int(len(np.unique(self.patient_id))),
            "series": int(len(np.unique(self.series_key))),
            "class_shares": shares,
            "v_marked_share": float(self.v_present.mean()) if n else 0.0,
            "median_age_years": float(np.median(age)) if age.size else float("nan"),
            "v_latency_ms_range": [float(lat.min()), float(lat.max())] if lat.size else [],
            "samples": self.n_samples,
            "sampling_rate_hz": self.sampling_rate_hz,
            "signal_unit": self.signal_unit,
            "source": self.source,
        }

    def replace(self, **changes) -> ABRRecords:
        return dataclasses.replace(self, **changes)


def _is_mapped(value: object, dtype: type) -> bool:
    """A memory-mapped array already of the field's dtype (strings: any fixed-width unicode)."""
    if not isinstance(value, np.memmap):
        return False
    return value.dtype.kind == "U" if dtype is np.str_ else value.dtype == np.dtype(dtype)


def load_records_dir(path: str | os.PathLike, *, mmap: bool = True, validate: bool = True) -> ABRRecords:
    """Open a records directory; with ``mmap`` every array is a read-only memory map of its file."""
    p = Path(path)
    arrays, meta = records_dir.read_records_dir(p, mmap=mmap)
    extra = {k[len("extra__"):]: v for k, v in arrays.items() if k.startswith("extra__")}
    try:
        rec = ABRRecords(
            signal=arrays["signal"], sampling_rate_hz=float(meta["sampling_rate_hz"]),
            signal_unit=str(meta.get("signal_unit", "uV")), threshold_source=str(meta.get("threshold_source", "unknown")),
            source=str(meta.get("source", "")) or f"dir:{p}", extra=extra,
            **{name: arrays[name] for name in ROW_FIELDS})
    except (TypeError, ValueError, KeyError) as exc:
        raise DataError(f"arrays have the wrong type or shape ({exc})", file=str(p)) from exc
    if mmap:
        rec._records_dir = os.path.abspath(p)
    if validate:
        try:
            rec.validate()
        except DataError as exc:
            raise DataError(exc.reason, file=str(p), row=exc.row, field=exc.field) from exc
    return rec


def _reopen(path: str) -> ABRRecords:
    """Unpickling a memory-mapped ABRRecords maps its directory again (no copy of the data)."""
    return load_records_dir(path, mmap=True, validate=False)
