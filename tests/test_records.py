"""ABRRecords: validation names row and field, selection/concatenation, safe .npz round trip."""

from __future__ import annotations

import numpy as np
import pytest

from abrflow.data.readers import load_records
from abrflow.data.records import CLASS_NAMES, ABRRecords, class_code
from abrflow.errors import DataError

from .conftest import make_records


def test_round_trip_npz_is_exact(tmp_path, records):
    records.extra["sweeps_accepted"] = np.arange(len(records))
    path = records.save(tmp_path / "cohort.npz")
    back = load_records(path)
    for name in ("signal", "age_years", "intensity_db", "v_latency_ms", "threshold_db", "wave_latency_ms"):
        np.testing.assert_array_equal(getattr(back, name), getattr(records, name))
    np.testing.assert_array_equal(back.patient_id, records.patient_id)
    np.testing.assert_array_equal(back.extra["sweeps_accepted"], records.extra["sweeps_accepted"])
    assert back.sampling_rate_hz == 20000.0 and back.threshold_source == "simulated"
    assert np.isposinf(back.threshold_db).any()
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves nothing behind


def test_object_array_npz_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, signal=np.array([object()], dtype=object))
    with pytest.raises(DataError, match="without pickle"):
        ABRRecords.load(path)


def test_corrupted_and_foreign_npz(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="broken.npz"):
        ABRRecords.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(DataError, match="missing arrays"):
        ABRRecords.load(other)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("age_years", 150.0, "age_years"),
        ("intensity_db", np.inf, "intensity_db"),
        ("v_latency_ms", -1.0, "v_latency_ms"),
        ("threshold_db", -np.inf, "threshold_db"),
        ("hearing_loss", 7, "hearing_loss"),
        ("ear", "X", "ear"),
    ],
)
def test_validate_names_row_and_field(records, field, value, message):
    getattr(records, field)[5] = value
    with pytest.raises(DataError) as err:
        records.validate()
    assert "row 5" in str(err.value) and message in str(err.value)


def test_validate_signal_nan_and_label_consistency(records):
    records.signal[3, 10] = np.nan
    with pytest.raises(DataError, match="row 3.*signal"):
        records.validate()
    rec = make_records()
    i = int(np.flatnonzero(~rec.v_present)[0])
    rec.v_latency_ms[i] = 6.0
    with pytest.raises(DataError, match=f"row {i}"):
        rec.validate()


def test_select_and_concatenate(records):
    a = records.select(np.arange(10))
    b = records.select(records.hearing_loss == 2)
    both = ABRRecords.concatenate([a, b])
    assert len(both) == 10 + int((records.hearing_loss == 2).sum())
    np.testing.assert_array_equal(both.signal[:10], records.signal[:10])
    other = make_records(length=100)
    with pytest.raises(DataError, match="time base"):
        ABRRecords.concatenate([a, other])


def test_series_key_and_static(records):
    keys = records.series_key
    assert keys[0] == "P000|L|" and keys[1] == "P000|R|"
    assert records.static.shape == (len(records), 4)


@pytest.mark.parametrize(
    "value, code",
    [(0, 0), ("NORMAL", 0), ("NÖROPATİ", 1), ("neuropathy", 1), ("SNİK", 2), ("snik", 2), ("TOTAL", 3),
     ("İTİK", 4), ("itik", 4), ("Conductive", 4), (4.0, 4), ("3", 3)],
)
def test_class_codes_accept_english_turkish_and_ints(value, code):
    assert class_code(value) == code


def test_unknown_class_code_is_an_error():
    with pytest.raises(DataError, match="unknown hearing-loss class 'MIXED'"):
        class_code("MIXED")
    with pytest.raises(DataError):
        class_code(9)


def test_summary_numbers(records):
    s = records.summary()
    assert s["recordings"] == 120 and s["patients"] == 30
    assert abs(sum(s["class_shares"].values()) - 1) < 1e-9
    assert set(s["class_shares"]) == set(CLASS_NAMES)
    assert 0.3 < s["v_marked_share"] < 0.5


def test_load_records_unknown_type(tmp_path):
    p = tmp_path / "x.foo"
    p.write_text("hi")
    with pytest.raises(DataError, match="unsupported file type"):
        load_records(p)
    with pytest.raises(DataError, match="not found"):
        load_records(tmp_path / "missing.npz")
