"""ABRInference: the clinical interface of a trained checkpoint (the seed document's inference API).

Everything comes from the checkpoint alone (config, weights, normalisation, target statistics,
class names, time base, calibration). Two paths:

- measured waveforms (``analyse``, ``analyse_records``, ``predict_batch(records)``,
  ``estimate_threshold``): the heads read the recording at diffusion time t = 0;
- static inputs only (``predict_single``, ``predict_batch(array)``): there is no recording, so the
  diffusion model first generates the expected waveform for those conditions and the heads then
  analyse that generated waveform (generate → analyse).

Uncertainty, when the checkpoint carries calibration (fitted on the validation split at the end of
training): probabilities are temperature-scaled; latency, amplitude and threshold get split-
conformal intervals at ``confidence_level``; the class gets a conformal prediction set. Without
calibration, asking for intervals is an error — intervals are never made up.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.records import ORIGINAL_CLASS_CODES, ABRRecords, class_code
from ..diffusion import ABRDiffusion
from ..errors import AbrflowError, CheckpointError, DataError
from ..evaluation.calibration import (
    DEFAULT_LEVEL,
    INTERVAL_TARGETS,
    conformal_interval,
    min_scores_for,
    prediction_sets,
    probabilities,
)
from ..evaluation.replication import MODEL_GATE_MIN_R, replicates
from ..evaluation.thresholds import MODEL_DETECTION_CRITERION, MODEL_RESPONSE_CRITERION, series_thresholds
from .checkpoint import load_checkpoint
from .inputs import STATIC_RANGES, static_array, static_value
from .onnx_backend import BACKENDS, OnnxHeads

#: Conditions ``generate`` uses where the caller gives none: the typical recording of the cohort
#: the project was designed for — an infant (median age 0.5 y) with normal hearing, tested at
#: 60 dB nHL at the usual 33.1/s; Fmp and threshold unknown (the model's learned "unknown" token).
DEFAULT_GENERATION_CONDITIONS: dict[str, float] = {
    "age_years": 0.5, "intensity_db": 60.0, "stimulus_rate_hz": 33.1, "fmp": math.nan,
    "hearing_loss": 0, "threshold_db": math.nan,
}
_CONDITION_ALIASES = {"age": "age_years", "intensity": "intensity_db", "rate": "stimulus_rate_hz",
                      "stimulus_rate": "stimulus_rate_hz", "threshold": "threshold_db", "class": "hearing_loss"}
_STATIC = ("age_years", "intensity_db", "stimulus_rate_hz", "fmp")
DEFAULT_BATCH_SIZE = 256


def level_units(records: ABRRecords) -> np.ndarray:
    """Per row, the unit of ``intensity_db`` as its reader recorded it (``extra["level_unit"]``, e.g.
    EARNDB's "dB peSPL"); rows without one are dB nHL, the unit of the clinic formats."""
    unit = records.extra.get("level_unit")
    if unit is None:
        return np.full(len(records), "dB nHL")
    return np.asarray(unit).astype(str)


def _model_view(records: ABRRecords) -> ABRRecords:
    """The records as the model may read them: intensity unknown (NaN) where it is not in dB nHL."""
    nhl = level_units(records) == "dB nHL"
    if nhl.all():
        return records
    return records.replace(intensity_db=np.where(nhl, records.intensity_db, np.nan).astype(np.float32))


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" → CUDA, else MPS, else CPU; an explicit device that is not available is an error."""
    name = str(device).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "gpu":
        name = "cuda"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise AbrflowError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AbrflowError(f"device {device!r} requested but CUDA is not available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise AbrflowError(f"device {device!r} requested but MPS is not available")
    return dev


def row_seeds(n: int, seed: int | Sequence[int] | None) -> np.ndarray:
    """One seed per row: ``seed + i``, the given sequence, or fresh entropy when None (reported back)."""
    if seed is None:
        base = int(np.random.SeedSequence().entropy % (2**62))
        return base + np.arange(n, dtype=np.int64)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return int(seed) + np.arange(n, dtype=np.int64)
    seeds = np.asarray(seed)
    if seeds.shape != (n,) or seeds.dtype.kind not in "iu":
        raise AbrflowError(f"seed must be an integer or {n} integers (one per row), got {seed!r}")
    return seeds.astype(np.int64)


def _floats(a: np.ndarray) -> list:
    return [float(v) for v in np.asarray(a, np.float64)]


class ABRInference:
    """A trained model, ready for clinical questions. ``ABRInference("checkpoints/best_model.pt")``.

    ``confidence_level``: the nominal coverage of intervals (default: the level stored with the
    calibration, 0.9). ``batch_size``: recordings per forward pass.
    """

    def __init__(self, checkpoint: str | os.PathLike, device: str | torch.device = "auto", *,
                 confidence_level: float | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 backend: str = "torch", onnx_model: str | os.PathLike | None = None):
        if backend not in BACKENDS:
            raise AbrflowError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if onnx_model is not None and backend != "onnx":
            raise AbrflowError("onnx_model is only used with backend='onnx'")
        self.device = resolve_device(device)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise AbrflowError(f"batch_size must be an integer ≥ 1, got {batch_size!r}")
        self.batch_size = int(batch_size)
        loaded = load_checkpoint(checkpoint)
        self.checkpoint_path = loaded.path
        self.cfg = loaded.cfg
        self.stats = loaded.stats
        self.target_stats = loaded.target_stats
        self.class_names = loaded.class_names
        self.signal_length = loaded.signal_length
        self.sampling_rate_hz = loaded.sampling_rate_hz
        self.calibration = loaded.calibration
        self.metadata = loaded.metadata
        self.model = loaded.model.to(self.device).eval()
        self.diffusion = ABRDiffusion.from_config(self.cfg.diffusion)
        level = confidence_level if confidence_level is not None else (
            self.calibration.level if self.calibration is not None else DEFAULT_LEVEL)
        if not 0.0 < float(level) < 1.0:
            raise AbrflowError(f"confidence_level must be in (0, 1), got {level}")
        self.confidence_level = float(level)
        self.backend = backend
        self._onnx = self._onnx_heads(onnx_model) if backend == "onnx" else None

    def _onnx_heads(self, onnx_model: str | os.PathLike | None) -> OnnxHeads:
        """The given export, or a fresh one (checked against eager) in a folder this object owns."""
        if onnx_model is None:
            import tempfile

            from .export import export_onnx

            self._onnx_dir = tempfile.TemporaryDirectory(prefix="abrflow-onnx-")
            onnx_model = Path(export_onnx(self, self._onnx_dir.name, time_it=False)["heads"]["path"])
        return OnnxHeads(onnx_model, self.checkpoint_path, threads=torch.get_num_threads())

    # ------------------------------------------------------------------ basics
    @property
    def time_ms(self) -> np.ndarray:
        """Sample times of the model's window (ms after stimulus onset)."""
        return np.arange(self.signal_length, dtype=np.float64) * 1000.0 / self.sampling_rate_hz

    @property
    def signal_unit(self) -> str:
        """Unit of waveforms this model reads and generates: µV unless it was trained on z-scores."""
        return "zscore" if self.stats.mode == "per_sample" or self.stats.signal_unit != "uV" else "uV"

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def _normalised_static(self, static_raw: np.ndarray) -> np.ndarray:
        return self.stats.normalize_static(static_raw).astype(np.float32)

    # ------------------------------------------------------------------ the network
    @torch.inference_mode()
    def _heads(self, x_norm: np.ndarray, static_raw: np.ndarray) -> dict[str, np.ndarray]:
        """Head outputs for normalised waveforms [N, T] at t = 0, without label conditions."""
        static = self._normalised_static(static_raw)
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(x_norm), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(x_norm[start:start + self.batch_size], np.float32))
            x = x.to(self.device)[:, None, :]
            s = torch.from_numpy(static[start:start + self.batch_size]).to(self.device)
            t = torch.zeros(len(x), dtype=torch.long, device=self.device)
            for name, value in self.model(x, t, s).heads.to_dict().items():
                parts.setdefault(name, []).append(value.float().cpu().numpy().astype(np.float64))
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def _measured_heads(self, signal_raw: np.ndarray, static_raw: np.ndarray) -> dict[str, np.ndarray]:
        """Heads on measured waveforms in their unit: PyTorch, or the ONNX graph (normalises inside)."""
        if self._onnx is not None:
            return self._onnx(signal_raw, static_raw, self.batch_size)
        return self._heads(self.stats.normalize_signal(signal_raw), static_raw)

    def _sampler_steps(self, sampler: str | None, steps: int | None) -> tuple[str, int]:
        """The checkpoint's sampler and step count where not given (0 steps is an error, not a default)."""
        sampler = self.cfg.diffusion.sampler if sampler is None else str(sampler)
        if steps is None:
            return sampler, int(self.cfg.diffusion.sampling_steps)
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise AbrflowError(f"steps must be an integer ≥ 1, got {steps!r}")
        return sampler, int(steps)

    def _sample(self, static_raw: np.ndarray, seeds: np.ndarray, *, hearing_loss: np.ndarray | None = None,
                threshold_db: np.ndarray | None = None, sampler: str | None = None, steps: int | None = None,
                guidance: float | None = None) -> np.ndarray:
        """Generated waveforms [N, T] in the model's normalised space; row i from its own seed, so a
        row does not depend on its batch neighbours or the batch size."""
        sampler, steps = self._sampler_steps(sampler, steps)
        try:
            self.diffusion.make_scheduler(sampler, steps)
        except ValueError as exc:
            raise AbrflowError(str(exc)) from None
        if guidance is not None and not (math.isfinite(guidance) and guidance >= 0):
            raise AbrflowError(f"guidance must be a number ≥ 0, got {guidance}")
        static = self._normalised_static(static_raw)
        out = []
        for start in range(0, len(static), self.batch_size):
            rows = slice(start, start + self.batch_size)
            s = torch.from_numpy(static[rows]).to(self.device)
            gens = [torch.Generator(device=self.device).manual_seed(int(v)) for v in seeds[rows]]
            hl = None if hearing_loss is None else torch.from_numpy(hearing_loss[rows].astype(np.int64))
            thr = None if threshold_db is None else torch.from_numpy(threshold_db[rows].astype(np.float32))
            x = self.diffusion.sample(self.model, s, hearing_loss=hl, threshold_db=thr, sampler=sampler, steps=steps,
                                      guidance_scale=guidance, generator=gens, length=self.signal_length)
            out.append(x[:, 0].float().cpu().numpy())
        return np.concatenate(out)

    # ------------------------------------------------------------------ calibration
    def _require_calibration(self):
        if self.calibration is None:
            raise CheckpointError(
                f"{self.checkpoint_path} carries no calibration, so confidence intervals are unavailable "
                "(best_model.pt and latest_model.pt written by `abrflow train` are calibrated on the validation "
                "split; periodic checkpoint_epoch_N.pt are not); ask without confidence")
        return self.calibration

    def _quantile(self, name: str) -> float:
        cal = self._require_calibration()
        q = cal.quantile(name, self.confidence_level)
        if not math.isfinite(q):
            need = min_scores_for(1.0 - self.confidence_level)
            raise CheckpointError(
                f"{self.checkpoint_path}: the calibration holds {cal.counts.get(name, 0)} labelled {name} values, "
                f"too few for a {self.confidence_level:.0%} interval (needs ≥ {need})")
        return q

    def _interpret(self, heads: Mapping[str, np.ndarray], confidence: bool) -> dict[str, np.ndarray]:
        """Head outputs → calibrated probabilities, values in units and (optionally) intervals."""
        temps = self.calibration.temperatures if self.calibration is not None else {}
        hl_prob = probabilities(heads["hearing_loss_logits"], temps.get("hearing_loss"))
        out = {
            "v_present_prob": probabilities(heads["v_present_logit"], temps.get("v_present")),
            "v_latency_ms": heads["v_latency_ms"],
            "v_amplitude_uv": heads["v_amplitude_uv"],
            "hearing_loss": np.argmax(hl_prob, axis=1).astype(np.int64),
            "hearing_loss_prob": hl_prob,
            "threshold_db": heads["threshold_db"],
            "threshold_no_response_prob": probabilities(heads["threshold_no_response_logit"],
                                                        temps.get("threshold_no_response")),
        }
        if confidence:
            for name, log_std in INTERVAL_TARGETS.items():
                lo, hi = conformal_interval(heads[name], heads[log_std], self._quantile(name))
                if name == "v_latency_ms":
                    lo = np.maximum(lo, 0.0)  # a latency is positive: clipping to the support keeps coverage
                out[f"{name}_lo"], out[f"{name}_hi"] = lo, hi
            out["hearing_loss_set"] = prediction_sets(hl_prob, self._quantile("hearing_loss"))
        return out

    def _confidence(self, confidence: bool | None) -> bool:
        """None → intervals when the checkpoint is calibrated; True → required."""
        if confidence is None:
            return self.calibration is not None
        if confidence:
            self._require_calibration()
        return bool(confidence)

    # ------------------------------------------------------------------ measured recordings
    def _check_records(self, records: ABRRecords) -> None:
        if not isinstance(records, ABRRecords):
            raise AbrflowError(f"expected ABRRecords, got {type(records).__name__}")
        src = records.source or None
        if records.signal.ndim != 2 or len(records) == 0:
            raise DataError(f"records hold no [N, T] signals (shape {list(records.signal.shape)})", file=src)
        if records.n_samples != self.signal_length or not math.isclose(records.sampling_rate_hz, self.sampling_rate_hz):
            raise DataError(
                f"records have {records.n_samples} samples at {records.sampling_rate_hz:g} Hz but the model reads "
                f"{self.signal_length} samples at {self.sampling_rate_hz:g} Hz from stimulus onset; load them with "
                f"load_records(path, signal_length={self.signal_length}, sampling_rate_hz={self.sampling_rate_hz:g})",
                file=src)
        if self.stats.mode != "per_sample" and records.signal_unit != self.stats.signal_unit:
            raise DataError(f"records are in {records.signal_unit} but the model was trained on "
                            f"{self.stats.signal_unit} signals", file=src)
        bad = ~np.isfinite(records.signal).all(axis=1)
        if bad.any():
            raise DataError("signal contains NaN or inf", file=src, row=int(np.argmax(bad)), field="signal")

    def analyse_records(self, records: ABRRecords, return_confidence: bool | None = None) -> dict[str, np.ndarray]:
        """Heads on measured recordings: one row per recording, equal-length NumPy arrays.

        Keys: ``v_present_prob``, ``v_latency_ms``, ``v_amplitude_uv``, ``hearing_loss`` (code),
        ``hearing_loss_prob`` [N, 5], ``threshold_db``, ``threshold_no_response_prob``; with intervals
        also ``v_latency_ms_lo/_hi``, ``v_amplitude_uv_lo/_hi``, ``threshold_db_lo/_hi`` and
        ``hearing_loss_set`` [N, 5] (conformal class set). ``return_confidence``: None = intervals
        when the checkpoint is calibrated, True = required, False = none. Records must be on the
        model's time base (``load_records(path, signal_length=…, sampling_rate_hz=…)``).
        """
        self._check_records(records)
        confidence = self._confidence(return_confidence)
        static = static_array(records.static)
        return self._interpret(self._measured_heads(records.signal, static), confidence)

    def analyse(self, signal: np.ndarray, age: float | None = None, intensity: float | None = None,
                stimulus_rate: float | None = None, fmp: float | None = None, sampling_rate_hz: float | None = None,
                return_confidence: bool | None = None) -> dict:
        """One measured waveform (µV, starting at stimulus onset) → the predict_single structure.

        Without ``sampling_rate_hz`` the signal must already be the model's window; with it, the
        signal is resampled and cut from onset like the readers do (too short is an error).
        """
        x = self._window(signal, sampling_rate_hz)
        static = static_array([[age, intensity, stimulus_rate, fmp]])
        confidence = self._confidence(return_confidence)
        arrays = self._interpret(self._measured_heads(x[None], static), confidence)
        arrays["waveform"] = x[None]
        return self._row(arrays, 0, static[0], {"source": "measured"}, confidence)

    def _window(self, signal: object, sampling_rate_hz: float | None) -> np.ndarray:
        from ..data.readers._common import resampling_ratio, samples_needed, window_from_onset

        try:
            x = np.asarray(signal, dtype=np.float64)
        except (TypeError, ValueError):
            raise AbrflowError("signal must be a 1-D array of numbers (µV from stimulus onset)") from None
        if x.ndim != 1:
            raise AbrflowError(f"signal must be 1-D (one recording), got shape {list(x.shape)}")
        if not np.isfinite(x).all():
            raise AbrflowError("signal contains NaN or inf")
        if sampling_rate_hz is None:
            if x.size != self.signal_length:
                raise AbrflowError(f"signal has {x.size} samples; the model reads {self.signal_length} at "
                                   f"{self.sampling_rate_hz:g} Hz (pass sampling_rate_hz= to resample)")
            return x.astype(np.float32)
        try:
            ratio = resampling_ratio(self.sampling_rate_hz, float(sampling_rate_hz))
        except (ValueError, TypeError) as exc:
            raise AbrflowError(f"sampling_rate_hz: {exc}") from None
        need = samples_needed(self.signal_length, ratio)
        if x.size < need:
            raise AbrflowError(f"signal has {x.size} samples at {float(sampling_rate_hz):g} Hz; the model's "
                               f"{self.signal_length / self.sampling_rate_hz * 1000:g} ms window needs ≥ {need}")
        return window_from_onset(x, ratio, self.signal_length).astype(np.float32)

    # ------------------------------------------------------------------ static inputs only
    def predict_arrays(self, inputs: object, return_confidence: bool = False, *,
                       seed: int | Sequence[int] | None = None, sampler: str | None = None,
                       steps: int | None = None) -> dict[str, np.ndarray]:
        """``predict_batch`` as equal-length arrays: the analyse_records keys, ``waveform`` [N, T], the
        static inputs, and either ``seed``/``sampler``/``steps`` (generated) or ``patient_id``/``ear``
        (measured). ``to_rows`` turns them into predict_batch's dicts."""
        confidence = bool(return_confidence) and self._confidence(True)
        if isinstance(inputs, ABRRecords):
            arrays = self.analyse_records(inputs, return_confidence=confidence)
            arrays["waveform"] = inputs.signal.astype(np.float32)
            arrays["patient_id"], arrays["ear"] = inputs.patient_id.copy(), inputs.ear.copy()
            static = inputs.static
        else:
            static = static_array(inputs)
            sampler, steps = self._sampler_steps(sampler, steps)
            seeds = row_seeds(len(static), seed)
            x = self._sample(static, seeds, sampler=sampler, steps=steps)
            arrays = self._interpret(self._heads(x, static), confidence)
            arrays["waveform"] = self.stats.denormalize_signal(x)
            arrays["seed"] = seeds
            arrays["sampler"] = np.full(len(static), sampler)
            arrays["steps"] = np.full(len(static), steps, np.int64)
        for j, name in enumerate(_STATIC):
            arrays[name] = static[:, j].astype(np.float64)
        return arrays

    def to_rows(self, arrays: Mapping[str, np.ndarray]) -> list[dict]:
        """``predict_arrays`` output → one predict_single-structured dict per row."""
        confidence = "v_latency_ms_lo" in arrays
        static = np.stack([arrays[name] for name in _STATIC], axis=1)
        rows = []
        for i in range(len(static)):
            if "seed" in arrays:
                meta = {"source": "generated", "seed": int(arrays["seed"][i]), "sampler": str(arrays["sampler"][i]),
                        "steps": int(arrays["steps"][i])}
            else:
                meta = {"source": "measured"}
            row = self._row(arrays, i, static[i], meta, confidence)
            for key in ("id", "patient_id", "ear"):
                if key in arrays:
                    row[key] = str(arrays[key][i])
            rows.append(row)
        return rows

    def predict_batch(self, inputs: object, return_confidence: bool = False, *,
                      seed: int | Sequence[int] | None = None, sampler: str | None = None,
                      steps: int | None = None) -> list[dict]:
        """Many predictions at once: ``inputs`` is [N, 4] (age, intensity, rate, fmp; None/NaN unknown)
        or ABRRecords (then the measured signals are analysed, nothing is generated).

        Row i's waveform is generated from seed ``seed + i`` (or ``seed[i]``), so row i equals
        ``predict_single(*inputs[i], seed=seed + i)`` whatever the batch around it.
        """
        return self.to_rows(self.predict_arrays(inputs, return_confidence, seed=seed, sampler=sampler, steps=steps))

    def predict_single(self, age: float | None = None, intensity: float | None = None,
                       stimulus_rate: float | None = None, fmp: float | None = None,
                       return_confidence: bool = False, *, seed: int | None = None, sampler: str | None = None,
                       steps: int | None = None) -> dict:
        """Prediction for one patient's stimulus conditions (any may be None = unknown).

        There is no measured waveform here: the diffusion model generates the expected waveform for
        these conditions (sampler and steps from the checkpoint unless given; ``seed`` makes it
        reproducible and is reported in ``result["waveform"]["seed"]``), and the heads analyse that
        generated waveform at t = 0. Keys: ``classification`` (predicted_category, code,
        probabilities), ``threshold`` (value in dB nHL, no_response_probability), ``peaks["V"]``
        (present_probability, latency_ms, amplitude_uv), ``waveform`` (time_ms, signal_uv) and
        ``inputs``; with ``return_confidence`` also ``lo``/``hi`` bounds, the class prediction set
        and a ``confidence`` section.
        """
        static = [[age, intensity, stimulus_rate, fmp]]
        if seed is not None and not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
            raise AbrflowError(f"seed must be an integer, got {seed!r}")
        return self.predict_batch(static, return_confidence, seed=seed, sampler=sampler, steps=steps)[0]

    # ------------------------------------------------------------------ one result row
    def _row(self, arrays: Mapping[str, np.ndarray], i: int, static: np.ndarray, waveform_meta: dict,
             confidence: bool) -> dict:
        code = int(arrays["hearing_loss"][i])
        probs = arrays["hearing_loss_prob"][i]
        classification = {
            "predicted_category": self.class_names[code],
            "code": code,
            "original_code": ORIGINAL_CLASS_CODES[code] if code < len(ORIGINAL_CLASS_CODES) else None,
            "probabilities": {name: float(p) for name, p in zip(self.class_names, probs)},
        }
        threshold = {"value": float(arrays["threshold_db"][i]), "unit": "dB nHL",
                     "no_response_probability": float(arrays["threshold_no_response_prob"][i])}
        wave_v = {"present_probability": float(arrays["v_present_prob"][i]),
                  "latency_ms": float(arrays["v_latency_ms"][i]),
                  "amplitude_uv": float(arrays["v_amplitude_uv"][i])}
        key = "signal_uv" if self.signal_unit == "uV" else "signal_zscore"
        waveform = {**waveform_meta, "time_ms": _floats(self.time_ms), key: _floats(arrays["waveform"][i])}
        result = {
            # float32 storage shows 0.8 as 0.800000011920929: 7 significant digits is what float32 holds
            "inputs": {name: (None if math.isnan(v) else float(f"{v:.7g}")) for name, v in zip(_STATIC, static)},
            "classification": classification,
            "threshold": threshold,
            "peaks": {"V": wave_v},
            "waveform": waveform,
        }
        if confidence:
            in_set = arrays["hearing_loss_set"][i]
            classification["prediction_set"] = [n for n, keep in zip(self.class_names, in_set) if keep]
            threshold["lo"], threshold["hi"] = float(arrays["threshold_db_lo"][i]), float(arrays["threshold_db_hi"][i])
            for name, short in (("v_latency_ms", "latency_ms"), ("v_amplitude_uv", "amplitude_uv")):
                wave_v[f"{short}_lo"] = float(arrays[f"{name}_lo"][i])
                wave_v[f"{short}_hi"] = float(arrays[f"{name}_hi"][i])
            result["confidence"] = self.confidence_summary()
        return result

    def confidence_summary(self) -> dict:
        """How the intervals were made (level, method, calibration split and sizes, temperatures)."""
        cal = self._require_calibration()
        return {
            "level": self.confidence_level,
            "intervals": "split conformal, |y − ŷ|/σ̂ with the head's spread σ̂; latency/amplitude for wave V "
                         "if present, threshold for an ear that responds",
            "class_set": "conformal prediction set (1 − p̂ scores)",
            "probabilities": "temperature-scaled",
            "calibration_split": cal.split,
            "calibration_counts": dict(cal.counts),
            "temperature": dict(cal.temperatures),
        }

    # ------------------------------------------------------------------ series and generation
    def estimate_threshold(self, series: ABRRecords, criterion: float = MODEL_RESPONSE_CRITERION) -> dict[str, dict]:
        """Per level series: the ear's threshold with its interval and the wave V latency–intensity
        function (see :func:`series_thresholds_of`, which does the work for any analyser)."""
        return series_thresholds_of(self, series, criterion)

    def _generation_conditions(self, n: int, conditions: Mapping | None) -> dict[str, np.ndarray]:
        given = {}
        for key, value in dict(conditions or {}).items():
            name = _CONDITION_ALIASES.get(key, key)
            if name not in DEFAULT_GENERATION_CONDITIONS:
                raise AbrflowError(f"unknown generation condition {key!r}; expected one of "
                                   f"{list(DEFAULT_GENERATION_CONDITIONS)}")
            if name in given:
                raise AbrflowError(f"generation condition {name} given twice")
            given[name] = value
        out: dict[str, np.ndarray] = {}
        for name, default in DEFAULT_GENERATION_CONDITIONS.items():
            value = given.get(name, default)
            cells = np.asarray(value, dtype=object)
            if cells.ndim == 0:
                cells = np.full(n, value, dtype=object)
            if cells.shape != (n,):
                raise AbrflowError(f"generation condition {name} must be one value or {n} values, "
                                   f"got shape {list(cells.shape)}")
            if name in STATIC_RANGES:
                out[name] = np.array([static_value(name, v, row=i if n > 1 else None) for i, v in enumerate(cells)],
                                     np.float32)
            elif name == "hearing_loss":
                out[name] = np.array([-1 if v is None else class_code(v, where="hearing_loss") for v in cells],
                                     np.int64)
            else:
                out[name] = np.array([self._threshold_condition(v) for v in cells], np.float32)
        a = self.cfg.model.conditioning
        if (out["hearing_loss"] >= 0).any() and not a.use_class_condition:
            raise AbrflowError("this model was trained without hearing-loss conditioning; leave hearing_loss unset")
        if np.isfinite(out["threshold_db"]).any() or np.isposinf(out["threshold_db"]).any():
            if not a.use_threshold_condition:
                raise AbrflowError("this model was trained without threshold conditioning; leave threshold_db unset")
        return out

    @staticmethod
    def _threshold_condition(value: object) -> float:
        if value is None:
            return math.nan
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise AbrflowError(f"threshold_db must be a number, NaN (unknown) or inf (no response), got {value!r}") from None
        if math.isnan(v) or v == math.inf:
            return v
        if not -10.0 <= v <= 130.0:
            raise AbrflowError(f"threshold_db = {value!r} is outside [-10, 130] dB nHL (use inf for no response)")
        return v

    def generate(self, n: int, conditions: Mapping | None = None, sampler: str | None = None,
                 steps: int | None = None, guidance: float | None = None, seed: int | Sequence[int] | None = None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``n`` waveforms [n, T] (µV, or z-scores for a z-score model) and their conditions.

        ``conditions``: any of age_years, intensity_db, stimulus_rate_hz, fmp (raw units, NaN
        unknown), hearing_loss (code, English or original name; −1 unconditional) and threshold_db
        (dB nHL; NaN unconditional, inf no response), each one value or n values. Unset ones take
        ``DEFAULT_GENERATION_CONDITIONS``. ``guidance`` is the classifier-free guidance scale
        (checkpoint's default when None). Returns the conditions used and the per-row ``seed``.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise AbrflowError(f"n must be a positive integer, got {n!r}")
        conds = self._generation_conditions(int(n), conditions)
        static = np.stack([conds[name] for name in _STATIC], axis=1)
        seeds = row_seeds(int(n), seed)
        has_class = (conds["hearing_loss"] >= 0).any()
        has_thr = (~np.isnan(conds["threshold_db"])).any()
        x = self._sample(static, seeds, hearing_loss=conds["hearing_loss"] if has_class else None,
                         threshold_db=conds["threshold_db"] if has_thr else None, sampler=sampler, steps=steps,
                         guidance=guidance)
        return self.stats.denormalize_signal(x), {**conds, "seed": seeds}


def series_thresholds_of(analyser, series: ABRRecords, criterion: float = MODEL_RESPONSE_CRITERION) -> dict[str, dict]:
    """Per level series (patient + ear + session): the ear's threshold with its interval, from the
    model's wave-V presence probabilities across levels (``estimate_series_threshold``), and the
    wave V latency–intensity function (mean latency of the responding recordings per level).
    ``analyser``: anything with ``analyse_records`` (an :class:`ABRInference` or an ensemble).

    Two rules for real exports: where the records carry half-averages (SmartEP, EARNDB), a
    level whose pooled half-averages do not agree (split-half r below ``MODEL_GATE_MIN_R``,
    ``evaluation.replication``) holds no response,
    whatever the model says; where levels are not in dB nHL (``extra["level_unit"]``, e.g.
    EARNDB's dB peSPL tone bursts), the model is told the intensity is unknown (the fit still
    runs on the recorded levels, in their unit).
    """
    analysed = analyser.analyse_records(_model_view(series), return_confidence=False)
    prob = analysed["v_present_prob"]
    replicating = replicates(series, MODEL_GATE_MIN_R)
    if replicating is not None:
        prob = np.where(replicating, prob, 0.0)
    estimates = series_thresholds(series, prob, criterion=criterion, detection=MODEL_DETECTION_CRITERION)
    keys, units = series.series_key, level_units(series)
    out = {}
    for key, est in estimates.items():
        rows = np.flatnonzero(keys == key)
        levels = series.intensity_db[rows].astype(np.float64)
        tested = np.unique(levels[np.isfinite(levels)])[::-1]  # loudest first, as tested
        p_level, lat_level, n_level, rep_level = [], [], [], []
        for lv in tested:
            at = rows[levels == lv]
            responding = at[prob[at] >= criterion]
            p_level.append(float(prob[at].mean()))
            lat_level.append(float(analysed["v_latency_ms"][responding].mean()) if responding.size else math.nan)
            n_level.append(int(at.size))
            rep_level.append(math.nan if replicating is None else float(replicating[at].mean()))
        lat = np.array(lat_level)
        ok = np.isfinite(lat)
        slope = float(np.polyfit(tested[ok], lat[ok], 1)[0]) if ok.sum() >= 2 else math.nan
        first = rows[0]
        out[key] = {
            "patient_id": str(series.patient_id[first]), "ear": str(series.ear[first]),
            "session_id": str(series.session_id[first]), "level_unit": str(units[first]),
            **est.as_dict(),
            "latency_intensity": {"intensity_db": _floats(tested), "n_recordings": n_level,
                                  "v_present_prob": p_level, "v_latency_ms": lat_level,
                                  "replicating_fraction": rep_level, "slope_ms_per_db": slope},
        }
    return out
