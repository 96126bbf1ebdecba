"""The model-quality gate: a trained network must read held-out synthetic recordings about as well as
the classical methods, and the gate must fail a network that learned nothing.

The recipe, the margins and the values they were set from are in ``tests/data/quality_gate.json``
(see ``tests/quality_gate.py``). Training runs on one torch thread, so it is deterministic: the
same code trains the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from abrflow.config import load_config
from abrflow.data.records import ABRRecords
from abrflow.inference.predictor import ABRInference
from abrflow.training.trainer import ABRTrainer

from . import quality_gate as gate
from .conftest import REPO, torch_threads

pytestmark = pytest.mark.usefixtures("one_thread")

GATE = gate.load_gate()


@dataclass(frozen=True)
class GateRun:
    checkpoint: Path
    test: ABRRecords
    train: ABRRecords


@pytest.fixture(scope="module")
def gate_run(tmp_path_factory) -> GateRun:
    recipe = GATE["recipe"]
    root = tmp_path_factory.mktemp("quality_gate")
    cfg = load_config(REPO / recipe["config"], [*recipe["overrides"], f"project.output_root={root}"], environ={})
    assert cfg.project.seed == recipe["seed"]
    trainer = ABRTrainer(cfg, experiment="quality_gate")
    with torch_threads(1):
        result = trainer.train()
    assert result["global_step"] == recipe["steps"]
    dm = trainer.datamodule
    return GateRun(Path(result["best_model"]), dm.split_records("test"), dm.split_records("train"))


def _measured(run: GateRun, change=None) -> dict[str, float]:
    model = ABRInference(run.checkpoint, device="cpu")
    if change is not None:
        change(model)
    return gate.measure(model, run.test, run.train)


@pytest.fixture(scope="module")
def trained_measured(gate_run) -> dict[str, float]:
    return _measured(gate_run)


def test_the_trained_network_passes_the_gate(trained_measured):
    assert gate.failures(trained_measured, GATE) == []


def test_the_model_beats_the_picker_at_finding_wave_v_and_the_majority_row_at_classes(trained_measured):
    """Not only within the margins: where the trained model is better than a baseline, it says so."""
    m = trained_measured
    assert m["v_f1_model"] > m["v_f1_picker"]
    for w in ("v", "i", "iii"):  # issue 19: the model places every wave closer to the mark than the picker
        assert m[f"{w}_latency_mae_ms_model"] < m[f"{w}_latency_mae_ms_picker"]
    assert m["macro_f1_model"] > 2 * m["macro_f1_majority"]
    assert m["ear_within_10db_model"] > m["ear_within_10db_floor"]


# Checks a network without trained weights must fail (the per-ear MAE over "both finite" ears is
# not among them: a network that calls many ears deaf is scored on the few left; the share within
# ±10 dB, which counts those ears, is).
MUST_FAIL = ("wave V presence F1", "wave V latency MAE", "wave I latency MAE", "wave III latency MAE",
             "per-ear share within ±10 dB", "macro-F1", "reconstruction r", "generation discriminative score")


@pytest.mark.parametrize("change", [gate.shuffled, gate.untrained], ids=["shuffled weights", "untrained"])
def test_the_gate_fails_a_network_that_learned_nothing(gate_run, change):
    failed = gate.failures(_measured(gate_run, change), GATE)
    for check in MUST_FAIL:
        assert any(f.startswith(check) for f in failed), (check, failed)


def test_every_check_has_its_margin_or_bound_in_the_json():
    for _, _, baseline, _, limit in gate.CHECKS:
        assert limit in (GATE["bounds"] if baseline is None else GATE["margins"])
    measured = GATE["measured_2026_12_07_issue19"]["trained"]
    assert gate.failures({k: float(v) for k, v in measured.items()}, GATE) == []  # the values the margins came from
