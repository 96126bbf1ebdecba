"""Agreement with expert thresholds (issue 18, item 3): the raters' CSV, the SmartEP experts keyed by
series, and the per-ear / per-method figures on hand-made numbers computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abrflow.data.readers import load_records
from abrflow.data.readers.smartep_raters import smartep_rater_thresholds
from abrflow.data.readers.thresholds_csv import read_thresholds_csv
from abrflow.data.records import ABRRecords
from abrflow.errors import DataError
from abrflow.evaluation.threshold_agreement import (
    RATERS_ROW,
    SINGLE_RATER_NOTE,
    format_threshold_agreement,
    threshold_agreement,
)

from .conftest import REAL

SMARTEP = REAL / "ihs-smartep-human"
INF, NAN = math.inf, math.nan


def _csv(tmp_path, text: str | bytes, name: str = "thresholds.csv"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- the CSV reader


def test_csv_reads_raters_per_ear(tmp_path):
    path = _csv(tmp_path, "\ufeffPatient ID, EAR ,Threshold_dB,rater\n"
                          "P1,left,20,anna\n"
                          "\n"
                          "P1,L,25,ben\n"
                          "P2,R,inf,anna\n"
                          "P3,?,No  Response,anna\n")
    assert read_thresholds_csv(path) == {"P1|L|": [("anna", 20.0), ("ben", 25.0)], "P2|R|": [("anna", INF)],
                                         "P3|?|": [("anna", INF)]}


def test_csv_without_rater_column_and_with_sessions_keys_like_records(tmp_path):
    path = _csv(tmp_path, "patientid;ear;session_id;threshold db\nP6;Right;IHS7044-20214I01;5\nP6;r;other;none\n")
    ratings = read_thresholds_csv(path)
    assert ratings == {"P6|R|IHS7044-20214I01": [("rater 1", 5.0)], "P6|R|other": [("rater 1", INF)]}
    records = load_records(SMARTEP / "P6")
    assert set(records.series_key) <= set(ratings)


GOOD_HEADER = "patient_id,ear,threshold_db,rater\n"


@pytest.mark.parametrize(("text", "row", "field", "words"), [
    (GOOD_HEADER + "P1,L,20,anna\nP1,L,abc,ben\n", 3, "threshold_db", "expected a threshold"),
    (GOOD_HEADER + "P1,L,150,anna\n", 2, "threshold_db", "outside [-20, 140]"),
    (GOOD_HEADER + "P1,L,-25,anna\n", 2, "threshold_db", "outside"),
    (GOOD_HEADER + "P1,L,nan,anna\n", 2, "threshold_db", "outside"),
    (GOOD_HEADER + "P1,L,-inf,anna\n", 2, "threshold_db", "outside"),
    (GOOD_HEADER + "P1,L,1e400,anna\n", 2, "threshold_db", "outside"),  # overflows to inf: damage, not "no response"
    (GOOD_HEADER + "P1,X,20,anna\n", 2, "ear", "unknown ear 'X'"),
    (GOOD_HEADER + "P1,L,20,anna\nP2,R,30,anna\nP1,left,25,anna\n", 4, "rater", "already rated ear 'P1|L|' on line 2"),
    ("patient_id,ear,threshold_db\n\nP1,L,20\nP1,L,25\n", 4, "patient_id", "duplicate rating"),
    (GOOD_HEADER + "P1,L,20,\n", 2, "rater", "rater is empty"),
    (GOOD_HEADER + ",L,20,anna\n", 2, "patient_id", "patient_id is empty"),
    (GOOD_HEADER + "P|1,L,20,anna\n", 2, "patient_id", "separator"),
    (GOOD_HEADER + "P1,L,20\n", 2, None, "expected 4 fields"),
    ("\n\npatient_id,ear,rater\nP1,L,anna\n", 3, "threshold_db", "missing required column 'threshold_db'"),
    ("patient_id,ear,threshold_db,Notes,site\nP1,L,20,x,y\n", 1, "Notes", "unknown column(s) ['Notes', 'site']"),
    ("patient_id,Ear,EAR,threshold_db\nP1,L,L,20\n", 1, "EAR", "appears twice"),
    (GOOD_HEADER, None, None, "no threshold rows"),
    ("", None, None, "empty"),
    ("  \n\n", None, None, "empty"),
    (GOOD_HEADER.encode() + b"P1,L,20,J\xf6rg\n", None, None, "not utf-8-sig"),
])
def test_csv_bad_rows_name_line_and_column(tmp_path, text, row, field, words):
    path = _csv(tmp_path, text)
    with pytest.raises(DataError) as caught:
        read_thresholds_csv(path)
    error = caught.value
    assert (error.file, error.row, error.field) == (str(path), row, field)
    assert words in str(error)


def test_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_thresholds_csv(tmp_path / "absent.csv")


# ---------------------------------------------------------------- the SmartEP experts


@pytest.fixture(scope="module")
def smartep() -> ABRRecords:
    return load_records(SMARTEP)


def test_smartep_raters_keyed_by_series(smartep):
    raters = smartep_rater_thresholds(smartep, SMARTEP)
    keys = {str(p): str(k) for p, k in zip(smartep.patient_id, smartep.series_key)}
    expected = {"P3": [10, 10, 5, 15, 10], "P6": [5, 5, 5, 5, 0], "P8": [30, 30, 35, 30, 20]}
    assert raters == {keys[p]: [(f"expert {k + 1}", float(v)) for k, v in enumerate(values)]
                      for p, values in expected.items()}
    assert keys["P6"] == "P6|R|IHS7044-20214I01"


def test_smartep_raters_found_from_subject_folder_file_or_nowhere(smartep, tmp_path):
    p6 = smartep.select(np.flatnonzero(smartep.patient_id == "P6"))
    one = {"P6|R|IHS7044-20214I01": [("expert 1", 5.0), ("expert 2", 5.0), ("expert 3", 5.0), ("expert 4", 5.0),
                                     ("expert 5", 0.0)]}
    assert smartep_rater_thresholds(p6, SMARTEP / "P6") == one          # the .mat lies in the parent
    assert smartep_rater_thresholds(p6, SMARTEP / "thres_data_v2.mat") == one
    assert smartep_rater_thresholds(p6) == {}                           # SmartEP sources name no folder
    assert smartep_rater_thresholds(p6, tmp_path) == {}                 # no file: the caller says so
    saved = tmp_path / "P6.npz"
    p6.save(saved)
    assert smartep_rater_thresholds(ABRRecords.load(saved)) == {}       # npz folder without the file
    with pytest.raises(DataError, match="file not found"):
        smartep_rater_thresholds(p6, tmp_path / "absent.mat")


def test_smartep_raters_leave_out_unknown_subjects_and_refuse_two_series(smartep):
    p6 = smartep.select(np.flatnonzero(smartep.patient_id == "P6"))
    renamed = p6.replace(patient_id=np.full(len(p6), "P99"))
    assert smartep_rater_thresholds(renamed, SMARTEP) == {}
    two = ABRRecords.concatenate([p6, p6.replace(session_id=np.full(len(p6), "again"))])
    with pytest.raises(DataError, match="2 level series"):
        smartep_rater_thresholds(two, SMARTEP)


# ---------------------------------------------------------------- the figures


RATERS = {
    "A|L|": [("r1", 20.0), ("r2", 30.0), ("r3", 25.0)],   # median 25, range 20–30
    "A|R|": [("r1", INF), ("r2", INF)],                  # both raters: no response
    "B|L|": [("r1", 40.0), ("r2", NAN)],                 # one rating left: no spread
}
ESTIMATES = {
    "m": {"A|L|": 32.0, "A|R|": INF, "B|L|": 45.0, "C|L|": 10.0},
    "n": {"A|L|": 24.0, "A|R|": 50.0, "B|L|": NAN},
}


@pytest.fixture(scope="module")
def result():
    return threshold_agreement(ESTIMATES, RATERS)


def test_per_ear_figures(result):
    assert (result["n_ears"], result["n_raters"], result["raters"]) == (3, {"min": 1, "max": 3}, ["r1", "r2", "r3"])
    a = result["ears"]["A|L|"]
    assert (a["median_db"], a["min_db"], a["max_db"], a["spread_db"]) == (25.0, 20.0, 30.0, 10.0)
    assert a["rater_deviation_db"] == {"r1": -5.0, "r2": 5.0, "r3": 0.0}
    loo = a["rater_vs_others"]
    assert [loo[r]["others_median_db"] for r in ("r1", "r2", "r3")] == [27.5, 22.5, 25.0]
    assert [loo[r]["error_db"] for r in ("r1", "r2", "r3")] == [-7.5, 7.5, 0.0]
    assert [loo[r]["inside_range"] for r in ("r1", "r2", "r3")] == [False, False, True]
    assert a["methods"]["m"] == {"estimate_db": 32.0, "error_db": 7.0, "inside_range": False, "raters_further": 0}
    assert a["methods"]["n"] == {"estimate_db": 24.0, "error_db": -1.0, "inside_range": True, "raters_further": 2}

    r = result["ears"]["A|R|"]
    assert (r["median_db"], r["spread_db"]) == (INF, 0.0)
    assert r["methods"]["m"] == {"estimate_db": INF, "error_db": 0.0, "inside_range": True, "raters_further": 0}
    assert r["methods"]["n"] == {"estimate_db": 50.0, "error_db": -INF, "inside_range": False, "raters_further": 0}

    b = result["ears"]["B|L|"]
    assert (b["n_raters"], b["raters"], b["median_db"]) == (1, {"r1": 40.0}, 40.0)
    assert all(math.isnan(b[k]) for k in ("min_db", "max_db", "spread_db"))
    assert math.isnan(b["rater_vs_others"]["r1"]["error_db"])
    assert b["methods"]["m"] == {"estimate_db": 45.0, "error_db": 5.0, "inside_range": None, "raters_further": None}
    assert math.isnan(b["methods"]["n"]["estimate_db"]) and b["methods"]["n"]["inside_range"] is None


def test_summary_per_method(result):
    m = result["summary"]["m"]
    assert (m["n_ears"], m["n_missing"], m["n_finite"], m["n_unrated"]) == (3, 0, 2, 1)
    assert (m["mae_db"], m["bias_db"]) == (6.0, 6.0)
    assert (m["within_5_db"], m["within_10_db"]) == (pytest.approx(2 / 3), 1.0)
    assert (m["inside_range"], m["n_ranged"], m["raters_further_share"]) == (0.5, 2, 0.0)
    assert m["no_response"] == {"agree": 1.0, "both": 1, "method_only": 0, "raters_only": 0}

    n = result["summary"]["n"]
    assert (n["n_ears"], n["n_missing"], n["n_finite"], n["n_unrated"]) == (2, 1, 1, 0)
    assert (n["mae_db"], n["bias_db"], n["within_5_db"], n["within_10_db"], n["inside_range"]) == (1.0, -1.0, .5, .5, .5)
    assert n["raters_further_share"] == pytest.approx(1 / 3)
    assert n["no_response"] == {"agree": 0.5, "both": 0, "method_only": 0, "raters_only": 1}


def test_raters_own_leave_one_out_figures(result):
    loo = result["raters_leave_one_out"]
    assert (loo["n_ears"], loo["n_ratings"], loo["n_finite"]) == (2, 5, 3)
    assert (loo["mae_db"], loo["bias_db"]) == (5.0, 0.0)
    assert (loo["within_5_db"], loo["within_10_db"], loo["inside_range"]) == (0.6, 1.0, 0.6)
    assert loo["no_response"] == {"agree": 1.0, "both": 2, "method_only": 0, "raters_only": 0}
    assert result["note"].startswith("1 of 3 ears have one rater")


def test_single_rater_leaves_the_spread_unknown_and_says_so():
    result = threshold_agreement({"m": {"X|R|s": 35.0}}, {"X|R|s": [("rater 1", 30.0)]})
    assert result["note"] == SINGLE_RATER_NOTE
    ear = result["ears"]["X|R|s"]
    assert math.isnan(ear["spread_db"]) and ear["methods"]["m"]["error_db"] == 5.0
    loo = result["raters_leave_one_out"]
    assert (loo["n_ears"], loo["n_ratings"]) == (0, 0)
    assert all(math.isnan(loo[k]) for k in ("mae_db", "bias_db", "within_5_db", "within_10_db", "inside_range"))
    assert result["summary"]["m"]["mae_db"] == 5.0 and math.isnan(result["summary"]["m"]["inside_range"])
    assert any("n/a" in line for line in format_threshold_agreement(result))


def test_no_raters_and_bad_values():
    empty = threshold_agreement({"m": {"X|R|": 30.0}}, {})
    assert (empty["n_ears"], empty["note"], empty["summary"]["m"]["n_unrated"]) == (0, "no expert thresholds for any ear", 1)
    assert format_threshold_agreement(empty)[1] == "note: no expert thresholds for any ear"
    with pytest.raises(ValueError, match="rated it twice"):
        threshold_agreement({}, {"X|R|": [("a", 10.0), ("a", 20.0)]})
    with pytest.raises(ValueError, match="-inf"):
        threshold_agreement({"m": {"X|R|": -INF}}, {"X|R|": [("a", 10.0)]})


def test_formatter_names_every_rater_and_method(result):
    lines = format_threshold_agreement(result)
    text = "\n".join(lines)
    rows = [line.split()[0] for line in lines if line.startswith("  ")]
    for name in ("r1", "r2", "r3", "m", "n"):
        assert rows.count(name) >= 2 if name in "mn" else name in rows  # methods: per ear and in the summary
    for name in (RATERS_ROW, "A|L|", "A|R|", "B|L|"):
        assert name in text
    assert "nan" not in text and "inf dB" not in text
    ear = lines.index(next(line for line in lines if line.startswith("A|R|")))
    assert "no response" in lines[ear + 2] and "-inf (raters: no response)" in text
    start = next(i for i, line in enumerate(lines) if line.startswith("Summary per method"))
    summary = next(line for line in lines[start:] if line.strip().startswith("m "))
    assert "6.0 dB" in summary and "67%" in summary and "100% (both 1" in summary


def test_real_smartep_raters_through_the_report(smartep):
    raters = smartep_rater_thresholds(smartep, SMARTEP)
    estimates = {"model": {k: 10.0 for k in raters}, "protocol floor (lowest level tested)": {k: 0.0 for k in raters}}
    result = threshold_agreement(estimates, raters)
    assert result["ears"]["P6|R|IHS7044-20214I01"]["median_db"] == 5.0
    assert result["summary"]["model"]["mae_db"] == pytest.approx((0 + 5 + 20) / 3)
    text = "\n".join(format_threshold_agreement(result))
    assert all(f"expert {k}" in text for k in range(1, 6)) and "protocol floor (lowest level tested)" in text
