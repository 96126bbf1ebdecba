"""Clinic spreadsheet reader: CSV/XLSX, filters with counts, per-ear classes, time base, bad cells."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from abrflow.data.readers import load_records
from abrflow.data.readers.table import read_table
from abrflow.errors import DataError

N_SAMPLES = 467
SAMPLE_COLUMNS = [str(k) for k in range(1, N_SAMPLES + 1)]

# (Patient_ID, Side, Polarity, Sweeps Rejected, HL-Left, HL-Right, Hear_Loss, V Latancy, V Amplitude)
ROWS = [
    ("00101", "Left", "Alternate", 10, "NORMAL", "SNİK", "SNİK", 6.1, 0.40),
    ("00101", "Right", "Alternate", 20, "NORMAL", "SNİK", "SNİK", 6.5, 0.25),
    ("00102", "Sağ", "alternate", 0, "NORMAL", None, "İTİK", None, None),
    ("00102", "sol", "Rarefaction", 5, "TOTAL", "TOTAL", "TOTAL", 7.0, 0.10),   # dropped: polarity
    ("00103", "L", "Alternate", 150, "NORMAL", "NORMAL", "NORMAL", 5.9, 0.50),  # dropped: sweeps
    ("00103", "R", "Alternate", 99, "NORMAL", "NÖROPATİ", "NÖROPATİ", None, 0.05),
]


def _signal(i: int, n: int = N_SAMPLES, rate_hz: float = 20000.0) -> np.ndarray:
    """A 500 Hz sine of row-specific amplitude: easy to check before and after resampling."""
    return (i + 1) * 0.1 * np.sin(2 * np.pi * 500.0 * np.arange(n) / rate_hz)


def _frame(n_samples: int = N_SAMPLES, rate_hz: float = 20000.0) -> pd.DataFrame:
    records = []
    for i, (pid, side, pol, rej, left, right, any_ear, v_lat, v_amp) in enumerate(ROWS):
        row = {"Patient_ID": pid, "Stimulus Side": side, "Age": 0.5 + i, "Intensity": 80 - 10 * i,
               "Stimulus Polarity": pol, "Stimulus Rate": 33.1, "Sweeps Measured": 2000, "Sweeps Rejected": rej,
               "Test Date": f"2021-03-0{i % 2 + 1}", "Hear Loss - Left": left, "Hear Loss - Right": right,
               "Hear_Loss": any_ear, "I Latancy": 1.6 if v_lat else None, "I Amplitude": 0.2 if v_lat else None,
               "III Latancy": None, "III Amplitude": None, "V Latancy": v_lat, "V Amplitude": v_amp}
        row.update(zip([str(k) for k in range(1, n_samples + 1)], _signal(i, n_samples, rate_hz), strict=True))
        row["FMP"] = 0.8 + 0.1 * i
        records.append(row)
    return pd.DataFrame(records)


def _csv(tmp_path, frame=None, name="export.csv", **kwargs):
    path = tmp_path / name
    (_frame() if frame is None else frame).to_csv(path, index=False, **kwargs)
    return path


def test_csv_read_maps_every_field(tmp_path):
    rec = read_table(_csv(tmp_path))
    kept = [0, 1, 2, 5]
    assert len(rec) == 4 and rec.signal.shape == (4, 200) and rec.signal_unit == "uV"
    np.testing.assert_allclose(rec.signal, np.stack([_signal(i)[:200] for i in kept]), atol=1e-6)
    assert list(rec.patient_id) == ["00101", "00101", "00102", "00103"]  # leading zeros kept
    assert list(rec.ear) == ["L", "R", "R", "R"]
    assert list(rec.hearing_loss) == [0, 2, 4, 1]  # per ear; row 2's blank right cell falls back to Hear_Loss
    np.testing.assert_allclose(rec.age_years, [0.5, 1.5, 2.5, 5.5])
    np.testing.assert_allclose(rec.intensity_db, [80, 70, 60, 30])
    np.testing.assert_allclose(rec.stimulus_rate_hz, 33.1, rtol=1e-6)
    np.testing.assert_allclose(rec.fmp, [0.8, 0.9, 1.0, 1.3], rtol=1e-6)
    assert list(rec.v_present) == [True, True, False, False]
    np.testing.assert_allclose(rec.v_latency_ms, [6.1, 6.5, np.nan, np.nan], rtol=1e-6)
    np.testing.assert_allclose(rec.v_amplitude_uv, [0.4, 0.25, np.nan, 0.05], rtol=1e-6)
    np.testing.assert_allclose(rec.wave_latency_ms[0], [1.6, np.nan, 6.1], rtol=1e-6)
    assert np.isnan(rec.threshold_db).all() and rec.threshold_source == "unknown"
    assert list(rec.session_id) == ["2021-03-01", "2021-03-02", "2021-03-01", "2021-03-02"]
    assert list(rec.extra["source_row"]) == [2, 3, 4, 7]  # spreadsheet rows: header is row 1
    assert list(rec.extra["stimulus_polarity"]) == ["Alternate", "Alternate", "alternate", "Alternate"]
    np.testing.assert_array_equal(rec.extra["sweeps_rejected"], [10, 20, 0, 99])
    np.testing.assert_array_equal(rec.extra["sweeps_measured"], 2000)
    assert rec.source == "table:export.csv"


def test_xlsx_reads_the_same_as_csv(tmp_path):
    frame = _frame()
    # Excel headers are numbers and some names carry stray spaces; both are normalised.
    frame.columns = [int(c) if c.isdigit() else (f" {c} " if c == "Age" else c) for c in frame.columns]
    xlsx = tmp_path / "export.xlsx"
    frame.to_excel(xlsx, index=False)
    a, b = read_table(xlsx), read_table(_csv(tmp_path))
    np.testing.assert_allclose(a.signal, b.signal, atol=1e-6)
    for name in ("age_years", "intensity_db", "fmp", "v_latency_ms", "hearing_loss", "ear", "session_id",
                 "patient_id"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.source == "table:export.xlsx"


def test_filters_drop_rows_and_report_counts(tmp_path, caplog):
    path = _csv(tmp_path)
    with caplog.at_level(logging.INFO, logger="abrflow.data.readers.table"):
        rec, report = read_table(path, return_report=True)
    assert report == {"rows_read": 6, "dropped_polarity": 1, "dropped_sweeps_rejected": 1, "rows_kept": 4}
    assert "dropped 1 by polarity" in caplog.text
    rec, report = read_table(path, polarity=None, max_sweeps_rejected=None, return_report=True)
    assert len(rec) == 6 and report["rows_kept"] == 6
    rec, report = read_table(path, polarity="RAREFACTION", max_sweeps_rejected=None, return_report=True)
    assert list(rec.extra["source_row"]) == [5] and report["dropped_polarity"] == 5
    rec = read_table(path, max_sweeps_rejected=20)
    assert list(rec.extra["source_row"]) == [2, 4]
    with pytest.raises(DataError, match="every row was dropped"):
        read_table(path, polarity="Condensation")


def test_class_codes_in_every_spelling(tmp_path):
    frame = _frame()  # ears: L R R L L R
    frame["Hear Loss - Left"] = ["normal", "x", "x", "Nöropati", "İTİK", "x"]  # "x" cells belong to other ears
    frame["Hear Loss - Right"] = ["x", "snik", "Conductive", "x", "x", "2"]
    rec = read_table(_csv(tmp_path, frame), polarity=None, max_sweeps_rejected=None)
    assert list(rec.ear) == ["L", "R", "R", "L", "L", "R"]
    assert list(rec.hearing_loss) == [0, 2, 4, 1, 4, 2]
    frame["Hear Loss - Right"] = ["x", None, None, "x", "x", None]
    frame["Hear_Loss"] = ["x", "TOTAL", None, "x", "x", 3]
    rec = read_table(_csv(tmp_path, frame, name="fallback.csv"), polarity=None, max_sweeps_rejected=None)
    assert list(rec.hearing_loss[[1, 2, 5]]) == [3, -1, 3]  # both blank → unknown (−1)


def test_resampling_from_another_source_rate(tmp_path):
    source_rate_hz = 40000.0
    path = _csv(tmp_path, _frame(rate_hz=source_rate_hz))
    rec = read_table(path, source_sampling_rate_hz=source_rate_hz)
    assert rec.signal.shape == (4, 200) and rec.sampling_rate_hz == 20000.0
    expected = 0.1 * np.sin(2 * np.pi * 500.0 * np.arange(200) / 20000.0)
    np.testing.assert_allclose(rec.signal[0, 5:190], expected[5:190], atol=5e-3)
    up = read_table(path, source_sampling_rate_hz=source_rate_hz, sampling_rate_hz=48000.0, signal_length=480)
    assert up.signal.shape == (4, 480)
    same = read_table(path, source_sampling_rate_hz=20000.0)  # equal rates: columns taken unchanged
    np.testing.assert_allclose(same.signal[0], _signal(0, 200, source_rate_hz), atol=1e-6)


def test_load_records_dispatches_tables_with_options(tmp_path):
    rec = load_records(_csv(tmp_path), polarity=None)
    assert len(rec) == 5 and rec.source == "table:export.csv"
    tsv = _csv(tmp_path, name="export.tsv", sep="\t")
    assert len(load_records(tsv)) == 4
    semicolon = _csv(tmp_path, name="semi.csv", sep=";")
    assert len(read_table(semicolon)) == 4


# ---------------------------------------------------------------- malformed files


def _error(path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        read_table(path, **kwargs)
    assert str(path) in str(info.value)
    return info.value


def _cell(frame: pd.DataFrame, data_row: int, column: str, value) -> pd.DataFrame:
    frame[column] = frame[column].astype(object)
    frame.loc[data_row, column] = value
    return frame


def test_missing_column_names_it_and_suggests_the_nearest(tmp_path):
    frame = _frame().rename(columns={"V Latancy": "V Latency"})
    err = _error(_csv(tmp_path, frame))
    assert err.field == "V Latancy" and "'V Latency'" in str(err)


@pytest.mark.parametrize("data_row, column, value, message", [
    (2, "17", "abc", "expected a number"),
    (1, "Age", "two", "expected a number"),
    (0, "Stimulus Side", "Middle", "unknown side"),
    (0, "Hear Loss - Left", "OTITIS", "unknown hearing-loss class"),
    (1, "Hear_Loss", "OTITIS", None),  # not used: row 1's own column is filled
    (2, "Hear_Loss", "OTITIS", "unknown hearing-loss class"),  # used: row 2's right cell is blank
    (5, "150", None, "blank"),
    (0, "Patient_ID", None, "blank patient id"),
    (1, "Age", 150, "outside"),
    (0, "Sweeps Rejected", None, "max_sweeps_rejected"),
])
def test_bad_cell_names_file_row_and_column(tmp_path, data_row, column, value, message):
    path = _csv(tmp_path, _cell(_frame(), data_row, column, value))
    if message is None:
        assert len(read_table(path)) == 4
        return
    err = _error(path)
    assert (err.row, err.field) == (data_row + 2, column)  # spreadsheet row: header is row 1
    assert message in str(err) and "header = row 1" in str(err)


def test_bad_cell_in_a_dropped_row_is_not_read(tmp_path):
    path = _csv(tmp_path, _cell(_frame(), 3, "17", "abc"))  # row 3 is dropped by the polarity filter
    assert len(read_table(path)) == 4
    assert _error(path, polarity=None).row == 5


def test_sample_columns_must_cover_the_window(tmp_path):
    short = _frame().drop(columns=SAMPLE_COLUMNS[150:])
    err = _error(_csv(tmp_path, short, name="short.csv"))
    assert "150 sample columns" in str(err) and err.field == "151"
    gap = _frame().drop(columns=["100"])
    assert _error(_csv(tmp_path, gap, name="gap.csv")).field == "100"
    with pytest.raises(DataError, match="needs 500"):
        read_table(_csv(tmp_path), signal_length=500)
    # 10 kHz source → 20 kHz: 935 target samples need source samples 1…468, one more than exported.
    with pytest.raises(DataError, match="needs 468"):
        read_table(_csv(tmp_path), source_sampling_rate_hz=10000.0, signal_length=935)


def test_repeated_column_is_an_error(tmp_path):
    path = _csv(tmp_path)
    text = path.read_text(encoding="utf-8").split("\n", 1)
    path.write_text(text[0].replace("Intensity", "Age", 1) + "\n" + text[1], encoding="utf-8")
    assert "more than once" in str(_error(path))


def test_text_encoding_of_a_windows_export(tmp_path):
    path = _csv(tmp_path, name="cp1254.csv", encoding="cp1254")
    assert "encoding=" in str(_error(path))
    rec = read_table(path, encoding="cp1254")
    assert list(rec.ear) == ["L", "R", "R", "R"] and list(rec.hearing_loss) == [0, 2, 4, 1]
