"""PNG figures of an evaluation: what a reader checks by eye before trusting the numbers.

Figures are drawn on ``matplotlib.figure.Figure`` objects (Agg canvas), never through pyplot: no
global state, no display needed, safe in threads and tests. Each file is written atomically.
Every function takes plain arrays and a path and returns the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io import atomic_open

DPI = 110


def _figure(n_panels: int, width_in: float = 4.2, height_in: float = 3.6) -> tuple[Figure, list]:
    fig = Figure(figsize=(width_in * n_panels, height_in))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False, gridspec_kw={"wspace": 0.32})[0]
    return fig, list(axes)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    return path


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def confusion_matrices(matrices: dict[str, np.ndarray], class_names: list[str], path) -> Path:
    """Row-normalised confusion matrices (recall on the diagonal) with counts, one panel per method."""
    fig, axes = _figure(len(matrices), 4.6, 4.2)
    short = [n[:6] for n in class_names]
    for ax, (title, cm) in zip(axes, matrices.items()):
        cm = np.asarray(cm, np.float64)
        rows = cm.sum(axis=1, keepdims=True)
        share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(short)), short, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(short)), short, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def latency_scatter(panels: dict[str, tuple[np.ndarray, np.ndarray]], path) -> Path:
    """Predicted vs clinician-marked wave V latency (ms), identity line and ±0.5 ms band."""
    fig, axes = _figure(len(panels))
    for ax, (title, (pred, true)) in zip(axes, panels.items()):
        ok = np.isfinite(pred) & np.isfinite(true)
        if not ok.any():
            _empty(ax, "no marked wave V with a prediction")
            ax.set_title(title, fontsize=10)
            continue
        lo, hi = float(min(pred[ok].min(), true[ok].min())) - 0.3, float(max(pred[ok].max(), true[ok].max())) + 0.3
        line = np.array([lo, hi])
        ax.fill_between(line, line - 0.5, line + 0.5, color="0.9", label="±0.5 ms")
        ax.plot(line, line, color="0.4", lw=1)
        ax.scatter(true[ok], pred[ok], s=4, alpha=0.35)
        mae = float(np.mean(np.abs(pred[ok] - true[ok])))
        ax.set_title(f"{title}\nMAE {mae:.3f} ms over {int(ok.sum())} marked waves", fontsize=10)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("marked V latency (ms)")
        ax.set_ylabel("predicted V latency (ms)")
        ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def latency_intensity(panels: dict[str, tuple[np.ndarray, np.ndarray]], bands: dict[str, tuple[np.ndarray, ...]],
                      path) -> Path:
    """Wave V latency against level (one panel per method: level dB nHL, latency ms), with each norm
    band (``bands``: label → (levels, lo, hi)) shaded behind the points."""
    fig, axes = _figure(len(panels))
    for ax, (title, (level, latency)) in zip(axes, panels.items()):
        for k, (label, (lv, lo, hi)) in enumerate(bands.items()):
            ax.fill_between(lv, lo, hi, color=f"C{k + 1}", alpha=0.18, label=f"norm {label}")
        ok = np.isfinite(level) & np.isfinite(latency)
        if not ok.any():
            _empty(ax, "no wave V read")
        else:
            jitter = np.random.default_rng(0).uniform(-1.0, 1.0, int(ok.sum()))  # levels are on a 5 dB grid
            ax.scatter(level[ok] + jitter, latency[ok], s=4, alpha=0.3, color="C0")
        ax.set_title(f"{title}\n{int(ok.sum())} recordings", fontsize=10)
        ax.set_xlabel("level (dB nHL)")
        ax.set_ylabel("wave V latency (ms)")
        ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def bland_altman(panels: dict[str, tuple[np.ndarray, np.ndarray]], path) -> Path:
    """Bland–Altman of per-ear thresholds (dB) where both are finite; no-response mismatches counted."""
    fig, axes = _figure(len(panels))
    for ax, (title, (est, true)) in zip(axes, panels.items()):
        ok = np.isfinite(est) & np.isfinite(true)
        mismatch = int(np.sum(np.isinf(est) != np.isinf(true)))
        if not ok.any():
            _empty(ax, "no ear with both thresholds finite")
            ax.set_title(title, fontsize=10)
            continue
        mean, diff = (est[ok] + true[ok]) / 2, est[ok] - true[ok]
        bias, sd = float(diff.mean()), float(diff.std(ddof=1)) if ok.sum() > 1 else 0.0
        ax.scatter(mean, diff, s=8, alpha=0.5)
        ax.axhline(bias, color="C3", lw=1, label=f"bias {bias:+.1f} dB")
        for k in (-1.96, 1.96):
            ax.axhline(bias + k * sd, color="C3", lw=1, ls="--")
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xlabel("mean of estimate and recorded threshold (dB nHL)")
        ax.set_ylabel("estimate − recorded (dB)")
        ax.set_title(f"{title}\n{int(ok.sum())} ears both finite, {mismatch} no-response mismatches", fontsize=10)
        ax.legend(loc="upper right", fontsize=8, title=f"limits ±{1.96 * sd:.1f} dB", title_fontsize=8)
    return _save(fig, path)


def reconstructions(time_ms: np.ndarray, original: np.ndarray, recon: dict[int, np.ndarray], labels: list[str],
                    unit: str, path) -> Path:
    """Recordings (grey) and their reconstructions x̂0 from noise level t, one panel per recording."""
    n = len(original)
    fig, axes = _figure(max(n, 1), 3.8, 3.2)
    if n == 0:
        _empty(axes[0], "no recordings")
    for i, ax in enumerate(axes[:n]):
        for k, (t, x) in enumerate(recon.items()):
            ax.plot(time_ms, x[i], lw=1, color=f"C{k}", alpha=0.85, label=f"x̂0 from t={t}")
        ax.plot(time_ms, original[i], color="black", lw=0.9, label="recording")
        ax.set_title(labels[i], fontsize=9)
        ax.set_xlabel("time (ms)")
        if i == 0:
            ax.set_ylabel(f"amplitude ({unit})")
            ax.legend(fontsize=7)
    return _save(fig, path)


def generated_vs_real(time_ms: np.ndarray, generated: np.ndarray, real: np.ndarray, classes: np.ndarray,
                      class_names: list[str], unit: str, path) -> Path:
    """Per class: mean ± SD of generated and of real twins, and one generated example."""
    present = [c for c in np.unique(classes)]
    fig, axes = _figure(max(len(present), 1), 3.8, 3.2)
    if not present:
        _empty(axes[0], "nothing generated")
    for ax, c in zip(axes, present):
        rows = classes == c
        for data, colour, name in ((real[rows], "0.45", "real"), (generated[rows], "C1", "generated")):
            mean, sd = data.mean(axis=0), data.std(axis=0)
            ax.fill_between(time_ms, mean - sd, mean + sd, color=colour, alpha=0.2, lw=0)
            ax.plot(time_ms, mean, color=colour, lw=1.5, label=f"{name} mean ± SD")
        ax.plot(time_ms, generated[rows][0], color="C1", lw=0.7, ls=":", label="one generated")
        name = class_names[c] if 0 <= c < len(class_names) else "UNKNOWN"
        ax.set_title(f"{name} (n={int(rows.sum())})", fontsize=9)
        ax.set_xlabel("time (ms)")
    axes[0].set_ylabel(f"amplitude ({unit})")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def reliability(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path) -> Path:
    """Reliability diagrams: observed frequency vs mean predicted probability per bin (marker size ~ n)."""
    fig, axes = _figure(len(curves))
    for ax, (title, (prob_mean, observed, count)) in zip(axes, curves.items()):
        ax.plot([0, 1], [0, 1], color="0.5", lw=1, ls="--")
        if len(count):
            size = 10 + 90 * np.sqrt(count / max(count.max(), 1))
            ax.plot(prob_mean, observed, color="C0", lw=1)
            ax.scatter(prob_mean, observed, s=size, color="C0")
        else:
            _empty(ax, "no labelled recordings")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed frequency")
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def reliability_bins(prob: np.ndarray, outcome: np.ndarray, n_bins: int = 10
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean probability, observed frequency, count) of the non-empty equal-width bins."""
    prob, outcome = np.asarray(prob, np.float64), np.asarray(outcome, np.float64)
    ok = np.isfinite(prob)
    prob, outcome = prob[ok], outcome[ok]
    bins = np.clip((prob * n_bins).astype(int), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    keep = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(bins, prob, n_bins) / count
        observed = np.bincount(bins, outcome, n_bins) / count
    return mean_p[keep], observed[keep], count[keep]


def is_png(path: str | os.PathLike) -> bool:
    """The file starts with the PNG signature (a cheap validity check for tests and the CLI)."""
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89PNG\r\n\x1a\n"
