"""Several checkpoints of one recipe read as one model: a deep ensemble for measured recordings.

Why: two runs of the same recipe that differ only in their seed place a real ear's threshold a few
dB apart (the shipped recipe, three seeds: SmartEP P6 +5.1, +6.0 and +2.7 dB against the experts);
the mean of the members' calibrated probabilities varies less than any one of them. The ensemble
analyses recordings (``analyse_records``) and estimates series thresholds with the same rule as a
single model (``estimate_threshold``); it does not generate, export or give conformal intervals,
which are calibrated per checkpoint — ask one member for those.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from ..clinical.ear_rule import read_ears
from ..clinical.levels import model_view
from ..clinical.thresholds import MODEL_RESPONSE_CRITERION
from ..data.records import ABRRecords
from ..data.schema import WAVE_KEYS
from ..errors import AbrflowError
from .inputs import static_array
from .interpret import wave_reading
from .predictor import ABRInference

#: Outputs averaged over the members (probabilities and values); the class is re-derived from the mean.
#: Interpeak intervals and norm flags are read again from the averaged latencies (``wave_reading``).
AVERAGED = (*(f"{w}_{what}" for w in WAVE_KEYS for what in ("present_prob", "latency_ms", "amplitude_uv")),
            "hearing_loss_prob", "threshold_db", "threshold_no_response_prob")


class ABREnsemble:
    """``ABREnsemble(["seed1/best_model.pt", "seed2/best_model.pt", ...])``: members must read the same
    window (samples, rate, signal unit) and name the same classes; ``options`` go to each member's
    :class:`ABRInference` (device, batch_size, backend)."""

    def __init__(self, checkpoints: Sequence[str | os.PathLike], device: str = "auto", **options):
        paths = [checkpoints] if isinstance(checkpoints, (str, os.PathLike)) else list(checkpoints)
        if len(paths) < 2:
            raise AbrflowError(f"an ensemble needs at least 2 checkpoints, got {len(paths)}")
        if options.get("onnx_model") is not None:
            raise AbrflowError("onnx_model names one checkpoint's export; an ensemble exports each member itself")
        self.members = [ABRInference(p, device=device, **options) for p in paths]
        first = self.members[0]
        for m in self.members[1:]:
            same = (m.signal_length == first.signal_length and math.isclose(m.sampling_rate_hz, first.sampling_rate_hz)
                    and m.signal_unit == first.signal_unit and list(m.class_names) == list(first.class_names))
            if not same:
                raise AbrflowError(
                    f"{m.checkpoint_path} reads {m.signal_length} samples at {m.sampling_rate_hz:g} Hz in "
                    f"{m.signal_unit} with classes {list(m.class_names)}, but {first.checkpoint_path} reads "
                    f"{first.signal_length} at {first.sampling_rate_hz:g} Hz in {first.signal_unit} with "
                    f"{list(first.class_names)}: ensemble members must share the window and the classes")

    # What readers and reports ask of a model: the first member's, which every member shares.
    @property
    def cfg(self):
        return self.members[0].cfg

    @property
    def trained_stimulus(self):
        return self.members[0].trained_stimulus

    @property
    def signal_length(self) -> int:
        return self.members[0].signal_length

    @property
    def sampling_rate_hz(self) -> float:
        return self.members[0].sampling_rate_hz

    @property
    def class_names(self):
        return self.members[0].class_names

    @property
    def checkpoint_path(self) -> list:
        return [m.checkpoint_path for m in self.members]

    def analyse_records(self, records: ABRRecords, return_confidence: bool | None = None) -> dict[str, np.ndarray]:
        """The members' :meth:`ABRInference.analyse_records` averaged per recording (no intervals)."""
        if return_confidence:
            raise AbrflowError("an ensemble gives no conformal intervals (each member is calibrated on its own); "
                               "ask one member with return_confidence=True")
        outputs = [m.analyse_records(records, return_confidence=False) for m in self.members]
        out = {name: np.mean([o[name] for o in outputs], axis=0) for name in AVERAGED}
        out["hearing_loss"] = np.argmax(out["hearing_loss_prob"], axis=1).astype(np.int64)
        out.update(wave_reading(out, static_array(model_view(records, self.trained_stimulus).static)))
        out["stimulus_outside_training"] = outputs[0]["stimulus_outside_training"]
        return out

    def estimate_threshold(self, series: ABRRecords, criterion: float = MODEL_RESPONSE_CRITERION) -> dict[str, dict]:
        """Per level series, the single-model rule (:func:`abrflow.clinical.ear_rule.read_ears`) on the
        averaged probabilities."""
        return read_ears(self, series, criterion)


def load_model(checkpoints: str | os.PathLike | Sequence[str | os.PathLike], device: str = "auto",
               **options) -> ABRInference | ABREnsemble:
    """One checkpoint → :class:`ABRInference`; several → :class:`ABREnsemble`."""
    paths = [checkpoints] if isinstance(checkpoints, (str, os.PathLike)) else list(checkpoints)
    if len(paths) == 1:
        return ABRInference(paths[0], device=device, **options)
    return ABREnsemble(paths, device=device, **options)
