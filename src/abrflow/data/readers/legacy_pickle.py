"""Reader for the original project's ``.pkl`` data set (DESIGN.md §4), without trusting the pickle.

``pickle.load`` runs whatever callable a file names, so a legacy pickle is loaded through
``_restricted_pickle.LegacyUnpickler``: it resolves only the globals the format needs (NumPy array, dtype and scalar
reconstruction; plain containers; dates) and any other global is refused *before* it can be called.
The two scikit-learn objects in the file (``StandardScaler``, ``LabelEncoder``) are rebuilt as inert
stand-ins that only hold their fitted attributes: no scikit-learn code runs on load, and a pickle
written by another scikit-learn version loads the same way.

What the file holds and how it maps to ``ABRRecords``:

- ``static_params`` are z-scored [Age, Intensity, Stimulus Rate, FMP]; the pickled scaler's
  ``mean_``/``scale_`` turn them back into raw units.
- ``signal`` is per-sample z-scored (``signal_unit="zscore"``), 200 samples at 20 kHz from onset.
- ``v_peak`` is [latency ms, amplitude µV] with 0 where missing; ``v_peak_mask`` says which of
  the two were marked, so unmarked values become NaN, never 0.
- ``clinical_threshold`` was synthesised from the class label by the original project, not
  measured: it is loaded, but flagged (``threshold_source="synthetic_from_class"`` and
  ``extra["threshold_is_synthetic"]``).
- The file has no ear and no session: ear is ``"?"``, session is empty. Nor does it say what was
  played: no stimulus field is written (``abrflow.data.stimulus.stimulus_of`` reads "unknown").
"""

from __future__ import annotations

import os
import reprlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError
from ..records import ABRRecords
from ..schema import STATIC_FIELDS, VALID_RANGES, class_code
from ._restricted_pickle import LabelEncoderState, StandardScalerState, load_restricted, reject_invalid_text

N_STATIC = 4  # Age, Intensity, Stimulus Rate, FMP — the scaler's column order
# ABRRecords field -> pickle key, so validation errors point at what is in the file.
FIELD_KEYS = {"age_years": "static_params[0] (Age)", "intensity_db": "static_params[1] (Intensity)",
              "stimulus_rate_hz": "static_params[2] (Stimulus Rate)", "fmp": "static_params[3] (FMP)",
              "v_latency_ms": "v_peak[0]", "wave_latency_ms": "v_peak[0]", "v_present": "v_peak_mask[0]",
              "threshold_db": "clinical_threshold"}


# ---------------------------------------------------------------- field parsing


def _as_array(value: object, *, file: str, row: int | None, field: str) -> np.ndarray:
    """``np.asarray`` of a field; ragged or absurdly nested values are a DataError, not a ValueError."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError, RecursionError) as exc:
        raise DataError(f"expected an array of numbers, got {reprlib.repr(value)} ({exc})", file=file, row=row,
                        field=field) from None


def _float_array(value: object, shape: tuple[int, ...], *, file: str, row: int | None, field: str) -> np.ndarray:
    """A numeric array of exactly ``shape`` (never reshaped, padded or cut)."""
    arr = _as_array(value, file=file, row=row, field=field)
    if arr.dtype.kind in "OUS":  # lists of Python numbers, or text that may hold numbers
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise DataError(f"expected numbers, got {arr.dtype} values", file=file, row=row, field=field) from None
    if arr.dtype.kind not in "iuf":
        raise DataError(f"expected real numbers, got {arr.dtype} values", file=file, row=row, field=field)
    if arr.shape != shape:
        raise DataError(f"expected shape {shape}, got {arr.shape}", file=file, row=row, field=field)
    return arr.astype(np.float64)


def _mask(value: object, *, file: str, row: int, field: str) -> np.ndarray:
    arr = _as_array(value, file=file, row=row, field=field)
    if arr.shape != (2,):
        raise DataError(f"expected 2 flags [latency, amplitude], got shape {arr.shape}", file=file, row=row,
                        field=field)
    if arr.dtype.kind == "b":
        return arr
    if arr.dtype.kind in "iuf" and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    raise DataError(f"expected booleans or 0/1, got {arr.tolist()!r}", file=file, row=row, field=field)


def _patient_id(value: object, *, file: str, row: int) -> str:
    """Patient ids as text; integral floats (pandas' NaN-able ints) lose their '.0'."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None or isinstance(value, (bool, float)) or not isinstance(value, (str, int)):
        raise DataError(f"expected a text or integer id, got {reprlib.repr(value)}", file=file, row=row,
                        field="patient_id")
    text = str(value).strip()
    if not text:
        raise DataError("empty patient id", file=file, row=row, field="patient_id")
    return text


def _unscaler(container: Mapping, file: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) that map the z-scored static inputs back to raw units: raw = z·scale + mean."""
    if "scaler" not in container:
        raise DataError("no 'scaler': the static inputs cannot be brought back to raw units", file=file,
                        field="scaler")
    scaler = container["scaler"]
    if not isinstance(scaler, StandardScalerState):
        raise DataError(f"expected a fitted StandardScaler, got {type(scaler).__name__}", file=file, field="scaler")
    state = vars(scaler)
    if "mean_" not in state:
        raise DataError("StandardScaler has no mean_ (not fitted?)", file=file, field="scaler.mean_")
    mean = _float_array(state["mean_"], (N_STATIC,), file=file, row=None, field="scaler.mean_")
    if not state.get("with_mean", True):
        mean = np.zeros(N_STATIC)
    scale_value = state.get("scale_")
    if state.get("with_std", True):
        if scale_value is None:
            raise DataError("StandardScaler has no scale_ (not fitted?)", file=file, field="scaler.scale_")
        scale = _float_array(scale_value, (N_STATIC,), file=file, row=None, field="scaler.scale_")
    else:
        scale = np.ones(N_STATIC)
    if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
        raise DataError(f"scaler statistics must be finite with positive scale, got mean {mean.tolist()}, "
                        f"scale {scale.tolist()}", file=file, field="scaler")
    return mean, scale


def _class_table(container: Mapping, file: str) -> list[int]:
    """Code for each label-encoder index: the pickle's own class order, mapped by name."""
    encoder = container.get("label_encoder")
    if encoder is None:
        return [0, 1, 2, 3, 4]
    if not isinstance(encoder, LabelEncoderState) or "classes_" not in vars(encoder):
        raise DataError(f"expected a fitted LabelEncoder with classes_, got {type(encoder).__name__}", file=file,
                        field="label_encoder")
    classes = np.asarray(vars(encoder)["classes_"])
    if classes.ndim != 1:
        raise DataError(f"classes_ must be 1-D, got shape {classes.shape}", file=file, field="label_encoder.classes_")
    table = []
    for name in classes.tolist():
        try:
            table.append(class_code(name))
        except DataError as exc:
            raise DataError(exc.reason, file=file, field="label_encoder.classes_") from None
    return table


def _target(value: object, table: list[int], *, file: str, row: int) -> int:
    """Integer targets index the label encoder's classes; text targets are class names."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        try:
            return class_code(value)
        except DataError as exc:
            raise DataError(exc.reason, file=file, row=row, field="target") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"expected a class index or name, got {reprlib.repr(value)}", file=file, row=row,
                        field="target")
    if not 0 <= value < len(table):
        raise DataError(f"class index {value} outside 0–{len(table) - 1}", file=file, row=row, field="target")
    return table[value]


def _threshold(rec: Mapping, *, file: str, row: int) -> float | None:
    value = rec.get("clinical_threshold")
    if value is None:
        return None
    arr = _float_array(value, (), file=file, row=row, field="clinical_threshold")
    return float(arr)


def _require(rec: object, key: str, *, file: str, row: int) -> object:
    if not isinstance(rec, Mapping):
        raise DataError(f"expected a dict per recording, got {type(rec).__name__}", file=file, row=row)
    if key not in rec:
        raise DataError("missing key", file=file, row=row, field=key)
    return rec[key]


# ---------------------------------------------------------------- reader


def _snap_to_bounds(raw: np.ndarray, z: np.ndarray, scale: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Undo the round-off of z·scale + mean at the valid ranges' bounds: a newborn's age 0 z-scored
    and scaled back comes out as ±2e-16, which would fail the [0, 120] check and refuse the file. A
    value within 8 ulps of the computation's magnitude of a bound is that bound; nothing else moves."""
    tolerance = 8 * np.finfo(np.float64).eps * (np.abs(mean) + np.abs(z * scale))
    out = raw.copy()
    for j, field in enumerate(STATIC_FIELDS):
        for bound in VALID_RANGES[field]:
            near = np.abs(out[:, j] - bound) <= tolerance[:, j]
            out[near, j] = bound
    return out


def read_legacy_pickle(path: str | os.PathLike, *, signal_length: int = 200,
                       sampling_rate_hz: float = 20000.0) -> ABRRecords:
    """Read the original project's pickle into validated records (z-scored signals, raw statics).

    The pickle does not store its time base, so ``sampling_rate_hz`` declares it (the legacy format
    is 20 kHz from stimulus onset) and ``signal_length`` is the length every signal must have: a
    recording of any other length is an error naming its index, never cut or padded. Errors name
    the file, the recording's 0-based index in ``data`` (``row``) and the key (``field``).
    """
    if int(signal_length) != signal_length or signal_length < 2:
        raise ConfigError(f"signal_length must be an integer >= 2, got {signal_length!r}")
    if not np.isfinite(sampling_rate_hz) or sampling_rate_hz <= 0:
        raise ConfigError(f"sampling_rate_hz must be positive, got {sampling_rate_hz!r}")
    signal_length = int(signal_length)
    path = Path(path)
    file = str(path)
    container = load_restricted(path)
    reject_invalid_text(container, file)
    if not isinstance(container, Mapping):
        raise DataError(f"expected a dict with 'data', 'scaler', 'label_encoder', got {type(container).__name__}",
                        file=file)
    if "data" not in container:
        raise DataError("missing key", file=file, field="data")
    items = container["data"]
    if not isinstance(items, (list, tuple)):
        raise DataError(f"expected a list of recordings, got {type(items).__name__}", file=file, field="data")
    if not items:
        raise DataError("no recordings", file=file, field="data")
    mean, scale = _unscaler(container, file)
    table = _class_table(container, file)

    n = len(items)
    signal = np.empty((n, signal_length), np.float32)
    static_z = np.empty((n, N_STATIC), np.float64)
    peaks = np.empty((n, 2), np.float64)
    masks = np.empty((n, 2), bool)
    hearing_loss = np.empty(n, np.int8)
    threshold_db = np.full(n, np.nan, np.float32)
    threshold_given = np.zeros(n, bool)
    patient_id: list[str] = []
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf: reported below by row
        for i, rec in enumerate(items):
            signal[i] = _float_array(_require(rec, "signal", file=file, row=i), (signal_length,), file=file, row=i,
                                     field="signal")
            static_z[i] = _float_array(_require(rec, "static_params", file=file, row=i), (N_STATIC,), file=file,
                                       row=i, field="static_params")
            peaks[i] = _float_array(_require(rec, "v_peak", file=file, row=i), (2,), file=file, row=i, field="v_peak")
            masks[i] = _mask(_require(rec, "v_peak_mask", file=file, row=i), file=file, row=i, field="v_peak_mask")
            hearing_loss[i] = _target(_require(rec, "target", file=file, row=i), table, file=file, row=i)
            patient_id.append(_patient_id(_require(rec, "patient_id", file=file, row=i), file=file, row=i))
            value = _threshold(rec, file=file, row=i)
            if value is not None and not np.isnan(value):
                threshold_db[i], threshold_given[i] = value, True

    bad = ~np.isfinite(signal).all(axis=1)
    if bad.any():
        raise DataError("signal contains NaN or inf", file=file, row=int(np.argmax(bad)), field="signal")
    bad = masks & ~np.isfinite(peaks)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"v_peak {'latency' if col == 0 else 'amplitude'} is marked but not a finite number",
                        file=file, row=row, field="v_peak")
    static_raw = _snap_to_bounds(static_z * scale + mean, static_z, scale, mean)  # NaN (unknown) stays NaN
    v_latency_ms = np.where(masks[:, 0], peaks[:, 0], np.nan).astype(np.float32)
    v_amplitude_uv = np.where(masks[:, 1], peaks[:, 1], np.nan).astype(np.float32)
    wave_latency_ms = np.full((n, 3), np.nan, np.float32)
    wave_amplitude_uv = np.full((n, 3), np.nan, np.float32)
    wave_latency_ms[:, 2], wave_amplitude_uv[:, 2] = v_latency_ms, v_amplitude_uv

    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, which validate() rejects by row
        static32 = static_raw.astype(np.float32)
    records = ABRRecords(
        signal=signal, sampling_rate_hz=sampling_rate_hz,
        age_years=static32[:, 0], intensity_db=static32[:, 1], stimulus_rate_hz=static32[:, 2], fmp=static32[:, 3],
        patient_id=np.array(patient_id, dtype=str), ear=np.full(n, "?"), v_present=masks[:, 0].copy(),
        v_latency_ms=v_latency_ms, v_amplitude_uv=v_amplitude_uv,
        wave_latency_ms=wave_latency_ms, wave_amplitude_uv=wave_amplitude_uv,
        hearing_loss=hearing_loss, threshold_db=threshold_db,
        signal_unit="zscore",
        threshold_source="synthetic_from_class" if threshold_given.any() else "unknown",
        source=f"legacy_pickle:{path.name}",
        extra={"threshold_is_synthetic": threshold_given},
    )
    try:
        return records.validate()
    except DataError as exc:
        field = FIELD_KEYS.get(exc.field or "", exc.field)
        raise DataError(exc.reason, file=file, row=exc.row, field=field) from None
