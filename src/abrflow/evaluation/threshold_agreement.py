"""Agreement of threshold estimates with one or several expert raters, per ear (issue 18, item 3).

``threshold_agreement(estimates, raters)`` compares each method's threshold per ear (series key
``patient|ear|session``) with the experts' thresholds of that ear:

- the reference is the raters' median; an ear's raters' range is [min, max] (unknown, NaN, with
  one rater);
- a method's error is estimate − median in dB. "No response" (+inf) is a value like any other:
  both no response is an error of 0, the method alone +inf, the raters alone −inf. MAE and bias
  use the ears where both are finite; the shares within ±5/±10 dB count every ear with an
  estimate (both no response within, one of them not); the no-response agreement is reported
  apart;
- the raters' own agreement, for comparison, is leave-one-out: each rater against the median
  (and the range) of the other raters of its ear, on ears with two raters or more, scored like a
  method. It tells how close a method would have to be to be as good as one more expert.

``format_threshold_agreement(result)`` writes it as report lines: one table per ear, then the
summary per method beside the raters' own figures. Pure Python/NumPy; JSON-ready (NaN stays NaN,
``io.write_json`` writes it as null).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..text import number

RATERS_ROW = "raters (each vs the others)"
SINGLE_RATER_NOTE = ("one rater per ear: the raters' spread and their leave-one-out agreement are unknown (n/a); "
                     "the methods are compared with that rater alone")
NaN = float("nan")


def _dev(a: float, b: float) -> float:
    """Distance in dB, no response included: 0 when equal (both +inf), inf when only one is; NaN if unknown."""
    if math.isnan(a) or math.isnan(b):
        return NaN
    return 0.0 if a == b else abs(a - b)


def _error(estimate: float, reference: float) -> float:
    """estimate − reference, with both no response = 0 (inf − inf would be NaN)."""
    if math.isnan(estimate) or math.isnan(reference):
        return NaN
    return 0.0 if estimate == reference else estimate - reference


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64))) if len(values) else NaN


def _value(v, where: str) -> float:
    value = float(v) if v is not None else NaN
    if value == -math.inf:
        raise ValueError(f"{where}: a threshold of -inf dB is not a threshold (+inf is no response, NaN no estimate)")
    return value


def _ratings(raters: Mapping[str, Sequence[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    """Per ear, rater → value, NaN ratings dropped, ears without any left out."""
    ears: dict[str, dict[str, float]] = {}
    for key, pairs in raters.items():
        ear: dict[str, float] = {}
        for name, value in pairs:
            if name in ear:
                raise ValueError(f"ear {key!r}: rater {name!r} rated it twice")
            value = _value(value, f"ear {key!r}, rater {name!r}")
            if not math.isnan(value):
                ear[str(name)] = value
        if ear:
            ears[str(key)] = ear
    return ears


def _compare(estimate: float, reference: float, low: float, high: float) -> dict:
    """One estimate against a reference (a median) and a range ([NaN, NaN]: unknown)."""
    known = not math.isnan(estimate)
    ranged = known and not math.isnan(low)
    return {"estimate_db": estimate, "error_db": _error(estimate, reference),
            "inside_range": bool(low <= estimate <= high) if ranged else None}


def _ear(values: dict[str, float], methods: dict[str, dict[str, float]], key: str) -> dict:
    numbers = list(values.values())
    median = _median(numbers)
    several = len(numbers) >= 2
    low, high = (min(numbers), max(numbers)) if several else (NaN, NaN)
    deviations = {name: _dev(v, median) for name, v in values.items()}
    loo = {}
    for name, v in values.items():
        others = [w for other, w in values.items() if other != name]
        reference = _median(others)
        loo[name] = {"others_median_db": reference,
                     **_compare(v, reference, *((min(others), max(others)) if others else (NaN, NaN)))}
    per_method = {}
    for method, estimates in methods.items():
        row = _compare(_value(estimates.get(key, NaN), f"method {method!r}, ear {key!r}"), median, low, high)
        distance = _dev(row["estimate_db"], median)
        row["raters_further"] = (int(sum(d > distance for d in deviations.values()))
                                 if several and not math.isnan(distance) else None)
        per_method[method] = row
    return {"n_raters": len(numbers), "raters": dict(values), "median_db": median, "min_db": low, "max_db": high,
            "spread_db": _error(high, low), "rater_deviation_db": {n: _error(v, median) for n, v in values.items()},
            "rater_vs_others": loo, "methods": per_method}


def _share(flags: list[bool]) -> float:
    return float(np.mean(flags)) if flags else NaN


def _summary(rows: list[dict], references: list[float], n_raters: list[int] | None = None) -> dict:
    """Figures over comparisons ``rows`` (``_compare`` dicts) against ``references`` (the medians)."""
    pairs = [(r, ref) for r, ref in zip(rows, references) if not math.isnan(r["estimate_db"]) and not math.isnan(ref)]
    finite = [r["error_db"] for r, ref in pairs if math.isfinite(r["estimate_db"]) and math.isfinite(ref)]
    distances = [abs(r["error_db"]) for r, _ in pairs]
    ranged = [r["inside_range"] for r, _ in pairs if r["inside_range"] is not None]
    both = sum(1 for r, ref in pairs if r["estimate_db"] == math.inf and ref == math.inf)
    method_only = sum(1 for r, ref in pairs if r["estimate_db"] == math.inf and ref != math.inf)
    raters_only = sum(1 for r, ref in pairs if r["estimate_db"] != math.inf and ref == math.inf)
    out = {"n_ears": len(pairs), "n_missing": len(rows) - len(pairs), "n_finite": len(finite),
           "mae_db": float(np.mean(np.abs(finite))) if finite else NaN,
           "bias_db": float(np.mean(finite)) if finite else NaN,
           "within_5_db": _share([d <= 5.0 for d in distances]), "within_10_db": _share([d <= 10.0 for d in distances]),
           "inside_range": _share(ranged), "n_ranged": len(ranged),
           "no_response": {"agree": _share([(r["estimate_db"] == math.inf) == (ref == math.inf) for r, ref in pairs]),
                           "both": both, "method_only": method_only, "raters_only": raters_only}}
    if n_raters is not None:
        further = [r["raters_further"] / n for r, n in zip(rows, n_raters) if r.get("raters_further") is not None]
        out["raters_further_share"] = _share(further)
    return out


def threshold_agreement(estimates: Mapping[str, Mapping[str, float]],
                        raters: Mapping[str, Sequence[tuple[str, float]]]) -> dict:
    """Each method's thresholds (``{method: {series_key: dB}}``; +inf no response, NaN none) vs the raters'.

    ``raters``: ``{series_key: [(rater, dB), …]}`` (``read_thresholds_csv``, ``smartep_rater_thresholds``).
    Only ears with a rating are scored; a method's estimates of other ears are counted, not scored.
    """
    ratings = _ratings(raters)
    methods = {str(m): {str(k): v for k, v in per_key.items()} for m, per_key in estimates.items()}
    ears = {key: _ear(values, methods, key) for key, values in ratings.items()}
    counts = [e["n_raters"] for e in ears.values()]
    names = list(dict.fromkeys(name for values in ratings.values() for name in values))
    medians = [e["median_db"] for e in ears.values()]
    summary = {}
    for method in methods:
        summary[method] = _summary([e["methods"][method] for e in ears.values()], medians, counts)
        summary[method]["n_unrated"] = sum(1 for k in methods[method] if k not in ratings)
    multi = [e for e in ears.values() if e["n_raters"] >= 2]
    loo_rows = [row for e in multi for row in e["rater_vs_others"].values()]
    raters_figures = _summary(loo_rows, [row["others_median_db"] for row in loo_rows])
    raters_figures["n_ears"], raters_figures["n_ratings"] = len(multi), len(loo_rows)
    note = None
    if not ears:
        note = "no expert thresholds for any ear"
    elif not multi:
        note = SINGLE_RATER_NOTE
    elif len(multi) < len(ears):
        note = (f"{len(ears) - len(multi)} of {len(ears)} ears have one rater: no spread there; the raters' own "
                f"figures use the {len(multi)} ears with two or more")
    return {"n_ears": len(ears), "n_raters": {"min": min(counts, default=0), "max": max(counts, default=0)},
            "raters": names, "methods": list(methods), "ears": ears, "summary": summary,
            "raters_leave_one_out": raters_figures, "note": note}


# ---------------------------------------------------------------- report lines


def _db(value: float) -> str:
    return number(value, ".1f", unit=" dB", nan="n/a", inf="no response")


def _signed(value: float) -> str:
    return number(value, "+.1f", unit=" dB", nan="n/a", inf="+inf (no response)", neg_inf="-inf (raters: no response)")


def _percent(share: float) -> str:
    return number(share * 100.0, ".0f", unit="%", nan="n/a")


def _yes(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "no")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]


def _ear_lines(key: str, ear: dict) -> list[str]:
    n = ear["n_raters"]
    if n < 2:
        spread = "one rater: spread n/a"
    elif ear["min_db"] == ear["max_db"]:
        spread = "all raters agree"
    else:
        spread = f"raters {_db(ear['min_db'])} to {_db(ear['max_db'])} (spread {_db(ear['spread_db'])})"
    header = ["source", "threshold", "vs median", "vs others' median", "inside range", "raters further"]
    rows = [[name, _db(value), _signed(ear["rater_deviation_db"][name]), _signed(ear["rater_vs_others"][name]["error_db"]),
             _yes(ear["rater_vs_others"][name]["inside_range"]), ""] for name, value in ear["raters"].items()]
    for method, row in ear["methods"].items():
        further = "n/a" if row["raters_further"] is None else f"{row['raters_further']} of {n}"
        rows.append([method, _db(row["estimate_db"]), _signed(row["error_db"]), "", _yes(row["inside_range"]), further])
    return [f"{key}: {n} rater(s), median {_db(ear['median_db'])}, {spread}", *_table(header, rows)]


def _summary_row(name: str, s: dict, further: str) -> list[str]:
    nr = s["no_response"]
    ears = f"{s['n_ears']} ({s['n_ratings']} ratings)" if "n_ratings" in s else str(s["n_ears"])
    return [name, ears, _db(s["mae_db"]), _signed(s["bias_db"]), _percent(s["within_5_db"]),
            _percent(s["within_10_db"]), _percent(s["inside_range"]), further,
            f"{_percent(nr['agree'])} (both {nr['both']}, method only {nr['method_only']}, "
            f"raters only {nr['raters_only']})"]


def format_threshold_agreement(result: dict) -> list[str]:
    """report.txt lines: a table per ear (raters and methods side by side), then the summary per method."""
    n = result["n_raters"]
    count = str(n["min"]) if n["min"] == n["max"] else f"{n['min']} to {n['max']}"
    lines = [f"Agreement with expert thresholds: {result['n_ears']} ear(s), {count} rater(s) per ear "
             f"({', '.join(result['raters']) or 'none'}); methods: {', '.join(result['methods']) or 'none'}"]
    if result["note"]:
        lines.append(f"note: {result['note']}")
    if result["ears"]:
        lines.append("Per ear: a rater's 'vs others' median' and 'inside range' compare it with the other raters; "
                     "'raters further': raters further from the median than the method.")
    for key, ear in result["ears"].items():
        lines += ["", *_ear_lines(key, ear)]
    header = ["method", "ears", "MAE", "bias", "within 5 dB", "within 10 dB", "inside range", "raters further",
              "no response agrees"]
    rows = [_summary_row(method, s, _percent(s["raters_further_share"])) for method, s in result["summary"].items()]
    rows.append(_summary_row(RATERS_ROW, result["raters_leave_one_out"], ""))
    lines += ["", "Summary per method, against the raters' median (MAE and bias on ears where both are finite; "
              "raters: each against the median and range of the others):", *_table(header, rows)]
    unscored = {m: s["n_missing"] for m, s in result["summary"].items() if s["n_missing"]}
    if unscored:
        lines.append("ears rated but without an estimate: " + ", ".join(f"{m} {k}" for m, k in unscored.items()))
    return lines
