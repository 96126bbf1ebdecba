"""The analysis path (heads on measured waveforms) run by ONNX Runtime instead of PyTorch.

``ABRInference(checkpoint, backend="onnx")`` reads the checkpoint as usual (normalisation,
calibration, class names, the diffusion model for generation) and hands the heads on measured
recordings to ``model.onnx`` (or ``model.int8.onnx``) written by :func:`abrflow.inference.export.
export_onnx`. A graph is only accepted for the checkpoint it was exported from: the export's
``export.json`` records the checkpoint file's SHA-256, and a mismatch is an error, never a silent
use of another model's weights. Generation (and the heads on generated waveforms) stays in
PyTorch: the samplers are PyTorch code; ``denoiser.onnx`` is for deployments with their own sampler.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..errors import AbrflowError, CheckpointError

BACKENDS: tuple[str, ...] = ("torch", "onnx")
MANIFEST = "export.json"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (checkpoints are a few MB: read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class OnnxHeads:
    """``model.onnx`` as a callable: raw signal [N, T] + raw static [N, 4] → head outputs (float64)."""

    def __init__(self, model_path: str | os.PathLike, checkpoint_path: str | os.PathLike, *, threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise AbrflowError("backend='onnx' needs the onnx extra (onnxruntime is missing): "
                               "pip install 'abrflow[onnx]'") from None
        self.path = Path(model_path)
        if not self.path.is_file():
            raise AbrflowError(f"{self.path}: no such ONNX model (write one with `abrflow export`)")
        manifest_path = self.path.parent / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{manifest_path}: missing; an ONNX model is only used with the export.json "
                                  "written beside it (it names the checkpoint it came from)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{manifest_path}: not a readable export manifest ({exc})") from None
        expected = manifest.get("checkpoint_sha256") if isinstance(manifest, dict) else None
        if not expected:
            raise CheckpointError(f"{manifest_path}: names no checkpoint_sha256; re-export with this version")
        actual = file_sha256(checkpoint_path)
        if actual != expected:
            raise CheckpointError(f"{self.path} was exported from another checkpoint "
                                  f"(sha256 {expected[:12]}…), not {checkpoint_path} ({actual[:12]}…)")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = max(1, int(threads))
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise CheckpointError(f"{self.path}: ONNX Runtime cannot load it ({exc})") from None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, signal_raw: np.ndarray, static_raw: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(signal_raw), batch_size):
            feeds = {"signal": np.ascontiguousarray(signal_raw[start:start + batch_size, None, :], np.float32),
                     "static": np.ascontiguousarray(static_raw[start:start + batch_size], np.float32)}
            for name, value in zip(self.output_names, self.session.run(self.output_names, feeds)):
                parts.setdefault(name, []).append(value.astype(np.float64))
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}
