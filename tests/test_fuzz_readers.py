"""Every reader fed damaged and hostile files (property-based): valid records or a named abrflow error.

Two kinds of target per format:

- ``*_bytes``: a valid file (a real SmartEP export, a real EARNDB pair, generated Eclipse, clinic
  table, legacy pickle and ``.npz`` files) truncated, with bytes flipped, overwritten, inserted or
  deleted, a field replaced by a hostile token (NaN, inf, 1e400, text, NUL, 400 digits…), lines
  dropped or repeated, re-encoded (UTF-16/32, Latin-1, cp1254) or emptied. ``load_records`` must
  return records that pass validation, or raise an ``AbrflowError`` naming the file.
- ``*_cells``: one cell/field of a valid file set to a generated value (any float including NaN,
  ±inf, 1e308, subnormals; text; wrong types). A read that succeeds must carry the value unchanged
  (no clip, no fill, no dropped row); a failure must name the file and the row/line and field.

Any other exception is an escape and fails the test (tests/fuzz_support.py counts both).
"""

from __future__ import annotations

import contextlib
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

from abrflow.data.readers import load_records
from abrflow.data.records import ABRRecords
from abrflow.errors import DataError

from .conftest import REAL, REPO, make_records
from .fuzz_support import fail, hostile_floats, mutations, outcome
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

FINITE = st.floats(allow_nan=False, allow_infinity=False)
VALUES = st.one_of(hostile_floats(), st.sampled_from(["", "abc", "1e400", "-inf", "nan", "12,5", "0x10", "None"]))


def _text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _same(stored: float, written: float) -> bool:
    """The float32 the records hold is the written value (NaN for NaN), never clipped or filled."""
    with np.errstate(over="ignore"):
        expected = np.float32(written)
    return (math.isnan(stored) and math.isnan(expected)) or stored == expected


ECLIPSE_COLUMNS = ("Set Intensity", "Stim Rate", "Mark5 Lat", "Mark1 Lat", "Sampl Interval", "Sweep Delay",
                   "Samples", "Accepted", "sample")


@given(column=st.sampled_from(ECLIPSE_COLUMNS), row=st.integers(0, 1), sample=st.integers(0, 249), value=VALUES)
def test_eclipse_cells(workdir, column, row, sample, value):
    rows = [dict(r) for r in _eclipse_rows()]
    text = _text(value)
    key = str(sample) if column == "sample" else column
    rows[row][key] = text
    path, first_line = write_export(workdir / "cells.csv", rows=rows, n_columns=300)
    result, error = _read("eclipse_cells", path)
    number = _as_float(text.strip())
    if error is not None:
        if column != "sample" and column not in ("Mark5 Lat", "Mark1 Lat"):
            assert error.row is not None, error
        return
    assert len(result) == 2, "a row was dropped"
    if column == "Set Intensity" and not _same(result.intensity_db[row], number):
        fail("eclipse_cells", f"Set Intensity {text!r} read as {result.intensity_db[row]}")
    if column == "Mark5 Lat" and not _same(result.v_latency_ms[row], math.nan if text == "" else number):
        fail("eclipse_cells", f"Mark5 Lat {text!r} read as {result.v_latency_ms[row]}")
    onset = 40 if row == 0 else 0  # Sweep Delay −2.0 ms / 0.0 ms at 0.05 ms
    if column == "sample" and onset <= sample < onset + 200:
        if not _same(result.signal[row, sample - onset], number):
            fail("eclipse_cells", f"sample {sample} {text!r} read as {result.signal[row, sample - onset]}")


TABLE_COLUMNS = ("Age", "Intensity", "Stimulus Rate", "FMP", "V Latancy", "Sweeps Rejected", "Patient_ID",
                 "Stimulus Side", "Hear Loss - Left", "sample")


@given(column=st.sampled_from(TABLE_COLUMNS), row=st.integers(0, 2), sample=st.integers(1, 210), value=VALUES)
def test_table_cells(workdir, column, row, sample, value):
    frame = _table_frame().astype(object)
    key = str(sample) if column == "sample" else column
    text = _text(value)
    frame.loc[row, key] = text
    path = workdir / "cells.csv"
    frame.to_csv(path, index=False)
    result, error = _read("table_cells", path, table_options={"polarity": None, "max_sweeps_rejected": None})
    if error is not None:
        if isinstance(error, DataError) and error.row is not None:
            assert error.row == row + 2, error  # spreadsheet numbering: header = row 1
        return
    assert len(result) == 3, "a row was dropped"
    number = math.nan if text.strip() in ("", "nan", "NaN", "None") else _as_float(text)
    checks = {"Age": result.age_years, "Intensity": result.intensity_db, "Stimulus Rate": result.stimulus_rate_hz,
              "FMP": result.fmp, "V Latancy": result.v_latency_ms}
    if column in checks and not _same(checks[column][row], number):
        fail("table_cells", f"{column} {text!r} read as {checks[column][row]}")
    if column == "sample" and sample <= 200 and not _same(result.signal[row, sample - 1], number):
        fail("table_cells", f"sample {sample} {text!r} read as {result.signal[row, sample - 1]}")


LEGACY_FIELDS = ("signal", "static_params", "v_peak", "v_peak_mask", "target", "patient_id", "clinical_threshold")
ODD_VALUES = st.one_of(
    hostile_floats(), st.text(max_size=5), st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.lists(hostile_floats(), max_size=5), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(lambda n, v: np.full(n, v), st.integers(0, 250), hostile_floats()),
    st.builds(lambda v: np.full((2, 2), v), hostile_floats()), st.just(np.array(["a", "b"], dtype=object)),
)


@given(field=st.sampled_from(LEGACY_FIELDS), row=st.integers(0, 3), value=ODD_VALUES)
def test_legacy_pickle_fields(workdir, field, row, value):
    container, _ = _legacy(n=4)
    container["data"][row][field] = value
    path = workdir / "fields.pkl"
    path.write_bytes(pickle.dumps(container, protocol=4))
    result, error = _read("legacy_pickle_fields", path)
    if error is not None:
        if isinstance(error, DataError) and error.field not in (None, "scaler"):
            assert error.row == row, error
        return
    assert len(result) == 4, "a recording was dropped"
    if field == "signal":
        with np.errstate(over="ignore"):
            expected = np.asarray(value, np.float64).astype(np.float32)
        if not np.array_equal(result.signal[row], expected):
            fail("legacy_pickle_fields", f"signal {value!r} read as {result.signal[row]}")


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
