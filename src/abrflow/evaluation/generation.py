"""Distribution-level quality of generated waveforms, judged against real recordings of the same conditions.

Generation is conditional, so every generated waveform has a real twin: a recording of the evaluated
split whose static inputs (age, level, rate, Fmp), class and ear threshold it was generated with.
Twins are drawn balanced over the classes present (the rare classes are where a generator most
often collapses to NORMAL-looking traces). A second, disjoint draw of real recordings with the same
class counts gives the real-vs-real value of each statistic: the best any generator can score at
this sample size (Fréchet distance and the discriminator are biased at small n).

- Discriminative score: a post-hoc logistic regression separates real from generated on the
  waveform plus its band powers, trained on one half of the twin pairs and scored on the other
  (both ways, averaged); score = |accuracy − 0.5|, 0 = indistinguishable, 0.5 = separable.
- Fréchet distance in the space of a FIXED encoder: a PCA (16 components, µV) fitted once on real
  recordings (the checkpoint's training split when at hand) — "context-FID" style, but with an
  encoder that needs no training of its own, is deterministic and is the same for every model
  evaluated on the same data, so distances are comparable across checkpoints.
- Wave V of the generated waves, measured by the classical peak picker
  (:func:`~abrflow.clinical.picker.pick_wave_v`) and compared per class with the picker on the
  real twins and with the clinician's marks on them (the conditioning physiology).
- Diversity: mean pairwise RMS distance (µV) within the generated set and within the real twins;
  a ratio well below 1 is mode collapse, well above 1 is noise.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.signal
from scipy.spatial.distance import pdist
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ..clinical.picker import pick_wave_v
from ..data.records import ABRRecords
from ..data.schema import VALID_RANGES
from . import metrics, stratify

NAN = float("nan")
#: Components of the fixed PCA encoder of the Fréchet distance.
FRECHET_COMPONENTS = 16
#: Most real recordings the encoder is fitted on (a fixed-seed subsample beyond that).
ENCODER_MAX_FIT = 5000
#: Edges (Hz) of the band powers the discriminator sees beside the raw waveform.
BAND_EDGES_HZ = (100.0, 200.0, 400.0, 700.0, 1000.0, 1500.0, 2200.0, 3000.0)


# ---------------------------------------------------------------------------- choosing twins
def balanced_draw(hearing_loss: np.ndarray, n: int, rng: np.random.Generator,
                  exclude: np.ndarray | None = None) -> np.ndarray:
    """Row indices, ``n`` in all, spread as evenly as possible over the classes present.

    Within a class rows are drawn without replacement while enough remain (with replacement only
    for a class rarer than its share). ``exclude`` rows are not drawn; a class they exhaust gives
    fewer rows (the real-vs-real reference may then be smaller than ``n``).
    """
    codes = np.asarray(hearing_loss).astype(int)
    allowed = np.ones(len(codes), bool)
    if exclude is not None:
        allowed[exclude] = False
    classes = [c for c in np.unique(codes[codes >= 0])]
    if not classes:
        classes = [-1]
    share = np.full(len(classes), n // len(classes))
    share[: n % len(classes)] += 1
    out = []
    for c, k in zip(classes, share):
        pool = np.flatnonzero((codes == c) & allowed)
        if pool.size == 0 or k == 0:
            continue
        replace = exclude is None and pool.size < k
        out.append(rng.choice(pool, size=int(k) if replace else min(int(k), pool.size), replace=replace))
    return np.sort(np.concatenate(out)) if out else np.zeros(0, int)


# ---------------------------------------------------------------------------- statistics
def band_powers_db(signal: np.ndarray, sampling_rate_hz: float) -> np.ndarray:
    """[N, bands] log power (dB) in the bands of BAND_EDGES_HZ (Hann periodogram)."""
    freq, power = scipy.signal.periodogram(signal, fs=sampling_rate_hz, window="hann", axis=1)
    edges = [e for e in BAND_EDGES_HZ if e <= sampling_rate_hz / 2]
    cols = [power[:, (freq >= lo) & (freq < hi)].sum(axis=1) for lo, hi in zip(edges[:-1], edges[1:])]
    return 10 * np.log10(np.stack(cols, axis=1) + 1e-12)


def _features(signal: np.ndarray, sampling_rate_hz: float) -> np.ndarray:
    return np.concatenate([signal, band_powers_db(signal, sampling_rate_hz)], axis=1)


def discriminative_score(real: np.ndarray, generated: np.ndarray, sampling_rate_hz: float,
                         seed: int = 0) -> dict:
    """|accuracy − 0.5| of a logistic regression telling ``real`` from ``generated`` on held-out halves.

    Row i of both sets is one pair (same conditions): pairs are split in two halves, the
    classifier is fitted on one half of the pairs and scored on the other, then the other way
    round; the accuracy is the mean of the two held-out accuracies. NaN with fewer than 4 pairs.
    """
    n = min(len(real), len(generated))
    if n < 4:
        return {"score": NAN, "accuracy": NAN, "n_pairs": int(n), "reason": "fewer than 4 pairs"}
    x = np.concatenate([_features(real[:n], sampling_rate_hz), _features(generated[:n], sampling_rate_hz)])
    y = np.r_[np.zeros(n), np.ones(n)]
    pair = np.r_[np.arange(n), np.arange(n)]
    half = np.random.default_rng(seed).permutation(n) < n // 2
    fold = half[pair]
    accuracies = []
    for train in (fold, ~fold):
        scaler = StandardScaler().fit(x[train])
        clf = LogisticRegression(C=1.0, max_iter=5000).fit(scaler.transform(x[train]), y[train])
        accuracies.append(float(np.mean(clf.predict(scaler.transform(x[~train])) == y[~train])))
    accuracy = float(np.mean(accuracies))
    return {"score": abs(accuracy - 0.5), "accuracy": accuracy, "n_pairs": int(n)}


class FrechetEncoder:
    """The fixed feature map of the Fréchet distance: PCA of the waveform (µV), fitted once on real data."""

    def __init__(self, reference: np.ndarray, n_components: int = FRECHET_COMPONENTS, seed: int = 0,
                 fitted_on: str = ""):
        reference = np.asarray(reference, np.float64)
        if len(reference) > ENCODER_MAX_FIT:
            keep = np.random.default_rng(seed).choice(len(reference), ENCODER_MAX_FIT, replace=False)
            reference = reference[np.sort(keep)]
        k = int(min(n_components, reference.shape[1], max(len(reference) - 1, 1)))
        self.pca = PCA(n_components=k, svd_solver="full").fit(reference)
        self.n_fit = len(reference)
        self.fitted_on = fitted_on

    def __call__(self, signal: np.ndarray) -> np.ndarray:
        return self.pca.transform(np.asarray(signal, np.float64))

    def describe(self) -> dict:
        return {"encoder": f"PCA({self.pca.n_components_}) of the waveform", "fitted_on": self.fitted_on,
                "n_fit": int(self.n_fit),
                "explained_variance": float(self.pca.explained_variance_ratio_.sum())}


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa^½ Σb Σa^½)^½): stable for singular covariances (small n).

    NaN with fewer than 2 rows on either side.
    """
    if len(feat_a) < 2 or len(feat_b) < 2:
        return NAN
    mu_a, mu_b = feat_a.mean(axis=0), feat_b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(feat_a, rowvar=False)), np.atleast_2d(np.cov(feat_b, rowvar=False))
    root_a = _sqrt_psd(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_cross = float(np.sqrt(np.clip(cross, 0, None)).sum())
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_cross)


def mean_pairwise_distance(signal: np.ndarray) -> float:
    """Mean RMS distance (signal unit) over all pairs of rows; NaN with fewer than 2 rows."""
    if len(signal) < 2:
        return NAN
    return float(pdist(np.asarray(signal, np.float64), "euclidean").mean() / math.sqrt(signal.shape[1]))


def _ratio(a: float, b: float) -> float:
    return a / b if np.isfinite(a) and np.isfinite(b) and b > 0 else NAN


def _mean(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else NAN


def _slope_ms_per_db(level_db: np.ndarray, latency_ms: np.ndarray) -> float:
    ok = np.isfinite(level_db) & np.isfinite(latency_ms)
    return float(np.polyfit(level_db[ok], latency_ms[ok], 1)[0]) if np.unique(level_db[ok]).size >= 2 else NAN


def wave_v_comparison(real: ABRRecords, generated: np.ndarray) -> dict:
    """Peak-picker wave V on generated twins vs the picker and the clinician's marks on the real ones.

    Latencies are taken where the picker calls V present. ``latency_mae_vs_marked_ms`` pairs each
    generated wave with its twin's marked V (both must exist); the latency–intensity slope is the
    physiology a conditional generator must reproduce (≈ −0.03 to −0.05 ms/dB).
    """
    gen = real.replace(signal=np.asarray(generated, np.float32))
    pg, pr = pick_wave_v(gen), pick_wave_v(real)
    lat_g = np.where(pg["v_present"], pg["v_latency_ms"], np.nan)
    lat_r = np.where(pr["v_present"], pr["v_latency_ms"], np.nan)
    amp_g = np.where(pg["v_present"], pg["v_amplitude_uv"], np.nan)
    amp_r = np.where(pr["v_present"], pr["v_amplitude_uv"], np.nan)
    marked_lat, marked_amp = real.v_latency_ms.astype(np.float64), real.v_amplitude_uv.astype(np.float64)
    both = np.isfinite(lat_g) & np.isfinite(marked_lat)
    amp_both = np.isfinite(amp_g) & np.isfinite(marked_amp) & both
    level = real.intensity_db.astype(np.float64)
    return {
        "n": len(real),
        "picker_v_present_rate_generated": float(np.mean(pg["v_present"])) if len(real) else NAN,
        "picker_v_present_rate_real": float(np.mean(pr["v_present"])) if len(real) else NAN,
        "marked_v_present_rate_real": float(np.mean(real.v_present)) if len(real) else NAN,
        "v_latency_ms_generated": _mean(lat_g),
        "v_latency_ms_real_picked": _mean(lat_r),
        "v_latency_ms_real_marked": _mean(marked_lat),
        "v_amplitude_uv_generated": _mean(amp_g),
        "v_amplitude_uv_real_picked": _mean(amp_r),
        "v_amplitude_uv_real_marked": _mean(marked_amp),
        "n_latency_pairs": int(both.sum()),
        "latency_mae_vs_marked_ms": _mean(np.abs(lat_g - marked_lat)[both]),
        "latency_bias_vs_marked_ms": _mean((lat_g - marked_lat)[both]),
        "amplitude_mae_vs_marked_uv": _mean(np.abs(amp_g - marked_amp)[amp_both]),
        "latency_intensity_slope_ms_per_db_generated": _slope_ms_per_db(level, lat_g),
        "latency_intensity_slope_ms_per_db_real_marked": _slope_ms_per_db(level, marked_lat),
    }


def class_aligned(classes_a: np.ndarray, classes_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal-length row indices into two sets, class by class (as many of each class as both hold)."""
    ia, ib = [], []
    for c in np.intersect1d(classes_a, classes_b):
        ra, rb = np.flatnonzero(classes_a == c), np.flatnonzero(classes_b == c)
        k = min(ra.size, rb.size)
        ia.append(ra[:k])
        ib.append(rb[:k])
    return (np.concatenate(ia), np.concatenate(ib)) if ia else (np.zeros(0, int), np.zeros(0, int))


def _per_row(signal_pred: np.ndarray, signal_true: np.ndarray, sampling_rate_hz: float) -> dict:
    """Per-age-stratum summary: twin-wise signal metrics and diversity of both sets."""
    out = metrics.signal_metrics(signal_pred, signal_true, sampling_rate_hz)
    gen_div, real_div = mean_pairwise_distance(signal_pred), mean_pairwise_distance(signal_true)
    return {**out, "diversity_generated": gen_div, "diversity_real": real_div,
            "diversity_ratio": _ratio(gen_div, real_div)}


# ---------------------------------------------------------------------------- the whole evaluation
def generation_conditions(inference, twins: ABRRecords) -> tuple[dict[str, np.ndarray], list[str]]:
    """The twins' conditions as ``ABRInference.generate`` takes them (what the model can condition on).

    A class or threshold the model was not trained to condition on is left unset (−1 / NaN); a
    threshold outside the accepted range (``VALID_RANGES["threshold_db"]``) is passed as unknown.
    """
    cond = {name: getattr(twins, name).astype(np.float64) for name in
            ("age_years", "intensity_db", "stimulus_rate_hz", "fmp")}
    used = list(cond)
    a = inference.cfg.model.conditioning
    if a.use_class_condition:
        cond["hearing_loss"] = twins.hearing_loss.astype(np.int64)
        used.append("hearing_loss")
    if a.use_threshold_condition:
        thr = twins.threshold_db.astype(np.float64)
        lo, hi = VALID_RANGES["threshold_db"]
        cond["threshold_db"] = np.where(np.isposinf(thr) | ((thr >= lo) & (thr <= hi)), thr, np.nan)
        used.append("threshold_db")
    return cond, used


def evaluate_generation(inference, records: ABRRecords, n_samples: int, *, encoder: FrechetEncoder,
                        sampler: str | None = None, steps: int | None = None, seed: int = 0
                        ) -> tuple[dict, dict[str, np.ndarray]]:
    """Generate ``n_samples`` twins of recordings of ``records`` and score them (module docstring).

    Returns the metrics group and the arrays the figures need (``generated``, ``real``, classes).
    """
    start = time.perf_counter()
    sampler = sampler or inference.cfg.diffusion.sampler
    steps = int(steps or inference.cfg.diffusion.sampling_steps)
    rng = np.random.default_rng(seed)
    twin_rows = balanced_draw(records.hearing_loss, n_samples, rng)
    reference_rows = balanced_draw(records.hearing_loss, len(twin_rows), rng, exclude=twin_rows)
    # Real recordings as the model sees them (after its input high-pass): what it learnt to generate.
    twins, reference = (records.select(r) for r in (twin_rows, reference_rows))
    twins, reference = (r.replace(signal=inference.stats.filter_signal(r.signal)) for r in (twins, reference))
    cond, used = generation_conditions(inference, twins)
    generated, _ = inference.generate(len(twins), cond, sampler=sampler, steps=steps, seed=seed)
    generated = generated.astype(np.float64)
    real = twins.signal.astype(np.float64)
    fs = records.sampling_rate_hz

    feat_gen, feat_real, feat_ref = encoder(generated), encoder(real), encoder(reference.signal)
    classes = twins.hearing_loss.astype(int)
    names = list(inference.class_names)
    by_class = {}
    for c in np.unique(classes):
        rows = classes == c
        ref_rows = reference.hearing_loss.astype(int) == c
        gen_div, real_div = mean_pairwise_distance(generated[rows]), mean_pairwise_distance(real[rows])
        by_class[names[c] if 0 <= c < len(names) else "UNKNOWN"] = {
            "n": int(rows.sum()),
            "frechet_distance": frechet_distance(feat_real[rows], feat_gen[rows]),
            "frechet_distance_real_vs_real": frechet_distance(feat_real[rows], feat_ref[ref_rows]),
            "diversity_generated": gen_div, "diversity_real": real_div, "diversity_ratio": _ratio(gen_div, real_div),
            "wave_v": wave_v_comparison(twins.select(rows), generated[rows]),
        }
    gen_div, real_div = mean_pairwise_distance(generated), mean_pairwise_distance(real)
    floor_a, floor_b = class_aligned(classes, reference.hearing_loss.astype(int))
    unit = "uV" if twins.signal_unit == "uV" else "zscore"
    out = {
        "n_generated": len(twins),
        "sampler": sampler, "steps": steps, "seed": int(seed),
        "guidance_scale": float(inference.cfg.diffusion.guidance_scale),
        "conditioned_on": used,
        "twins": "recordings of the evaluated split drawn balanced over classes; each generated waveform uses "
                 "one twin's conditions",
        "n_real_reference": len(reference),
        "signal_unit": unit,
        "class_counts": {k: v["n"] for k, v in by_class.items()},
        "discriminative": {
            **discriminative_score(real, generated, fs, seed=seed),
            "classifier": "logistic regression on waveform + band powers, 2-fold over twin pairs",
            "real_vs_real": discriminative_score(real[floor_a], reference.signal[floor_b].astype(np.float64), fs,
                                                 seed=seed),
        },
        "frechet": {
            "distance": frechet_distance(feat_real, feat_gen),
            "real_vs_real": frechet_distance(feat_real[floor_a], feat_ref[floor_b]),
            "n_real_vs_real": int(len(floor_a)),
            "unit": f"{unit}^2 in encoder space",
            **encoder.describe(),
        },
        "diversity": {"generated": gen_div, "real": real_div, "ratio": _ratio(gen_div, real_div),
                      "unit": f"{unit} RMS"},
        "wave_v": wave_v_comparison(twins, generated),
        "by_class": by_class,
        "signal": metrics.signal_metrics(generated, real, fs),
        "by_age": stratify.by_age_stratum(twins.age_years, _per_row, signal_pred=generated, signal_true=real,
                                         sampling_rate_hz=fs),
    }
    out["seconds"] = round(time.perf_counter() - start, 2)
    arrays = {"generated": generated, "real": real, "hearing_loss": classes, "time_ms": records.time_ms,
              "intensity_db": twins.intensity_db}
    return out, arrays
