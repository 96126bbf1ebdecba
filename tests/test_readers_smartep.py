"""IHS SmartEP reader on the 39 real exports (shared/real/ihs-smartep-human) and broken copies of them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from abrflow.data import split_half_r
from abrflow.data.readers import load_records
from abrflow.data.readers.smartep import read_smartep, read_smartep_expert_thresholds
from abrflow.errors import DataError

from .conftest import REAL

SMARTEP = REAL / "ihs-smartep-human"
SUBJECTS = ("P3", "P6", "P8")
LEVELS_DB = list(range(0, 65, 5))
HEADER_ROWS = 20  # header rows before "Data Pnt:" in every real file; data rows start at line 22


@pytest.fixture(scope="module")
def smartep():
    """All three subjects, read once through the folder dispatch of load_records."""
    return load_records(SMARTEP)


def _raw(path):
    """The file's data block, parsed independently of the reader: [1024, fields]."""
    return np.loadtxt(path, delimiter=",", skiprows=HEADER_ROWS + 1, usecols=range(1 + 6 * 9))


def _pooled(rec, mask):
    """Sweep-weighted mean of the selected recordings' average and halves (one level)."""
    weights = rec.extra["sweeps"][mask][:, None].astype(np.float64)
    return [(x[mask] * weights).sum(axis=0, keepdims=True) / weights.sum()
            for x in (rec.signal, rec.extra["half_a"], rec.extra["half_b"])]


# ---------------------------------------------------------------- the real files


def test_all_39_files_load_with_their_recordings(smartep):
    rec = smartep
    assert rec.signal.shape == (352, 200) and rec.sampling_rate_hz == 20000.0 and rec.signal_unit == "uV"
    for subject, n_rows in zip(SUBJECTS, (117, 118, 117), strict=True):
        mine = rec.patient_id == subject
        assert mine.sum() == n_rows and len(np.unique(rec.extra["source_file"][mine])) == 13
        levels, counts = np.unique(rec.intensity_db[mine], return_counts=True)
        assert levels.tolist() == LEVELS_DB  # from the Intensity header, also for TEMP--08-35db and 5db/05db
        assert set(counts.tolist()) == ({9, 10} if subject == "P6" else {9})
    assert len(np.unique(rec.series_key)) == 3  # one level series per subject (patient + ear + session)
    assert set(rec.session_id) == {"DEMO0066-2020BK01", "IHS7044-20214I01", "IHS7044-20214I03"}
    assert set(rec.ear) == {"R"} and np.allclose(rec.stimulus_rate_hz, 37.1)
    assert set(rec.extra["sweeps"].tolist()) == {500, 1000, 2000} and (rec.extra["artifacts"] >= 0).all()
    assert rec.extra["artifacts"].max() == 748  # P8 25 dB: many rejected sweeps
    periods, counts = np.unique(rec.extra["sample_period_us"], return_counts=True)
    assert periods.tolist() == [25.0, 50.0] and counts.tolist() == [4, 348]
    fast = rec.extra["sample_period_us"] == 25.0
    assert set(rec.patient_id[fast]) == {"P6"} and set(rec.intensity_db[fast]) == {55.0}
    assert set(rec.extra["zero_position"][fast]) == {548} and set(rec.extra["zero_position"][~fast]) == {530}
    # No labels in the files.
    assert np.isnan(rec.fmp).all() and (rec.hearing_loss == -1).all() and not rec.v_present.any()
    assert np.isnan(rec.threshold_db).all()
    for name in ("half_a", "half_b"):
        assert rec.extra[name].shape == (352, 200) and rec.extra[name].dtype == np.float32


def test_window_is_average_uv_from_onset(smartep):
    path = SMARTEP / "P3" / "TEMP-03-60db.TXT"
    raw = _raw(path)
    mine = smartep.extra["source_file"] == path.name
    assert mine.sum() == 9
    for recording, row in enumerate(np.flatnonzero(mine)):
        average_uv, buffer1_uv, buffer2_uv = (raw[529:729, 1 + 6 * recording + k] for k in (1, 3, 5))
        np.testing.assert_allclose(smartep.signal[row], average_uv, atol=1e-6)
        np.testing.assert_allclose(smartep.extra["half_a"][row], buffer1_uv, atol=1e-6)
        np.testing.assert_allclose(smartep.extra["half_b"][row], buffer2_uv, atol=1e-6)
    # P3 starts 2.2 ms before the click with exact zeros; cutting from onset leaves none of them.
    assert (raw[:485, 1:] == 0).all()
    p3 = smartep.patient_id == "P3"
    assert (np.abs(smartep.signal[p3][:, :5]) > 0).any(axis=1).all()
    # The µV average is the mean of the two µV halves (4-decimal rounding in the export).
    halves = (smartep.extra["half_a"] + smartep.extra["half_b"]) / 2
    assert np.abs(smartep.signal - halves).max() < 2e-4


def test_25_us_recordings_are_resampled_from_their_own_onset(smartep):
    path = SMARTEP / "P6" / "TEMP-06-55db.TXT"
    raw = np.loadtxt(path, delimiter=",", skiprows=HEADER_ROWS + 1, usecols=range(1 + 6 * 10))
    rows = np.flatnonzero((smartep.extra["source_file"] == path.name) & (smartep.extra["sample_period_us"] == 25.0))
    assert len(rows) == 4
    for recording, row in enumerate(rows):  # the four 25 µs recordings come first in this file
        every_other = raw[547:947:2, 1 + 6 * recording + 1]  # onset = point 548; 40 kHz → 20 kHz
        r = np.corrcoef(smartep.signal[row, 5:195], every_other[5:195])[0, 1]
        assert r > 0.99 and np.abs(smartep.signal[row, 5:195] - every_other[5:195]).max() < 0.02


def test_response_grows_with_level_and_replicates(smartep):
    rec = smartep
    r = rec.extra["split_half_r"]
    window = (rec.time_ms >= 5.0) & (rec.time_ms < 8.0)
    for subject in SUBJECTS:
        mine = rec.patient_id == subject
        high, low = mine & (rec.intensity_db >= 50), mine & (rec.intensity_db <= 5)
        # Split-half r: clearly higher at 50–60 dB than at 0–5 dB, and near zero at 0–5 dB.
        assert np.median(r[high]) - np.median(r[low]) > 0.3
        assert abs(np.median(r[low])) < 0.25
        # Pooling a level's recordings (sweep-weighted): 60 dB halves replicate well.
        _, a60, b60 = _pooled(rec, mine & (rec.intensity_db == 60))
        assert split_half_r(a60, b60, rec.sampling_rate_hz)[0] > 0.8
        # Wave V region (5–8 ms): the 60 dB response carries more energy than 0 dB.
        energy = {}
        for level in (0, 60):
            average = _pooled(rec, mine & (rec.intensity_db == level))[0][0, window]
            energy[level] = np.mean((average - average.mean()) ** 2)
        assert energy[60] > 3 * energy[0], subject
    p6 = rec.patient_id == "P6"
    e60, e0 = (np.mean(rec.signal[p6 & (rec.intensity_db == lv)][:, window] ** 2) for lv in (60, 0))
    assert e60 > 2 * e0  # also without pooling, for the clean subject


def test_expert_thresholds():
    thresholds = read_smartep_expert_thresholds(SMARTEP / "thres_data_v2.mat")
    assert sorted(thresholds) == [f"P{k}" for k in range(1, 9)]
    assert thresholds["P3"] == [10, 10, 5, 15, 10]
    assert thresholds["P6"] == [5, 5, 5, 5, 0]
    assert thresholds["P8"] == [30, 30, 35, 30, 20]
    with pytest.raises(DataError, match="expert_mouse_all"):
        read_smartep_expert_thresholds(SMARTEP / "thres_data_v2.mat", variable="expert_mouse_all")


def test_single_file_and_subject_folder(tmp_path):
    one = read_smartep(SMARTEP / "P3" / "TEMP-03-60db.TXT")
    assert len(one) == 9 and set(one.patient_id) == {"DEMO0066-2020BK01"}  # the Identifier header
    assert one.source == "smartep:TEMP-03-60db.TXT"
    folder = load_records(SMARTEP / "P8", signal_length=100, sampling_rate_hz=10000.0)
    assert folder.signal.shape == (117, 100) and set(folder.patient_id) == {"P8"}
    lower = tmp_path / "export.txt"
    shutil.copy(SMARTEP / "P6" / "TEMP-06-55db.TXT", lower)
    assert len(load_records(lower)) == 10


# ---------------------------------------------------------------- broken copies


def _copy(tmp_path, text_change=None, name="TEMP-06-60db.TXT"):
    target = tmp_path / name
    text = (SMARTEP / "P6" / "TEMP-06-60db.TXT").read_text(encoding="ascii")
    target.write_text(text_change(text) if text_change else text, encoding="ascii", newline="")
    return target


def _error(path) -> DataError:
    with pytest.raises(DataError) as info:
        read_smartep(path)
    assert info.value.file == str(path)
    return info.value


def test_truncated_files(tmp_path):
    mid_row = _copy(tmp_path, lambda t: t[: len(t) // 2])
    err = _error(mid_row)
    assert "truncated" in str(err) and err.row.startswith("line ")
    lines = _copy(tmp_path).read_text(encoding="ascii").splitlines(keepends=True)
    whole_rows = _copy(tmp_path, lambda t: "".join(lines[:900]), name="cut.TXT")
    err = _error(whole_rows)
    assert "879 data rows" in str(err) and "1024" in str(err)
    header_only = _copy(tmp_path, lambda t: "".join(lines[:10]), name="header.TXT")
    assert "no 'Data Pnt:' row" in str(_error(header_only))


def test_missing_and_corrupt_header_values(tmp_path):
    no_period = _copy(tmp_path, lambda t: "\n".join(x for x in t.split("\n") if not x.startswith("Smp. Period")))
    err = _error(no_period)
    assert err.field == "Smp. Period" and "missing header row" in str(err)
    corrupt = _copy(tmp_path, lambda t: t.replace("Intensity:,60,,,,,,60,", "Intensity:,60,,,,,,sixty,", 1))
    err = _error(corrupt)
    assert (err.row, err.field) == ("line 6, recording 2", "Intensity") and "'sixty'" in str(err)
    shifted = _copy(tmp_path, lambda t: t.replace("Ear:,R,,,,,,R,", "Ear:,R,,,,,R,,", 1))
    err = _error(shifted)
    assert err.field == "Ear" and "not above a recording's first column" in str(err)
    late_onset = _copy(tmp_path, lambda t: t.replace("Zero Position:,530,", "Zero Position:,900,", 1))
    err = _error(late_onset)
    assert (err.row, err.field) == ("line 20, recording 1", "Zero Position") and "cannot cover" in str(err)
    left_out = _copy(tmp_path, lambda t: t.replace("Ear:,R,", "Ear:,X,", 1))
    assert _error(left_out).field == "Ear"


def test_corrupt_data_rows(tmp_path):
    lines = _copy(tmp_path).read_text(encoding="ascii").split("\n")
    text_cell = list(lines)
    text_cell[600] = text_cell[600].replace(",", ",abc", 3)
    err = _error(_copy(tmp_path, lambda t: "\n".join(text_cell), name="text.TXT"))
    assert (err.row, err.field) == ("line 601", "Average of recording 1") and "'abc" in str(err)
    short_row = list(lines)
    short_row[700] = short_row[700].rsplit(",", 3)[0] + ","   # the last two values cut off
    err = _error(_copy(tmp_path, lambda t: "\n".join(short_row), name="short.TXT"))
    assert err.row == "line 701" and "values after the point number" in str(err)
    renumbered = list(lines)
    assert renumbered[30].startswith("  10,")  # line 22 holds point 1
    renumbered[30] = "  90," + renumbered[30][5:]
    err = _error(_copy(tmp_path, lambda t: "\n".join(renumbered), name="renumbered.TXT"))
    assert err.row == "line 31" and "expected 10" in str(err)
    bad_names = _copy(tmp_path, lambda t: t.replace("Buffer2(uV):", "Buffer3(uV):", 1), name="names.TXT")
    assert "unexpected column 'Buffer3(uV)'" in str(_error(bad_names))


def test_empty_and_wrongly_encoded_files(tmp_path):
    empty = tmp_path / "empty.TXT"
    empty.write_text("\n", encoding="ascii")
    assert "empty" in str(_error(empty))
    utf16 = tmp_path / "utf16.TXT"
    utf16.write_text((SMARTEP / "P6" / "TEMP-06-60db.TXT").read_text(encoding="ascii"), encoding="utf-16")
    assert "not utf-8-sig" in str(_error(utf16))
    not_smartep = tmp_path / "notes.txt"
    not_smartep.write_text("just some notes\n", encoding="ascii")
    with pytest.raises(DataError, match="not an IHS SmartEP export"):
        load_records(not_smartep)
    folder = tmp_path / "no_exports"
    folder.mkdir()
    with pytest.raises(DataError, match="no SmartEP .TXT exports"):
        read_smartep(folder)
