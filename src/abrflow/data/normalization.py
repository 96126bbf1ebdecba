"""Normalisation statistics fitted on the training split only, stored in every checkpoint.

Signals get one global robust scale (a flat no-response trace stays flat, amplitude keeps its
meaning); `per_sample` z-scoring is available and is what legacy pickles already contain.
Static inputs are z-scored per input, NaN (unknown) stays NaN for the model's missing embedding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DataError
from .records import STATIC_FIELDS, ABRRecords

_MAD_TO_SD = 1.4826  # median absolute deviation → standard deviation for Gaussian data


@dataclass(frozen=True)
class NormalizationStats:
    mode: str
    signal_scale: float
    static_mean: tuple[float, float, float, float]
    static_std: tuple[float, float, float, float]
    signal_unit: str = "uV"

    @classmethod
    def fit(cls, records: ABRRecords, mode: str = "global_robust") -> NormalizationStats:
        """Fit on (training) records."""
        if len(records) == 0:
            raise DataError("cannot fit normalisation on zero recordings")
        if mode == "global_robust":
            x = records.signal
            scale = float(_MAD_TO_SD * np.median(np.abs(x - np.median(x))))
            if not np.isfinite(scale) or scale <= 0:
                scale = float(np.std(x))
            if not np.isfinite(scale) or scale <= 0:
                raise DataError("signals are constant; cannot fit a signal scale", file=records.source or None)
        elif mode in ("per_sample", "none"):
            scale = 1.0
        else:
            raise DataError(f"unknown normalisation mode {mode!r}")
        static = records.static.astype(np.float64)
        mean = np.zeros(4)
        std = np.ones(4)
        for i in range(4):
            col = static[:, i][np.isfinite(static[:, i])]
            if col.size:
                mean[i] = col.mean()
                sd = col.std()
                std[i] = sd if sd > 1e-6 else 1.0
        return cls(mode=mode, signal_scale=scale, static_mean=tuple(map(float, mean)),
                   static_std=tuple(map(float, std)), signal_unit=records.signal_unit)

    # --------------------------------------------------------------- transforms
    def normalize_signal(self, signal: np.ndarray) -> np.ndarray:
        signal = np.asarray(signal, np.float32)
        if self.mode == "per_sample":
            mu = signal.mean(axis=-1, keepdims=True)
            sd = signal.std(axis=-1, keepdims=True)
            return ((signal - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
        return (signal / self.signal_scale).astype(np.float32)

    def denormalize_signal(self, signal: np.ndarray) -> np.ndarray:
        """Back to the records' unit (µV for global scaling; per-sample z-scores cannot be undone)."""
        return (np.asarray(signal, np.float32) * self.signal_scale).astype(np.float32)

    def normalize_static(self, static: np.ndarray) -> np.ndarray:
        static = np.asarray(static, np.float32)
        return ((static - np.asarray(self.static_mean, np.float32)) / np.asarray(self.static_std, np.float32))

    def denormalize_static(self, static: np.ndarray) -> np.ndarray:
        static = np.asarray(static, np.float32)
        return static * np.asarray(self.static_std, np.float32) + np.asarray(self.static_mean, np.float32)

    # --------------------------------------------------------------- storage
    def to_dict(self) -> dict:
        d = asdict(self)
        d["static_fields"] = list(STATIC_FIELDS)
        d["static_mean"] = list(self.static_mean)
        d["static_std"] = list(self.static_std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NormalizationStats:
        try:
            return cls(mode=str(d["mode"]), signal_scale=float(d["signal_scale"]),
                       static_mean=tuple(float(v) for v in d["static_mean"]),
                       static_std=tuple(float(v) for v in d["static_std"]),
                       signal_unit=str(d.get("signal_unit", "uV")))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"stored normalisation statistics are incomplete ({exc})") from exc
