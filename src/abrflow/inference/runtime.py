"""Where and how a model runs: the device, per-row seeds, batch sizes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import AbrflowError

#: Recordings per forward pass unless the caller says otherwise.
DEFAULT_BATCH_SIZE = 256


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


def check_batch_size(batch_size: object) -> int:
    """A batch size as an int ≥ 1, or an AbrflowError naming the value."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise AbrflowError(f"batch_size must be an integer ≥ 1, got {batch_size!r}")
    return int(batch_size)


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
