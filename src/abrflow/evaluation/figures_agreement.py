"""PNG figures of the agreement with the clinician's marks (issue 18, item 2): Bland–Altman plots of
latencies per method and wave, and the traces where a method and the clinician disagree most.

Drawn with the helpers of :mod:`abrflow.evaluation.figures` (Agg canvas, no pyplot, atomic save).
Every function takes plain arrays and a path and returns the path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .figures import _empty, _figure, _save
from .mark_agreement import LOA_Z

#: Colours of the mark lines by label; other labels take the next colours of the cycle.
MARK_COLOURS = {"clinician": "black", "model": "C3", "classical picker": "C0"}


def bland_altman_marks(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], path) -> Path:
    """Bland–Altman of latencies (ms), one panel per method × wave: method − mark against their mean,
    with the bias and the 95 % limits of agreement (bias ± 1.96 sd) over the rows where both are finite."""
    fig, axes = _figure(max(len(panels), 1))
    if not panels:
        _empty(axes[0], "no marked wave with a reading")
    for ax, (title, (method, marked)) in zip(axes, panels.items()):
        method, marked = np.asarray(method, np.float64), np.asarray(marked, np.float64)
        ok = np.isfinite(method) & np.isfinite(marked)
        unread = int(np.sum(np.isfinite(marked) & ~np.isfinite(method)))
        if ok.sum() < 2:
            _empty(ax, f"{int(ok.sum())} marked rows with a reading\n(Bland–Altman needs 2)")
            ax.set_title(title, fontsize=10)
            continue
        mean, diff = (method[ok] + marked[ok]) / 2, method[ok] - marked[ok]
        bias, sd = float(diff.mean()), float(diff.std(ddof=1))
        ax.scatter(mean, diff, s=8, alpha=0.5)
        ax.axhline(0, color="0.5", lw=0.8)
        ax.axhline(bias, color="C3", lw=1, label=f"bias {bias:+.2f} ms")
        for k in (-LOA_Z, LOA_Z):
            ax.axhline(bias + k * sd, color="C3", lw=1, ls="--")
        ax.set_xlabel("mean of method and mark (ms)")
        ax.set_ylabel("method − mark (ms)")
        ax.set_title(f"{title}\n{int(ok.sum())} marked rows read, {unread} not read", fontsize=10)
        ax.legend(loc="upper right", fontsize=8, title=f"limits {bias - LOA_Z * sd:+.2f} to {bias + LOA_Z * sd:+.2f} ms",
                  title_fontsize=8)
    return _save(fig, path)


def _trace_panels(time_ms: np.ndarray, signals: np.ndarray, marks: Sequence, titles: Sequence[str],
                  empty_text: str) -> tuple:
    """(figure, axes, signals [n, T]) of one panel per trace, each trace already drawn; one set of marks
    and one title per trace, or a ValueError; with no trace, one panel saying ``empty_text``."""
    signals = np.atleast_2d(np.asarray(signals, np.float64)) if len(signals) else np.empty((0, len(time_ms)))
    n = len(signals)
    if not (len(marks) == len(titles) == n):
        raise ValueError(f"{n} traces, {len(marks)} mark sets and {len(titles)} titles: one of each per trace")
    fig, axes = _figure(max(n, 1), 3.8, 3.2)
    if n == 0:
        _empty(axes[0], empty_text)
    for ax, signal in zip(axes, signals):
        ax.plot(time_ms, signal, color="0.35", lw=0.9)
    return fig, axes, signals


def worst_traces(time_ms: np.ndarray, signals: np.ndarray, marks: Sequence[Mapping[str, float]],
                 titles: Sequence[str], path) -> Path:
    """Each trace with every mark (label → latency ms, e.g. {"model": 6.1, "clinician": 5.7}) drawn as a
    labelled vertical line; a mark that is NaN is named in the legend as "no reading"."""
    fig, axes, signals = _trace_panels(time_ms, signals, marks, titles, "no trace with both a mark and a reading")
    colours = dict(MARK_COLOURS)
    for i, ax in enumerate(axes[:len(signals)]):
        for label, latency in marks[i].items():
            colour = colours.setdefault(label, f"C{len(colours) % 10}")
            if np.isfinite(latency):
                ax.axvline(latency, color=colour, lw=1.2, ls="--" if label == "clinician" else "-",
                           label=f"{label} {latency:.2f} ms")
            else:
                ax.plot([], [], color=colour, label=f"{label}: no reading")
        ax.set_title(titles[i], fontsize=9)
        ax.set_xlabel("time (ms)")
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("amplitude")
    return _save(fig, path)


#: Marker per method in the example-marks figure (other methods get a round marker).
METHOD_MARKERS = {"clinician": "v", "model": "o", "classical picker": "s"}


def example_marks(time_ms: np.ndarray, signals: np.ndarray, marks: Sequence[Mapping[str, Mapping[str, float]]],
                  titles: Sequence[str], path) -> Path:
    """Example traces with every method's waves I, III and V marked on the trace: per trace
    ``{method: {wave: latency ms}}``; a marker sits on the trace at each latency, one shape per method,
    one colour per wave, so a reader sees at once which hump each method called which wave."""
    fig, axes, signals = _trace_panels(time_ms, signals, marks, titles, "no trace with all three waves marked")
    wave_colours: dict[str, str] = {}
    for i, ax in enumerate(axes[:len(signals)]):
        for method, waves in marks[i].items():
            for wave, latency in waves.items():
                colour = wave_colours.setdefault(wave, f"C{len(wave_colours) % 10}")
                if not np.isfinite(latency):
                    continue
                y = float(np.interp(latency, time_ms, signals[i]))
                ax.plot([latency], [y], marker=METHOD_MARKERS.get(method, "o"), color=colour, ls="none",
                        ms=6, mfc="none" if method != "clinician" else colour)
        for method, marker in METHOD_MARKERS.items():
            ax.plot([], [], marker=marker, color="0.2", ls="none", label=method)
        for wave, colour in wave_colours.items():
            ax.plot([], [], color=colour, lw=3, label=f"wave {wave}")
        ax.set_title(titles[i], fontsize=9)
        ax.set_xlabel("time (ms)")
        ax.legend(fontsize=6, loc="upper right", ncol=2)
    axes[0].set_ylabel("amplitude")
    return _save(fig, path)
