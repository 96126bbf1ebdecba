"""report.html (abrflow.evaluation.render_html.format_html): one self-contained, printable page.

The results are built by hand in the shape ``evaluate_checkpoint`` returns (the metric groups from
the real metric functions on small arrays), one with every label present and one of a clinic's
export without classes, marks or thresholds; the figures are real PNGs written by matplotlib.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from html.parser import HTMLParser

import matplotlib
import numpy as np
import pytest

from abrflow.evaluation import metrics, stratify
from abrflow.evaluation.mark_agreement import bland_altman, presence_agreement
from abrflow.evaluation.render import format_report
from abrflow.evaluation.render_html import format_html
from abrflow.evaluation.threshold_agreement import threshold_agreement
from abrflow.io import write_json

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert('x')</script>"
NAMES = ["NORMAL", "SENSORINEURAL", "CONDUCTIVE"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(HTMLParser):
    """Tags counted, nesting checked (every element closed in order), text and images collected."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: Counter = Counter()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.decls: list[str] = []
        self.images: list[dict] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_decl(self, decl):
        self.decls.append(decl)

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        if tag == "img":
            self.images.append(dict(attrs))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)

    @property
    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def _png(path) -> str:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [0, 1, 0])
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def _interval(value, lo, hi, n_boot=20):
    return {"value": value, "lo": lo, "hi": hi, "n_boot": n_boot, "n_valid": n_boot, "alpha": 0.05}


def _run(checkpoint: str, **extra) -> dict:
    return {"checkpoint": checkpoint, "ensemble": None, "config_hash": "abc123", "package_version": "0.1.0",
            "data_source": "clinic/export", "split": "whole file",
            "counts": {"recordings": 60, "patients": 6, "ears": 12, "v_marked": 40},
            "threshold_source": "measured", "sampler": "dpm_solver", "steps": 20, "seed": 0,
            "bootstrap_resamples": 20, "confidence_level": 0.9, "device": "cpu", "notes": [], "seconds": 3.2,
            **extra}


def _labelled(tmp_path) -> dict:
    """Every group computed: the synthetic cohort's shape."""
    rng = np.random.default_rng(0)
    n = 60
    age = np.repeat([0.5, 2.0, 10.0, 40.0, 70.0, np.nan], 10)
    y = rng.integers(0, 3, n)
    probs = rng.dirichlet(np.ones(3), n)
    v_true = rng.random(n) < 0.7
    lat_true = np.where(v_true, rng.normal(6.5, 0.5, n), np.nan)
    peak_args = dict(v_present_prob=rng.random(n), v_present_true=v_true, lat_pred_ms=lat_true + rng.normal(0, .2, n),
                     lat_true_ms=lat_true, amp_pred_uv=rng.random(n), amp_true_uv=np.where(v_true, rng.random(n), np.nan))
    thr_true = rng.choice([0.0, 20.0, 40.0, 60.0, np.inf], n)
    thr_args = dict(pred_thr=thr_true + rng.normal(0, 5, n), true_thr=thr_true)
    class_args = dict(probs=probs, y_true=y, class_names=NAMES)
    patients = np.repeat([f"P{i}" for i in range(6)], 10)
    marks = rng.normal(6.5, 0.4, n)
    model_v, picker_v = marks + rng.normal(0.05, 0.2, n), marks + rng.normal(0, 0.1, n)
    ba = {"overall": bland_altman(model_v, marks, patients, n_boot=20),
          "breakdown": {"ear": {"L": bland_altman(model_v[:30], marks[:30], patients[:30], n_boot=20)},
                        "channel": {"reason": "these records carry no channel"}},
          "worst_rows": [{"row": 7, "patient_id": HOSTILE, "ear": "L", "level_db": 80.0, "file": "a.txt",
                          "method_ms": 7.1, "marked_ms": 6.0, "difference_ms": 1.1}]}
    called = rng.random(n) < 0.7
    raters = {f"{HOSTILE}|L|s1": [("Dr. Alvarez", 20.0), ("Dr. Brown", 25.0), ("Dr. Chen", 20.0)],
              "P2|R|s1": [("Dr. Alvarez", np.inf), ("Dr. Brown", 90.0)]}
    estimates = {"model": {f"{HOSTILE}|L|s1": 22.0, "P2|R|s1": np.inf},
                 "cross-covariance": {f"{HOSTILE}|L|s1": 30.0, "P2|R|s1": 80.0}}
    recon = {"what": "x̂0", "n": 16, **{f"t{t}": {"t_requested": t, "t_used": t - 5, "n": 16, "mae": 0.0117,
                                                "pearson_r": 0.97, "snr_db": 15.24, "envelope_correlation": 0.95}
                                       for t in (100, 300)}}
    wave_v = {"picker_v_present_rate_generated": 0.5, "picker_v_present_rate_real": 1.0, "v_latency_ms_generated": 8.2,
              "v_latency_ms_real_picked": 7.47, "v_latency_ms_real_marked": 6.73, "latency_mae_vs_marked_ms": 0.78,
              "latency_intensity_slope_ms_per_db_generated": -0.0308,
              "latency_intensity_slope_ms_per_db_real_marked": -0.018}
    return {
        "run": _run(str(tmp_path / "best_model.pt")),
        "labels": {"recordings": n, "classes": n, "v_marks": 40, "thresholds": n, "ears_with_threshold": 12,
                   "wave_marks": {"I": 10, "III": 0, "V": 40}},
        "headline": {
            "v_f1": {"model": _interval(0.934, 0.917, 0.942), "peak picker": _interval(0.889, 0.869, 0.9)},
            "macro_f1": {"model": _interval(0.44, float("nan"), float("nan"))},
            "ear_threshold_mae_db": {"model": _interval(6.43, 5.3, 7.1), "cross-covariance": _interval(8.2, 6.9, 9.6)},
        },
        "signal": {"unit": "uV", "reconstruction": recon},
        "peaks": {**metrics.peak_metrics(**peak_args),
                  "interval_coverage": {"v_latency_ms": {"n": 40, "coverage": 0.88}},
                  "by_age": stratify.by_age_stratum(age, metrics.peak_metrics, **peak_args)},
        "classification": {**metrics.classification_metrics(**class_args),
                           "by_age": stratify.by_age_stratum(age, metrics.classification_metrics, **class_args)},
        "clinical": {
            "per_recording_head": {**metrics.clinical_metrics(**thr_args, pred_class=y, true_class=y),
                                   "by_age": stratify.by_age_stratum(age, metrics.clinical_metrics, **thr_args)},
            "per_ear_series": {"method": "logistic fit", "n_ears": 12, "estimate_methods": {"logistic": 12},
                               "recorded": metrics.clinical_metrics(**thr_args),
                               "attainable": metrics.threshold_metrics(thr_args["pred_thr"], thr_args["true_thr"]),
                               "by_age": stratify.by_age_stratum(age, metrics.clinical_metrics, **thr_args)}},
        "baselines": {"note": "no training split to fit the hand-feature classifier on"},
        "generation": {"n_generated": 4, "sampler": "dpm_solver", "steps": 20, "conditioned_on": ["age_years"],
                       "discriminative": {"score": 0.156, "real_vs_real": {"score": 0.094}},
                       "frechet": {"encoder": "PCA(16)", "distance": 2.02, "real_vs_real": 1.33},
                       "diversity": {"unit": "uV RMS", "generated": 0.1871, "real": 0.2108, "ratio": 0.89},
                       "wave_v": wave_v, "by_class": {"NORMAL": {"n": 4, "wave_v": wave_v, "frechet_distance": 7.72,
                                                                 "frechet_distance_real_vs_real": 7.23}}},
        "mark_agreement": {
            "n_rows": n, "methods": ["model", "classical picker"], "n_boot": 20, "seed": 0,
            "breakdown": ["ear", "channel"], "unmarked_means_absent": True,
            "waves": {"I": {"n_marked": 10, "methods": {"model": {"reason": "model does not read wave I"},
                                                        "classical picker": ba}},
                      "III": {"reason": "no wave III marks in these files"},
                      "V": {"n_marked": n, "methods": {"model": ba, "classical picker": {
                          **ba, "overall": bland_altman(picker_v, marks, patients, n_boot=20)}},
                            "presence": {"model": presence_agreement(called, v_true, unmarked_means_absent=True),
                                         "classical picker": {"reason": "does not call wave V"}}}}},
        "threshold_agreement": {"source": "raters.csv", **threshold_agreement(estimates, raters)},
        "figures": {"confusion_matrix": _png(tmp_path / "confusion_matrix.png"),
                    "mark_bland_altman": _png(tmp_path / "mark_bland_altman.png"),
                    "something_new": _png(tmp_path / "something_new.png")},
        "files": {"metrics": str(tmp_path / "metrics.json"), "report": str(tmp_path / "report.txt")},
    }


def _unlabelled(tmp_path) -> dict:
    """A clinic's export with no classes, marks or thresholds, only its raters' thresholds (SmartEP P6)."""
    no_v, no_cls, no_thr = ("no wave V marks in these files", "no hearing-loss labels in these files",
                            "no thresholds in these files")
    raters = {"P6|R|x": [(f"expert {i}", 5.0) for i in range(1, 5)] + [("expert 5", 0.0)]}
    recon = {"n": 16, "t100": {"t_used": 95, "mae": 0.0117, "pearson_r": 0.973, "snr_db": 15.24,
                               "envelope_correlation": 0.948}}
    return {
        "run": _run(str(tmp_path / "best_model.pt"), threshold_source="synthetic_from_class",
                    notes=[f"data from {HOSTILE}"]),
        "labels": {"recordings": 118, "classes": 0, "v_marks": 0, "thresholds": 0, "ears_with_threshold": 0,
                   "wave_marks": {"I": 0, "III": 0, "V": 0}},
        "headline": {"v_f1": {"reason": no_v}, "macro_f1": {"reason": no_cls},
                     "ear_threshold_mae_db": {"reason": no_thr}},
        "signal": {"unit": "uV", "reconstruction": recon},
        "peaks": {"reason": no_v}, "classification": {"reason": no_cls},
        "clinical": {"per_recording_head": {"reason": no_thr},
                     "per_ear_series": {"method": "logistic fit", "n_ears": 1, "estimate_methods": {"logistic": 1},
                                        "reason": no_thr}},
        "baselines": {"hand_features": {"reason": no_cls}},
        "generation": {"reason": "no waveforms generated (generate_samples = 0)"},
        "mark_agreement": {"reason": "no wave marks (I, III or V) in these files"},
        "threshold_agreement": {"source": "thres_data_v2.mat",
                                **threshold_agreement({"model": {"P6|R|x": 9.3}}, raters)},
        "figures": {"reconstructions": _png(tmp_path / "reconstructions.png"),
                    "calibration": str(tmp_path / "gone" / "calibration.png")},
    }


@pytest.fixture(params=["labelled", "unlabelled"])
def result(request, tmp_path):
    return (_labelled if request.param == "labelled" else _unlabelled)(tmp_path)


def test_the_page_is_one_well_formed_html5_document(result):
    text = format_html(result)
    page = Page(text)
    assert text.startswith("<!DOCTYPE html>") and page.decls == ["DOCTYPE html"]
    assert page.errors == [] and page.stack == []
    assert (page.tags["html"], page.tags["head"], page.tags["body"], page.tags["title"]) == (1, 1, 1, 1)
    assert page.tags["style"] == 1 and page.tags["table"] >= 3
    assert '<meta charset="utf-8">' in text


def test_every_figure_is_embedded_as_a_png_data_uri(result):
    page = Page(format_html(result))
    present = [p for p in result["figures"].values() if not p.endswith("gone/calibration.png")]
    assert len(page.images) == len(present) >= 1
    for image in page.images:
        assert image["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(image["src"].split(",", 1)[1], validate=True).startswith(PNG_MAGIC)
        assert image["alt"]


def test_the_page_loads_nothing_from_outside(result):
    text = format_html(result)
    for needle in ("http://", "https://", 'src="/', "src='/", "<script", "<link", "@import", "url(", "//cdn"):
        assert needle not in text.lower()
    assert all(not img["src"].startswith(("http", "/", "file:")) for img in Page(text).images)


def test_print_rules_are_inline(result):
    text = format_html(result)
    assert "@media print" in text and "size: A4" in text
    assert "break-inside: avoid" in text and "break-before: page" in text


def test_a_missing_figure_file_is_a_line_not_a_crash(tmp_path):
    plain = Page(format_html(_unlabelled(tmp_path))).plain
    assert "is missing" in plain and "calibration.png could not be read" in plain


def test_groups_without_labels_show_their_reason(tmp_path):
    result = _unlabelled(tmp_path)
    plain, report = Page(format_html(result)).plain, format_report(result)
    for reason in ("no wave V marks in these files", "no hearing-loss labels in these files",
                   "no thresholds in these files", "no waveforms generated (generate_samples = 0)",
                   "no wave marks (I, III or V) in these files", "no labels to stratify",
                   "not computed, no hearing-loss labels in these files"):  # the last: a headline row
        assert reason in plain and reason in report
    assert "SYNTHESISED FROM THE CLASS LABEL" in plain and "not clinical truth" in plain
    assert "expert 5" in plain  # the raters' thresholds are shown though the files carry no labels


def test_the_labelled_page_shows_every_section_with_its_numbers(tmp_path):
    result = _labelled(tmp_path)
    page = Page(format_html(result))
    plain = page.plain
    # headline: the model and a baseline, values and intervals as report.txt writes them
    report = format_report(result)
    for number in ("0.934", "[0.917, 0.942]", "0.889", "6.4", "[5.3, 7.1]", "8.2"):
        assert number in plain and number in report
    assert "no interval" in plain  # a NaN interval
    # raters side by side with the methods, the leave-one-out row, units in the headers
    for text in ("Dr. Alvarez", "Dr. Brown", "Dr. Chen", "cross-covariance", "raters (each vs the others)",
                 "Threshold (dB)", "Bias (ms) [95% CI]", "MAE (dB)", "no response"):
        assert text in plain
    # marks: a method that does not read a wave, a wave nobody marked, a breakdown's reason, presence
    assert 'colspan="8" class="reason">model does not read wave I<' in format_html(result)  # spans the row
    for text in ("model does not read wave I", "no wave III marks in these files", "these records carry no channel",
                 "does not call wave V", "Sensitivity"):
        assert text in plain
    for heading in ("Headline", "Hearing-loss classes", "Thresholds", "Reconstruction", "Generation", "By age",
                    "Notes", "Other figures"):
        assert heading in plain
    assert "15.24" in plain and "0.156" in plain and "SENSORINEURAL" in plain and "18–60 y" in plain
    assert "no training split to fit the hand-feature classifier on" in plain


def test_sections_follow_the_order_of_the_brief(tmp_path):
    text = format_html(_labelled(tmp_path))
    ids = ["run", "headline", "marks", "experts", "classes", "thresholds", "reconstruction", "generation", "age",
           "notes", "figures"]
    positions = [text.index(f'<section id="{key}"') for key in ids]
    assert positions == sorted(positions)


def test_strings_from_the_data_are_escaped(result):
    text = format_html(result)
    page = Page(text)
    assert HOSTILE not in text and "&lt;script&gt;" in text
    assert page.tags["script"] == 0
    assert HOSTILE in page.plain  # shown as text


def test_the_same_page_from_metrics_json(result, tmp_path):
    """metrics.json writes NaN as null and inf as "inf": the page read back from it is the same page."""
    path = write_json(tmp_path / "metrics.json", result)
    assert format_html(json.loads(path.read_text(encoding="utf-8"))) == format_html(result)
