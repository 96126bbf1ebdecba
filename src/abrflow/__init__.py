"""abrflow: conditional diffusion model and clinical pipeline for Auditory Brainstem Responses.

Public API (imported lazily so that ``import abrflow`` stays light and torch-free):
``load_config``, ``load_records``, ``simulate_cohort``, ``ABRRecords``, ``ABRInference``, ``ABREnsemble``.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "load_config": ("abrflow.config", "load_config"),
    "ABRRecords": ("abrflow.data.records", "ABRRecords"),
    "load_records": ("abrflow.data.readers", "load_records"),
    "simulate_cohort": ("abrflow.data.synthetic", "simulate_cohort"),
    "ABRInference": ("abrflow.inference.predictor", "ABRInference"),
    "ABREnsemble": ("abrflow.inference.ensemble", "ABREnsemble"),
    "AbrflowError": ("abrflow.errors", "AbrflowError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'abrflow' has no attribute {name!r}")
