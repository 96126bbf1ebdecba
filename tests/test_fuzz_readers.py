"""Every reader fed damaged and hostile files (property-based): valid records or a named abrflow error.

Two kinds of target per format:

- ``*_bytes``: a valid file (a real SmartEP export, a real EARNDB pair, generated Eclipse, clinic
  table, legacy pickle and ``.npz`` files) truncated, with bytes flipped, overwritten, inserted or
  deleted, a field replaced by a hostile token (NaN, inf, 1e400, text, NUL, 400 digits…), lines
  dropped or repeated, re-encoded (UTF-16/32, Latin-1, cp1254) or emptied. ``load_records`` must
  return records that pass validation, or raise an ``AbrflowError`` naming the file.
- ``*_cells``/``*_fields``: one cell/field of a valid file set to a generated value, built valid or
  invalid from the format's documented rules. ``*_valid``: a number in range (spelled as exports
  spell numbers: exponents, signs, padding), a blank where the format means "unknown", text where
  text is read; the read must succeed and carry the value unchanged (no clip, no fill, no dropped
  row). ``*_invalid``: NaN/±inf, 1e308, beyond float32, out of range, text, a blank where a value is
  required, a wrong type or shape, a broken time base; the read must raise a DataError naming the
  file, the row/line and the field. ``test_npz_arrays`` still checks only what a read returns.

Any other exception is an escape and fails the test (tests/fuzz_support.py counts both).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from abrflow.data.readers import load_records
from abrflow.data.records import ABRRecords
from abrflow.data.schema import VALID_RANGES
from abrflow.errors import DataError

from .conftest import REAL, REPO, make_records
from .fuzz_support import fail, hostile_floats, must_refuse, must_succeed, mutations, number_texts, outcome
from .test_readers_eclipse import ROWS as ECLIPSE_ROWS
from .test_readers_eclipse import write_export
from .test_readers_legacy import _legacy
from .test_readers_table import _frame

SMARTEP_FILE = REAL / "ihs-smartep-human" / "P6" / "TEMP-06-60db.TXT"
WFDB_PAIR = "N1_evoked_ave100_F1"


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="abrflow-fuzz-") as folder:
        yield Path(folder)


def _check_records(target: str, result: object, own_time_base: bool) -> ABRRecords:
    """What a successful read must return: validated, all finite, on the model's time base (an ``.npz``
    carries its own time base, checked against the model's where it is used)."""
    if not isinstance(result, ABRRecords):
        fail(target, f"returned {type(result).__name__}, not ABRRecords")
    try:
        result.validate()
    except DataError as exc:
        fail(target, f"returned records that do not validate: {exc}")
    if len(result) == 0 or (not own_time_base and (result.signal.shape[1] != 200
                                                   or result.sampling_rate_hz != 20000.0)):
        fail(target, f"returned signal {result.signal.shape} at {result.sampling_rate_hz} Hz")
    if not np.isfinite(result.signal).all():
        fail(target, "returned non-finite samples")
    return result


def _read(target: str, path: Path, *, names: Path | None = None, **options):
    """load_records(path): records checked, or the error, which must name the file (or ``names``)."""
    result, error = outcome(target, lambda: load_records(path, **options), file=str(names or path))
    if error is None:
        _check_records(target, result, own_time_base=path.suffix == ".npz")
    return result, error


# ---------------------------------------------------------------- seeds (valid files)


def _legacy_bytes() -> bytes:
    container, _ = _legacy(n=4)
    return pickle.dumps(container, protocol=4)


def _table_frame() -> pd.DataFrame:
    return _frame(n_samples=210).iloc[:3].copy()


def _table_csv_bytes(tmp: Path) -> bytes:
    path = tmp / "seed_table.csv"
    _table_frame().to_csv(path, index=False)
    return path.read_bytes()


def _eclipse_rows():
    return [ECLIPSE_ROWS[0], ECLIPSE_ROWS[2]]  # 20 kHz rows: read without resampling


def _eclipse_bytes(tmp: Path) -> bytes:
    path, _ = write_export(tmp / "seed_eclipse.csv", rows=_eclipse_rows())
    return path.read_bytes()


def _npz_bytes(tmp: Path) -> bytes:
    return make_records(n_patients=3, per_patient=2).save(tmp / "seed.npz").read_bytes()


# ---------------------------------------------------------------- damaged bytes, every format


@given(data=st.data())
def test_legacy_pickle_bytes(workdir, data):
    path = workdir / "legacy.pkl"
    path.write_bytes(data.draw(mutations(_LEGACY, sep=None)))
    _read("legacy_pickle_bytes", path)


@given(data=st.data())
def test_table_csv_bytes(workdir, data):
    path = workdir / "table.csv"
    path.write_bytes(data.draw(mutations(_seed("table", workdir), header_lines=2)))
    _read("table_csv_bytes", path, table_options={"polarity": None, "max_sweeps_rejected": None})


@given(data=st.data())
def test_table_xlsx_bytes(workdir, data):
    path = workdir / "table.xlsx"
    path.write_bytes(data.draw(mutations(_seed("xlsx", workdir), sep=None)))
    _read("table_xlsx_bytes", path, table_options={"polarity": None, "max_sweeps_rejected": None})


@given(data=st.data())
def test_eclipse_bytes(workdir, data):
    path = workdir / "eclipse.csv"
    path.write_bytes(data.draw(mutations(_seed("eclipse", workdir), header_lines=12)))
    _read("eclipse_bytes", path)


@given(data=st.data())
def test_smartep_bytes(workdir, data):
    path = workdir / "export.TXT"
    path.write_bytes(data.draw(mutations(_seed("smartep", workdir), header_lines=22)))
    _read("smartep_bytes", path)


@given(data=st.data())
def test_wfdb_bytes(workdir, data):
    folder = workdir / "wfdb"
    folder.mkdir(exist_ok=True)
    for half in ("R1", "R2"):
        for suffix in (".hea", ".dat"):
            (folder / f"{WFDB_PAIR}_{half}{suffix}").write_bytes((REAL / "earndb" / f"{WFDB_PAIR}_{half}{suffix}")
                                                                  .read_bytes())
    victim = data.draw(st.sampled_from(["R1.hea", "R2.hea", "R1.dat", "R2.dat"]))
    path = folder / f"{WFDB_PAIR}_{victim}"
    text = path.suffix == ".hea"
    path.write_bytes(data.draw(mutations(path.read_bytes(), sep=b" " if text else None, header_lines=4)))
    _read("wfdb_bytes", folder / f"{WFDB_PAIR}_R1.hea", names=folder / WFDB_PAIR)  # the half at fault is named


@given(data=st.data())
def test_npz_bytes(workdir, data):
    path = workdir / "records.npz"
    path.write_bytes(data.draw(mutations(_seed("npz", workdir), sep=None)))
    _read("npz_bytes", path)


_SEEDS: dict[str, bytes] = {}
_LEGACY = _legacy_bytes()


def _seed(kind: str, tmp: Path) -> bytes:
    if kind not in _SEEDS:
        if kind == "table":
            _SEEDS[kind] = _table_csv_bytes(tmp)
        elif kind == "xlsx":
            path = tmp / "seed.xlsx"
            _frame(n_samples=200).iloc[:2].to_excel(path, index=False)
            _SEEDS[kind] = path.read_bytes()
        elif kind == "eclipse":
            _SEEDS[kind] = _eclipse_bytes(tmp)
        elif kind == "smartep":
            _SEEDS[kind] = SMARTEP_FILE.read_bytes()
        else:
            _SEEDS[kind] = _npz_bytes(tmp)
    return _SEEDS[kind]


# ---------------------------------------------------------------- one value, checked end to end
#
# One cell/field of a valid file set to a generated value, built either valid or invalid from the
# format's documented rules (each reader's module docstring):
#
# - ``*_valid``: a number inside the field's range (spelled as exports spell numbers), a blank where the
#   format means "unknown" by it, text where text is read. The read must succeed and return the written
#   value (the float32 the records hold is the written number: no clip, no fill, no dropped row).
# - ``*_invalid``: a blank where a value is required, text that is not a number, NaN/inf, a number
#   outside the range or beyond float32, a count that is not whole, a time base the window cannot be
#   cut from. The read must raise a DataError naming the file, the row/line and the field.

MODEL_LENGTH = 200  # samples in the model's window (20 kHz from onset)
#: Blank cells: what pandas reads as missing in the clinic table (the table reader's "unknown").
TABLE_BLANKS = ("", "NA", "N/A", "n/a", "nan", "NaN", "-nan", "None", "null", "NULL", "#N/A", "<NA>")
NON_FINITE = ("nan", "NaN", "inf", "-inf", "Infinity", "-Infinity", "1e400", "-1e400")


def _parses(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


#: Text that is no number (not even to Python), with no separator, quote or line break (a cell's worth
#: of damage; a damaged file structure is the *_bytes tests' job).
NOT_NUMBERS = st.one_of(
    st.sampled_from(["abc", "0x10", "1e", "12.5.3", "--1", "1 000", "12 dB", "€5", "½", "ş", "-", ".", "e5",
                     "1,5".replace(",", ";"), "TRUE", "n.a."]),
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters=',"'),
            min_size=1, max_size=6),
).filter(lambda t: t.strip() != "" and not _parses(t) and t not in TABLE_BLANKS)


def _numbers(lo: float, hi: float):
    """Text of a number in [lo, hi] (range bounds included)."""
    return st.one_of(st.floats(lo, hi), st.sampled_from([lo, hi])).flatmap(number_texts)


def _outside(lo: float, hi: float):
    """Text of a finite number clearly outside [lo, hi], written exactly (repr)."""
    margin = 1e-3 * max(1.0, hi - lo)
    return st.one_of(st.floats(hi + margin, 1e300), st.floats(-1e300, lo - margin),
                     st.sampled_from([1e39, -1e39, 1e308])).map(repr)


def _float32(text: str) -> float:
    """The float32 a read must store for a written number (NaN for a blank)."""
    if text.strip() in TABLE_BLANKS:
        return math.nan
    with np.errstate(over="ignore"):
        return float(np.float32(float(text)))


def _same(stored: float, expected: float) -> bool:
    return (math.isnan(stored) and math.isnan(expected)) or stored == expected


def _refused(target: str, error: BaseException, *, row: object, fields: set[str], what: str) -> None:
    """The error of an invalid cell names the row and one of the fields the value can be blamed on."""
    if not isinstance(error, DataError) or error.row != row or error.field not in fields:
        fail(target, f"{what}: expected a DataError at row {row!r}, field one of {sorted(fields)}; got "
                     f"{type(error).__name__} row {getattr(error, 'row', None)!r} field "
                     f"{getattr(error, 'field', None)!r}: {error}")


# ---------------------------------------------------------------- Eclipse cells
#
# The two rows (tests/test_readers_eclipse.py): row 0 = 300 samples at 0.05 ms with a −2.0 ms sweep delay
# (onset at sample 40) and waves I/III/V marked with amplitudes; row 1 = 250 samples at 0.05 ms from
# onset (delay 0), nothing marked. 300 sample columns; row 1's columns 250–299 are blank.

ECLIPSE_COLUMNS = ("Set Intensity", "Stim Rate", "Mark5 Lat", "Mark1 Lat", "Sampl Interval", "Sweep Delay",
                   "Samples", "Accepted", "sample")
ECLIPSE_RANGES = {"Set Intensity": VALID_RANGES["intensity_db"], "Stim Rate": VALID_RANGES["stimulus_rate_hz"],
                  "Mark5 Lat": VALID_RANGES["v_latency_ms"], "Mark1 Lat": VALID_RANGES["wave_latency_ms"]}
MAX_COUNT = 2**53  # counts at or above are damage (DESIGN: int64 and exact floats)
#: Sample intervals (ms) of device rates with an exact small resampling ratio to 20 kHz (at most 10× up).
DEVICE_INTERVALS_MS = tuple(1000.0 / hz for hz in (2000, 4000, 5000, 8000, 10000, 12500, 16000, 20000, 24000,
                                                   25000, 32000, 40000, 50000))
#: Sample intervals without a small exact ratio to 20 kHz, or a rate below 2 kHz.
UNRESAMPLEABLE_MS = (1000.0 / 20001, 1000.0 / 19997, 0.0500001, 0.6, 1.0, 5.0, 1000.0)


def _eclipse_window_fits(interval_ms: float, delay_ms: float, n_samples: int) -> bool:
    """The documented time-base rule for a device interval: the onset (−delay/interval) is a whole
    sample ≥ 0 and the samples after it reach the window's last sample (199 × 0.05 ms)."""
    onset = -delay_ms / interval_ms
    if onset < -1e-9 or abs(onset - round(onset)) > 1e-6:
        return False
    last = (MODEL_LENGTH - 1) * 0.05 / interval_ms  # the window's last sample, in source samples from onset
    return n_samples - round(onset) >= math.ceil(last - 1e-9) + 1



def _eclipse_row(row: int) -> dict:
    return dict(_eclipse_rows()[row])


def _eclipse_samples(row: int) -> np.ndarray:
    base = _eclipse_row(row)
    return np.array([float(base[str(k)]) for k in range(int(base["Samples"]))])


def _blank_allowed(column: str, base: dict) -> bool:
    """A mark's latency may be blank (not marked) unless the mark has an amplitude."""
    return column.startswith("Mark") and base.get(column.replace("Lat", "Ampl"), "") == ""


def _eclipse_valid(column: str, row: int, sample: int):
    base = _eclipse_row(row)
    n, delay, interval = int(base["Samples"]), float(base["Sweep Delay"]), float(base["Sampl Interval"])
    if column in ECLIPSE_RANGES:
        numbers = _numbers(*ECLIPSE_RANGES[column])
        if _blank_allowed(column, base):
            return st.one_of(numbers, st.sampled_from(["", " "]))  # no mark
        return numbers
    if column == "Accepted":
        return st.one_of(st.integers(0, 10**15).map(str), st.integers(0, 10**6).map(lambda v: f" {v}.0 "),
                         st.integers(0, 10**6).map(lambda v: f"{v}e3"), st.just(str(MAX_COUNT - 1)))
    if column == "Samples":  # the row's own count: fewer leaves values beyond it, more needs blank cells
        return number_texts(float(n))
    if column == "Sampl Interval":
        fitting = [i for i in DEVICE_INTERVALS_MS if _eclipse_window_fits(i, delay, n)]
        return st.sampled_from(fitting).flatmap(lambda i: st.sampled_from([repr(i), f"{i:.9g}", f" {i:.12g} "]))
    if column == "Sweep Delay":  # onset k samples in, early enough for 200 samples after it
        return st.integers(0, n - MODEL_LENGTH).flatmap(lambda k: number_texts(round(-k * interval, 9)))
    if sample < n:
        return st.floats(-1e38, 1e38).flatmap(number_texts)
    return st.sampled_from(["", " "])  # beyond the row's Samples: blank


def _eclipse_invalid(column: str, row: int, sample: int):
    base = _eclipse_row(row)
    n, delay, interval = int(base["Samples"]), float(base["Sweep Delay"]), float(base["Sampl Interval"])
    broken = st.one_of(NOT_NUMBERS, st.sampled_from(NON_FINITE))
    if column in ECLIPSE_RANGES:
        blank = [] if _blank_allowed(column, base) else ["", " "]
        return st.one_of(broken, _outside(*ECLIPSE_RANGES[column]), st.sampled_from(blank + ["nan"]))
    if column == "Accepted":
        return st.one_of(broken, st.sampled_from(["", "-1", "2.5", "1e308", str(MAX_COUNT), "1e16"]),
                         st.integers(-10**9, -1).map(str), st.floats(0, 1e6).filter(
                             lambda v: not v.is_integer()).map(repr))
    if column == "Samples":
        return st.one_of(broken, st.sampled_from(["", "-1", "1e308", f"{n}.5"]),
                         st.integers(0, 1000).filter(lambda v: v != n).map(str))
    if column == "Sampl Interval":
        misfits = [i for i in DEVICE_INTERVALS_MS if not _eclipse_window_fits(i, delay, n)]
        return st.one_of(broken, st.sampled_from(["", "0", "-0.05", "1e308", "1e-300"]),
                         st.sampled_from(misfits + list(UNRESAMPLEABLE_MS)).map(repr))
    if column == "Sweep Delay":
        return st.one_of(broken, st.just(""), st.floats(1e-3, 1e3).map(repr),  # recording starts after onset
                         st.tuples(st.integers(0, n - MODEL_LENGTH), st.floats(0.01, 0.99)).map(  # between samples
                             lambda t: repr(-(t[0] + t[1]) * interval)),
                         st.integers(n - MODEL_LENGTH + 1, 10**6).map(lambda k: repr(-k * interval)),  # too late
                         st.sampled_from(["1e308", "-1e308"]))
    if sample >= n:  # a value beyond the row's Samples
        return st.one_of(broken, st.floats(allow_nan=False).map(repr))
    onset = round(-delay / interval)
    overflow = [repr(v) for v in (1e39, -1e39, 1e308)] if onset <= sample < onset + MODEL_LENGTH else []
    return st.one_of(broken, st.sampled_from(["", " "] + overflow))


def _eclipse_file(workdir: Path, column: str, row: int, sample: int, text: str) -> tuple[Path, int]:
    rows = [dict(r) for r in _eclipse_rows()]
    rows[row][str(sample) if column == "sample" else column] = text
    return write_export(workdir / "cells.csv", rows=rows, n_columns=300)


@given(column=st.sampled_from(ECLIPSE_COLUMNS), row=st.integers(0, 1), sample=st.integers(0, 299), data=st.data())
def test_eclipse_cells_valid(workdir, column, row, sample, data):
    text = data.draw(_eclipse_valid(column, row, sample))
    path, _ = _eclipse_file(workdir, column, row, sample, text)
    what = f"{column if column != 'sample' else f'sample {sample}'} = {text!r} in row {row}"
    result = must_succeed("eclipse_cells_valid", lambda: load_records(path), what)
    _check_records("eclipse_cells_valid", result, own_time_base=False)
    if len(result) != 2:
        fail("eclipse_cells_valid", f"{what}: {len(result)} rows read, not 2")
    base = _eclipse_row(row)
    delay, interval = float(base["Sweep Delay"]), float(base["Sampl Interval"])
    stored = {"Set Intensity": result.intensity_db, "Stim Rate": result.stimulus_rate_hz,
              "Mark5 Lat": result.v_latency_ms, "Mark1 Lat": result.wave_latency_ms[:, 0],
              "Sampl Interval": result.extra["sample_interval_ms"]}
    if column in stored and not _same(float(stored[column][row]), _float32(text)):
        fail("eclipse_cells_valid", f"{what} read as {stored[column][row]}")
    if column == "Mark5 Lat" and result.v_present[row] != (text.strip() != ""):
        fail("eclipse_cells_valid", f"{what}: V present read as {result.v_present[row]}")
    if column == "Accepted" and result.extra["sweeps_accepted"][row] != int(float(text)):
        fail("eclipse_cells_valid", f"{what} read as {result.extra['sweeps_accepted'][row]}")
    samples = _eclipse_samples(row)
    if column == "sample" and sample < len(samples):
        samples[sample] = float(text)
    if column == "Sweep Delay":
        delay = float(text)
    if column != "Sampl Interval":  # on the model's own rate: the window is the row's samples from onset
        onset = round(-delay / interval)
        window = samples[onset:onset + MODEL_LENGTH].astype(np.float32)
        if not np.array_equal(result.signal[row], window):
            fail("eclipse_cells_valid", f"{what}: the window from sample {onset} came back changed")


@given(column=st.sampled_from(ECLIPSE_COLUMNS), row=st.integers(0, 1), sample=st.integers(0, 299), data=st.data())
def test_eclipse_cells_invalid(workdir, column, row, sample, data):
    text = data.draw(_eclipse_invalid(column, row, sample))
    path, first_line = _eclipse_file(workdir, column, row, sample, text)
    what = f"{column if column != 'sample' else f'sample {sample}'} = {text!r} in row {row}"
    error = must_refuse("eclipse_cells_invalid", lambda: load_records(path), what, file=str(path))
    fields = {"Mark1 Lat": {"Mark1 Lat", "Mark1/3/5 Lat"},  # a range error names the wave latencies
              "Sampl Interval": {"Sampl Interval", "Sweep Delay", "Samples"},  # the onset / length it breaks
              "Sweep Delay": {"Sweep Delay", "Samples"},
              "Samples": {"Samples", *map(str, range(300))},  # or the first sample cell it contradicts
              "sample": {str(sample), "signal"}}.get(column, {column})  # signal: beyond float32
    _refused("eclipse_cells_invalid", error, row=f"line {first_line + row}", fields=fields, what=what)


# ---------------------------------------------------------------- table cells
#
# The three rows of the clinic table (tests/test_readers_table.py), read with the filters off: row 0 a
# left ear (its class from "Hear Loss - Left"), rows 1–2 right ears; 210 sample columns, the first 200
# the window. Blank (pandas' missing) is "unknown" in the static and latency columns, and allowed in
# sample columns beyond the window, which may hold any number (NaN/inf too): only the window is read.

TABLE_COLUMNS = ("Age", "Intensity", "Stimulus Rate", "FMP", "V Latancy", "Sweeps Rejected", "Patient_ID",
                 "Stimulus Side", "Hear Loss - Left", "sample")
TABLE_RANGES = {"Age": VALID_RANGES["age_years"], "Intensity": VALID_RANGES["intensity_db"],
                "Stimulus Rate": VALID_RANGES["stimulus_rate_hz"], "FMP": VALID_RANGES["fmp"],
                "V Latancy": VALID_RANGES["v_latency_ms"]}
EAR_SPELLINGS = ("Left", "left", "LEFT", " L ", "l", "Sol", "SOL", "Right", "right", "R", "r ", "Sağ", "SAĞ", "sag")
CLASS_SPELLINGS = {"NORMAL": 0, "normal": 0, " Normal ": 0, "NEUROPATHY": 1, "NÖROPATİ": 1, "ANSD": 1,
                   "SENSORINEURAL": 2, "SNİK": 2, "snik": 2, "SNHL": 2, "TOTAL": 3, "PROFOUND": 3,
                   "CONDUCTIVE": 4, "İTİK": 4, "CHL": 4, "3": 3, "-1": -1}
CLASS_WORDS = {"NORMAL", "NEUROPATHY", "NÖROPATİ", "NOROPATI", "NÖROPATI", "ANSD", "SENSORINEURAL", "SNİK", "SNIK",
               "SNHL", "TOTAL", "PROFOUND", "CONDUCTIVE", "İTİK", "ITIK", "CHL"}
IDS = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=8).filter(
    lambda t: t.strip() != "" and t not in TABLE_BLANKS)


def _table_frame_rows() -> list[dict]:
    return _table_frame().to_dict("records")


EARS = {"left": "L", "l": "L", "sol": "L", "right": "R", "r": "R", "sağ": "R", "sag": "R"}


def _class_of(row: dict) -> int:
    """The recorded ear's class: its own column, else Hear_Loss when that is blank (the documented rule)."""
    ear = EARS[str(row["Stimulus Side"]).strip().casefold()]
    own = row["Hear Loss - Left" if ear == "L" else "Hear Loss - Right"]
    blank = own is None or (isinstance(own, float) and math.isnan(own)) or own in TABLE_BLANKS
    return CLASS_SPELLINGS[row["Hear_Loss"] if blank else own]


def _table_valid(column: str, row: int, sample: int):
    if column in TABLE_RANGES:
        return st.one_of(_numbers(*TABLE_RANGES[column]), st.sampled_from(TABLE_BLANKS))
    if column == "Sweeps Rejected":  # stored as read: any finite number, or blank
        return st.one_of(st.floats(-1e300, 1e300).flatmap(number_texts), st.sampled_from(TABLE_BLANKS))
    if column == "Patient_ID":
        return IDS
    if column == "Stimulus Side":
        return st.sampled_from(EAR_SPELLINGS)
    if column == "Hear Loss - Left":
        if row == 0:  # the left ear's own class, or blank (falls back to Hear_Loss)
            return st.one_of(st.sampled_from(sorted(CLASS_SPELLINGS)), st.sampled_from(TABLE_BLANKS))
        return st.one_of(IDS, st.sampled_from(TABLE_BLANKS))  # a right ear's recording does not read it
    if sample <= MODEL_LENGTH:
        return st.floats(-1e38, 1e38).flatmap(number_texts)
    return st.one_of(st.floats().flatmap(lambda v: number_texts(v) if math.isfinite(v) else st.just(repr(v))),
                     st.sampled_from(TABLE_BLANKS + NON_FINITE))


def _table_invalid(column: str, row: int, sample: int):
    if column in TABLE_RANGES:
        return st.one_of(NOT_NUMBERS, _outside(*TABLE_RANGES[column]),
                         st.sampled_from([t for t in NON_FINITE if "nan" not in t.lower()]))
    if column == "Sweeps Rejected":
        return NOT_NUMBERS
    if column == "Patient_ID":
        return st.sampled_from(TABLE_BLANKS + (" ", "   "))
    if column == "Stimulus Side":
        return st.one_of(st.sampled_from(TABLE_BLANKS + ("Both", "Binaural", "links", "LR", "2")),
                         NOT_NUMBERS.filter(lambda t: t.strip().casefold() not in EARS))
    if column == "Hear Loss - Left":  # row 0 only: the left ear reads it
        return st.one_of(st.sampled_from(["ABC", "5", "-2", "2.5", "NORMALS", "mild", "Normal hearing"]),
                         NOT_NUMBERS.filter(lambda t: t.strip().upper() not in CLASS_WORDS))
    if sample <= MODEL_LENGTH:  # the window's cells: a number, finite in float32
        return st.one_of(NOT_NUMBERS, st.sampled_from(TABLE_BLANKS + NON_FINITE + ("1e39", "-1e39", "1e308")))
    return NOT_NUMBERS


def _table_file(workdir: Path, column: str, row: int, sample: int, text: str) -> Path:
    frame = _table_frame().astype(object)
    frame.loc[row, str(sample) if column == "sample" else column] = text
    path = workdir / "cells.csv"
    frame.to_csv(path, index=False)
    return path


TABLE_OPTIONS = {"polarity": None, "max_sweeps_rejected": None}


@given(column=st.sampled_from(TABLE_COLUMNS), row=st.integers(0, 2), sample=st.integers(1, 210), data=st.data())
def test_table_cells_valid(workdir, column, row, sample, data):
    text = data.draw(_table_valid(column, row, sample))
    path = _table_file(workdir, column, row, sample, text)
    what = f"{column if column != 'sample' else f'sample {sample}'} = {text!r} in row {row}"
    result = must_succeed("table_cells_valid", lambda: load_records(path, table_options=TABLE_OPTIONS), what)
    _check_records("table_cells_valid", result, own_time_base=False)
    if len(result) != 3:
        fail("table_cells_valid", f"{what}: {len(result)} rows read, not 3")
    stored = {"Age": result.age_years, "Intensity": result.intensity_db, "Stimulus Rate": result.stimulus_rate_hz,
              "FMP": result.fmp, "V Latancy": result.v_latency_ms}
    if column in stored and not _same(float(stored[column][row]), _float32(text)):
        fail("table_cells_valid", f"{what} read as {stored[column][row]}")
    if column == "V Latancy" and result.v_present[row] != (text not in TABLE_BLANKS):
        fail("table_cells_valid", f"{what}: V present read as {result.v_present[row]}")
    if column == "Sweeps Rejected":
        want = math.nan if text in TABLE_BLANKS else float(text)
        if not _same(float(result.extra["sweeps_rejected"][row]), want):
            fail("table_cells_valid", f"{what} read as {result.extra['sweeps_rejected'][row]}")
    if column == "Patient_ID" and result.patient_id[row] != text.strip():
        fail("table_cells_valid", f"{what} read as {result.patient_id[row]!r}")
    rows = _table_frame_rows()
    if column in ("Stimulus Side", "Hear Loss - Left"):
        rows[row][column] = text
    if column == "Stimulus Side" and result.ear[row] != EARS[text.strip().casefold()]:
        fail("table_cells_valid", f"{what}: ear read as {result.ear[row]!r}")
    classes = [_class_of(r) for r in rows]
    if list(result.hearing_loss) != classes:
        fail("table_cells_valid", f"{what}: classes read as {list(result.hearing_loss)}, not {classes}")
    window = np.array([[r[str(k)] for k in range(1, MODEL_LENGTH + 1)] for r in rows], np.float64)
    if column == "sample" and sample <= MODEL_LENGTH:
        window[row, sample - 1] = float(text)
    if not np.array_equal(result.signal, window.astype(np.float32)):
        fail("table_cells_valid", f"{what}: the window came back changed")


@given(column=st.sampled_from(TABLE_COLUMNS), row=st.integers(0, 2), sample=st.integers(1, 210), data=st.data())
def test_table_cells_invalid(workdir, column, row, sample, data):
    if column == "Hear Loss - Left":
        row = 0  # only the left ear's recording reads it
    text = data.draw(_table_invalid(column, row, sample))
    path = _table_file(workdir, column, row, sample, text)
    what = f"{column if column != 'sample' else f'sample {sample}'} = {text!r} in row {row}"
    error = must_refuse("table_cells_invalid", lambda: load_records(path, table_options=TABLE_OPTIONS), what,
                        file=str(path))
    fields = {str(sample), "signal"} if column == "sample" else {column}  # signal: beyond float32
    _refused("table_cells_invalid", error, row=row + 2, fields=fields, what=what)  # header = row 1


# ---------------------------------------------------------------- legacy pickle fields
#
# Four recordings (tests/test_readers_legacy.py): rows 1 and 3 have wave V marked (v_peak [5.5 + 0.1 i, 0.3],
# mask [True, True]), rows 0 and 2 not (v_peak zeros); targets index the pickled LabelEncoder's classes;
# static_params are z-scores of the pickled StandardScaler; every row has a clinical threshold.

LEGACY_FIELDS = ("signal", "static_params", "v_peak", "v_peak_mask", "target", "patient_id", "clinical_threshold")
LEGACY_CLASSES = {"NORMAL": 0, "NÖROPATİ": 1, "SNİK": 2, "TOTAL": 3, "İTİK": 4}  # the original codes
STATIC_COLUMNS = ("age_years", "intensity_db", "stimulus_rate_hz", "fmp")  # the scaler's column order


def _array_forms(values: np.ndarray):
    """The same numbers as a pickle may hold them: float64, float32 (if exact), a list, ints (if whole)."""
    forms = [values, values.tolist()]
    with np.errstate(over="ignore"):
        if np.array_equal(values.astype(np.float32), values, equal_nan=True):
            forms.append(values.astype(np.float32))
    if np.isfinite(values).all() and (values == np.round(values)).all() and (np.abs(values) < 2**62).all():
        forms.append(values.astype(np.int64))
    return st.sampled_from(forms)


@functools.cache
def _legacy_scaler():
    scaler = _legacy(n=4)[0]["scaler"]
    return np.asarray(scaler.mean_, np.float64), np.asarray(scaler.scale_, np.float64)


def _unscaled(z) -> np.ndarray:
    """The raw static inputs the reader must store for z-scores ``z`` (raw = z·scale + mean, float32)."""
    mean, scale = _legacy_scaler()
    with np.errstate(over="ignore", invalid="ignore"):
        return (np.asarray(z, np.float64) * scale + mean).astype(np.float32)


def _in_ranges(raw: np.ndarray) -> bool:
    return all(math.isnan(v) or VALID_RANGES[f][0] <= v <= VALID_RANGES[f][1] for f, v in zip(STATIC_COLUMNS, raw))


@st.composite
def _valid_static_z(draw):
    """z-scores of raw inputs inside their ranges (NaN = unknown), by the pickled scaler."""
    mean, scale = _legacy_scaler()
    raw = np.array([draw(st.one_of(st.floats(*VALID_RANGES[f]), st.sampled_from(VALID_RANGES[f]),
                                   st.just(math.nan))) for f in STATIC_COLUMNS])
    z = (raw - mean) / scale
    return draw(_array_forms(z))


@st.composite
def _invalid_static_z(draw):
    mean, scale = _legacy_scaler()
    raw = np.array([draw(st.floats(*VALID_RANGES[f])) for f in STATIC_COLUMNS])
    j = draw(st.integers(0, 3))
    lo, hi = VALID_RANGES[STATIC_COLUMNS[j]]
    raw[j] = draw(st.one_of(st.floats(hi + 1e-3 * (hi - lo), 1e30), st.floats(-1e30, lo - 1e-3 * (hi - lo))))
    z = (raw - mean) / scale
    if draw(st.booleans()):
        z[j] = draw(st.sampled_from([math.inf, -math.inf, 1e300]))
    return z


def _legacy_valid(field: str, row: int):
    marked = row % 2 == 1
    if field == "signal":
        values = st.one_of(
            hnp.arrays(np.float64, MODEL_LENGTH, elements=st.floats(-1e38, 1e38), fill=st.floats(-1e38, 1e38)),
            st.integers(0, 2**32 - 1).map(lambda s: np.random.default_rng(s).normal(size=MODEL_LENGTH)))
        return values.flatmap(_array_forms)
    if field == "static_params":
        return _valid_static_z()
    if field == "v_peak":
        if marked:  # a latency in range and a finite amplitude (µV, finite in float32)
            pair = st.tuples(st.floats(*VALID_RANGES["v_latency_ms"]), st.floats(-1e38, 1e38))
        else:  # unmarked: the values are not read
            pair = st.tuples(st.floats(), st.floats())
        return pair.map(np.array).flatmap(_array_forms)
    if field == "v_peak_mask":
        flag = st.sampled_from([True, False, 0, 1, 0.0, 1.0, np.True_, np.False_])
        return st.tuples(flag, flag).flatmap(lambda t: st.sampled_from([np.array(t), list(t)]))
    if field == "target":
        return st.one_of(st.integers(0, 4), st.integers(0, 4).map(np.int64), st.integers(0, 4).map(float),
                         st.sampled_from(sorted(CLASS_SPELLINGS)))
    if field == "patient_id":
        return st.one_of(IDS, st.integers(-2**70, 2**70),
                         st.integers(0, 2**40).map(np.int64), st.integers(0, 10**15).map(float))
    lo, hi = VALID_RANGES["threshold_db"]  # clinical_threshold: dB, NaN/None unknown, +inf no response
    return st.one_of(st.none(), st.sampled_from([math.nan, math.inf, lo, hi]), st.floats(lo, hi),
                     st.integers(int(lo), int(hi)), st.floats(lo, hi).map(np.float32),
                     st.floats(lo, hi).map(np.array))


def _legacy_invalid(field: str, row: int):
    marked = row % 2 == 1
    not_numbers = st.sampled_from([None, "abc", {"a": 1}, np.array(["a", "b"], dtype=object), True])
    if field == "signal":
        def damaged(t):
            values = np.random.default_rng(t[0]).normal(size=MODEL_LENGTH)
            values[t[1]] = t[2]
            return values
        bad_value = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, MODEL_LENGTH - 1),
                              st.sampled_from([math.nan, math.inf, -math.inf, 1e39, -1e39, 1e308])).map(damaged)
        wrong_shape = st.one_of(st.integers(0, 400).filter(lambda k: k != MODEL_LENGTH).map(np.zeros),
                                st.sampled_from([np.zeros((2, 100)), np.zeros((1, MODEL_LENGTH)),
                                                 np.zeros((MODEL_LENGTH, 1)), np.float64(0.0), 0.5]))
        return st.one_of(bad_value, wrong_shape, not_numbers,
                         st.just(np.zeros(MODEL_LENGTH, bool)), st.just([None] * MODEL_LENGTH))
    if field == "static_params":
        return st.one_of(_invalid_static_z(), not_numbers,
                         st.sampled_from([np.zeros(3), np.zeros(5), np.zeros((4, 1)), np.zeros((2, 2)), 0.0]))
    if field == "v_peak":
        shapes = st.sampled_from([np.zeros(1), np.zeros(3), np.zeros((2, 1)), 5.5])
        if not marked:
            return st.one_of(shapes, not_numbers)
        lo, hi = VALID_RANGES["v_latency_ms"]
        latency = st.one_of(st.floats(hi + 0.01, 1e30), st.floats(-1e30, lo - 0.01),
                            st.sampled_from([math.nan, math.inf, -math.inf]))
        bad_pair = st.one_of(st.tuples(latency, st.floats(-1e3, 1e3)),
                             st.tuples(st.floats(lo, hi), st.sampled_from([math.nan, math.inf, -math.inf])))
        return st.one_of(bad_pair.map(np.array), shapes, not_numbers)
    if field == "v_peak_mask":
        return st.one_of(st.sampled_from([np.array([2, 0]), np.array([-1, 1]), np.array([0.5, 1.0]),
                                          np.array([math.nan, 0.0]), np.array([True]), np.array([True, False, True]),
                                          np.array(["1", "0"]), [None, None], True, None, "11"]))
    if field == "target":
        return st.one_of(st.integers(5, 10**6), st.integers(-10**6, -1), st.sampled_from(
            [2.5, math.nan, math.inf, True, False, None, "ABC", "", "NORMALS", [1], {"a": 1}]))
    if field == "patient_id":
        return st.sampled_from([None, True, False, 2.5, math.nan, math.inf, "", "   ", [1], {"a": 1}, b"P001"])
    lo, hi = VALID_RANGES["threshold_db"]
    return st.one_of(st.floats(hi + 0.01, 1e30), st.floats(-1e300, lo - 0.01),
                     st.sampled_from([-math.inf, "abc", {"a": 1}, True, [50.0], np.array([10.0, 20.0])]))


def _legacy_file(workdir: Path, field: str, row: int, value: object) -> Path:
    container, _ = _legacy(n=4)
    container["data"][row][field] = value
    path = workdir / "fields.pkl"
    path.write_bytes(pickle.dumps(container, protocol=4))
    return path


@given(field=st.sampled_from(LEGACY_FIELDS), row=st.integers(0, 3), data=st.data())
def test_legacy_pickle_fields_valid(workdir, field, row, data):
    value = data.draw(_legacy_valid(field, row))
    path = _legacy_file(workdir, field, row, value)
    what = f"{field} = {value!r:.80} in recording {row}"
    result = must_succeed("legacy_pickle_fields_valid", lambda: load_records(path), what)
    _check_records("legacy_pickle_fields_valid", result, own_time_base=True)
    if len(result) != 4:
        fail("legacy_pickle_fields_valid", f"{what}: {len(result)} recordings read, not 4")
    recs = _legacy(n=4)[0]["data"]
    recs[row][field] = value
    for i, rec in enumerate(recs):
        with np.errstate(over="ignore"):
            signal = np.asarray(rec["signal"], np.float64).astype(np.float32)
        raw = _unscaled(rec["static_params"])
        peak, mask = np.asarray(rec["v_peak"], np.float64), np.asarray(rec["v_peak_mask"]).astype(bool)
        threshold = rec["clinical_threshold"]
        threshold = math.nan if threshold is None else float(np.float32(threshold))
        target = rec["target"]
        code = LEGACY_CLASSES.get(target, CLASS_SPELLINGS.get(target)) if isinstance(target, str) else \
            int(target)  # the encoder's classes are sorted in code order
        pid = rec["patient_id"]
        pid = pid.strip() if isinstance(pid, str) else str(int(pid))
        got = {"signal": result.signal[i], "static_params": result.static[i],
               "v_peak": [result.v_latency_ms[i], result.v_amplitude_uv[i]], "v_peak_mask": result.v_present[i],
               "target": result.hearing_loss[i], "patient_id": result.patient_id[i],
               "clinical_threshold": result.threshold_db[i]}
        want = {"signal": signal, "static_params": raw,
                "v_peak": np.where(mask, peak, math.nan).astype(np.float32), "v_peak_mask": mask[0],
                "target": code, "patient_id": pid, "clinical_threshold": threshold}
        for name in LEGACY_FIELDS:
            if not np.array_equal(np.asarray(got[name]), np.asarray(want[name]), equal_nan=name != "patient_id"):
                fail("legacy_pickle_fields_valid", f"{what}: recording {i} {name} read as {got[name]!r:.80}, "
                                                   f"not {want[name]!r:.80}")


@given(field=st.sampled_from(LEGACY_FIELDS), row=st.integers(0, 3), data=st.data())
def test_legacy_pickle_fields_invalid(workdir, field, row, data):
    value = data.draw(_legacy_invalid(field, row))
    path = _legacy_file(workdir, field, row, value)
    what = f"{field} = {value!r:.80} in recording {row}"
    error = must_refuse("legacy_pickle_fields_invalid", lambda: load_records(path), what, file=str(path))
    fields = {"static_params": {"static_params", *(f"static_params[{j}] ({c})" for j, c in
                                                  enumerate(("Age", "Intensity", "Stimulus Rate", "FMP")))},
              "v_peak": {"v_peak", "v_peak[0]"}}.get(field, {field})  # a range error names the column
    _refused("legacy_pickle_fields_invalid", error, row=row, fields=fields, what=what)


NPZ_FIELDS = ("signal", "age_years", "intensity_db", "patient_id", "ear", "v_present", "v_latency_ms",
              "hearing_loss", "threshold_db", "wave_latency_ms", "sampling_rate_hz", "signal_unit", "extra__x")
NPZ_VALUES = st.one_of(
    st.builds(lambda v: np.full(6, v), hostile_floats()), st.builds(lambda v: np.full((6, 200), v), hostile_floats()),
    st.builds(lambda n: np.zeros(n), st.integers(0, 8)), st.builds(lambda v: np.array(v), hostile_floats()),
    st.builds(lambda s: np.array([s] * 6), st.text(max_size=4)), st.just(np.array([b"\xff"] * 6)),
    st.builds(lambda v: np.full(6, v, np.int64), st.integers(-2**63, 2**63 - 1)),
    st.just(np.zeros((6, 200), np.complex64)), st.just(np.zeros((6, 200), "datetime64[s]")),
    st.just(np.array([object()] * 6, dtype=object)), st.just(np.zeros(6, dtype=[("a", "f4"), ("b", "i4")])),
)


@given(field=st.sampled_from(NPZ_FIELDS), value=NPZ_VALUES)
def test_npz_arrays(workdir, field, value):
    records = make_records(n_patients=3, per_patient=2)
    arrays = {k: v for k, v in np.load(records.save(workdir / "base.npz"), allow_pickle=False).items()}
    arrays[field] = value
    path = workdir / "arrays.npz"
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    result, error = _read("npz_arrays", path)
    if error is None and field in ("signal", "age_years", "intensity_db", "threshold_db"):
        stored = getattr(result, field)
        with np.errstate(over="ignore", invalid="ignore"):
            written = np.asarray(value).astype(stored.dtype)
        if not np.array_equal(np.broadcast_to(written, stored.shape), stored, equal_nan=True):
            fail("npz_arrays", f"{field} {value!r} read as {stored!r}")


# ---------------------------------------------------------------- the command line


@settings(max_examples=max(8, settings.default.max_examples // 4))  # each case resolves a config (~1 s)
@given(data=st.data())
def test_cli_turns_reader_errors_into_one_line_and_exit_2(workdir, data):
    from abrflow.cli import main

    kind = data.draw(st.sampled_from(["table", "eclipse", "npz", "legacy"]))
    suffix = {"table": ".csv", "eclipse": ".csv", "npz": ".npz", "legacy": ".pkl"}[kind]
    seed = _LEGACY if kind == "legacy" else _seed(kind, workdir)
    path = workdir / f"cli{suffix}"
    path.write_bytes(data.draw(mutations(seed, sep=b"," if suffix == ".csv" else None)))
    shutil.rmtree(workdir / "run", ignore_errors=True)
    argv = ["train", "--config", str(REPO / "tests" / "data" / "tiny.yaml"), "--output_root",
            str(workdir / "run"), "data.source=file", f"data.dataset_path={path}", "training.epochs=1",
            "logging.use_tensorboard=false", "logging.log_level=ERROR"]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code, _ = outcome("cli_reader_errors", lambda: _train_until_data(main, argv))
    err = stderr.getvalue()
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("abrflow: error:")]
        if len(lines) != 1 or len(err.strip().splitlines()) != 1 or str(path) not in lines[0]:
            fail("cli_reader_errors", f"not one line naming the file: {err!r}")
    elif code != "data ok":
        fail("cli_reader_errors", f"exit {code}: {err!r}")


class _DataRead(Exception):
    """Raised in place of splitting once the records were read: the reading and the CLI are what is tested."""


def _train_until_data(main, argv):
    from unittest import mock

    with mock.patch("abrflow.data.datamodule.split_records", side_effect=_DataRead):
        try:
            return main(argv)
        except _DataRead:
            return "data ok"


# ---------------------------------------------------------------- escapes the fuzzing found, pinned


def _invalid_text_pickle(path: Path) -> Path:
    container, _ = _legacy(n=4)
    bad = np.frombuffer(np.full(5 * 8, 0x110000, np.uint32).tobytes(), dtype="<U8")  # not Unicode code points
    container["label_encoder"].classes_ = bad
    path.write_bytes(pickle.dumps(container, protocol=4))
    return path


def _zero_d_extra_npz(path: Path) -> Path:
    records = make_records(n_patients=3, per_patient=2)
    arrays = dict(np.load(records.save(path.with_name("base.npz")), allow_pickle=False).items())
    arrays["extra__x"] = np.array(1.0)
    np.savez(path, **arrays)
    return path


def _eclipse_cell(path: Path, column: str, value: str) -> Path:
    rows = [dict(r) for r in _eclipse_rows()]
    rows[0][column] = value
    return write_export(path, rows=rows, n_columns=300)[0]


@pytest.mark.parametrize("make, message", [
    (lambda p: _invalid_text_pickle(p.with_suffix(".pkl")), "invalid Unicode"),      # was SystemError
    (lambda p: _zero_d_extra_npz(p.with_suffix(".npz")), "extra field has shape ()"),  # was TypeError
    (lambda p: _eclipse_cell(p.with_suffix(".csv"), "Sweep Delay", "1e308"), "Sweep Delay"),  # was OverflowError
    (lambda p: _eclipse_cell(p.with_suffix(".csv"), "Sampl Interval", "1e308"), "Sampl Interval"),  # OverflowError
    (lambda p: _eclipse_cell(p.with_suffix(".csv"), "Accepted", "1e308"), "whole count"),  # OverflowError
    (lambda p: _eclipse_cell(p.with_suffix(".csv"), "Sampl Interval", "5"), "too low"),  # 200 Hz: resampling bomb
    (lambda p: (p.with_suffix(".xlsx").write_bytes(b"PK\x03\x04"), p.with_suffix(".xlsx"))[1], "Excel workbook"),
])
def test_escapes_found_by_fuzzing_are_named_errors(tmp_path, make, message):
    path = make(tmp_path / "found")
    with pytest.raises(DataError, match=message) as info:
        load_records(path)
    assert str(path) in str(info.value)


def test_a_damaged_wfdb_header_is_checked_before_any_sample_is_read(tmp_path):
    """``sig_len`` 2002 → 2002000000 made wfdb allocate and fill 16 GB before noticing (OOM-killed the run)."""
    for half in ("R1", "R2"):
        for suffix in (".hea", ".dat"):
            target = tmp_path / f"{WFDB_PAIR}_{half}{suffix}"
            target.write_bytes((REAL / "earndb" / target.name).read_bytes())
    header = tmp_path / f"{WFDB_PAIR}_R1.hea"
    lines = header.read_text(encoding="ascii").split("\n")
    lines[0] = lines[0].replace(" 2002", " 2002000000")
    header.write_text("\n".join(lines), encoding="ascii")
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="describes 2002000000 samples"):
        load_records(header)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # kB: nothing like 16 GB

