"""Agreement of a method's latencies with the clinician's marks (issue 18, item 2): Bland–Altman numbers
on hand-made arrays, the patient bootstrap, presence against scikit-learn, reasons, breakdowns, the
rows that disagree most, report lines and figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, recall_score

from abrflow.evaluation.figures import is_png
from abrflow.evaluation.figures_agreement import bland_altman_marks, worst_traces
from abrflow.evaluation.mark_agreement import (
    NOT_ABSENT,
    bland_altman,
    format_mark_agreement,
    mark_agreement,
    presence_agreement,
    wave_marks,
    worst_rows,
)
from abrflow.evaluation.stratify import bootstrap_ci

from .conftest import make_records

# Both finite on rows 0–3: differences +0.1, −0.2, +0.3, 0.0; row 4 marked but not read; row 5 read, not marked.
METHOD = np.array([1.1, 2.0, 3.3, 4.0, np.nan, 6.0])
MARKED = np.array([1.0, 2.2, 3.0, 4.0, 5.0, np.nan])
PATIENTS = np.array(["a", "a", "b", "b", "c", "c"])


def test_bland_altman_exact_numbers_on_hand_made_rows():
    ba = bland_altman(METHOD, MARKED, PATIENTS, n_boot=50)
    sd = math.sqrt((0.05 ** 2 + 0.25 ** 2 + 0.25 ** 2 + 0.05 ** 2) / 3)
    assert (ba["n"], ba["n_marked"], ba["n_unread"], ba["n_patients"]) == (4, 5, 1, 2)
    assert ba["bias_ms"]["value"] == pytest.approx(0.05)
    assert ba["sd_ms"] == pytest.approx(sd)
    assert ba["loa_lower_ms"]["value"] == pytest.approx(0.05 - 1.96 * sd)
    assert ba["loa_upper_ms"]["value"] == pytest.approx(0.05 + 1.96 * sd)
    assert ba["mae_ms"] == pytest.approx(0.15)
    assert ba["median_diff_ms"] == pytest.approx(0.05)
    # |d| = 0.1, 0.2, 0.3, 0.0: a difference of exactly the tolerance counts as within it.
    assert (ba["within_0_1ms"], ba["within_0_2ms"], ba["within_0_5ms"]) == (0.5, 0.75, 1.0)
    assert "reason" not in ba


@pytest.mark.parametrize("n_read", [0, 1])
def test_fewer_than_two_rows_is_all_nan_with_a_reason(n_read):
    method = np.full(6, np.nan)
    method[:n_read] = 1.0
    ba = bland_altman(method, MARKED, PATIENTS)
    assert ba["n"] == n_read and ba["n_marked"] == 5
    assert "at least 2" in ba["reason"]
    numbers = [ba["sd_ms"], ba["mae_ms"], ba["median_diff_ms"], ba["within_0_2ms"],
               *(ba[k][f] for k in ("bias_ms", "loa_lower_ms", "loa_upper_ms") for f in ("value", "lo", "hi"))]
    assert all(math.isnan(v) for v in numbers)


def _cohort(n_patients: int = 20, seed: int = 1):
    rng = np.random.default_rng(seed)
    patients = np.repeat([f"P{i}" for i in range(n_patients)], rng.integers(1, 5, n_patients))
    marked = rng.uniform(5, 8, len(patients))
    method = marked + 0.1 + rng.normal(0, 0.2, len(patients)) + rng.normal(0, 0.1, n_patients)[
        np.unique(patients, return_inverse=True)[1]]
    return method, marked, patients


def test_patient_bootstrap_matches_stratify_and_is_reproducible():
    method, marked, patients = _cohort()
    ba = bland_altman(method, marked, patients, n_boot=300, seed=7)
    diff = method - marked
    stats = {"bias_ms": lambda d: d.mean(),
             "loa_lower_ms": lambda d: d.mean() - 1.96 * d.std(ddof=1),
             "loa_upper_ms": lambda d: d.mean() + 1.96 * d.std(ddof=1)}
    for key, fn in stats.items():
        ref = bootstrap_ci(fn, patients, n_boot=300, seed=7, d=diff)  # the house's patient resampling
        assert ba[key]["value"] == pytest.approx(ref["value"])
        assert [ba[key]["lo"], ba[key]["hi"]] == pytest.approx([ref["lo"], ref["hi"]], abs=1e-9)
        assert ba[key]["lo"] < ba[key]["value"] < ba[key]["hi"]
    assert ba["n_valid"] == 300
    assert bland_altman(method, marked, patients, n_boot=300, seed=7) == ba
    assert bland_altman(method, marked, patients, n_boot=300, seed=8)["bias_ms"] != ba["bias_ms"]


def test_one_patient_has_no_bootstrap_interval():
    ba = bland_altman(np.array([1.0, 1.2, 0.9]), np.array([1.1, 1.0, 1.0]), np.array(["a"] * 3))
    assert ba["n"] == 3 and not math.isnan(ba["bias_ms"]["value"])
    assert math.isnan(ba["bias_ms"]["lo"]) and math.isnan(ba["loa_upper_ms"]["hi"])


def test_presence_against_sklearn_and_undefined_values():
    rng = np.random.default_rng(3)
    marked = rng.random(80) < 0.6
    called = np.where(rng.random(80) < 0.8, marked, ~marked)
    p = presence_agreement(called, marked, unmarked_means_absent=True)
    assert p["kappa"] == pytest.approx(cohen_kappa_score(marked, called))
    assert p["f1"] == pytest.approx(f1_score(marked, called))
    assert p["sensitivity"] == pytest.approx(recall_score(marked, called))
    assert p["specificity"] == pytest.approx(recall_score(~marked, ~called))
    assert p["tp"] + p["fp"] + p["fn"] + p["tn"] == p["n"] == 80
    assert presence_agreement(called, marked) == {"reason": NOT_ABSENT}
    none = presence_agreement(np.zeros(4, bool), np.zeros(4, bool), unmarked_means_absent=True)
    assert all(math.isnan(none[k]) for k in ("kappa", "f1", "sensitivity")) and none["specificity"] == 1.0


def _records(channel: bool = True):
    rec = make_records(n_patients=6, per_patient=4, seed=2)
    n = len(rec)
    rec.wave_latency_ms[::3, 0] = np.linspace(1.4, 1.8, len(range(0, n, 3)))  # wave I marked on a third
    rec.extra["source_file"] = np.where(np.arange(n) < n // 2, "a.xml", "b.xml")
    if channel:
        rec.extra["channel"] = np.where(np.arange(n) % 4 < 2, 1, 2)
    return rec


def _methods(rec):
    v = wave_marks(rec, "V")
    rng = np.random.default_rng(0)
    return {"model": {"I": wave_marks(rec, "I") + 0.05, "V": v + rng.normal(0.1, 0.1, len(rec)),
                      "V_present": np.isfinite(v) | (np.arange(len(rec)) == 1)},
            "classical picker": {"V": np.where(np.arange(len(rec)) % 4 == 0, np.nan, v - 0.2)}}


def test_mark_agreement_reasons_breakdowns_and_presence():
    rec = _records()
    result = mark_agreement(rec, _methods(rec), n_boot=100, unmarked_means_absent=True)
    waves = result["waves"]
    assert waves["III"] == {"reason": "no wave III marks in these files"}
    assert waves["I"]["methods"]["classical picker"] == {"reason": "classical picker does not read wave I"}
    model_i = waves["I"]["methods"]["model"]["overall"]
    assert model_i["n"] == waves["I"]["n_marked"] == 8 and model_i["bias_ms"]["value"] == pytest.approx(0.05)
    v = waves["V"]["methods"]["model"]
    assert v["overall"]["n"] == waves["V"]["n_marked"] == int(rec.v_present.sum())
    assert set(v["breakdown"]) == {"ear", "level", "age", "file", "channel"}
    assert sum(g["n"] for g in v["breakdown"]["age"].values()) == v["overall"]["n"]
    assert set(v["breakdown"]["file"]) == {"a.xml", "b.xml"}
    assert set(v["breakdown"]["channel"]) == {"1", "2"}
    marked = np.isfinite(wave_marks(rec, "V"))
    assert list(v["breakdown"]["level"]) == [f"{x:g} dB" for x in np.unique(rec.intensity_db[marked])]
    assert sum(g["n"] for g in v["breakdown"]["ear"].values()) == v["overall"]["n"]
    picker = waves["V"]["methods"]["classical picker"]["overall"]
    assert picker["n_unread"] > 0 and picker["bias_ms"]["value"] == pytest.approx(-0.2)
    presence = waves["V"]["presence"]
    assert presence["model"]["fp"] == 1 and presence["model"]["fn"] == 0
    assert presence["classical picker"] == {"reason": "classical picker does not call wave V present or absent"}
    assert len(v["worst_rows"]) == 6
    # I–V where both are marked: the model reads I at mark + 0.05 and V at mark + N(0.1, 0.1)
    i_v = result["intervals"]["I-V"]
    both = np.isfinite(wave_marks(rec, "I")) & np.isfinite(wave_marks(rec, "V"))
    assert i_v["n_marked"] == int(both.sum()) and i_v["methods"]["model"]["overall"]["n"] == int(both.sum())
    assert i_v["methods"]["classical picker"] == {"reason": "classical picker does not read the I-V interval"}
    assert result["intervals"]["I-III"] == {"reason": "no trace has both waves I and III marked"}
    assert waves["I"]["presence"]["model"] == {"reason": "model does not call wave I present or absent"}


def test_defaults_do_not_score_presence_and_say_what_is_missing():
    rec = _records(channel=False)
    del rec.extra["source_file"]
    result = mark_agreement(rec, _methods(rec), breakdown=("file", "channel"), n_boot=20)
    v = result["waves"]["V"]
    assert v["presence"] == {"reason": NOT_ABSENT}
    assert v["methods"]["model"]["breakdown"]["channel"] == {"reason": "these records carry no channel"}
    assert list(v["methods"]["model"]["breakdown"]["file"]) == [rec.source]
    with pytest.raises(ValueError, match="unknown reading 'v'"):
        mark_agreement(rec, {"model": {"v": np.zeros(len(rec))}})
    with pytest.raises(ValueError, match="one per row"):
        mark_agreement(rec, {"model": {"V": np.zeros(3)}})


def test_worst_rows_largest_absolute_difference_first():
    rec = make_records(n_patients=2, per_patient=3)
    marked = np.array([5.0, 5.0, np.nan, 5.0, 5.0, 5.0])
    method = np.array([5.25, 4.25, 9.0, np.nan, 6.0, 4.75])  # +0.25, −0.75, (unmarked), (unread), +1.0, −0.25
    rows = worst_rows(rec, method, marked, k=3)
    assert [r["row"] for r in rows] == [4, 1, 0]  # an exact tie at |0.25| keeps the lower row
    assert [r["difference_ms"] for r in rows] == [1.0, -0.75, 0.25]
    assert rows[0]["patient_id"] == rec.patient_id[4] and rows[0]["ear"] == rec.ear[4]
    assert rows[0]["level_db"] == float(rec.intensity_db[4])
    assert rows[0]["method_ms"] == 6.0 and rows[0]["marked_ms"] == 5.0
    assert len(worst_rows(rec, method, marked, k=10)) == 4


def test_format_lists_every_wave_method_and_breakdown():
    rec = _records()
    lines = format_mark_agreement(mark_agreement(rec, _methods(rec), n_boot=50, unmarked_means_absent=True))
    text = "\n".join(lines)
    assert "wave III: no wave III marks in these files" in text
    assert "classical picker  classical picker does not read wave I" in text
    assert "by ear" in text and "by level" in text and "by file" in text and "by channel" in text
    assert "largest differences" in text and "κ" in text
    assert "nan" not in text.lower()
    row = next(line for line in lines if line.startswith("  model ") and "[" in line)
    assert row.count("[") == 3 and row.rstrip().endswith("%")


def test_figures_are_png(tmp_path):
    method, marked, _ = _cohort()
    panels = {"model — wave V": (method, marked), "picker — wave I": (np.full(3, np.nan), np.ones(3))}
    assert is_png(bland_altman_marks(panels, tmp_path / "ba.png"))
    assert is_png(bland_altman_marks({}, tmp_path / "empty.png"))
    t = np.linspace(0, 10, 200)
    signals = np.sin(t)[None, :] * np.array([[1.0], [0.5]])
    marks = [{"model": 5.9, "clinician": 5.6}, {"model": np.nan, "clinician": 6.1}]
    path = worst_traces(t, signals, marks, ["row 4 P001 L 60 dB", "row 1"], tmp_path / "worst.png")
    assert is_png(path)
    with pytest.raises(ValueError, match="one of each"):
        worst_traces(t, signals, marks[:1], ["a", "b"], tmp_path / "bad.png")
