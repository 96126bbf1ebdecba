"""report.html: an evaluation as one self-contained page that a clinician can open and print.

:func:`format_html` shows report.txt's sections (:mod:`.render`) as tables with the same numbers
(:func:`abrflow.text.number`, same formats); a group without its labels shows its reason. Figures are
data URIs, the CSS (A4 print rules included) is inline: the page loads nothing and runs no script.
Every string from the data is escaped. Reads ``evaluate_checkpoint``'s result, or metrics.json's.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..text import number
from .data import THRESHOLD_TRUTH
from .mark_agreement import WITHIN_MS
from .scoring import HEADLINE
from .threshold_agreement import RATERS_ROW

esc = html.escape
CSS = """
body { font: 11pt/1.4 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #111;
  max-width: 64em; margin: 1.5em auto; padding: 0 1em; } h1 { font-size: 1.5em; margin: 0 0 .2em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #345; margin: 1.6em 0 .5em; padding-bottom: .1em; }
h3 { font-size: 1.05em; margin: 1.2em 0 .3em; } h4 { font-size: 1em; font-style: italic; margin: .8em 0 .2em; }
nav { font-size: .9em; } nav a { margin-right: .8em; } .missing { color: #b00; } .reason { color: #555; font-style: italic; }
table { border-collapse: collapse; margin: .4em 0 .8em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #bbb; padding: .2em .5em; vertical-align: top; text-align: left; }
thead th { background: #e6ecf2; } tbody th { font-weight: normal; } td.n { text-align: right; white-space: nowrap; }
th.group, table.kv th { font-weight: bold; background: #f3f5f7; } .small, figcaption { font-size: .9em; color: #333; }
.warn { border-left: 4px solid #b00; background: #fff3f3; padding: .3em .6em; margin: .4em 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
@page { size: A4; margin: 14mm 12mm; }
@media print { body { font-size: 9pt; max-width: none; margin: 0; padding: 0; } nav { display: none; }
  section.major { break-before: page; page-break-before: always; } thead { display: table-header-group; }
  h2, h3, h4 { break-after: avoid; page-break-after: avoid; } figure img { max-height: 235mm; }
  figure, tr, tbody.keep, .warn { break-inside: avoid; page-break-inside: avoid; } }
"""
#: Figure name → (the section it is shown in, its caption). Others go to a last section.
FIGURES: dict[str, tuple[str, str]] = {
    "mark_bland_altman": ("marks", "Bland–Altman: method − clinician's mark (ms) against their mean, per method and wave"),
    "worst_marks": ("marks", "The traces where the model's wave V is furthest from the mark, all marks drawn"),
    "latency_scatter": ("marks", "Wave V latency (ms): model and peak picker against the marked latency"),
    "confusion_matrix": ("classes", "Confusion matrices: true class (rows) against predicted class (columns)"),
    "calibration": ("classes", "Reliability: predicted probability against the observed frequency"),
    "threshold_bland_altman": ("thresholds", "Per-ear threshold: estimate − true (dB) against their mean"),
    "reconstructions": ("reconstruction", "A recording per class (loudest level), reconstructed at each t"),
    "generated_vs_real": ("generation", "Generated waveforms beside real ones of the same class"),
}
#: Sections that start a new printed page (when they hold more than a reason).
MAJOR = ("marks", "experts", "classes", "generation", "figures")
GLOSSARY = ("n/a: not defined on these data (too few rows, or a label missing). “No response”: no response at the "
            "highest level tested. MAE: mean absolute error; bias: mean of estimate − reference; κ: Cohen's kappa; "
            "95% intervals resample patients (a patient's recordings stay together).")
_YES = {None: "n/a", True: "yes", False: "no"}
_N = ' class="n"'


# ---------------------------------------------------------------------------- numbers, as report.txt writes them
def _f(v):
    """A value read back from metrics.json ("inf", "-inf") as a float; anything else unchanged."""
    return float(v) if isinstance(v, str) and v in ("inf", "-inf") else v


def _num(v, digits: int | str = 3) -> str:
    """``v`` as report.txt writes it: ``digits`` decimals, or a format ("+.2f")."""
    return number(_f(v), f".{digits}f" if isinstance(digits, int) else digits)


def _missing(v) -> bool:
    return _num(v) == "n/a"  # NaN, or None (null in metrics.json)


def _pct(v) -> str:
    return number(None if _f(v) is None else 100.0 * _f(v), ".0f", unit="%", nan="n/a")


def _db(v, unit: str = "") -> str:
    return number(_f(v), ".1f", unit=unit, nan="n/a", inf="no response")


def _db_signed(v) -> str:
    return number(_f(v), "+.1f", nan="n/a", inf="+inf (no response)", neg_inf="-inf (raters: no response)")


def _ms_ci(entry: Mapping) -> str:
    value, lo, hi = (_num(entry[k], "+.2f") for k in ("value", "lo", "hi"))
    return f"{value} [no interval]" if _missing(entry["lo"]) or _missing(entry["hi"]) else f"{value} [{lo}, {hi}]"


# ---------------------------------------------------------------------------- HTML pieces
def _p(text: str, cls: str = "") -> str:
    return f'<p class="{cls}">{esc(text)}</p>' if cls else f"<p>{esc(text)}</p>"


def _row(cells: Sequence[str], width: int, text_cols: int = 1) -> str:
    """One row: the first cell labels it; cells from ``text_cols`` on are numbers. A row shorter than
    ``width`` ends in a cell spanning the rest (a reason)."""
    out = [f'<th scope="row">{esc(cells[0])}</th>']
    out += [f"<td{_N if i >= text_cols else ''}>{esc(cell)}</td>" for i, cell in enumerate(cells[1:], 1)]
    if 1 < len(cells) < width:
        out[-1] = f'<td colspan="{width - len(cells) + 1}" class="reason">{esc(cells[-1])}</td>'
    return "<tr>" + "".join(out) + "</tr>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_cols: int = 1, cls: str = "") -> str:
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in header)
    body = "\n".join(_row(r, len(header), text_cols) for r in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _figure(name: str, path) -> str:
    caption = FIGURES.get(name, ("", name.replace("_", " ")))[1]
    try:
        data = Path(path).read_bytes()
    except (OSError, TypeError) as err:
        why = getattr(err, "strerror", None) or type(err).__name__
        return f'<p class="missing">Figure “{esc(caption)}” is missing: {esc(str(path))} could not be read ({esc(why)}).</p>'
    uri = f"data:image/png;base64,{base64.b64encode(data).decode('ascii')}"
    return (f'<figure><img src="{uri}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)} ({esc(Path(path).name)})</figcaption></figure>")


# ---------------------------------------------------------------------------- sections
def _run(result: Mapping) -> str:
    run = result["run"]
    c, source = run["counts"], run["threshold_source"]
    rows = [["Checkpoint", f"{run['checkpoint']} (config {run['config_hash']})"],
            *([["Ensemble", ", ".join(run["ensemble"])]] if run.get("ensemble") else []),
            ["Data", f"{run['data_source']} — {run['split']}"],
            ["Evaluated", f"{c['recordings']:,} recordings, {c['patients']:,} patients, {c['ears']:,} ears"],
            ["Thresholds", THRESHOLD_TRUTH.get(source, source)]]
    labels = result.get("labels")
    if labels:
        marks = ", ".join(f"{w} {n:,}" for w, n in labels["wave_marks"].items())
        rows.append(["Labels present", f"classes on {labels['classes']:,} recordings; wave marks {marks}; "
                                       f"thresholds on {labels['ears_with_threshold']:,} ears"])
    rows += [["Sampler", f"{run['sampler']}, {run['steps']} steps (reconstruction and generation)"],
             ["Run", f"{number(_f(run.get('seconds')), '.0f')} s on {run['device']}; abrflow {run['package_version']}; "
                     f"seed {run['seed']}"]]
    warn = ["thresholds in these data were synthesised from the class label (legacy data set); they are not "
            "clinical truth."] if source == "synthetic_from_class" else []
    warn += list(run["notes"])
    table = '<table class="kv"><tbody>' + "".join(_row(r, 2, text_cols=2) for r in rows) + "</tbody></table>"
    return table + "".join(_p(f"Note: {w}", "warn") for w in warn)


def _headline(result: Mapping) -> str:
    boot, run = result["headline"], result["run"]
    n_boot = next((e["n_boot"] for methods in boot.values() if "reason" not in methods for e in methods.values()),
                  run["bootstrap_resamples"])
    parts = ['<table><thead><tr><th scope="col">Metric and method</th><th scope="col">Value</th>'
             '<th scope="col">95% interval</th></tr></thead>']
    for key, methods in boot.items():
        label, _, digits = HEADLINE.get(key, (key, True, 3))
        if "reason" in methods:
            rows = [_row([label, f"not computed, {methods['reason']}"], 3)]
        else:
            rows = [f'<tr><th scope="colgroup" colspan="3" class="group">{esc(label)}</th></tr>']
            rows += [_row([method, _num(e["value"], digits), "no interval" if _missing(e.get("lo")) else
                           f"[{_num(e['lo'], digits)}, {_num(e['hi'], digits)}]"], 3) for method, e in methods.items()]
        parts.append('<tbody class="keep">' + "".join(rows) + "</tbody>")
    return "\n".join(parts) + "</table>" + _p(
        f"95% patient-bootstrap intervals, {n_boot} resamples. Patients are resampled; a resample without a rare "
        "class drops it from the macro averages, so their intervals lean upward.", "small")


def _marks(result: Mapping) -> str:
    marks = result.get("mark_agreement", {"reason": "not computed"})
    if "reason" in marks:
        return _p(marks["reason"], "reason")
    out = [_p(f"Method − mark, in ms, over {marks['n_rows']:,} rows; 95% patient-bootstrap intervals "
              f"({marks['n_boot']} resamples). LoA: 95% limits of agreement (bias ± 1.96 SD); within: share of the "
              "marked waves the method places that close to the mark.", "small")]
    header = ["Method", "n", "Bias (ms) [95% CI]", "Lower LoA (ms) [95% CI]", "Upper LoA (ms) [95% CI]", "MAE (ms)",
              *(f"Within ±{t:g} ms" for t in WITHIN_MS)]
    sections = [(f"Wave {w}", w, e) for w, e in marks["waves"].items()]
    sections += [(f"Interval {name}", None, e) for name, e in marks.get("intervals", {}).items()]
    for title, wave, entry in sections:
        if "reason" in entry:
            out += [f"<h3>{esc(title)}</h3>", _p(entry["reason"], "reason")]
            continue
        out.append(f"<h3>{esc(title)}: {entry['n_marked']:,} rows marked</h3>")
        read = {name: m for name, m in entry["methods"].items() if "reason" not in m}
        out.append(_table(header, [[name, m["reason"]] if name not in read else [
            name, str(m["overall"]["n"]), *(_ms_ci(m["overall"][k]) for k in ("bias_ms", "loa_lower_ms", "loa_upper_ms")),
            _num(m["overall"]["mae_ms"], 2), *(_pct(m["overall"][f"within_{str(t).replace('.', '_')}ms"]) for t in WITHIN_MS)]
            for name, m in entry["methods"].items()]))
        unread = [f"{name} {m['overall']['n_unread']}" for name, m in read.items() if m["overall"]["n_unread"]]
        if unread:
            out.append(_p("Marked rows without a reading (not in the statistics): " + ", ".join(unread), "small"))
        for name, m in read.items():
            out += _mark_detail(name, m)
        if entry.get("presence") is not None and wave is not None:
            out += _presence(wave, entry["presence"])
    return "\n".join(out)


def _mark_detail(name: str, m: Mapping) -> list[str]:
    out = [_p(f"{name}: {m['overall']['reason']}", "reason")] if "reason" in m["overall"] else []
    rows = []
    for dim, groups in m["breakdown"].items():
        if isinstance(groups.get("reason"), str):
            rows.append([dim, groups["reason"]])
            continue
        rows += [[dim, group, str(ba["n"]), _num(ba["bias_ms"]["value"], "+.2f"), _num(ba["mae_ms"], 2)]
                 for group, ba in groups.items()]
    if rows:
        out += [f"<h4>{esc(name)}: by {esc(', '.join(m['breakdown']))}</h4>",
                _table(["By", "Group", "n", "Bias (ms)", "MAE (ms)"], rows, text_cols=2)]
    worst = [[str(w["row"]), w["patient_id"], w["ear"], number(_f(w["level_db"]), "g"), _num(w["method_ms"], 2),
              _num(w["marked_ms"], 2), _num(w["difference_ms"], "+.2f")] for w in m.get("worst_rows", [])]
    if worst:
        out += [f"<h4>{esc(name)}: largest differences</h4>",
                _table(["Row", "Patient", "Ear", "Level (dB)", "Method (ms)", "Mark (ms)", "Difference (ms)"], worst,
                       text_cols=3)]
    return out


def _presence(wave: str, presence: Mapping) -> list[str]:
    if isinstance(presence.get("reason"), str):
        return [f"<h4>Wave {esc(wave)} present/absent</h4>", _p(f"not scored ({presence['reason']})", "reason")]
    rows = [[name, p["reason"]] if "reason" in p else
            [name, *(_num(p[k], 2) for k in ("kappa", "f1", "sensitivity", "specificity")),
             *(str(p[k]) for k in ("tp", "fp", "fn", "tn"))]
            for name, p in presence.items()]
    return [f"<h4>Wave {esc(wave)} present/absent against the clinician's call</h4>",
            _table(["Method", "κ", "F1", "Sensitivity", "Specificity", "TP", "FP", "FN", "TN"], rows)]


def _experts(result: Mapping) -> str:
    ex = result.get("threshold_agreement", {"reason": "not computed"})
    if "reason" in ex:
        return _p(ex["reason"], "reason")
    n = ex["n_raters"]
    count = str(n["min"]) if n["min"] == n["max"] else f"{n['min']} to {n['max']}"
    out = [_p(f"From {ex['source']}: {ex['n_ears']} ear(s), {count} rater(s) per ear "
              f"({', '.join(ex['raters']) or 'none'}); methods: {', '.join(ex['methods']) or 'none'}.")]
    if ex["note"]:
        out.append(_p(f"Note: {ex['note']}", "warn"))
    if ex["ears"]:
        out.append(_p("A rater's “vs others' median” and “inside range” compare it with the other raters; "
                      "“raters further”: raters further from the median than the method.", "small"))
    header = ["Source", "Threshold (dB)", "vs median (dB)", "vs others' median (dB)", "Inside raters' range",
              "Raters further"]
    for key, ear in ex["ears"].items():
        k = ear["n_raters"]
        spread = ("one rater: spread n/a" if k < 2 else "all raters agree" if ear["min_db"] == ear["max_db"] else
                  f"raters {_db(ear['min_db'], ' dB')} to {_db(ear['max_db'], ' dB')} (spread {_db(ear['spread_db'], ' dB')})")
        rows = [[name, _db(v), _db_signed(ear["rater_deviation_db"][name]),
                 _db_signed(ear["rater_vs_others"][name]["error_db"]),
                 _YES[ear["rater_vs_others"][name]["inside_range"]], ""] for name, v in ear["raters"].items()]
        rows += [[m, _db(r["estimate_db"]), _db_signed(r["error_db"]), "", _YES[r["inside_range"]],
                  "n/a" if r["raters_further"] is None else f"{r['raters_further']} of {k}"]
                 for m, r in ear["methods"].items()]
        out += [f"<h3>Ear {esc(key)}</h3>",
                _p(f"{k} rater(s), median {_db(ear['median_db'], ' dB')}, {spread}"), _table(header, rows)]
    rows = [_summary_row(m, s, _pct(s.get("raters_further_share"))) for m, s in ex["summary"].items()]
    rows.append(_summary_row(RATERS_ROW, ex["raters_leave_one_out"], ""))
    out += ["<h3>Summary per method</h3>",
            _p("Against the raters' median: MAE and bias on ears where both are finite; the raters' row compares "
               "each rater with the median and range of the others.", "small"),
            _table(["Method", "Ears", "MAE (dB)", "Bias (dB)", "Within 5 dB", "Within 10 dB", "Inside range",
                    "Raters further", "No response agrees"], rows)]
    unscored = {m: s["n_missing"] for m, s in ex["summary"].items() if s["n_missing"]}
    if unscored:
        out.append(_p("Ears rated but without an estimate: " + ", ".join(f"{m} {k}" for m, k in unscored.items())))
    return "\n".join(out)


def _summary_row(name: str, s: Mapping, further: str) -> list[str]:
    nr = s["no_response"]
    ears = f"{s['n_ears']} ({s['n_ratings']} ratings)" if "n_ratings" in s else str(s["n_ears"])
    return [name, ears, _db(s["mae_db"]), _db_signed(s["bias_db"]), _pct(s["within_5_db"]), _pct(s["within_10_db"]),
            _pct(s["inside_range"]), further, f"{_pct(nr['agree'])} (both {nr['both']}, method only "
                                              f"{nr['method_only']}, raters only {nr['raters_only']})"]


def _classes(result: Mapping) -> str:
    cls = result["classification"]
    if "reason" in cls:
        return _p(cls["reason"], "reason")
    rows = [[name, str(c["support"]), _num(c["precision"], 2), _num(c["recall"], 2), _num(c["f1"], 2),
             _num(c["auc"], 2)] for name, c in cls["per_class"].items()]
    return (_table(["Class", "Recordings", "Precision", "Recall", "F1", "AUC"], rows) +
            _p(f"Accuracy {_num(cls['accuracy'])}, macro AUC {_num(cls['macro_auc'])}, "
               f"expected calibration error {_num(cls['ece'])}."))


def _thresholds(result: Mapping) -> str:
    clin, peaks = result["clinical"], result["peaks"]
    head, ear = clin["per_recording_head"], clin["per_ear_series"]
    wave_v = _p(f"Wave V: {peaks['reason']}", "reason") if "reason" in peaks else ""
    if "reason" in head or "reason" in ear:
        methods = ", ".join(f"{m} {n}" for m, n in ear["estimate_methods"].items())
        return _p(f"{head.get('reason') or ear.get('reason')}; the model estimated {ear['n_ears']} ears "
                  f"({methods})", "reason") + wave_v
    rows = [[label, _num(b["thresholds"]["mae_db"], 1), _num(b["thresholds"]["bias_db"], 1),
             *(_num(b["thresholds"][k]) for k in ("agreement_within_10db", "no_response_agreement_rate")),
             _num(b["severity"]["quadratic_kappa"])]
            for label, b in (("per recording (threshold head)", head), ("per ear (level series)", ear["recorded"]))]
    att, d = ear["attainable"], head["diagnosis_by_class"]
    out = [_table(["Model", "MAE (dB)", "Bias (dB)", "Within ±10 dB", "No-response agreement", "Severity κw"], rows),
           _p(f"Per ear against the attainable threshold: MAE {_num(att['mae_db'], 1)} dB, within ±10 dB "
              f"{_num(att['agreement_within_10db'])}."),
           _p(f"Normal against hearing loss, by class: sensitivity {_num(d['sensitivity'])}, specificity "
              f"{_num(d['specificity'])}, kappa {_num(d['kappa'])}."), wave_v]
    if "reason" not in peaks and "reason" not in peaks["interval_coverage"]:
        cov = peaks["interval_coverage"]
        out.append(_p("Calibrated interval coverage: " + ", ".join(f"{k} {_num(v['coverage'])}" for k, v in cov.items())
                      + f" (nominal {number(_f(result['run']['confidence_level']), '.2f')})."))
    return "".join(out)


def _reconstruction(result: Mapping) -> str:
    sig, unit = result["signal"]["reconstruction"], result["signal"]["unit"]
    if "reason" in sig:
        return _p(sig["reason"], "reason")
    rows = [[str(r["t_used"]), _num(r["snr_db"], 2), _num(r["pearson_r"]), _num(r["mae"], 4),
             _num(r["envelope_correlation"])] for k, r in sig.items() if k.startswith("t") and isinstance(r, Mapping)]
    return (_p(f"x̂0 of {sig['n']} recordings noised to diffusion time t and denoised, against the recording.") +
            _table(["t (diffusion step)", "SNR (dB)", "Pearson r", f"MAE ({unit})", "Envelope r"], rows))


def _generation(result: Mapping) -> str:
    gen = result["generation"]
    if "reason" in gen:
        return _p(gen["reason"], "reason")
    disc, fd, div, w = gen["discriminative"], gen["frechet"], gen["diversity"], gen["wave_v"]
    keys = ("picker_v_present_rate_generated", "picker_v_present_rate_real", "v_latency_ms_generated",
            "v_latency_ms_real_picked", "v_latency_ms_real_marked", "latency_mae_vs_marked_ms")
    rows = [[name, str(c["n"]), *(_num(c["wave_v"][k], 2) for k in keys), _num(c["frechet_distance"], 2),
             _num(c["frechet_distance_real_vs_real"], 2)] for name, c in gen["by_class"].items()]
    return "".join([
        _p(f"{gen['n_generated']} waveforms, {gen['sampler']} {gen['steps']} steps, conditioned on "
           f"{', '.join(gen['conditioned_on'])}."),
        _p(f"Discriminative score |acc − 0.5|: {_num(disc['score'])} (real vs real {_num(disc['real_vs_real']['score'])})."),
        _p(f"Fréchet distance ({fd['encoder']}): {_num(fd['distance'], 2)} (real vs real {_num(fd['real_vs_real'], 2)})."),
        _p(f"Diversity (mean pairwise RMS, {div['unit']}): generated {_num(div['generated'], 4)}, real "
           f"{_num(div['real'], 4)}, ratio {_num(div['ratio'], 2)}."),
        _table(["Class", "n", "V rate generated", "V rate real", "V latency generated (ms)", "real, picked (ms)",
                "real, marked (ms)", "|Δ| vs marked (ms)", "FD", "FD real vs real"], rows),
        _p(f"Latency–intensity slope: generated {_num(w['latency_intensity_slope_ms_per_db_generated'], 4)} ms/dB, "
           f"real (marked) {_num(w['latency_intensity_slope_ms_per_db_real_marked'], 4)} ms/dB.")])


def _age(result: Mapping) -> str:
    peaks = result["peaks"].get("by_age", {})
    cls = result["classification"].get("by_age", {})
    ears = result["clinical"]["per_ear_series"].get("by_age", {})
    if not (peaks or cls or ears):
        return _p("no labels to stratify", "reason")
    rows = []
    for stratum in peaks or cls or ears:
        p, c, e = peaks.get(stratum, {"n": 0}), cls.get(stratum, {"n": 0}), ears.get(stratum, {"n": 0})
        rows.append([stratum, f"{max(p['n'], c['n']):,}", _num(p.get("presence_f1")),
                     _num(p.get("latency_mae_ms")), _num(c.get("macro_f1")),
                     _num(c.get("balanced_accuracy")), str(e["n"]), _num(e["thresholds"]["mae_db"] if e["n"] else None, 1)])
    return _table(["Age", "Recordings", "Wave V F1", "V latency MAE (ms)", "Macro-F1", "Balanced accuracy", "Ears",
                   "Ear threshold MAE (dB)"], rows)


def _notes(result: Mapping) -> str:
    base, method = result.get("baselines", {}), result["clinical"]["per_ear_series"].get("method")
    files = ", ".join(Path(p).name for p in result.get("files", {}).values())
    notes = [GLOSSARY, f"Baselines: {base['note']}" if "note" in base else "",
             f"Per-ear threshold of the model: {method}." if method else "",
             f"Every number: {files} beside this page." if files else ""]
    return "".join(_p(n) for n in notes if n)


SECTIONS = (("run", "Run", _run), ("headline", "Headline: the model beside the baselines", _headline),
            ("marks", "Agreement with the clinician's wave marks", _marks),
            ("experts", "Agreement with expert thresholds", _experts), ("classes", "Hearing-loss classes", _classes),
            ("thresholds", "Thresholds", _thresholds), ("reconstruction", "Reconstruction", _reconstruction),
            ("generation", "Generation", _generation), ("age", "By age", _age), ("notes", "Notes", _notes))


def format_html(result: Mapping) -> str:
    """report.html: one self-contained HTML5 page (inline CSS with A4 print rules, figures embedded as
    data URIs) with report.txt's sections and numbers as tables."""
    run, figures = result["run"], dict(result.get("figures", {}))
    sections = [(key, title, build(result) + "".join(_figure(n, p) for n, p in figures.items()
                                                     if FIGURES.get(n, ("",))[0] == key)) for key, title, build in SECTIONS]
    others = [_figure(n, p) for n, p in figures.items() if n not in FIGURES]
    if others:
        sections.append(("figures", "Other figures", "".join(others)))
    nav = " ".join(f'<a href="#{key}">{esc(title)}</a>' for key, title, _ in sections)
    major = ' class="major"'
    main = "\n".join(f'<section id="{key}"{major if key in MAJOR and ("<table" in body or "<figure" in body) else ""}>'
                     f"<h2>{esc(title)}</h2>\n{body}\n</section>" for key, title, body in sections)
    title = f"ABR model evaluation — {Path(str(run['checkpoint'])).name}"
    sub = f"abrflow {run['package_version']} · {run['checkpoint']} · {run['data_source']} ({run['split']})"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><meta name="viewport" content="width='
            f'device-width, initial-scale=1">\n<title>{esc(title)}</title>\n<style>{CSS}</style></head>\n<body>\n'
            f'<header><h1>ABR model evaluation</h1><p class="small">{esc(sub)}</p>\n<nav>{nav}</nav></header>\n'
            f"<main>\n{main}\n</main>\n</body>\n</html>\n")
