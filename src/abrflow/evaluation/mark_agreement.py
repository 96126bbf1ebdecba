"""Agreement of a method's wave latencies with the clinician's marks (issues 18 and 19).

For every wave a file marks (I, III, V) and every interpeak interval (I–III, III–V, I–V) where both
of its waves are marked, each method's value beside the mark: Bland–Altman bias and 95 % limits of
agreement with patient-bootstrap intervals, MAE, the shares within ±0.1/0.2/0.5 ms, the same per
ear, level, age stratum, file and channel, and the rows that disagree most. Each wave's presence is
compared with the clinician's call only where an unmarked trace means "absent". A wave nobody marked,
or a method that does not read a wave, is reported with the reason, never left out silently.

Differences are method − mark, in ms. Pure NumPy and scikit-learn; every result is JSON-ready.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import cohen_kappa_score

from ..data.schema import INTERPEAK_INTERVALS, WAVE_NAMES
from ..text import number
from .stratify import AGE_STRATA

NAN = float("nan")
#: z of the 95 % limits of agreement (bias ± Z·sd).
LOA_Z = 1.96
#: Tolerances (ms) of the "within" shares.
WITHIN_MS: tuple[float, ...] = (0.1, 0.2, 0.5)
#: The dimensions ``mark_agreement`` breaks each method down by.
BREAKDOWNS: tuple[str, ...] = ("ear", "level", "age", "file", "channel")
#: A method's present/absent call of each wave: its reading key.
PRESENCE_KEYS: dict[str, str] = {wave: f"{wave}_present" for wave in WAVE_NAMES}
PRESENCE_KEY = PRESENCE_KEYS["V"]
#: Interpeak intervals: name → (earlier, later) wave.
INTERVALS: dict[str, tuple[str, str]] = {f"{a.upper()}-{b.upper()}": (a.upper(), b.upper())
                                         for _, a, b in INTERPEAK_INTERVALS}
NOT_ABSENT = "unmarked traces are not known to be absent in these files"
_EPS = 1e-9  # a difference of exactly 0.2 ms, read back from float32, counts as within 0.2 ms


def _within_key(tol: float) -> str:
    return f"within_{str(tol).replace('.', '_')}ms"


def _interval(value: float, lo: float = NAN, hi: float = NAN) -> dict:
    return {"value": float(value), "lo": float(lo), "hi": float(hi)}


def _bootstrap_loa(diff: np.ndarray, patients: np.ndarray, n_boot: int, seed: int,
                   alpha: float = 0.05) -> tuple[np.ndarray, int]:
    """Percentile intervals [3, 2] of (bias, lower, upper limit) resampling PATIENTS with replacement.

    The resamples are those of :func:`abrflow.evaluation.stratify.bootstrap_ci` (same seed, same
    draws: as many patients as there are, all rows of each drawn patient), but the three statistics
    come from per-patient sums of d and d², so no rows are copied per resample.
    """
    _, codes = np.unique(patients, return_inverse=True)
    groups = int(codes.max()) + 1
    centre = float(diff.mean())
    d = diff - centre  # centred sums keep the variance exact to round-off
    sums = np.stack([np.bincount(codes, minlength=groups).astype(np.float64),
                     np.bincount(codes, d, groups), np.bincount(codes, d * d, groups)], axis=1)
    draws = np.random.default_rng(seed).integers(0, groups, size=(n_boot, groups))
    totals = np.empty((n_boot, 3))
    chunk = max(1, 2_000_000 // groups)
    for start in range(0, n_boot, chunk):
        block = draws[start:start + chunk]
        m = len(block)
        counts = np.bincount((block + groups * np.arange(m)[:, None]).ravel(), minlength=m * groups)
        totals[start:start + m] = counts.reshape(m, groups) @ sums
    n, s1, s2 = totals.T
    mean = s1 / n
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(np.maximum(s2 - n * mean * mean, 0.0) / (n - 1))
    bias = centre + mean
    stats = np.stack([bias, bias - LOA_Z * sd, bias + LOA_Z * sd], axis=1)
    valid = np.isfinite(stats).all(axis=1)
    if not valid.any():
        return np.full((3, 2), np.nan), 0
    q = np.percentile(stats[valid], [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return q.T, int(valid.sum())


def bland_altman(method_ms, marked_ms, patient_id, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Bland–Altman agreement of ``method_ms`` with ``marked_ms`` over the rows where both are finite.

    Keys: ``n`` (rows with both), ``n_marked`` (rows with a mark), ``n_unread`` (marked, no reading:
    not in the statistics, so a method cannot look precise by abstaining unseen), ``n_patients``;
    ``bias_ms``, ``loa_lower_ms``, ``loa_upper_ms`` as ``{"value", "lo", "hi"}`` (95 % patient-bootstrap
    percentile interval; NaN with fewer than 2 patients, where resampling patients says nothing);
    ``sd_ms`` (ddof 1), ``mae_ms``, ``median_diff_ms``, ``within_0_1ms``/``0_2ms``/``0_5ms`` (shares of
    the ``n`` rows with |difference| ≤ tolerance), ``n_boot``, ``n_valid``. With ``n < 2`` every number
    is NaN and ``reason`` says why.
    """
    method = np.asarray(method_ms, np.float64)
    marked = np.asarray(marked_ms, np.float64)
    patients = np.asarray(patient_id).astype(str)
    if not (method.shape == marked.shape == patients.shape) or method.ndim != 1:
        raise ValueError(f"method_ms {method.shape}, marked_ms {marked.shape} and patient_id {patients.shape} "
                         "must be one value per row")
    has_mark = np.isfinite(marked)
    both = has_mark & np.isfinite(method)
    n = int(both.sum())
    out: dict = {"n": n, "n_marked": int(has_mark.sum()), "n_unread": int((has_mark & ~both).sum()),
                 "n_patients": int(np.unique(patients[both]).size), "n_boot": int(n_boot), "n_valid": 0}
    nan_stats = {"bias_ms": _interval(NAN), "loa_lower_ms": _interval(NAN), "loa_upper_ms": _interval(NAN),
                 "sd_ms": NAN, "mae_ms": NAN, "median_diff_ms": NAN,
                 **{_within_key(t): NAN for t in WITHIN_MS}}
    if n < 2:
        why = "no row has both a mark and a reading" if n == 0 else "only 1 row has both a mark and a reading"
        return {**out, **nan_stats, "reason": f"{why}; Bland–Altman needs at least 2"}
    diff = method[both] - marked[both]
    bias, sd = float(diff.mean()), float(diff.std(ddof=1))
    point = (bias, bias - LOA_Z * sd, bias + LOA_Z * sd)
    ci, n_valid = np.full((3, 2), np.nan), 0
    if out["n_patients"] >= 2 and n_boot >= 1:
        ci, n_valid = _bootstrap_loa(diff, patients[both], int(n_boot), seed)
    absd = np.abs(diff)
    out.update(n_valid=n_valid, sd_ms=sd, mae_ms=float(absd.mean()), median_diff_ms=float(np.median(diff)),
               **{_within_key(t): float(np.mean(absd <= t + _EPS)) for t in WITHIN_MS})
    for key, value, (lo, hi) in zip(("bias_ms", "loa_lower_ms", "loa_upper_ms"), point, ci):
        out[key] = _interval(value, lo, hi)
    return out


def presence_agreement(called, marked, *, unmarked_means_absent: bool = False) -> dict:
    """A method's present/absent call beside the clinician's: κ, F1, sensitivity, specificity, counts.

    Only meaningful where an unmarked trace means "absent" (the clinician looked and found no wave);
    otherwise (``unmarked_means_absent=False``) the result is only ``{"reason": ...}``. Undefined
    values are NaN: sensitivity without a marked wave, specificity without an absent one, F1 where
    neither rater says present, κ where both raters give one and the same answer throughout.
    """
    if not unmarked_means_absent:
        return {"reason": NOT_ABSENT}
    called, marked = np.asarray(called, bool), np.asarray(marked, bool)
    if called.shape != marked.shape or called.ndim != 1:
        raise ValueError(f"called {called.shape} and marked {marked.shape} must be one flag per row")
    tp, fp = int(np.sum(called & marked)), int(np.sum(called & ~marked))
    fn, tn = int(np.sum(~called & marked)), int(np.sum(~called & ~marked))
    kappa = NAN
    if called.size and np.unique(np.concatenate([called, marked])).size > 1:
        kappa = float(cohen_kappa_score(marked, called))
    return {"n": int(called.size), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "kappa": kappa,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else NAN,
            "sensitivity": tp / (tp + fn) if tp + fn else NAN,
            "specificity": tn / (tn + fp) if tn + fp else NAN}


# ---------------------------------------------------------------------------- records
def wave_marks(records, wave: str) -> np.ndarray:
    """The clinician's latency (ms) of ``wave`` per row, NaN where not marked (V: ``v_latency_ms``,
    else its column of ``wave_latency_ms``)."""
    column = np.asarray(records.wave_latency_ms, np.float64)[:, WAVE_NAMES.index(wave)]
    if wave == "V":
        v = np.asarray(records.v_latency_ms, np.float64)
        column = np.where(np.isfinite(v), v, column)
    return column


def _file_labels(records) -> np.ndarray:
    if "source_file" in records.extra:
        return np.asarray(records.extra["source_file"]).astype(str)
    return np.full(len(records), records.source or "unknown")


def _group_labels(records, dimension: str) -> np.ndarray | str:
    """One label per row for a breakdown dimension, or the reason it cannot be broken down."""
    if dimension == "ear":
        return np.asarray(records.ear).astype(str)
    if dimension == "level":
        level = np.asarray(records.intensity_db, np.float64)
        return np.array([f"{v:g} dB" if np.isfinite(v) else "unknown" for v in level])
    if dimension == "age":
        age = np.asarray(records.age_years, np.float64)
        labels = np.full(len(age), "unknown age", dtype=object)
        for lo, hi, label in AGE_STRATA:
            labels[(age >= lo) & (age < hi)] = label
        return labels.astype(str)
    if dimension == "file":
        return _file_labels(records)
    if dimension == "channel":
        if "channel" not in records.extra:
            return "these records carry no channel"
        return np.asarray(records.extra["channel"]).astype(str)
    raise ValueError(f"unknown breakdown {dimension!r}; expected some of {list(BREAKDOWNS)}")


def _group_order(labels: np.ndarray) -> list[str]:
    def key(label: str):
        try:
            return (0, float(label.removesuffix(" dB")), label)
        except ValueError:
            strata = [s for _, _, s in AGE_STRATA]
            return (1, float(strata.index(label)) if label in strata else math.inf, label)
    return sorted(set(labels.tolist()), key=key)


def worst_rows(records, method_ms, marked_ms, k: int = 6) -> list[dict]:
    """The ``k`` rows with the largest |method − mark| (both finite), largest first (ties: lower row)."""
    method, marked = np.asarray(method_ms, np.float64), np.asarray(marked_ms, np.float64)
    both = np.flatnonzero(np.isfinite(method) & np.isfinite(marked))
    diff = method[both] - marked[both]
    order = both[np.argsort(-np.abs(diff), kind="stable")][:max(int(k), 0)]
    files = _file_labels(records)
    return [{"row": int(i), "patient_id": str(records.patient_id[i]), "ear": str(records.ear[i]),
             "level_db": float(records.intensity_db[i]), "file": str(files[i]), "method_ms": float(method[i]),
             "marked_ms": float(marked[i]), "difference_ms": float(method[i] - marked[i])} for i in order]


def _check_methods(methods: Mapping[str, Mapping[str, np.ndarray]], n: int) -> None:
    allowed = (*WAVE_NAMES, *PRESENCE_KEYS.values())
    for name, readings in methods.items():
        for key, value in readings.items():
            if key not in allowed:
                raise ValueError(f"method {name!r}: unknown reading {key!r}; expected some of {list(allowed)}")
            if np.shape(value) != (n,):
                raise ValueError(f"method {name!r} {key}: shape {np.shape(value)}, expected ({n},), one per row")


def mark_agreement(records, methods: Mapping[str, Mapping[str, np.ndarray]], *,
                   breakdown: Sequence[str] = BREAKDOWNS, n_boot: int = 1000, seed: int = 0,
                   unmarked_means_absent: bool = False, k_worst: int = 6) -> dict:
    """Every method's latency beside the clinician's mark, for every wave the records mark.

    ``methods``: name → {"I"/"III"/"V": latency ms per row (NaN = no reading), optional "V_present":
    bool per row}. Result: ``{"n_rows", "methods", "breakdown", "unmarked_means_absent", "waves"}``;
    ``waves[w]`` is ``{"reason"}`` when no row marks ``w``, else ``{"n_marked", "methods"}`` where each
    method is ``{"reason"}`` (it does not read ``w``) or ``{"overall": bland_altman, "breakdown":
    {dimension: {group: bland_altman} | {"reason"}}, "worst_rows": [...]}``; wave V adds
    ``"presence"``: ``{"reason"}`` or method → :func:`presence_agreement` (or ``{"reason"}``).
    """
    n = len(records)
    _check_methods(methods, n)
    patients = np.asarray(records.patient_id).astype(str)
    labels = {dim: _group_labels(records, dim) for dim in breakdown}

    def compare(marks: np.ndarray, readings: dict[str, np.ndarray | None], what: str) -> dict:
        has_mark = np.isfinite(marks)
        per_method: dict = {}
        for name, reading in readings.items():
            if reading is None:
                per_method[name] = {"reason": f"{name} does not read {what}"}
                continue
            entry = {"overall": bland_altman(reading, marks, patients, n_boot=n_boot, seed=seed), "breakdown": {}}
            for dim, rows in labels.items():
                if isinstance(rows, str):
                    entry["breakdown"][dim] = {"reason": rows}
                    continue
                cells = {}
                for group in _group_order(rows[has_mark]):  # groups among the marked rows
                    sel = rows == group
                    cells[group] = bland_altman(reading[sel], marks[sel], patients[sel], n_boot=n_boot, seed=seed)
                entry["breakdown"][dim] = cells
            entry["worst_rows"] = worst_rows(records, reading, marks, k_worst)
            per_method[name] = entry
        return {"n_marked": int(has_mark.sum()), "methods": per_method}

    def latencies(wave: str) -> dict[str, np.ndarray | None]:
        return {name: None if r.get(wave) is None else np.asarray(r[wave], np.float64) for name, r in methods.items()}

    waves: dict = {}
    for wave in WAVE_NAMES:
        marks = wave_marks(records, wave)
        if not np.isfinite(marks).any():
            waves[wave] = {"reason": f"no wave {wave} marks in these files"}
            continue
        waves[wave] = compare(marks, latencies(wave), f"wave {wave}")
        waves[wave]["presence"] = _presence(records, methods, wave, unmarked_means_absent)
    intervals: dict = {}
    for name, (early, late) in INTERVALS.items():
        marks = wave_marks(records, late) - wave_marks(records, early)
        if not np.isfinite(marks).any():
            intervals[name] = {"reason": f"no trace has both waves {early} and {late} marked"}
            continue
        first, second = latencies(early), latencies(late)
        readings = {m: None if first[m] is None or second[m] is None else second[m] - first[m] for m in methods}
        intervals[name] = compare(marks, readings, f"the {name} interval")
    return {"n_rows": n, "methods": list(methods), "breakdown": list(breakdown),
            "unmarked_means_absent": bool(unmarked_means_absent), "n_boot": int(n_boot), "seed": int(seed),
            "waves": waves, "intervals": intervals}


def _presence(records, methods, wave: str, unmarked_means_absent: bool) -> dict:
    if not unmarked_means_absent:
        return {"reason": NOT_ABSENT}
    marked = np.isfinite(wave_marks(records, wave))
    if wave == "V":
        marked |= np.asarray(records.v_present, bool)
    key = PRESENCE_KEYS[wave]
    return {name: (presence_agreement(readings[key], marked, unmarked_means_absent=True)
                   if readings.get(key) is not None
                   else {"reason": f"{name} does not call wave {wave} present or absent"})
            for name, readings in methods.items()}


# ---------------------------------------------------------------------------- report.txt
def _signed(v) -> str:
    return number(v, "+.2f")


def _ci(entry: Mapping) -> str:
    lo, hi = entry["lo"], entry["hi"]
    if math.isnan(lo) or math.isnan(hi):
        return f"{_signed(entry['value'])} [no interval]"
    return f"{_signed(entry['value'])} [{_signed(lo)}, {_signed(hi)}]"


def _share(v) -> str:
    return number(100 * v, ".0f", unit="%")


def _method_row(name: str, ba: Mapping) -> str:
    shares = "".join(f"{_share(ba[_within_key(t)]):>7s}" for t in WITHIN_MS)
    return (f"  {name:18s}{ba['n']:>6d}  {_ci(ba['bias_ms']):24s}{_ci(ba['loa_lower_ms']):24s}"
            f"{_ci(ba['loa_upper_ms']):24s}{number(ba['mae_ms'], '.2f'):>6s}{shares}")


def _breakdown_lines(name: str, breakdown: Mapping, per_line: int = 4) -> list[str]:
    lines = []
    for dim, groups in breakdown.items():
        head = f"    by {dim:8s}"
        if isinstance(groups.get("reason"), str):
            lines.append(f"{head}{groups['reason']}")
            continue
        cells = [f"{group}: n {ba['n']}, bias {_signed(ba['bias_ms']['value'])}, MAE {number(ba['mae_ms'], '.2f')}"
                 for group, ba in groups.items()]
        for i in range(0, len(cells), per_line):
            lines.append((head if i == 0 else " " * len(head)) + "; ".join(cells[i:i + per_line]))
    return [f"  {name}:"] + lines if lines else []


def format_mark_agreement(result: Mapping) -> list[str]:
    """report.txt lines: per wave, one row per method (n, bias and limits of agreement with their
    patient-bootstrap intervals, MAE, shares within ±0.1/0.2/0.5 ms), then the breakdowns, the rows
    that disagree most and, for wave V, presence."""
    lines = [f"AGREEMENT WITH THE CLINICIAN'S MARKS — method − mark (ms), 95% patient-bootstrap intervals "
             f"({result['n_boot']} resamples), {result['n_rows']} rows"]
    sections = [(f"wave {w}", w, e) for w, e in result["waves"].items()]
    sections += [(f"interval {name}", None, e) for name, e in result.get("intervals", {}).items()]
    for title, wave, entry in sections:
        lines.append("")
        if "reason" in entry:
            lines.append(f"{title}: {entry['reason']}")
            continue
        lines += [f"{title}: {entry['n_marked']} rows marked",
                  f"  {'method':18s}{'n':>6s}  {'bias [95% CI]':24s}{'lower LoA [95% CI]':24s}"
                  f"{'upper LoA [95% CI]':24s}{'MAE':>6s}{'±0.1':>7s}{'±0.2':>7s}{'±0.5':>7s}"]
        read = {name: m for name, m in entry["methods"].items() if "reason" not in m}
        for name, method in entry["methods"].items():
            lines.append(f"  {name:18s}{method['reason']}" if name not in read else _method_row(name, method["overall"]))
        unread = [f"{name} {m['overall']['n_unread']}" for name, m in read.items() if m["overall"]["n_unread"]]
        if unread:
            lines.append(f"  marked rows without a reading (not in the statistics): {', '.join(unread)}")
        for name, method in read.items():
            if "reason" in method["overall"]:
                lines.append(f"  {name}: {method['overall']['reason']}")
            lines += _breakdown_lines(name, method["breakdown"])
            worst = "; ".join(f"row {w['row']} {w['patient_id']} {w['ear']} {number(w['level_db'], 'g')} dB "
                              f"{number(w['method_ms'], '.2f')} vs {number(w['marked_ms'], '.2f')} "
                              f"({_signed(w['difference_ms'])})" for w in method["worst_rows"][:3])
            if worst:
                lines.append(f"    largest differences: {worst}")
        presence = entry.get("presence")
        if presence is not None and wave is not None:
            lines += _presence_lines(wave, presence)
    return lines


def _presence_lines(wave: str, presence: Mapping) -> list[str]:
    if isinstance(presence.get("reason"), str):
        return [f"  wave {wave} present/absent: not scored ({presence['reason']})"]
    lines = [f"  wave {wave} present/absent against the clinician's call:"]
    for name, p in presence.items():
        if "reason" in p:
            lines.append(f"    {name:18s}{p['reason']}")
            continue
        lines.append(f"    {name:18s}κ {number(p['kappa'], '.2f')}  F1 {number(p['f1'], '.2f')}  "
                     f"sensitivity {number(p['sensitivity'], '.2f')}  specificity {number(p['specificity'], '.2f')}  "
                     f"(tp {p['tp']}, fp {p['fp']}, fn {p['fn']}, tn {p['tn']})")
    return lines
