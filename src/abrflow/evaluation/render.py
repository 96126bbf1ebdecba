"""report.txt: an evaluation's metrics as a clinician and an ML engineer read them.

Run information, the headline table (model beside the baselines with 95 % patient-bootstrap
intervals), then classes, thresholds, reconstruction, generation and the age strata.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from ..text import number
from .data import THRESHOLD_TRUTH
from .mark_agreement import format_mark_agreement
from .scoring import HEADLINE
from .threshold_agreement import format_threshold_agreement

NAN = float("nan")


def _num(v, digits: int = 3) -> str:
    return number(v, f".{digits}f")


def _ci_text(entry: Mapping, digits: int) -> str:
    lo, hi = entry.get("lo"), entry.get("hi")
    if lo is None or (isinstance(lo, float) and math.isnan(lo)):
        return ""
    return f"[{_num(lo, digits)}, {_num(hi, digits)}]"


def format_report(result: Mapping) -> str:
    """report.txt: run, headline table (model vs baselines with intervals), then the detail a clinician
    and an ML engineer look at next."""
    run = result["run"]
    lines = [f"abrflow evaluation (abrflow {run['package_version']})",
             f"checkpoint:  {run['checkpoint']}  (config {run['config_hash']})",
             f"data:        {run['data_source']} — {run['split']}: {run['counts']['recordings']:,} recordings, "
             f"{run['counts']['patients']:,} patients, {run['counts']['ears']:,} ears",
             f"thresholds:  {THRESHOLD_TRUTH.get(run['threshold_source'], run['threshold_source'])}",
             f"sampler:     {run['sampler']}, {run['steps']} steps (reconstruction and generation)",
             f"time:        {run['seconds']:.0f} s on {run['device']}"]
    if run["threshold_source"] == "synthetic_from_class":
        lines.append("NOTE:        thresholds in these data were synthesised from the class label (legacy data set); "
                     "they are not clinical truth.")
    for note in run["notes"]:
        lines.append(f"NOTE:        {note}")
    labels = result.get("labels")
    if labels:
        marks = ", ".join(f"{w} {n}" for w, n in labels["wave_marks"].items())
        lines.append(f"labels:      classes on {labels['classes']:,} recordings; wave marks {marks}; thresholds on "
                     f"{labels['ears_with_threshold']:,} ears")
    boot = result["headline"]
    n_boot = next((e["n_boot"] for methods in boot.values() if "reason" not in methods for e in methods.values()),
                  run["bootstrap_resamples"])
    lines += ["", f"HEADLINE — model vs baselines (95% patient-bootstrap interval, {n_boot} resamples)",
              f"{'':44s}{'value':>9s}  95% interval"]
    for key, methods in boot.items():
        label, _, digits = HEADLINE[key]
        if "reason" in methods:
            lines.append(f"{label}: not computed, {methods['reason']}")
            continue
        lines.append(label)
        for method, entry in methods.items():
            lines.append(f"  {method:42s}{_num(entry['value'], digits):>9s}  {_ci_text(entry, digits)}")
    lines.append("(patients are resampled; a resample without a rare class drops it from the macro averages, so "
                 "their intervals lean upward)")
    lines += _detail_lines(result)
    return "\n".join(lines) + "\n"


def _detail_lines(result: Mapping) -> list[str]:
    lines = _class_lines(result["classification"]) + _threshold_lines(result)
    sig = result["signal"]["reconstruction"]
    lines += ["", f"RECONSTRUCTION x̂0 from noised recordings ({sig['n']} recordings, unit {result['signal']['unit']})",
              f"{'t':>6s}{'SNR dB':>9s}{'Pearson r':>11s}{'MAE':>9s}{'envelope r':>12s}"]
    for key, r in sig.items():
        if key.startswith("t") and isinstance(r, Mapping):
            lines.append(f"{r['t_used']:>6d}{_num(r['snr_db'], 2):>9s}{_num(r['pearson_r']):>11s}"
                         f"{_num(r['mae'], 4):>9s}{_num(r['envelope_correlation']):>12s}")
    lines += _agreement_lines(result)
    lines += _generation_lines(result["generation"])
    lines += _age_lines(result)
    base = result["baselines"]
    if "note" in base:
        lines += ["", f"BASELINES: {base['note']}"]
    lines += ["", "FIGURES: " + ", ".join(Path(p).name for p in result["figures"].values())]
    return lines


def _agreement_lines(result: Mapping) -> list[str]:
    """The clinician's marks and the experts' thresholds beside the model and the classical methods."""
    lines = []
    marks = result.get("mark_agreement", {"reason": "not computed"})
    lines += ["", f"AGREEMENT WITH THE CLINICIAN'S MARKS: {marks['reason']}"] if "reason" in marks else \
        [""] + format_mark_agreement(marks)
    expert = result.get("threshold_agreement", {"reason": "not computed"})
    lines += ["", f"AGREEMENT WITH EXPERT THRESHOLDS: {expert['reason']}"] if "reason" in expert else \
        ["", f"AGREEMENT WITH EXPERT THRESHOLDS (from {expert['source']})"] + format_threshold_agreement(expert)
    return lines


def _class_lines(cls: Mapping) -> list[str]:
    if "reason" in cls:
        return ["", f"CLASSES: {cls['reason']}"]
    lines = ["", "CLASSES (model, per class)", f"{'class':16s}{'support':>8s}{'precision':>10s}{'recall':>8s}"
             f"{'F1':>7s}{'AUC':>7s}"]
    for name, c in cls["per_class"].items():
        lines.append(f"{name:16s}{c['support']:>8d}{_num(c['precision'], 2):>10s}{_num(c['recall'], 2):>8s}"
                     f"{_num(c['f1'], 2):>7s}{_num(c['auc'], 2):>7s}")
    lines.append(f"accuracy {_num(cls['accuracy'])}, macro AUC {_num(cls['macro_auc'])}, ECE {_num(cls['ece'])}")
    return lines


def _threshold_lines(result: Mapping) -> list[str]:
    clin = result["clinical"]
    head, ear = clin["per_recording_head"], clin["per_ear_series"]
    if "reason" in head or "reason" in ear:
        methods = ", ".join(f"{m} {n}" for m, n in ear["estimate_methods"].items())
        lines = ["", f"THRESHOLDS: {head.get('reason') or ear.get('reason')}; the model estimated {ear['n_ears']} "
                     f"ears ({methods})"]
        peaks = result["peaks"]
        lines.append(f"WAVE V: {peaks['reason']}" if "reason" in peaks else "")
        return [line for line in lines if line]
    lines = []
    lines += ["", "THRESHOLDS (model)", f"{'':34s}{'MAE dB':>8s}{'bias':>7s}{'±10 dB':>8s}{'no-resp agree':>15s}"
              f"{'severity κw':>13s}"]
    for label, block in (("per recording (threshold head)", head), ("per ear (level series)", ear["recorded"])):
        t = block["thresholds"]
        lines.append(f"{label:34s}{_num(t['mae_db'], 1):>8s}{_num(t['bias_db'], 1):>7s}"
                     f"{_num(t['agreement_within_10db'], 3):>8s}{_num(t['no_response_agreement_rate'], 3):>15s}"
                     f"{_num(block['severity']['quadratic_kappa'], 3):>13s}")
    att = ear["attainable"]
    lines.append(f"per ear vs attainable threshold: MAE {_num(att['mae_db'], 1)} dB, within ±10 dB "
                 f"{_num(att['agreement_within_10db'])}")
    d = head["diagnosis_by_class"]
    lines.append(f"normal vs loss by class: sensitivity {_num(d['sensitivity'])}, specificity "
                 f"{_num(d['specificity'])}, kappa {_num(d['kappa'])}")
    peaks = result["peaks"]
    if "reason" in peaks:
        lines.append(f"WAVE V: {peaks['reason']}")
    elif "reason" not in peaks["interval_coverage"]:
        cov = peaks["interval_coverage"]
        lines.append("calibrated interval coverage: " + ", ".join(
            f"{k} {_num(v['coverage'])}" for k, v in cov.items()) + f" (nominal {result['run']['confidence_level']:.2f})")
    return lines


def _generation_lines(gen: Mapping) -> list[str]:
    if "reason" in gen:
        return ["", f"GENERATION: {gen['reason']}"]
    disc, fd, div = gen["discriminative"], gen["frechet"], gen["diversity"]
    lines = ["", f"GENERATION ({gen['n_generated']} waveforms, {gen['sampler']} {gen['steps']} steps, conditioned on "
                 f"{', '.join(gen['conditioned_on'])})",
             f"discriminative score |acc − 0.5|: {_num(disc['score'])} (real vs real {_num(disc['real_vs_real']['score'])})",
             f"Fréchet distance ({fd['encoder']}): {_num(fd['distance'], 2)} (real vs real {_num(fd['real_vs_real'], 2)})",
             f"diversity (mean pairwise RMS, {div['unit']}): generated {_num(div['generated'], 4)}, real "
             f"{_num(div['real'], 4)}, ratio {_num(div['ratio'], 2)}",
             f"{'class':16s}{'n':>4s}{'V rate gen/real':>17s}{'V lat gen':>10s}{'picked':>8s}{'marked':>8s}"
             f"{'|Δ| ms':>8s}{'FD':>9s}{'FD rr':>9s}"]
    for name, c in gen["by_class"].items():
        w = c["wave_v"]
        lines.append(f"{name:16s}{c['n']:>4d}{_num(w['picker_v_present_rate_generated'], 2):>9s}/"
                     f"{_num(w['picker_v_present_rate_real'], 2):<7s}{_num(w['v_latency_ms_generated'], 2):>10s}"
                     f"{_num(w['v_latency_ms_real_picked'], 2):>8s}{_num(w['v_latency_ms_real_marked'], 2):>8s}"
                     f"{_num(w['latency_mae_vs_marked_ms'], 2):>8s}{_num(c['frechet_distance'], 2):>9s}"
                     f"{_num(c['frechet_distance_real_vs_real'], 2):>9s}")
    w = gen["wave_v"]
    lines.append(f"latency–intensity slope: generated {_num(w['latency_intensity_slope_ms_per_db_generated'], 4)} "
                 f"ms/dB, real (marked) {_num(w['latency_intensity_slope_ms_per_db_real_marked'], 4)} ms/dB")
    return lines


def _age_lines(result: Mapping) -> list[str]:
    peaks = result["peaks"].get("by_age", {})
    cls = result["classification"].get("by_age", {})
    ears = result["clinical"]["per_ear_series"].get("by_age", {})
    if not (peaks or cls or ears):
        return ["", "BY AGE: no labels to stratify"]
    strata = peaks or cls or ears
    lines = ["", "BY AGE (model)", f"{'stratum':10s}{'recordings':>11s}{'V F1':>7s}{'lat MAE':>9s}{'macro-F1':>10s}"
             f"{'bal acc':>9s}{'ears':>6s}{'ear MAE dB':>11s}"]
    for stratum in strata:
        p, c, e = peaks.get(stratum, {"n": 0}), cls.get(stratum, {"n": 0}), ears.get(stratum, {"n": 0})
        n = max(p["n"], c["n"])
        if n == 0 and e["n"] == 0:
            lines.append(f"{stratum:10s}{0:>11d}")
            continue
        ear_mae = e["thresholds"]["mae_db"] if e["n"] else NAN
        lines.append(f"{stratum:10s}{n:>11d}{_num(p.get('presence_f1', NAN)):>7s}{_num(p.get('latency_mae_ms', NAN)):>9s}"
                     f"{_num(c.get('macro_f1', NAN)):>10s}{_num(c.get('balanced_accuracy', NAN)):>9s}"
                     f"{e['n']:>6d}{_num(ear_mae, 1):>11s}")
    return lines
