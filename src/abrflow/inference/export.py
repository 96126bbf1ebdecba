"""ONNX export of a checkpoint: the analysis path (heads) and the denoiser, checked against eager.

Two graphs, both with a dynamic batch dimension and the checkpoint's normalisation inside, so that
a deployment feeds raw units:

- ``model.onnx`` (analysis): ``signal`` [B, 1, T] (µV, or the records' unit) + ``static`` [B, 4]
  (age, intensity, rate, Fmp in raw units, NaN = unknown) → the nine head outputs (logits, values in
  units, log-spreads). Temperatures and conformal quantiles are in ``export.json``.
- ``denoiser.onnx``: ``x`` [B, 1, T] (normalised diffusion space), ``timestep`` [B] int64, ``static``
  [B, 4] (raw, NaN unknown), ``hearing_loss`` [B] int64 (−1 = unconditional), ``threshold_db`` [B]
  (NaN unconditional, +inf no response) → ``sample`` [B, 1, T], the network's diffusion prediction.
- ``model.int8.onnx`` (optional): dynamic int8 quantisation of the analysis graph.

The graphs themselves are :mod:`abrflow.inference.onnx_graphs` (an export-only copy of the network).
NaN handling (torch.isnan/where → the learned "unknown" embedding) exports as is. Every export is
run with onnxruntime against the eager model; a disagreement above the tolerance is a bug and raises.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..errors import AbrflowError
from ..io import atomic_replace, atomic_write_text
from ..timing import timed
from .onnx_backend import file_sha256
from .onnx_graphs import HEAD_OUTPUTS, DenoiserGraph, HeadsGraph

EXPORT_FORMAT = "abrflow.onnx/1"
#: Largest allowed |ONNX − eager| on any output (float32 round-off is ~1e-6 here).
TOLERANCE = 1e-4
OPSET = 18
log = logging.getLogger(__name__)


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401  (the torch.onnx dynamo exporter's backend)
    except ImportError as exc:
        raise AbrflowError(f"ONNX export needs the onnx extra ({exc.name} is missing): "
                           "pip install 'abrflow[onnx]'") from None
    return onnxruntime


# --------------------------------------------------------------------------- check inputs


def check_inputs(inference, n_patients: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Realistic inputs for the agreement checks: a small simulated cohort on the model's time base,
    with unknown (NaN) static inputs in a few rows (each input alone, and all four)."""
    from ..data.synthetic import simulate_cohort

    rec = simulate_cohort(n_patients=n_patients, seed=seed, sampling_rate_hz=inference.sampling_rate_hz,
                          signal_length=inference.signal_length)
    signal = rec.signal[:, None, :].astype(np.float32)
    static = rec.static.astype(np.float32)
    for j in range(4):
        static[j, j] = np.nan
    static[4, :] = np.nan
    return signal, static


def _denoiser_inputs(inference, static: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(static)
    thr = rng.uniform(0, 90, n).astype(np.float32)
    thr[::3], thr[1::3] = np.nan, np.inf
    return {
        "x": rng.standard_normal((n, 1, inference.signal_length)).astype(np.float32),
        "timestep": rng.integers(0, inference.diffusion.num_train_timesteps, n).astype(np.int64),
        "static": static,
        "hearing_loss": rng.integers(-1, inference.cfg.data.n_classes, n).astype(np.int64),
        "threshold_db": thr,
    }


@torch.inference_mode()
def _eager_denoiser(inference, inputs: dict[str, np.ndarray]) -> np.ndarray:
    model = inference.model
    dev = inference.device
    static = torch.from_numpy(inference.stats.normalize_static(inputs["static"]).astype(np.float32)).to(dev)
    out = model(torch.from_numpy(inputs["x"]).to(dev), torch.from_numpy(inputs["timestep"]).to(dev), static,
                torch.from_numpy(inputs["hearing_loss"]).to(dev), torch.from_numpy(inputs["threshold_db"]).to(dev))
    return out.sample.float().cpu().numpy()


def _max_diffs(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)))) for k in a}


# --------------------------------------------------------------------------- export


def _export(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str]) -> None:
    dynamic = tuple({0: "batch"} for _ in args)
    tmp = Path(tempfile.mkdtemp(prefix=".onnx-", dir=path.parent))
    try:
        with _quiet():
            program = torch.onnx.export(module.eval(), args, dynamo=True, opset_version=OPSET, dynamic_shapes=dynamic,
                                        input_names=input_names, output_names=output_names, verbose=False)
        program.save(str(tmp / path.name))
        for part in sorted(tmp.iterdir(), key=lambda p: p.name == path.name):  # external data first, graph last
            atomic_replace(part, path.parent / part.name)
    finally:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


def _session(ort, path: Path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()  # as many threads as the eager reference
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' advice (missing torchvision ops, "consider pre-processing") for one call:
    the report says what matters; nothing here is actionable for the user."""
    loggers = [logging.getLogger(name) for name in ("", "torch.onnx", "onnxruntime", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _quantise(fp32: Path, int8: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = int8.with_name(f".{int8.name}.{os.getpid()}.tmp")  # written in full, then renamed over int8
    try:
        with _quiet():
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
        atomic_replace(tmp, int8)
    finally:
        tmp.unlink(missing_ok=True)


def _check_agreement(what: str, max_diff: float, eager: np.ndarray) -> None:
    """|ONNX − eager| must stay below TOLERANCE, scaled up for outputs larger than 1 (dB values carry
    float32 round-off of ~1e-7 of their size); anything else is an export bug, never a warning."""
    allowed = TOLERANCE * max(1.0, float(np.max(np.abs(eager))))
    if not (math.isfinite(max_diff) and max_diff < allowed):
        raise RuntimeError(f"ONNX {what} disagrees with eager: max |diff| {max_diff:.3g} ≥ {allowed:.3g}")


def _p50_ms(fn, repeats: int = 30) -> float:
    return 1000.0 * timed(fn, repeats, warmup=3)["median"]


def export_onnx(inference, output_dir: str | os.PathLike, *,
                int8: bool = False, time_it: bool = True, denoiser: bool = True) -> dict:
    """Write model.onnx, denoiser.onnx (and model.int8.onnx) plus export.json into ``output_dir``.

    ``inference``: the loaded ``ABRInference`` to export (``ABRInference(path)``); its eager outputs
    are the reference, computed where the ONNX graphs run: on the CPU, in float32.

    ``denoiser=False`` writes the analysis graph only (half the export time: a clinic that never
    generates waveforms needs no denoiser).

    Returns the report: max |ONNX − eager| per output for both graphs (must be < ``TOLERANCE``, times
    the output's largest magnitude where that exceeds 1),
    int8 agreement (max diff per head output, share of equal class and wave-V calls) and, with
    ``time_it``, the p50 latency of analysing one recording (batch 1) eager / ONNX / int8.
    """
    ort = _require_onnx()
    if isinstance(inference, (str, os.PathLike)):
        raise AbrflowError(f"export_onnx takes a loaded model, not a path: export_onnx(ABRInference({str(inference)!r}), …)")
    if inference.device.type != "cpu":  # the eager reference runs where the ONNX graphs run
        inference = inference.on_cpu()
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    signal, static = check_inputs(inference)
    report: dict = {"format": EXPORT_FORMAT, "checkpoint": str(inference.checkpoint_path),
                    "checkpoint_sha256": file_sha256(inference.checkpoint_path), "opset": OPSET,
                    "tolerance": TOLERANCE, "n_check_rows": int(len(signal))}

    # -- analysis path
    heads_path = out_dir / "model.onnx"
    _export(HeadsGraph(inference), (torch.from_numpy(signal[:2]), torch.from_numpy(static[:2])), heads_path,
            ["signal", "static"], list(HEAD_OUTPUTS))
    eager = inference._heads(inference.stats.normalize_signal(signal[:, 0]), static)
    session = _session(ort, heads_path)
    onnx_out = _run(session, {"signal": signal, "static": static})
    one = _run(session, {"signal": signal[:1], "static": static[:1]})  # the dynamic batch really is dynamic
    diffs = _max_diffs({k: onnx_out[k] for k in HEAD_OUTPUTS}, {k: eager[k] for k in HEAD_OUTPUTS})
    diffs_b1 = _max_diffs({k: one[k] for k in HEAD_OUTPUTS}, {k: eager[k][:1] for k in HEAD_OUTPUTS})
    worst = max(max(diffs.values()), max(diffs_b1.values()))
    for name in HEAD_OUTPUTS:
        _check_agreement(f"analysis graph output {name}", max(diffs[name], diffs_b1[name]), eager[name])
    report["heads"] = {"path": str(heads_path), "max_abs_diff": diffs, "max_abs_diff_all": worst,
                       "nan_static_rows": int(np.isnan(static).any(axis=1).sum())}

    # -- denoiser
    if denoiser:
        den_path = out_dir / "denoiser.onnx"
        feeds = _denoiser_inputs(inference, static)
        names = list(feeds)
        _export(DenoiserGraph(inference), tuple(torch.from_numpy(v[:2]) for v in feeds.values()), den_path, names,
                ["sample"])
        den = _run(_session(ort, den_path), feeds)["sample"]
        den_eager = _eager_denoiser(inference, feeds)
        den_diff = float(np.max(np.abs(den - den_eager)))
        _check_agreement("denoiser output", den_diff, den_eager)
        report["denoiser"] = {"path": str(den_path), "max_abs_diff": den_diff}

    # -- int8
    q_session = None
    if int8:
        q_path = out_dir / "model.int8.onnx"
        _quantise(heads_path, q_path)
        q_session = _session(ort, q_path)
        q_out = _run(q_session, {"signal": signal, "static": static})
        report["int8"] = {
            "path": str(q_path),
            "max_abs_diff_vs_fp32": _max_diffs({k: q_out[k] for k in HEAD_OUTPUTS}, {k: onnx_out[k] for k in HEAD_OUTPUTS}),
            "class_agreement": float(np.mean(q_out["hearing_loss_logits"].argmax(1)
                                             == onnx_out["hearing_loss_logits"].argmax(1))),
            "v_present_agreement": float(np.mean((q_out["v_present_logit"] > 0) == (onnx_out["v_present_logit"] > 0))),
            "size_bytes": {"fp32": heads_path.stat().st_size, "int8": q_path.stat().st_size},
        }

    if time_it:
        x1, s1 = signal[:1], static[:1]
        latency = {"eager": _p50_ms(lambda: inference._heads(inference.stats.normalize_signal(x1[:, 0]), s1)),
                   "onnx": _p50_ms(lambda: session.run(None, {"signal": x1, "static": s1}))}
        if q_session is not None:
            latency["int8"] = _p50_ms(lambda: q_session.run(None, {"signal": x1, "static": s1}))
        report["latency_ms_p50_batch1"] = latency

    manifest = {
        **report,
        "package_version": __version__,
        "time_base": {"signal_length": inference.signal_length, "sampling_rate_hz": inference.sampling_rate_hz},
        "signal_unit": inference.signal_unit,
        "class_names": list(inference.class_names),
        "static_inputs": ["age_years", "intensity_db", "stimulus_rate_hz", "fmp"],
        "graphs": {
            "model.onnx": {"inputs": {"signal": "[B, 1, T] float32", "static": "[B, 4] float32, NaN = unknown"},
                           "outputs": list(HEAD_OUTPUTS)},
            "denoiser.onnx": {"inputs": {"x": "[B, 1, T] float32 (normalised)", "timestep": "[B] int64",
                                         "static": "[B, 4] float32, NaN = unknown",
                                         "hearing_loss": "[B] int64, -1 = unconditional",
                                         "threshold_db": "[B] float32, NaN = unconditional, inf = no response"},
                              "outputs": ["sample"], "prediction_type": inference.cfg.diffusion.prediction_type},
        },
        "calibration": None if inference.calibration is None else {
            "level": inference.calibration.level, "temperature": inference.calibration.temperatures,
            "conformal_quantile": {k: inference.calibration.quantile(k) for k in inference.calibration.scores},
            "how": "probabilities = softmax(logits / T); interval = value ± quantile · exp(log_std)"},
    }
    if not denoiser:
        del manifest["graphs"]["denoiser.onnx"]
    atomic_write_text(out_dir / "export.json", json.dumps(manifest, indent=2, default=str, allow_nan=True))
    report["manifest"] = str(out_dir / "export.json")
    return report
