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
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..clinical.calibration import (
    DEFAULT_LEVEL,
    min_scores_for,
)
from ..clinical.classical import picker_columns
from ..clinical.ear_rule import read_ears
from ..clinical.levels import TrainedStimulus, model_view, outside_training
from ..clinical.thresholds import MODEL_RESPONSE_CRITERION
from ..data.records import ABRRecords
from ..data.schema import STATIC_FIELDS
from ..data.timebase import resampling_ratio, samples_needed, window_from_onset
from ..diffusion import ABRDiffusion
from ..errors import AbrflowError, CheckpointError, DataError
from . import results
from .checkpoint import load_checkpoint
from .conditions import generation_conditions
from .inputs import static_array
from .interpret import interpret_heads
from .onnx_backend import BACKENDS, OnnxHeads
from .runtime import DEFAULT_BATCH_SIZE, check_batch_size, resolve_device, row_seeds


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
        self.batch_size = check_batch_size(batch_size)
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
        self.trained_stimulus = TrainedStimulus.from_dict(loaded.metadata.get("stimulus"))
        self.model = loaded.model.to(self.device).eval()
        self.diffusion = ABRDiffusion.from_config(self.cfg.diffusion)
        level = confidence_level if confidence_level is not None else (
            self.calibration.level if self.calibration is not None else DEFAULT_LEVEL)
        if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0.0 < float(level) < 1.0:
            raise AbrflowError(f"confidence_level must be a number in (0, 1), got {level!r}")
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

    def on_cpu(self) -> ABRInference:
        """This checkpoint loaded again on the CPU (with the same batch size and confidence level)."""
        return ABRInference(self.checkpoint_path, device="cpu", confidence_level=self.confidence_level,
                            batch_size=self.batch_size)

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

    def sampling(self, sampler: str | None = None, steps: int | None = None,
                 guidance: float | None = None) -> tuple[str, int, float]:
        """(sampler, steps, guidance scale) a generation uses: the given ones, checked, else the
        checkpoint's (``ABRDiffusion.sampling``, the one place these defaults are resolved)."""
        return self.diffusion.sampling(sampler, steps, guidance)

    def _sample(self, static_raw: np.ndarray, seeds: np.ndarray, *, hearing_loss: np.ndarray | None = None,
                threshold_db: np.ndarray | None = None, sampler: str | None = None, steps: int | None = None,
                guidance: float | None = None) -> np.ndarray:
        """Generated waveforms [N, T] in the model's normalised space; row i from its own seed, so a
        row does not depend on its batch neighbours or the batch size."""
        sampler, steps, guidance = self.sampling(sampler, steps, guidance)
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

    def _quantile(self, name: str, required: bool = True) -> float:
        """The calibration's conformal quantile of ``name``; too few labelled values is an error where
        ``required`` and +inf (no interval) otherwise."""
        cal = self._require_calibration()
        q = cal.quantile(name, self.confidence_level) if name in cal.scores else math.inf
        if not math.isfinite(q) and required:
            need = min_scores_for(1.0 - self.confidence_level)
            raise CheckpointError(
                f"{self.checkpoint_path}: the calibration holds {cal.counts.get(name, 0)} labelled {name} values, "
                f"too few for a {self.confidence_level:.0%} interval (needs ≥ {need})")
        return q

    def _interpret(self, heads: Mapping[str, np.ndarray], confidence: bool, static_raw: np.ndarray
                   ) -> dict[str, np.ndarray]:
        """Head outputs → what a clinician reads (``abrflow.inference.interpret``)."""
        temps = self.calibration.temperatures if self.calibration is not None else {}
        return interpret_heads(heads, static_raw, temps, self._quantile if confidence else None)

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
        ``hearing_loss_set`` [N, 5] (conformal class set); ``stimulus_outside_training`` (the recording was
        played with a stimulus or level unit the model was not trained on: its intensity was read as
        unknown). ``return_confidence``: None = intervals
        when the checkpoint is calibrated, True = required, False = none. Records must be on the
        model's time base (``load_records(path, signal_length=…, sampling_rate_hz=…)``).
        """
        self._check_records(records)
        confidence = self._confidence(return_confidence)
        static = static_array(model_view(records, self.trained_stimulus).static)
        try:
            heads = self._measured_heads(records.signal, static)
        except DataError as exc:  # e.g. values beyond the model's range: name the file(s), not only the row
            raise DataError(exc.reason, file=records.source or exc.file, row=exc.row, field=exc.field) from None
        out = self._interpret(heads, confidence, static)
        out["stimulus_outside_training"] = outside_training(records, self.trained_stimulus)
        return out

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
        arrays = self._interpret(self._measured_heads(x[None], static), confidence, static)
        arrays["waveform"] = x[None]
        return results.prediction_row(self, arrays, 0, static[0], {"source": "measured"}, confidence)

    def _window(self, signal: object, sampling_rate_hz: float | None) -> np.ndarray:
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
        and the classical pickers' ``picker_{i,iii,v}_*`` (measured). ``to_rows`` turns them into predict_batch's dicts."""
        confidence = bool(return_confidence) and self._confidence(True)
        if isinstance(inputs, ABRRecords):
            arrays = self.analyse_records(inputs, return_confidence=confidence)
            arrays["waveform"] = inputs.signal.astype(np.float32)
            arrays["patient_id"], arrays["ear"] = inputs.patient_id.copy(), inputs.ear.copy()
            arrays.update(picker_columns(inputs))  # the classical pickers beside the model, per recording
            static = inputs.static
        else:
            static = static_array(inputs)
            sampler, steps, _ = self.sampling(sampler, steps)
            seeds = row_seeds(len(static), seed)
            x = self._sample(static, seeds, sampler=sampler, steps=steps)
            arrays = self._interpret(self._heads(x, static), confidence, static)
            arrays["waveform"] = self.stats.denormalize_signal(x)
            arrays["seed"] = seeds
            arrays["sampler"] = np.full(len(static), sampler)
            arrays["steps"] = np.full(len(static), steps, np.int64)
        for j, name in enumerate(STATIC_FIELDS):
            arrays[name] = static[:, j].astype(np.float64)
        return arrays

    def to_rows(self, arrays: Mapping[str, np.ndarray]) -> list[dict]:
        """``predict_arrays`` output → one predict_single-structured dict per row."""
        return results.prediction_rows(self, arrays)

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

    def confidence_summary(self) -> dict:
        """How the intervals were made (level, method, calibration split and sizes, temperatures)."""
        return results.confidence_summary(self._require_calibration(), self.confidence_level)

    # ------------------------------------------------------------------ series and generation
    def estimate_threshold(self, series: ABRRecords, criterion: float = MODEL_RESPONSE_CRITERION) -> dict[str, dict]:
        """Per level series: the ear's threshold with its interval and the wave V latency–intensity
        function, by the per-ear rule (:func:`abrflow.clinical.ear_rule.ear_thresholds`)."""
        return read_ears(self, series, criterion)

    def generate(self, n: int, conditions: Mapping | None = None, sampler: str | None = None,
                 steps: int | None = None, guidance: float | None = None, seed: int | Sequence[int] | None = None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``n`` waveforms [n, T] (µV, or z-scores for a z-score model) and their conditions.

        ``conditions``: any of age_years, intensity_db, stimulus_rate_hz, fmp (raw units, NaN
        unknown), hearing_loss (code, English or original name; −1 unconditional) and threshold_db
        (dB nHL; NaN unconditional, inf no response), each one value or n values. Unset ones take
        ``abrflow.inference.conditions.DEFAULT_GENERATION_CONDITIONS``. ``guidance`` is the
        classifier-free guidance scale
        (checkpoint's default when None). Returns the conditions used and the per-row ``seed``.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise AbrflowError(f"n must be a positive integer, got {n!r}")
        conds = generation_conditions(int(n), conditions, self.cfg.model.conditioning)
        static = np.stack([conds[name] for name in STATIC_FIELDS], axis=1)
        seeds = row_seeds(int(n), seed)
        has_class = (conds["hearing_loss"] >= 0).any()
        has_thr = (~np.isnan(conds["threshold_db"])).any()
        x = self._sample(static, seeds, hearing_loss=conds["hearing_loss"] if has_class else None,
                         threshold_db=conds["threshold_db"] if has_thr else None, sampler=sampler, steps=steps,
                         guidance=guidance)
        return self.stats.denormalize_signal(x), {**conds, "seed": seeds}

