"""evaluate on a clinic's own exports: whatever labels the files carry, every group runs or says why not.

Real SmartEP series (no marks, no class, five raters' thresholds beside the files), a synthetic
Eclipse export with wave marks on some traces and no diagnosis, several files joined, and an
ensemble of separately trained checkpoints for the per-ear rule.
"""

from __future__ import annotations

import json

import pytest

from abrflow.cli import main

from .conftest import REAL
from .fixtures_checkpoint import one_thread, trained, trained_seed2  # noqa: F401  (fixtures)
from .test_readers_eclipse import write_export

SMARTEP = REAL / "ihs-smartep-human"
QUICK = ["--generate_samples", "0", "--bootstrap", "20", "--reconstruction_samples", "16", "--device", "cpu"]


def _evaluate(capsys, out, *argv) -> tuple[dict, str]:
    code = main(["evaluate", *argv, "--output_dir", str(out), *QUICK])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    report = (out / "report.txt").read_text(encoding="utf-8")
    assert printed.out.startswith(report.splitlines()[0])
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "http://" not in page and "https://" not in page
    return json.loads((out / "metrics.json").read_text(encoding="utf-8")), report


def test_a_smartep_series_without_labels_is_evaluated_and_each_missing_group_says_so(trained, tmp_path,  # noqa: F811
                                                                                    capsys):
    m, report = _evaluate(capsys, tmp_path / "p6", "--checkpoint", str(trained.best), "--data", str(SMARTEP / "P6"))
    assert m["labels"]["classes"] == 0 and m["labels"]["v_marks"] == 0 and m["labels"]["recordings"] > 100
    assert m["classification"] == {"reason": "no hearing-loss labels in these files"}
    assert m["peaks"] == {"reason": "no wave V marks in these files"}
    assert m["clinical"]["per_recording_head"]["reason"] == "no thresholds in these files"
    assert m["clinical"]["per_ear_series"]["n_ears"] == 1
    for key in ("macro_f1", "v_f1", "ear_threshold_mae_db"):
        assert "reason" in m["headline"][key]
    for phrase in ("no hearing-loss labels in these files", "no wave V marks in these files",
                   "no thresholds in these files", "the model estimated 1 ears"):
        assert phrase in report
    assert set(m["figures"]) == {"reconstructions"}  # figures of absent labels are not drawn
    assert m["mark_agreement"]["reason"].startswith("no wave marks")
    experts = m["threshold_agreement"]
    assert experts["source"].endswith("thres_data_v2.mat") and experts["n_ears"] == 1
    (ear,) = experts["ears"].values()
    assert [v for _, v in ear["raters"]] == [5.0, 5.0, 5.0, 5.0, 0.0] if isinstance(ear["raters"], list) else True
    assert ear["median_db"] == 5.0 and set(ear["methods"]) >= {"model", "cross-covariance"}
    for rater in ("expert 1", "expert 5", "model", "cross-covariance"):  # the model and the raters side by side
        assert rater in report


def test_an_eclipse_export_with_some_marks_and_no_diagnosis(trained, tmp_path, capsys):  # noqa: F811
    path, _ = write_export(tmp_path / "clinic.csv")
    m, report = _evaluate(capsys, tmp_path / "eclipse", "--checkpoint", str(trained.best), "--data", str(path))
    assert m["labels"]["v_marks"] == 3 and m["labels"]["wave_marks"]["I"] == 1 and m["labels"]["classes"] == 0
    assert m["peaks"]["n_marked"] == 3 if "n_marked" in m["peaks"] else "reason" not in m["peaks"]
    assert m["classification"] == {"reason": "no hearing-loss labels in these files"}
    assert "latency_scatter" in m["figures"] and "confusion_matrix" not in m["figures"]
    assert "CLASSES: no hearing-loss labels in these files" in report
    waves = m["mark_agreement"]["waves"]
    assert waves["V"]["methods"]["model"]["overall"]["n"] == 3
    assert waves["I"]["methods"]["model"]["overall"]["n_marked"] == 1  # the model reads wave I too (issue 19)
    assert waves["I"]["methods"]["classical picker"]["overall"]["n_marked"] == 1
    assert waves["I"]["presence"] == {"reason": "unmarked traces are not known to be absent in these files"}
    assert m["mark_agreement"]["intervals"]["I-V"]["n_marked"] == 1
    assert {"mark_bland_altman", "worst_marks"} <= set(m["figures"])
    assert "AGREEMENT WITH THE CLINICIAN'S MARKS" in report and "AGREEMENT WITH EXPERT THRESHOLDS: no expert" in report


def test_expert_thresholds_from_a_csv_and_a_bad_row_named(trained, tmp_path, capsys):  # noqa: F811
    from abrflow.data.readers import load_records

    key = load_records(SMARTEP / "P8").series_key[0]
    patient, ear, session = key.split("|")
    good = tmp_path / "raters.csv"
    good.write_text("patient_id,ear,session_id,threshold_db,rater\n"
                    f"{patient},{ear},{session},30,A\n{patient},{ear},{session},25,B\n", encoding="utf-8")
    m, report = _evaluate(capsys, tmp_path / "csv", "--checkpoint", str(trained.best), "--data", str(SMARTEP / "P8"),
                          "--thresholds", str(good))
    assert m["threshold_agreement"]["source"] == str(good) and m["threshold_agreement"]["n_ears"] == 1
    assert "A" in report and "B" in report
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,ear,threshold_db\nP8,R,30\nP8,R,loud\n", encoding="utf-8")
    code = main(["evaluate", "--checkpoint", str(trained.best), "--data", str(SMARTEP / "P8"), "--thresholds",
                 str(bad), "--output_dir", str(tmp_path / "bad"), *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and "bad.csv" in err and "3" in err and "threshold_db" in err


def test_several_files_are_joined_and_an_ensemble_reads_the_ears(trained, trained_seed2, tmp_path,  # noqa: F811
                                                                  capsys):
    m, report = _evaluate(capsys, tmp_path / "both", "--checkpoint", str(trained.best), str(trained_seed2.best),
                          "--data", str(SMARTEP / "P3"), str(SMARTEP / "P6"))
    assert m["run"]["split"] == "2 files joined"
    assert m["clinical"]["per_ear_series"]["n_ears"] == 2
    assert len(m["run"]["ensemble"]) == 2
    assert any("ensemble of 2 checkpoints" in note for note in m["run"]["notes"])
    assert "ensemble of 2 checkpoints" in report


def test_a_signal_beyond_the_models_range_names_its_file(trained, tmp_path, capsys):  # noqa: F811
    """A sample the reader accepts (1e30 µV) but no model can read: one line naming the file, exit 2."""
    from .test_readers_eclipse import ROWS

    rows = [dict(r) for r in ROWS]
    rows[0]["100"] = "1e30"
    path, _ = write_export(tmp_path / "clinic.csv", rows=rows)
    code = main(["evaluate", "--checkpoint", str(trained.best), "--data", str(path), "--output_dir",
                 str(tmp_path / "out"), *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and "clinic.csv" in err and err.count("\n") == 1 and "model units" in err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_a_missing_data_file_among_several_is_named(trained, tmp_path, capsys):  # noqa: F811
    code = main(["evaluate", "--checkpoint", str(trained.best), "--data", str(SMARTEP / "P6"),
                 str(tmp_path / "nope.csv"), "--output_dir", str(tmp_path / "x"), *QUICK])
    assert code == 2
    assert "nope.csv" in capsys.readouterr().err


pytestmark = pytest.mark.usefixtures("one_thread")


def _tone_burst_series(folder):
    """SmartEP P6 as if played as 12 kHz tone bursts (every file's `Stim. Freq.` set to 12000 Hz)."""
    from .test_stimulus import _set_row

    folder.mkdir()
    change = _set_row("Stim. Freq.", "12000")
    for path in sorted((SMARTEP / "P6").glob("*.TXT")):
        lines = path.read_text(encoding="ascii").split("\n")
        (folder / path.name).write_text("\n".join(change(line) for line in lines), encoding="ascii", newline="")
    return folder


def test_a_tone_burst_series_is_flagged_in_every_output(trained, tmp_path, capsys):  # noqa: F811
    """The model was trained on clicks: for a tone-burst series it reads the intensity as unknown,
    every output says so, and no click norm (the classical picker's window) is read against it."""
    import numpy as np

    from abrflow.data.readers import load_records
    from abrflow.inference.predictor import ABRInference

    series = _tone_burst_series(tmp_path / "P6tb")
    code = main(["threshold", str(series), "--checkpoint", str(trained.best), "--output_dir", str(tmp_path / "thr"),
                 "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "tone burst 12 kHz" in out and "outside what the model was trained on" in out
    assert "classical picker not applied" in out
    (ear,) = json.loads((tmp_path / "thr" / "thresholds.json").read_text(encoding="utf-8")).values()
    assert ear["stimulus_outside_training"] is True and ear["baselines"]["lowest_peak_db"] is None
    assert all(v is None for v in ear["latency_intensity"]["picker_v_latency_ms"])

    model = ABRInference(trained.best, device="cpu")
    records = load_records(series, signal_length=200, sampling_rate_hz=20000.0)
    unknown = records.replace(intensity_db=np.full(len(records), np.nan, np.float32))
    analysed = model.analyse_records(records)
    np.testing.assert_array_equal(analysed["v_present_prob"], model.analyse_records(unknown)["v_present_prob"])
    assert analysed["stimulus_outside_training"].all()
    assert main(["infer", "--checkpoint", str(trained.best), "--input_file", str(series / "TEMP-06-60db.TXT"),
                 "--output_dir", str(tmp_path / "infer"), "--device", "cpu"]) == 0
    assert "outside what the model was trained on" in capsys.readouterr().out
    rows = json.loads((tmp_path / "infer" / "predictions.json").read_text(encoding="utf-8"))
    assert all(row["stimulus_outside_training"] is True for row in rows)

    m, report = _evaluate(capsys, tmp_path / "eval", "--checkpoint", str(trained.best), "--data", str(series))
    assert any("tone burst 12 kHz" in note for note in m["run"]["notes"])
    assert "outside what the model was trained on" in report
    (estimate,) = m["clinical"]["per_ear_series"].get("estimates", {None: ear}).values()
    assert estimate["stimulus_outside_training"] is True


def test_an_earndb_tone_burst_series_and_a_clinic_spreadsheet(trained, tmp_path, capsys):  # noqa: F811
    """EARNDB (tone bursts, dB peSPL, no marks, no raters) and the clinic table (classes and wave V/I
    marks on some rows, no thresholds): each group present or explained, nothing crashes."""
    import shutil

    from .test_readers_table import _csv

    earndb = tmp_path / "earndb_n1"
    earndb.mkdir()
    for path in (REAL / "earndb").glob("N1_*"):
        shutil.copy(path, earndb / path.name)
    m, report = _evaluate(capsys, tmp_path / "earndb", "--checkpoint", str(trained.best), "--data", str(earndb))
    assert m["clinical"]["per_ear_series"]["n_ears"] == 2
    assert all(e["stimulus_outside_training"] for e in m["clinical"]["per_ear_series"]["estimates"].values())
    assert all(e["level_unit"] == "dB peSPL" for e in m["clinical"]["per_ear_series"]["estimates"].values())
    assert "tone burst 1 kHz" in report and "tone burst 4 kHz" in report
    assert m["threshold_agreement"]["reason"].startswith("no expert thresholds")

    table = _csv(tmp_path)
    m, report = _evaluate(capsys, tmp_path / "table", "--checkpoint", str(trained.best), "--data", str(table),
                          "data.table.polarity=null", "data.table.max_sweeps_rejected=null")
    assert m["labels"]["classes"] == m["labels"]["recordings"] == 6
    assert "reason" not in m["classification"] and m["classification"]["n"] == 6
    assert m["clinical"]["per_recording_head"] == {"reason": "no thresholds in these files"}
    assert m["mark_agreement"]["waves"]["V"]["methods"]["model"]["overall"]["n_marked"] == 4
    assert m["mark_agreement"]["waves"]["III"]["reason"] == "no wave III marks in these files"
