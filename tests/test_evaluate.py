"""evaluate: a short-trained checkpoint end to end — metrics.json groups, report.txt, figures, --data, errors.

One evaluation (module-scoped) on a 300-patient cohort with 16 generated waveforms (DDIM, 10 steps)
and 50 bootstrap resamples serves most tests; the checkpoint is the session's shared tiny one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from abrflow.cli import main
from abrflow.evaluation.figures import is_png
from abrflow.evaluation.generation import discriminative_score, frechet_distance, mean_pairwise_distance
from abrflow.evaluation.report import default_output_dir
from abrflow.evaluation.scoring import HEADLINE

from .fixtures_checkpoint import trained  # noqa: F401  (session-scoped fixture)

SMALL_DATA = "data.synthetic.n_patients=300"
GROUPS = ("signal", "peaks", "classification", "clinical", "baselines", "generation")
FIGURES = ("confusion_matrix", "latency_scatter", "threshold_bland_altman", "reconstructions",
           "generated_vs_real", "calibration", "mark_bland_altman", "worst_marks", "example_marks", "latency_intensity")


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("evaluation")
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["evaluate", "--checkpoint", str(trained.best), "--output_dir", str(out),
                     "--generate_samples", "16", "--bootstrap", "50", "--sampler", "ddim", "--steps", "10",
                     "--seed", "3", "--reconstruction_samples", "96", SMALL_DATA])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return out, metrics, stdout.getvalue()


def _leaves(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, node


def test_every_group_present_and_numeric(evaluated):
    _, m, _ = evaluated
    for group in (*GROUPS, "run", "headline", "figures"):
        assert group in m, group
    for group in GROUPS:
        assert isinstance(m[group], dict) and m[group], group
        assert "reason" not in m[group], f"{group} skipped: {m[group].get('reason')}"
    for path, value in _leaves({g: m[g] for g in GROUPS}):
        # strict JSON: numbers, null (= NaN, undefined on these data), "inf"/"-inf", names and notes
        assert value is None or isinstance(value, (int, float, str, bool)), path
        if isinstance(value, float):
            assert math.isfinite(value), path
    for key in HEADLINE:
        for method, entry in m["headline"][key].items():
            assert isinstance(entry["value"], float) and math.isfinite(entry["value"]), (key, method)
            # Every metric is defined on all 50 patient resamples of this cohort (stratify.bootstrap_ci
            # skips undefined ones and counts the rest), and the interval holds the point estimate.
            assert entry["n_boot"] == 50 and entry["n_valid"] == 50, (key, method, entry)
            assert entry["lo"] <= entry["value"] <= entry["hi"], (key, method, entry)


def test_run_info_and_counts(evaluated, trained):  # noqa: F811
    _, m, _ = evaluated
    run = m["run"]
    assert run["checkpoint"] == str(trained.best.resolve())
    assert len(run["config_hash"]) == 12 and run["split"] == "test"
    assert run["sampler"] == "ddim" and run["steps"] == 10 and run["bootstrap_resamples"] == 50
    assert run["threshold_source"] == "simulated" and run["threshold_truth"]["clinical_truth"] is False
    assert run["counts"]["recordings"] == m["peaks"]["n"] == m["classification"]["n"]
    assert sum(run["counts"]["classes"].values()) == run["counts"]["recordings"]
    assert any("differs from the checkpoint" in note for note in run["notes"])  # 300 ≠ 600 patients


def test_every_group_by_age_with_counts(evaluated):
    _, m, _ = evaluated
    n = m["run"]["counts"]["recordings"]
    for block in (m["peaks"], m["classification"], m["clinical"]["per_recording_head"]):
        assert sum(s["n"] for s in block["by_age"].values()) == n
    ears = m["clinical"]["per_ear_series"]
    assert sum(s["n"] for s in ears["by_age"].values()) == ears["n_ears"] == m["run"]["counts"]["ears"]
    assert sum(s["n"] for s in m["generation"]["by_age"].values()) == 16
    base = m["baselines"]["by_age"]
    assert sum(s["n"] for s in base["peak_picker"].values()) == n
    assert sum(s["n"] for s in base["ear_threshold cross-covariance"].values()) == ears["n_ears"]
    assert sum(s["n"] for s in m["baselines"]["hand_features"]["by_age"].values()) == n
    for key, block in m["signal"]["reconstruction"].items():
        if key.startswith("t"):
            assert sum(s["n"] for s in block["by_age"].values()) == m["signal"]["reconstruction"]["n"]


def test_calibrated_intervals_are_scored(evaluated):
    _, m, _ = evaluated
    assert m["run"]["calibrated"] is True  # the shared checkpoint is calibrated on its validation split
    level = m["run"]["confidence_level"]
    assert level == 0.9
    coverage = m["peaks"]["interval_coverage"]
    for name, n_min in (("v_latency_ms", 500), ("v_amplitude_uv", 500), ("threshold_db", 500),
                        ("hearing_loss_set", 500), ("iii_latency_ms", 150), ("i_v_interval_ms", 100)):
        # 800–1,100 scored test recordings each (wave III ≈ 400, I–V ≈ 250): the calibrated intervals cover
        # about the nominal 90% (as in test_inference's coverage test; 0.88–0.935 measured), so a model or
        # calibration gone wrong, or lo/hi compared against the wrong truth, fails here.
        assert coverage[name]["n"] >= n_min and level - 0.05 <= coverage[name]["coverage"] <= level + 0.05, (
            name, coverage[name])
    assert 1.0 <= coverage["hearing_loss_set"]["mean_set_size"] < 5.0  # a set of every class says nothing


def test_headline_matches_metric_groups(evaluated):
    _, m, _ = evaluated
    h = m["headline"]
    assert h["macro_f1"]["model"]["value"] == pytest.approx(m["classification"]["macro_f1"])
    assert h["balanced_accuracy"]["model"]["value"] == pytest.approx(m["classification"]["balanced_accuracy"])
    assert h["v_f1"]["model"]["value"] == pytest.approx(m["peaks"]["presence_f1"])
    assert h["v_latency_mae_ms"]["model"]["value"] == pytest.approx(m["peaks"]["latency_mae_ms"])
    ear = m["clinical"]["per_ear_series"]["recorded"]
    assert h["ear_threshold_mae_db"]["model"]["value"] == pytest.approx(ear["thresholds"]["mae_db"])
    assert h["ear_threshold_within_10db"]["model"]["value"] == pytest.approx(
        ear["thresholds"]["agreement_within_10db"])
    assert h["normal_vs_loss_kappa"]["model"]["value"] == pytest.approx(
        m["clinical"]["per_recording_head"]["diagnosis_by_class"]["kappa"])
    # The same baselines, scored by run_baselines and by the headline, agree.
    base = m["baselines"]
    assert h["macro_f1"]["hand features (gradient boosting)"]["value"] == pytest.approx(
        base["hand_features"]["classification"]["macro_f1"])
    assert h["v_f1"]["peak picker"]["value"] == pytest.approx(base["peak_picker"]["wave_v"]["presence_f1"])


def test_majority_baseline_is_the_floor(evaluated):
    _, m, _ = evaluated
    majority = m["headline"]["macro_f1"]["majority (training priors)"]["value"]
    assert 0.17 <= majority <= 0.2  # F1 of NORMAL (≈0.89) / 5 classes
    assert m["headline"]["balanced_accuracy"]["majority (training priors)"]["value"] == pytest.approx(0.2)
    assert m["headline"]["normal_vs_loss_kappa"]["majority (training priors)"]["value"] == pytest.approx(0.0)


def test_generation_records_sampler_and_scores(evaluated):
    _, m, _ = evaluated
    g = m["generation"]
    assert g["n_generated"] == 16 and g["sampler"] == "ddim" and g["steps"] == 10
    assert set(g["conditioned_on"]) >= {"age_years", "intensity_db", "hearing_loss"}
    disc = g["discriminative"]
    assert disc["n_pairs"] == 16 and disc["score"] == pytest.approx(abs(disc["accuracy"] - 0.5))
    assert disc["real_vs_real"]["n_pairs"] == 16 and math.isfinite(disc["real_vs_real"]["score"])
    # Held-out accuracy of telling generated from real twins ≤ 0.875 (14 of 16 pairs): the trained model's
    # waveforms are not trivially separable. Measured 0–0.125 over seeds on the simulator of waves I, III, V
    # alone; 0.31 on the one with waves I–VI and the IV–V complex (issue 19), whose waveforms the short-trained
    # fixture reproduces less well (issue 22 is about generation); 0.41–0.5 with the same weights shuffled.
    assert disc["score"] <= 0.375, disc
    assert g["frechet"]["distance"] >= 0 and g["frechet"]["encoder"].startswith("PCA(")
    assert g["diversity"]["generated"] > 0 and g["diversity"]["real"] > 0
    assert sum(g["class_counts"].values()) == 16 and len(g["class_counts"]) == 5  # balanced over 5 classes
    assert "reconstruction" in m["signal"] and m["signal"]["generation"]["n"] == 16
    used = [m["signal"]["reconstruction"][f"t{t}"]["t_used"] for t in (100, 300, 500)]
    assert used == sorted(used) and all(u <= t for u, t in zip(used, (100, 300, 500)))


def test_figures_are_png(evaluated):
    out, m, _ = evaluated
    assert set(m["figures"]) == set(FIGURES)
    for name in FIGURES:
        path = Path(m["figures"][name])
        assert path.parent == out and path.stat().st_size > 1000 and is_png(path), name


def test_report_text_has_model_and_baseline_rows(evaluated):
    out, m, stdout = evaluated
    text = (out / "report.txt").read_text(encoding="utf-8")
    assert text in stdout  # the CLI prints the report
    for label, *_ in HEADLINE.values():
        assert label in text
    for row in ("  model ", "  peak picker", "  hand features (gradient boosting)", "  majority (training priors)",
                "  cross-covariance", "  protocol floor"):
        assert row in text, row
    assert "simulated" in text and "GENERATION (16 waveforms, ddim 10 steps" in text
    assert "95% patient-bootstrap interval, 50 resamples" in text


def test_data_file_evaluated_whole_and_legacy_thresholds_flagged(trained, tmp_path):  # noqa: F811
    patients = np.unique(trained.test.patient_id)[:8]
    subset = trained.test.select(np.isin(trained.test.patient_id, patients))
    # As the legacy pickle reader marks its thresholds: synthesised from the class label.
    path = subset.replace(threshold_source="synthetic_from_class").save(tmp_path / "subset.npz")
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(trained.best), "--data", str(path), "--output_dir", str(out),
                 "--bootstrap", "10", "--sampler", "ddim", "--steps", "5", "--reconstruction_samples", "32",
                 SMALL_DATA]) == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["run"]["split"] == "whole file" and m["run"]["counts"]["recordings"] == len(subset)
    assert m["run"]["counts"]["patients"] == 8
    assert m["run"]["threshold_truth"] == {"source": "synthetic_from_class", "clinical_truth": False,
                                           "description": m["run"]["threshold_truth"]["description"]}
    assert "SYNTHESISED FROM THE CLASS LABEL" in m["run"]["threshold_truth"]["description"]
    text = (out / "report.txt").read_text(encoding="utf-8")
    assert "synthesised from the class label" in text and "not clinical truth" in text
    assert m["generation"]["reason"].startswith("no waveforms generated")
    assert "generated_vs_real" not in m["figures"] and all(is_png(p) for p in m["figures"].values())


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "missing.pt"], "checkpoint not found"),
    (["--generate_samples", "-1"], "generate_samples must be an integer ≥ 0"),
    (["--steps", "5000"], "steps = 5000"),
    (["training.epochs=3"], "only data.* overrides"),
])
def test_bad_input_exit_2_one_line(trained, tmp_path, capsys, argv, message):  # noqa: F811
    base = [] if "--checkpoint" in argv else ["--checkpoint", str(trained.best)]
    assert main(["evaluate", *base, *argv, "--output_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("abrflow: error:") and message in err and err.count("\n") == 1


def test_bad_split_exit_2(trained, tmp_path, capsys):  # noqa: F811
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--checkpoint", str(trained.best), "--split", "train", "--output_dir", str(tmp_path)])
    assert exc.value.code == 2 and "invalid choice: 'train'" in capsys.readouterr().err


def test_data_and_split_together_is_an_error(trained, tmp_path, capsys):  # noqa: F811
    assert main(["evaluate", "--checkpoint", str(trained.best), "--data", "x.npz", "--split", "val",
                 "--output_dir", str(tmp_path)]) == 2
    assert "evaluated whole" in capsys.readouterr().err


def test_default_output_dir_follows_training_layout(tmp_path):
    ckpt = tmp_path / "checkpoints" / "exp1" / "best_model.pt"
    assert default_output_dir(ckpt) == tmp_path / "outputs" / "exp1" / "evaluation"
    assert default_output_dir(tmp_path / "model.pt") == Path("outputs") / "model" / "evaluation"


def test_generation_statistics_behave():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))
    assert frechet_distance(a, b) < 0.2 and frechet_distance(a, b + 1) == pytest.approx(4, abs=0.5)
    real, same, louder = rng.normal(size=(3, 200, 200))
    assert discriminative_score(real, same, 20000.0)["score"] < 0.1
    assert discriminative_score(real, 3 * louder, 20000.0)["score"] > 0.4
    assert mean_pairwise_distance(np.ones((5, 10))) == 0.0


def test_agreement_sections_on_the_synthetic_split(evaluated):
    """Marks: wave V read by the model and the picker beside the simulator's clinician marks, presence
    scored (an unmarked simulated trace is an absent wave); no experts' thresholds: said, not empty."""
    _, m, report = evaluated
    v = m["mark_agreement"]["waves"]["V"]
    assert v["methods"]["model"]["overall"]["n"] == m["labels"]["v_marks"] > 0
    assert 0 < v["presence"]["model"]["sensitivity"] <= 1
    assert m["threshold_agreement"]["reason"].startswith("no expert thresholds")
    assert "AGREEMENT WITH THE CLINICIAN'S MARKS" in report
    # issue 19: waves I and III and the interpeak intervals, model and picker beside the marks, by age
    for wave in ("I", "III"):
        entry = m["mark_agreement"]["waves"][wave]
        assert entry["n_marked"] == m["labels"]["wave_marks"][wave] > 0
        for method in ("model", "classical picker"):
            overall = entry["methods"][method]["overall"]
            assert overall["n"] > 0 and overall["mae_ms"] >= 0 and 0 <= overall["within_0_2ms"] <= 1
            assert sum(g["n"] for g in entry["methods"][method]["breakdown"]["age"].values()) == overall["n"]
            assert 0 <= entry["presence"][method]["f1"] <= 1
    for name in ("I-III", "III-V", "I-V"):
        assert m["mark_agreement"]["intervals"][name]["methods"]["model"]["overall"]["n"] > 0
        assert f"interval {name}:" in report
    h = m["headline"]
    for key in ("i_f1", "i_latency_mae_ms", "iii_f1", "iii_latency_mae_ms"):
        assert set(h[key]) == {"model", "peak picker"} and all(0 <= e["value"] < 10 for e in h[key].values())
    assert h["iii_latency_mae_ms"]["model"]["value"] == pytest.approx(
        m["mark_agreement"]["waves"]["III"]["methods"]["model"]["overall"]["mae_ms"])
