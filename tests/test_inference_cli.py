"""inference.py / `abrflow infer` and `abrflow export` end to end: every flag, every input kind, output
files, one real subprocess run of inference.py, and bad input → one-line error, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from abrflow.cli import main
from abrflow.data.records import ABRRecords
from abrflow.data.synthetic import simulate_cohort

from .conftest import REPO
from .fixtures_checkpoint import exported, one_thread, trained  # noqa: F401  (fixtures)

SINGLE = ["--age", "35", "--intensity", "80", "--rate", "30", "--fmp", "0.8"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The seed document's test_batch.npz and the other static-input and recording files."""
    d = tmp_path_factory.mktemp("inputs")
    np.savez(d / "test_batch.npz", patients=np.array([[45, 80, 30, 0.75], [65, 90, 20, 0.60], [30, 70, 40, 0.85]]))
    (d / "patients.json").write_text(json.dumps([{"id": "a", "age": 45, "intensity": 80, "rate": 30, "fmp": None},
                                                 {"id": "b", "age": 1, "intensity": 40, "rate": 33.1, "fmp": 0.7}]))
    (d / "patients.csv").write_text("patient_id,Age,Intensity,Stimulus Rate,FMP\nx,45,80,30,0.75\ny,0.5,,33.1,\n")
    (d / "bad.csv").write_text("age,loudness\n1,2\n")
    simulate_cohort(n_patients=2, seed=3).save(d / "recordings.npz")
    return d


def infer(checkpoint, out, *args):
    return main(["infer", "--checkpoint", str(checkpoint), "--output_dir", str(out), "--device", "cpu", *args])


def test_single_patient_with_confidence_as_in_the_seed_document(trained, tmp_path, capsys):  # noqa: F811
    assert infer(trained.best, tmp_path, *SINGLE, "--confidence", "--seed", "4") == 0
    out = capsys.readouterr().out
    assert "hearing loss:" in out and "90% set" in out and "dB nHL [" in out and "seed 4" in out
    result = json.loads((tmp_path / "prediction.json").read_text())
    assert result["inputs"]["age_years"] == 35 and result["waveform"]["seed"] == 4
    assert result["threshold"]["lo"] <= result["threshold"]["value"] <= result["threshold"]["hi"]
    assert {"latency_ms_lo", "amplitude_uv_hi"} <= set(result["peaks"]["V"])
    assert set(result["peaks"]) == {"I", "III", "V"} and set(result["intervals"]) == {"I-III", "III-V", "I-V"}
    assert "wave I:" in out and "wave III:" in out and "I-V interval:" in out


def test_sampler_steps_seed_and_npz_output(trained, tmp_path, capsys):  # noqa: F811
    assert infer(trained.best, tmp_path, "--age", "1", "--sampler", "ddim", "--steps", "5", "--seed", "9",
                 "--output_format", "npz") == 0
    assert "ddim, 5 steps, seed 9" in capsys.readouterr().out
    with np.load(tmp_path / "prediction.npz", allow_pickle=False) as z:
        assert z["waveform"].shape == (1, 200) and z["time_ms"].shape == (200,)
        assert z["sampler"][0] == "ddim" and z["steps"][0] == 5 and z["seed"][0] == 9
        assert np.isnan(z["intensity_db"][0]) and z["hearing_loss_prob"].shape == (1, 5)


def test_batch_file_of_the_seed_document_and_batch_size(trained, tmp_path, inputs, capsys):  # noqa: F811
    assert infer(trained.best, tmp_path / "a", "--input_file", str(inputs / "test_batch.npz"), "--seed", "2") == 0
    assert infer(trained.best, tmp_path / "b", "--input_file", str(inputs / "test_batch.npz"), "--seed", "2",
                 "--batch_size", "1") == 0
    a = json.loads((tmp_path / "a" / "predictions.json").read_text())
    b = json.loads((tmp_path / "b" / "predictions.json").read_text())
    assert len(a) == 3 and [r["waveform"]["seed"] for r in a] == [2, 3, 4]
    for ra, rb in zip(a, b):  # a row does not depend on how rows are batched
        np.testing.assert_allclose(ra["waveform"]["signal_uv"], rb["waveform"]["signal_uv"], atol=1e-4)
    assert "predicted:" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["patients.json", "patients.csv"])
def test_static_inputs_from_json_and_csv(trained, tmp_path, inputs, name):  # noqa: F811
    assert infer(trained.best, tmp_path, "--input_file", str(inputs / name), "--confidence") == 0
    rows = json.loads((tmp_path / "predictions.json").read_text())
    assert len(rows) == 2 and None in (rows[0]["inputs"]["fmp"], rows[1]["inputs"]["fmp"])
    assert "lo" in rows[0]["threshold"]
    assert rows[0]["id"] in ("a", "x")


def test_recordings_file_is_analysed_not_generated(trained, tmp_path, inputs):  # noqa: F811
    assert infer(trained.best, tmp_path, "--input_file", str(inputs / "recordings.npz"), "--output_format",
                 "npz") == 0
    rec = ABRRecords.load(inputs / "recordings.npz")
    with np.load(tmp_path / "predictions.npz", allow_pickle=False) as z:
        assert z["v_latency_ms"].shape == (len(rec),) and "seed" not in z.files
        np.testing.assert_allclose(z["waveform"], rec.signal)
        assert "v_latency_ms_lo" not in z.files  # intervals only with --confidence
    assert infer(trained.best, tmp_path, "--input_file", str(inputs / "recordings.npz"), "--confidence") == 0
    rows = json.loads((tmp_path / "predictions.json").read_text())
    assert rows[0]["waveform"]["source"] == "measured" and rows[0]["patient_id"] == rec.patient_id[0]
    assert rows[0]["peaks"]["V"]["latency_ms_lo"] <= rows[0]["peaks"]["V"]["latency_ms"]


def test_generate_writes_records_and_a_summary(trained, tmp_path, capsys):  # noqa: F811
    assert infer(trained.best, tmp_path, "--generate", "6", "--intensity", "40", "--hearing_loss", "SNİK",
                 "--threshold", "inf", "--guidance", "1.5", "--seed", "0", "--steps", "4") == 0
    out = capsys.readouterr().out
    assert "generated 6 waveforms" in out and "guidance 1.5" in out
    rec = ABRRecords.load(tmp_path / "generated.npz")  # an abrflow records file: re-analysable
    assert len(rec) == 6 and rec.signal.shape == (6, 200) and rec.signal_unit == "uV"
    assert (rec.hearing_loss == 2).all() and np.isposinf(rec.threshold_db).all() and (rec.intensity_db == 40).all()
    assert rec.extra["seed"].tolist() == list(range(6))
    summary = json.loads((tmp_path / "generated_summary.json").read_text())
    assert summary["n"] == 6 and summary["steps"] == 4 and summary["peak_to_peak"]["median"] > 0
    # --threshold inf is "no response" (+inf, strict JSON "inf"), not an unknown threshold (NaN, null)
    conditions = summary["conditions"]
    assert conditions["threshold_db"] == ["inf", "inf"] and conditions["intensity_db"] == [40.0, 40.0]
    assert conditions["hearing_loss"] == [2] and conditions["fmp"] == "unknown"  # fmp not given: unknown


def test_series_prints_thresholds_and_latency_intensity(trained, tmp_path, inputs, capsys):  # noqa: F811
    assert infer(trained.best, tmp_path, "--series", str(inputs / "recordings.npz")) == 0
    out = capsys.readouterr().out
    rec = ABRRecords.load(inputs / "recordings.npz")
    assert out.count("model threshold") == len(np.unique(rec.series_key)) and "wave V ms (dB nHL: model/picker)" in out
    assert out.count("classical:       crosscov") == len(np.unique(rec.series_key))
    results = json.loads((tmp_path / "thresholds.json").read_text())
    assert set(results) == set(np.unique(rec.series_key).astype(str))
    assert infer(trained.best, tmp_path, "--series", str(inputs / "recordings.npz"), "--output_format", "npz") == 0
    with np.load(tmp_path / "thresholds.npz", allow_pickle=False) as z:
        assert len(z["threshold_db"]) == len(results) and len(z["li_intensity_db"]) >= len(results)
        assert len(z["baseline_crosscov_db"]) == len(results) and len(z["li_picker_v_latency_ms"]) == len(
            z["li_intensity_db"])


def test_threshold_command_on_real_smartep_and_earndb_with_csv(trained, tmp_path, capsys):  # noqa: F811
    import pandas as pd

    from .conftest import REAL

    smartep, earndb = REAL / "ihs-smartep-human" / "P6", REAL / "earndb"
    with pytest.warns(UserWarning, match="no header"):  # EARNDB's header-less half is named, not dropped
        assert main(["threshold", str(smartep), str(earndb), "--checkpoint", str(trained.best), "--device", "cpu",
                     "--output_dir", str(tmp_path / "both")]) == 0
    out = capsys.readouterr().out
    assert out.count("model threshold") == 17 and "dB peSPL" in out  # 1 SmartEP ear + 16 EARNDB series
    both = json.loads((tmp_path / "both" / "thresholds.json").read_text())
    assert {r["level_unit"] for r in both.values()} == {"dB nHL", "dB peSPL"}
    assert main(["threshold", str(smartep), "--checkpoint", str(trained.best), "--device", "cpu",
                 "--output_dir", str(tmp_path), "--output", "csv"]) == 0
    out = capsys.readouterr().out
    assert "P6 ear R" in out and "replication" in out and "60: " in out
    ears = pd.read_csv(tmp_path / "thresholds.csv")
    levels = pd.read_csv(tmp_path / "latency_intensity.csv")
    assert len(ears) == 1 and ears.loc[0, "level_unit"] == "dB nHL" and ears.loc[0, "n_levels"] == 13
    assert ears.loc[0, "baseline_lowest_peak_db"] <= 60 and ears.loc[0, "baseline_replication_db"] <= 60
    assert len(levels) == 13 and levels["replicating_fraction"].between(0, 1).all()
    assert levels["picker_v_latency_ms"].iloc[0] == pytest.approx(6.2, abs=0.6)  # 60 dB nHL click, adult
    # issue 19: the V norm band of an adult click in dB nHL (Elberling et al. 2010: 5.88 ms at 60 dB), waves I
    # and III beside V for the model and the pickers, the interpeak intervals at the loudest level
    assert levels["v_norm_ms"].iloc[0] == pytest.approx(5.88, abs=0.01)
    assert (levels["v_norm_lo_ms"] < levels["v_norm_ms"]).all() and (levels["v_norm_ms"] < levels["v_norm_hi_ms"]).all()
    assert {"i_latency_ms", "iii_latency_ms", "picker_i_latency_ms", "picker_iii_latency_ms"} <= set(levels)
    assert {"top_level_i_v_interval_ms", "top_level_i_v_interval_z", "top_level_i_v_interval_outside_norm"} <= set(ears)
    assert "(norm 5." in out
    peSPL = [r for r in both.values() if r["level_unit"] == "dB peSPL"]
    assert all(v is None for r in peSPL for v in r["latency_intensity"]["v_norm_ms"])  # no click norm for tone bursts


def test_csv_predictions_keep_every_number(trained, tmp_path, inputs):  # noqa: F811
    import pandas as pd

    assert infer(trained.best, tmp_path, "--input_file", str(inputs / "test_batch.npz"), "--confidence",
                 "--seed", "1", "--steps", "3", "--output", "csv") == 0
    table = pd.read_csv(tmp_path / "predictions.csv")
    assert len(table) == 3
    assert {"hearing_loss_prob_NORMAL", "hearing_loss_set_CONDUCTIVE", "threshold_db_lo", "v_latency_ms_hi",
            "waveform_uv_0.00ms", "waveform_uv_9.95ms", "hearing_loss_name", "seed", "age_years"} <= set(table.columns)
    assert np.allclose(table.filter(like="hearing_loss_prob_").sum(axis=1), 1.0, atol=1e-6)


def test_class_flag_and_onnx_backend(trained, exported, tmp_path, inputs, capsys):  # noqa: F811
    assert infer(trained.best, tmp_path, "--generate", "2", "--class", "CONDUCTIVE", "--steps", "3", "--seed", "0") == 0
    assert (ABRRecords.load(tmp_path / "generated.npz").hearing_loss == 4).all()
    recs = str(inputs / "recordings.npz")
    assert infer(trained.best, tmp_path / "torch", "--input_file", recs, "--output", "npz") == 0
    assert infer(trained.best, tmp_path / "onnx", "--input_file", recs, "--output", "npz", "--backend", "onnx",
                 "--onnx_model", str(exported.folder / "model.onnx")) == 0
    with np.load(tmp_path / "torch" / "predictions.npz") as a, np.load(tmp_path / "onnx" / "predictions.npz") as b:
        np.testing.assert_allclose(b["v_present_prob"], a["v_present_prob"], atol=1e-4)
        np.testing.assert_allclose(b["threshold_db"], a["threshold_db"], atol=1e-2)
    capsys.readouterr()
    assert infer(trained.best, tmp_path, "--age", "1", "--backend", "onnx") == 2
    assert "analysis of recorded waveforms" in capsys.readouterr().err


def test_inference_script_runs_as_a_subprocess(trained, tmp_path):  # noqa: F811
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "inference.py"), "--checkpoint", str(trained.best), *SINGLE,
                           "--confidence", "--output_dir", str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "hearing loss:" in proc.stdout and (tmp_path / "prediction.json").is_file()


def test_export_command(exported):  # noqa: F811
    assert exported.exit_code == 0
    out = exported.stdout
    assert "max |ONNX − eager|" in out and "int8 graph:" in out and "latency p50" in out
    assert (exported.folder / "model.int8.onnx").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["--age", "150"], r"age \(age_years\) = 150"),
    (["--rate", "-3"], "stimulus_rate"),
    ([], "nothing to do"),
    (["--generate", "0"], "positive integer"),
    (["--age", "1", "--steps", "0"], "steps"),
    (["--hearing_loss", "SNIK", "--age", "1"], "use them with --generate"),
    (["--generate", "2", "--hearing_loss", "MILD"], "unknown hearing-loss class"),
    (["--input_file", "missing.npz"], "file not found"),
    (["--input_file", "BAD_CSV"], "unknown column 'loudness'"),
    (["--input_file", "BATCH", "--age", "3"], "cannot be combined"),
    (["--age", "1", "--confidence_level", "1.5"], "confidence_level"),
    (["--age", "1", "--device", "tpu9"], "unknown device"),
    (["--age", "1", "--batch_size", "0"], "batch_size"),
    (["--input_file", "RECS", "--seed", "1"], "recordings are analysed as measured"),
    (["--generate", "2", "--confidence"], "apply to predictions"),
    (["--generate", "2", "--output", "csv"], "apply to predictions"),
])
def test_bad_input_is_a_one_line_error_and_exit_2(trained, tmp_path, inputs, capsys, args, message):  # noqa: F811
    files = {"BAD_CSV": "bad.csv", "BATCH": "test_batch.npz", "RECS": "recordings.npz"}
    args = [str(inputs / files[a]) if a in files else a for a in args]
    assert infer(trained.best, tmp_path, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("abrflow: error:")
    assert __import__("re").search(message, err), err


@pytest.mark.parametrize("argv", [
    ["infer", "--age", "1"],                                               # no --checkpoint
    ["infer", "--checkpoint", "c.pt", "--colour", "red"],                  # unknown flag
    ["infer", "--checkpoint", "c.pt", "--age", "old"],                     # not a number
    ["infer", "--checkpoint", "c.pt", "--sampler", "euler"],               # not a sampler
    ["infer", "--checkpoint", "c.pt", "--generate", "2", "--series", "x"],  # two modes
    ["infer", "--checkpoint", "c.pt", "--output_format", "xml"],
    ["export", "--checkpoint", "c.pt"],                                    # no --output_dir
])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_missing_or_bad_checkpoint_exit_2(tmp_path, capsys):
    assert main(["infer", "--checkpoint", str(tmp_path / "none.pt"), "--age", "1", "--output_dir",
                 str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["export", "--checkpoint", str(bad), "--output_dir", str(tmp_path)]) == 2
    assert "corrupted" in capsys.readouterr().err
