"""The records schema: which fields a recording has, their dtypes, codes and valid ranges (DESIGN.md §3).

One home for the vocabulary every part of abrflow speaks: ``ABRRecords`` (records.py) and records
directories (records_dir.py) store these fields, readers fill them (``empty_rows``), inference
checks its inputs against the same ranges.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError

#: English display names in the original project's LabelEncoder order (codes 0–4).
CLASS_NAMES: tuple[str, ...] = ("NORMAL", "NEUROPATHY", "SENSORINEURAL", "TOTAL", "CONDUCTIVE")
#: The original (Turkish) labels, same order; accepted on input.
ORIGINAL_CLASS_CODES: tuple[str, ...] = ("NORMAL", "NÖROPATİ", "SNİK", "TOTAL", "İTİK")
UNKNOWN_CLASS = -1
WAVE_NAMES: tuple[str, ...] = ("I", "III", "V")
#: The same waves as the lower-case prefixes of output fields (``i_latency_ms``, ``iii_present_prob``, …).
WAVE_KEYS: tuple[str, ...] = tuple(name.lower() for name in WAVE_NAMES)
#: Interpeak intervals a clinician reads: (name, earlier wave, later wave); ``{name}_interval_ms``.
INTERPEAK_INTERVALS: tuple[tuple[str, str, str], ...] = (("i_iii", "i", "iii"), ("iii_v", "iii", "v"),
                                                         ("i_v", "i", "v"))
STATIC_FIELDS: tuple[str, ...] = ("age_years", "intensity_db", "stimulus_rate_hz", "fmp")
SIGNAL_UNITS = ("uV", "zscore")
#: The unit of ``intensity_db`` where a reader records none in ``extra["level_unit"]``: the clinic formats'.
DEFAULT_LEVEL_UNIT = "dB nHL"
THRESHOLD_SOURCES = ("measured", "simulated", "synthetic_from_class", "unknown")

_ALIASES = {
    "NORMAL": 0, "NEUROPATHY": 1, "NÖROPATİ": 1, "NOROPATI": 1, "NÖROPATI": 1, "ANSD": 1,
    "SENSORINEURAL": 2, "SNİK": 2, "SNIK": 2, "SNHL": 2, "TOTAL": 3, "PROFOUND": 3,
    "CONDUCTIVE": 4, "İTİK": 4, "ITIK": 4, "CHL": 4,
}

#: Per-row fields of ABRRecords: name -> (dtype, trailing shape). Order is the save order.
ROW_FIELDS: dict[str, tuple[type, tuple[int, ...]]] = {
    "age_years": (np.float32, ()),
    "intensity_db": (np.float32, ()),
    "stimulus_rate_hz": (np.float32, ()),
    "fmp": (np.float32, ()),
    "patient_id": (np.str_, ()),
    "ear": (np.str_, ()),
    "session_id": (np.str_, ()),
    "v_present": (np.bool_, ()),
    "v_latency_ms": (np.float32, ()),
    "v_amplitude_uv": (np.float32, ()),
    "wave_latency_ms": (np.float32, (3,)),
    "wave_amplitude_uv": (np.float32, (3,)),
    "hearing_loss": (np.int8, ()),
    "threshold_db": (np.float32, ()),
}

#: The one table of valid ranges (raw units, inclusive) for every numeric input: records are validated
#: against it (``ABRRecords.validate``) and so are the static inputs and conditions inference takes
#: (``abrflow.inference.inputs``), so a recording that loads is a recording the model accepts.
#: Physiological / device bounds: outside them a value is an error (a wrong unit, a damaged cell), never clipped.
VALID_RANGES: dict[str, tuple[float, float]] = {
    "age_years": (0.0, 120.0),
    "intensity_db": (-20.0, 140.0),
    "stimulus_rate_hz": (0.1, 200.0),
    "fmp": (0.0, 1e4),
    "v_latency_ms": (0.0, 30.0),
    "wave_latency_ms": (0.0, 30.0),
    "threshold_db": (-20.0, 140.0),
}


def class_code(value: object, *, where: str = "hearing_loss") -> int:
    """Map an English name, an original Turkish code or an integer 0–4 to the class code."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if -1 <= int(value) <= 4:
            return int(value)
    elif isinstance(value, (float, np.floating)) and float(value).is_integer() and -1 <= value <= 4:
        return int(value)
    elif isinstance(value, str):
        key = value.strip().upper()
        # Python's upper() maps Turkish dotted/dotless i inconsistently; try both spellings.
        for k in (key, key.replace("I", "İ"), key.replace("İ", "I").replace("Ö", "O")):
            if k in _ALIASES:
                return _ALIASES[k]
        if key.lstrip("-").isdigit():
            return class_code(int(key), where=where)
    raise DataError(
        f"unknown hearing-loss class {value!r}; expected 0–4, one of {list(CLASS_NAMES)} "
        f"or an original code {list(ORIGINAL_CLASS_CODES)}", field=where)


def empty_rows(n: int) -> dict[str, np.ndarray]:
    """Per-row fields filled with 'unknown' (NaN, '?', −1, False): a starting point for readers."""
    return {
        "age_years": np.full(n, np.nan, np.float32),
        "intensity_db": np.full(n, np.nan, np.float32),
        "stimulus_rate_hz": np.full(n, np.nan, np.float32),
        "fmp": np.full(n, np.nan, np.float32),
        "patient_id": np.full(n, "unknown", dtype=object).astype(str),
        "ear": np.full(n, "?", dtype="<U1"),
        "session_id": np.full(n, "", dtype="<U1"),
        "v_present": np.zeros(n, bool),
        "v_latency_ms": np.full(n, np.nan, np.float32),
        "v_amplitude_uv": np.full(n, np.nan, np.float32),
        "wave_latency_ms": np.full((n, 3), np.nan, np.float32),
        "wave_amplitude_uv": np.full((n, 3), np.nan, np.float32),
        "hearing_loss": np.full(n, UNKNOWN_CLASS, np.int8),
        "threshold_db": np.full(n, np.nan, np.float32),
    }
