"""run_training_demo.py end to end: train → evaluate → single patient, batch, recorded waveforms,
threshold per ear → synthetic data."""

from __future__ import annotations

import json
import sys

from .conftest import REPO

sys.path.insert(0, str(REPO))
import run_training_demo  # noqa: E402


def test_demo_runs_every_stage(tmp_path):
    code = run_training_demo.run(["--config", str(REPO / "tests" / "data" / "tiny.yaml"), "--output_root",
                                  str(tmp_path), "--epochs", "1", "--generate_samples", "4", "--bootstrap", "10",
                                  "training.limit_train_batches=3", "data.synthetic.n_patients=300"])
    assert code == 0
    out = tmp_path / "outputs" / "demo"
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert {"signal", "peaks", "classification", "clinical", "baselines"} <= set(metrics)
    assert (out / "evaluation" / "report.txt").stat().st_size > 0
    assert any((out / "inference").iterdir()) and any((out / "synthetic_data").iterdir())
    assert (out / "batch" / "predictions.csv").read_text().count("\n") == 5  # header + 4 patients
    recorded = json.loads((out / "recorded" / "predictions.json").read_text())
    assert recorded and all(r["waveform"]["source"] == "measured" for r in recorded)
    ears = (out / "thresholds" / "thresholds.csv").read_text().splitlines()
    assert len(ears) >= 1 + 8  # 4 simulated patients × 2 ears (+ the real SmartEP ear when shared/ is there)


def test_demo_stops_at_the_first_failing_stage(tmp_path, capsys):
    assert run_training_demo.run(["--output_root", str(tmp_path), "training.epochz=1"]) == 2
    assert "did you mean training.epochs?" in capsys.readouterr().err
