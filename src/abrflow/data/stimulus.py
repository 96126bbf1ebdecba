"""What was played: the stimulus vocabulary every reader records, and one accessor for it.

A clinic's export says which stimulus evoked each recording (a click, a tone burst at some
frequency, a chirp), with which polarity, and in which unit its level is given (dB nHL, dB peSPL,
dB SPL). Readers record it per row in ``extra`` under :data:`STIMULUS_FIELDS`, where the export has
it; a field a reader did not record is *unknown*, never guessed (no stimulus is taken for a click
because most are):

- ``stimulus_type``: one of :data:`STIMULUS_TYPES` ("unknown" where nothing was recorded);
- ``stimulus_frequency_khz``: a tone burst's (or narrow-band chirp's) frequency; NaN otherwise;
- ``stimulus_polarity``: as the export writes it ("Alternating", "Rarefaction", …); "" unknown;
- ``level_unit``: the unit of ``intensity_db``, one of :data:`LEVEL_UNITS`; where none was recorded,
  :data:`~abrflow.data.schema.DEFAULT_LEVEL_UNIT` (the clinic formats' dB nHL), as
  ``abrflow.clinical.levels.level_units`` reads it.

:func:`stimulus_of` gives the four per row with those defaults filled in; :func:`series_stimulus`
one description per level series; :func:`parse_stimulus_type`, :func:`parse_level_unit` and
:func:`frequency_khz_in` turn an export's wording into the vocabulary.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from .schema import DEFAULT_LEVEL_UNIT

if TYPE_CHECKING:
    from .records import ABRRecords

UNKNOWN = "unknown"
STIMULUS_TYPES: tuple[str, ...] = ("click", "tone_burst", "chirp", UNKNOWN)
LEVEL_UNITS: tuple[str, ...] = (DEFAULT_LEVEL_UNIT, "dB peSPL", "dB SPL")
STIMULUS_FIELDS: tuple[str, ...] = ("stimulus_type", "stimulus_frequency_khz", "stimulus_polarity", "level_unit")
#: Each field's value where a reader recorded none (``load_many`` fills other files' rows with these).
UNRECORDED: dict[str, object] = {"stimulus_type": UNKNOWN, "stimulus_frequency_khz": math.nan,
                                 "stimulus_polarity": "", "level_unit": DEFAULT_LEVEL_UNIT}
#: Types that have a frequency (a narrow-band chirp has a centre frequency; a broadband one has none).
TYPES_WITH_FREQUENCY: tuple[str, ...] = ("tone_burst", "chirp")
#: Plausible stimulus frequencies (kHz), exclusive of 0: outside it a value is damage or a wrong unit.
FREQUENCY_RANGE_KHZ: tuple[float, float] = (0.0, 200.0)
#: A series-level value (:func:`series_stimulus`) where a level series holds more than one stimulus.
MIXED = "mixed"

_TYPE_WORDS = {
    "click": {"click", "clicks", "clk"},
    "tone_burst": {"tb", "tone", "tones", "toneburst", "tonebursts", "tonepip", "tonepips", "pip", "pips"},
}
_NAMES = {"click": "click", "tone_burst": "tone burst", "chirp": "chirp", UNKNOWN: "unknown stimulus"}
_FREQUENCY = re.compile(r"(\d+(?:[.,]\d+)?)\s*(khz|hz|k)(?![a-z])")


def parse_stimulus_type(text: object) -> str:
    """An export's wording of the stimulus as one of :data:`STIMULUS_TYPES`.

    "Click", "CLICK" → click; "Tone Burst", "TB", "tone pip", "2 kHz toneburst" → tone_burst;
    "Chirp", "CE-Chirp", "LS-Chirp", "NB CE-Chirp 1 kHz" → chirp. Anything else (a device code, a
    blank, wording naming two kinds) is "unknown": a click is never assumed.
    """
    words = re.sub(r"[^a-z0-9]+", " ", str(text).casefold()).split()
    if not words:
        return UNKNOWN
    joined = "".join(words)
    kinds = {kind for kind, names in _TYPE_WORDS.items() if names & set(words)}
    if "toneburst" in joined or "tonepip" in joined:
        kinds.add("tone_burst")
    if "chirp" in joined:
        kinds.add("chirp")
    return kinds.pop() if len(kinds) == 1 else UNKNOWN


def parse_level_unit(text: object) -> str | None:
    """"dB nHL", "dBnHL", "nHL" → "dB nHL"; "dB peSPL", "dB pe SPL" → "dB peSPL"; "dB SPL" → "dB SPL";
    anything else (dB HL, peak-to-peak equivalent SPL, a blank) → None."""
    squeezed = re.sub(r"[\s._-]+", "", str(text).casefold())
    if "nhl" in squeezed:
        return DEFAULT_LEVEL_UNIT
    if "ppespl" in squeezed:
        return None
    if "pespl" in squeezed:
        return "dB peSPL"
    if "spl" in squeezed:
        return "dB SPL"
    return None


def frequency_khz_in(text: object) -> float:
    """The first frequency written with its unit in ``text`` ("4 kHz", "2000 Hz", "4k") in kHz; NaN if none."""
    found = _FREQUENCY.search(str(text).casefold())
    if found is None:
        return math.nan
    value = float(found.group(1).replace(",", "."))
    return value / 1000.0 if found.group(2) == "hz" else value


def stimulus_text(stimulus_type: str, frequency_khz: float, level_unit: str) -> str:
    """A short description people read: "click, dB nHL", "tone burst 12 kHz, dB peSPL"."""
    name = _NAMES.get(stimulus_type, stimulus_type)
    if stimulus_type in TYPES_WITH_FREQUENCY and np.isfinite(frequency_khz):
        name += f" {float(frequency_khz):g} kHz"
    return f"{name}, {level_unit}"


def unrecorded_fields(n: int) -> dict[str, np.ndarray]:
    """The four stimulus fields for ``n`` rows of which nothing was recorded."""
    return {name: np.full(n, value, np.float32) if name == "stimulus_frequency_khz" else np.full(n, value)
            for name, value in UNRECORDED.items()}


def _text_field(records: ABRRecords, name: str) -> np.ndarray:
    """The field's strings (stripped), "" where the field is missing or blank."""
    value = records.extra.get(name)
    if value is None:
        return np.full(len(records), "")
    return np.char.strip(np.asarray(value).astype(str))


def _check(records: ABRRecords, name: str, values: np.ndarray, allowed: tuple[str, ...]) -> None:
    bad = ~np.isin(values, allowed)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{values[row]!r} is not one of {list(allowed)}", file=records.source or None, row=row,
                        field=name)


def stimulus_of(records: ABRRecords) -> dict[str, np.ndarray]:
    """Per row, what was played: ``{name: array}`` for each of :data:`STIMULUS_FIELDS`.

    ``stimulus_type`` (str, "unknown" where not recorded), ``stimulus_frequency_khz`` (float64 kHz;
    NaN for click and unknown, and where not recorded), ``stimulus_polarity`` (str, "" unknown),
    ``level_unit`` (str, dB nHL where not recorded). A recorded value outside the vocabulary is a
    DataError naming the row and field.
    """
    types = _text_field(records, "stimulus_type")
    types = np.where(types == "", UNKNOWN, types)
    _check(records, "stimulus_type", types, STIMULUS_TYPES)
    units = _text_field(records, "level_unit")
    units = np.where(units == "", DEFAULT_LEVEL_UNIT, units)
    _check(records, "level_unit", units, LEVEL_UNITS)
    frequency = records.extra.get("stimulus_frequency_khz")
    if frequency is None:
        frequency = np.full(len(records), np.nan)
    frequency = np.where(np.isin(types, TYPES_WITH_FREQUENCY), np.asarray(frequency, np.float64), np.nan)
    low, high = FREQUENCY_RANGE_KHZ
    bad = np.isinf(frequency) | (np.isfinite(frequency) & ((frequency <= low) | (frequency > high)))
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"stimulus frequency {frequency[row]!r} kHz is outside ({low:g}, {high:g}] kHz",
                        file=records.source or None, row=row, field="stimulus_frequency_khz")
    return {"stimulus_type": types, "stimulus_frequency_khz": frequency,
            "stimulus_polarity": _text_field(records, "stimulus_polarity"), "level_unit": units}


def _one(values: set, mixed: object) -> object:
    return next(iter(values)) if len(values) == 1 else mixed


def series_stimulus(records: ABRRecords) -> dict[str, dict]:
    """One description per level series (``records.series_key``), in the order series first appear.

    Each is ``{"stimulus_type", "stimulus_frequency_khz", "level_unit", "stimulus_polarity" (a
    sorted tuple of the polarities recorded, empty if none), "mixed", "text"}``. A series whose rows
    were played with more than one stimulus (type, frequency or level unit) is ``mixed``: its
    differing fields read "mixed" (frequency NaN) and its text lists each stimulus, e.g.
    "mixed: click, dB nHL + tone burst 4 kHz, dB nHL". Its levels do not form one series.
    """
    rows = stimulus_of(records)
    keys = np.asarray(records.series_key)
    if not len(keys):
        return {}
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    groups = sorted(np.split(order, bounds), key=lambda g: first[inverse[g[0]]])
    out: dict[str, dict] = {}
    for group in groups:
        stimuli = list(dict.fromkeys(
            (str(t), None if np.isnan(f) else float(f), str(u))
            for t, f, u in zip(rows["stimulus_type"][group], rows["stimulus_frequency_khz"][group],
                               rows["level_unit"][group])))
        frequencies = {f for _, f, _ in stimuli}
        frequency = _one(frequencies, None)
        described = [stimulus_text(t, math.nan if f is None else f, u) for t, f, u in stimuli]
        out[str(keys[group[0]])] = {
            "stimulus_type": _one({t for t, _, _ in stimuli}, MIXED),
            "stimulus_frequency_khz": math.nan if frequency is None else frequency,
            "level_unit": _one({u for _, _, u in stimuli}, MIXED),
            "stimulus_polarity": tuple(sorted(set(rows["stimulus_polarity"][group].tolist()) - {""})),
            "mixed": len(stimuli) > 1,
            "text": described[0] if len(stimuli) == 1 else "mixed: " + " + ".join(described),
        }
    return out
