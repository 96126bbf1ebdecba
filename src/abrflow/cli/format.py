"""What the CLI prints for people: a cohort summary, one prediction, a batch, per-ear thresholds.

Numbers go through the one formatter (:func:`abrflow.text.number`): unknown values read "unknown"
(or "n/a"), a threshold that was never reached reads "none"/"no response", never ``nan``/``inf``.
"""

from __future__ import annotations

from collections import Counter

from ..clinical.thresholds import WAVE_CALL_PROBABILITY
from ..text import number


def _num(value, fmt: str = ".1f", unit: str = "") -> str:
    """A prediction's number: "unknown" when not known, "none" for no response."""
    return number(value, fmt, none="unknown", inf="none", neg_inf="-inf", unit=unit)


def _series_num(value, fmt: str = ".1f") -> str:
    """A series report's number: "n/a" where a method is not available, "–" undefined, "no response"."""
    return number(value, fmt, none="n/a", nan="–", inf="no response", neg_inf="no response")


def format_summary(summary: dict) -> str:
    """A cohort summary as a clinician reads it."""
    lines = [
        f"recordings:       {summary['recordings']:,}",
        f"patients:         {summary['patients']:,}  (series: {summary['series']:,})",
        "class shares:     " + ", ".join(f"{k} {v:.1%}" for k, v in summary["class_shares"].items()),
        f"wave V marked:    {summary['v_marked_share']:.1%}",
        f"median age:       {summary['median_age_years']:.2f} years",
    ]
    if summary["v_latency_ms_range"]:
        lo, hi = summary["v_latency_ms_range"]
        lines.append(f"V latency range:  {lo:.2f}–{hi:.2f} ms")
    lines.append(f"time base:        {summary['samples']} samples at {summary['sampling_rate_hz']:g} Hz "
                 f"({summary['signal_unit']})")
    return "\n".join(lines)


def _interval(d: dict, lo: str, hi: str, fmt: str) -> str:
    return f" [{_num(d[lo], fmt)}, {_num(d[hi], fmt)}]" if lo in d else ""


def _norm(z, outside) -> str:
    """A z-score against the norms, flagged when outside them ("" when no norm applies)."""
    if z is None:
        return ""
    return f" (z {z:+.1f}{', OUTSIDE NORM' if outside else ''})"


def format_prediction(result: dict) -> str:
    """One predict_single-structured result as a clinician reads it."""
    c, thr, w = result["classification"], result["threshold"], result["waveform"]
    inputs = ", ".join(f"{k} {_num(val, 'g')}" for k, val in result["inputs"].items())
    level = f"{result['confidence']['level']:.0%} " if "confidence" in result else ""
    lines = [f"inputs:            {inputs}"]
    cls = f"hearing loss:      {c['predicted_category']} (p = {c['probabilities'][c['predicted_category']]:.2f})"
    if "prediction_set" in c:
        cls += f"; {level}set {{{', '.join(c['prediction_set'])}}}"
    lines.append(cls)
    lines.append(f"threshold:         {_num(thr['value'])} dB nHL{_interval(thr, 'lo', 'hi', '.1f')}; "
                 f"no response p = {thr['no_response_probability']:.2f}")
    for name, v in result["peaks"].items():
        lines.append(f"{'wave ' + name + ':':19}present p = {v['present_probability']:.2f}; latency "
                     f"{_num(v['latency_ms'], '.2f')} ms{_interval(v, 'latency_ms_lo', 'latency_ms_hi', '.2f')}"
                     f"{_norm(v.get('latency_z'), v.get('latency_outside_norm'))}; amplitude "
                     f"{_num(v['amplitude_uv'], '.3f')} µV{_interval(v, 'amplitude_uv_lo', 'amplitude_uv_hi', '.3f')}")
    for name, iv in result.get("intervals", {}).items():
        lines.append(f"{name + ' interval:':19}{_num(iv['ms'], '.2f')} ms{_interval(iv, 'lo', 'hi', '.2f')}"
                     f"{_norm(iv.get('z'), iv.get('outside_norm'))}")
    if w["source"] == "generated":
        lines.append(f"waveform:          generated ({w['sampler']}, {w['steps']} steps, seed {w['seed']}), "
                     f"analysed by the heads")
    else:
        lines.append("waveform:          measured")
    if level:
        lines.append(f"intervals:         {level}split-conformal (calibrated on the validation split)")
    return "\n".join(lines)


def _called(wave: dict) -> str:
    """A wave's latency where the model calls it present, else "absent"."""
    return _num(wave["latency_ms"], ".2f") if wave["present_probability"] >= WAVE_CALL_PROBABILITY else "absent"


def format_batch(rows: list[dict], limit: int = 20) -> str:
    """Many results as a table (the first ``limit`` rows) and the predicted class counts."""
    lines = [f"{'row':>4}  {'id':12} {'category':14} {'p':>5} {'threshold dB':>12} {'V p':>5} {'V lat ms':>8} "
             f"{'I lat ms':>8} {'III lat ms':>10}"]
    for i, r in enumerate(rows[:limit]):
        ident = r.get("id") or (f"{r['patient_id']}/{r['ear']}" if "patient_id" in r else "")
        c = r["classification"]
        lines.append(f"{i:>4}  {ident[:12]:12} {c['predicted_category']:14} "
                     f"{c['probabilities'][c['predicted_category']]:5.2f} {_num(r['threshold']['value']):>12} "
                     f"{r['peaks']['V']['present_probability']:5.2f} {_num(r['peaks']['V']['latency_ms'], '.2f'):>8} "
                     f"{_called(r['peaks']['I']):>8} {_called(r['peaks']['III']):>10}")
    if len(rows) > limit:
        lines.append(f"… {len(rows) - limit} more rows in the output file")
    counts = Counter(r["classification"]["predicted_category"] for r in rows)
    lines.append("predicted:         " + ", ".join(f"{k} {n}" for k, n in counts.most_common()))
    outside = sum(bool(r.get("stimulus_outside_training")) for r in rows)
    if outside:
        lines.append(f"NOTE:              {outside} recording(s) were played with a stimulus or level unit outside what "
                     "the model was trained on: their intensity was read as unknown")
    return "\n".join(lines)


def format_series(results: dict) -> str:
    """Per subject/ear: the model's threshold with interval, the baselines, then the latency–intensity function."""
    from ..inference.series import BASELINES

    lines = []
    for r in results.values():
        unit = r.get("level_unit", "dB nHL")
        ear = f"{r['patient_id']} ear {r['ear']}" + (f" session {r['session_id']}" if r["session_id"] else "")
        if r["method"] == "no_response":
            thr = f"no response up to {_series_num(r['no_response_up_to_db'], 'g')} {unit}"
        elif r["method"] == "all_respond":
            thr = f"≤ {_series_num(r['threshold_db'], 'g')} {unit} (responds at every tested level)"
        elif r["method"] == "no_data":
            thr = "no usable level"
        else:
            thr = f"{_series_num(r['threshold_db'])} {unit} [{_series_num(r['lo_db'])}, {_series_num(r['hi_db'])}]"
        lines.append(f"{ear}: model threshold {thr} ({r['method']}, {r['n_levels']} levels)")
        if r.get("stimulus"):
            lines.append(f"  stimulus:        {r['stimulus']}"
                         + (f" — NOTE: {r['stimulus_note']}" if r.get("stimulus_note") else ""))
        if "baselines" in r:
            b = r["baselines"]
            lines.append("  classical:       " + "; ".join(
                f"{name.replace('_db', '').replace('_', ' ')} {_series_num(b[name])}" for name in BASELINES
                if b.get(name) is not None)
                + (f" (halves replicate at r ≥ {b['replication_min_r']:.2f})" if b.get("replication_min_r") else ""))
            if b.get("picker_note"):
                lines.append(f"  NOTE: {b['picker_note']}")
        li = r["latency_intensity"]
        points = []
        has_norm = any(v is not None for v in li.get("v_norm_lo_ms", []))
        for j, lv in enumerate(li["intensity_db"]):
            model = _series_num(li["v_latency_ms"][j], ".2f")
            point = f"{lv:g}: {model}"
            if li.get("picker_v_latency_ms") and li["picker_v_latency_ms"][j] is not None:
                point += f"/{_series_num(li['picker_v_latency_ms'][j], '.2f')}"
            if has_norm:
                point += f" (norm {li['v_norm_lo_ms'][j]:.2f}–{li['v_norm_hi_ms'][j]:.2f})"
            points.append(point)
        slope = li["slope_ms_per_db"]
        lines.append(f"  wave V ms ({unit}: model/picker): " + " | ".join(points)
                     + (f"   model slope {slope:+.3f} ms/dB" if slope == slope else ""))
        for wave in ("I", "III"):
            values = li.get(f"{wave.lower()}_latency_ms", [])
            picker = li.get(f"picker_{wave.lower()}_latency_ms") or [None] * len(values)
            if any(v == v for v in values) or any(p is not None and p == p for p in picker):
                lines.append(f"  wave {wave} ms (model/picker): " + " | ".join(
                    f"{lv:g}: {_series_num(v, '.2f')}" + (f"/{_series_num(p, '.2f')}" if p is not None else "")
                    for lv, v, p in zip(li["intensity_db"], values, picker)))
        intervals = [f"{name.replace('_', '–').upper()} {iv['ms']:.2f} ms (z {iv['z']:+.1f}"
                     + (", OUTSIDE NORM)" if iv["outside_norm"] else ")")
                     for name, iv in r.get("top_level_intervals", {}).items() if iv["ms"] is not None]
        if intervals:
            lines.append("  interpeak (loudest level with both waves): " + "; ".join(intervals))
    return "\n".join(lines)
