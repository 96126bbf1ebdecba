"""What was played, what a model was trained on, and the model's view of a recording.

A clinic's file says which stimulus was played and in which unit its levels are
(``abrflow.data.stimulus``). A checkpoint knows what it was trained on (``TrainedStimulus``: the
shipped models, clicks in dB nHL). Where a recording's stimulus or level unit is outside that, the
model must not answer a different question than the one recorded: it is told the intensity is
unknown there (as EARNDB's dB peSPL tone bursts always were), every output says so per series, and
the per-ear rule still fits the threshold on the recorded levels, in the file's own unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..data.records import ABRRecords
from ..data.schema import DEFAULT_LEVEL_UNIT
from ..data.stimulus import UNKNOWN, series_stimulus, stimulus_of, stimulus_text


@dataclass(frozen=True)
class TrainedStimulus:
    """The stimulus types and level units a checkpoint's training recordings were played with."""

    types: tuple[str, ...] = ("click",)
    level_units: tuple[str, ...] = (DEFAULT_LEVEL_UNIT,)

    @classmethod
    def from_dict(cls, d: Mapping | None) -> TrainedStimulus:
        """From checkpoint metadata; a checkpoint without the key was trained on the synthetic clicks."""
        if not d:
            return cls()
        return cls(tuple(str(t) for t in d["types"]), tuple(str(u) for u in d["level_units"]))

    @classmethod
    def of(cls, records: ABRRecords) -> TrainedStimulus:
        """What ``records`` (a training split) were played with."""
        stim = stimulus_of(records)
        return cls(tuple(sorted(set(stim["stimulus_type"].tolist()))), tuple(sorted(set(stim["level_unit"].tolist()))))

    def as_dict(self) -> dict:
        return {"types": list(self.types), "level_units": list(self.level_units)}

    @property
    def text(self) -> str:
        return " or ".join(stimulus_text(t, float("nan"), u) for t in self.types for u in self.level_units)

    def outside(self, stimulus_type: np.ndarray, level_unit: np.ndarray) -> np.ndarray:
        """Per row: is (type, unit) outside this training? An unknown type is outside only where the
        training knew its types and the row's unit differs; a stated type must be one trained on."""
        types_known = UNKNOWN not in self.types
        wrong_type = types_known & (stimulus_type != UNKNOWN) & ~np.isin(stimulus_type, self.types)
        return wrong_type | ~np.isin(level_unit, self.level_units)


def level_units(records: ABRRecords) -> np.ndarray:
    """Per row, the unit of ``intensity_db`` as its reader recorded it (``extra["level_unit"]``, e.g.
    EARNDB's "dB peSPL"); rows without one are dB nHL."""
    return stimulus_of(records)["level_unit"]


def outside_training(records: ABRRecords, trained: TrainedStimulus | None = None) -> np.ndarray:
    """Per row: was it recorded with a stimulus or level unit outside what the model was trained on?"""
    stim = stimulus_of(records)
    return (trained or TrainedStimulus()).outside(stim["stimulus_type"], stim["level_unit"])


def model_view(records: ABRRecords, trained: TrainedStimulus | None = None) -> ABRRecords:
    """The records as the model may read them: intensity unknown (NaN) where the stimulus or the
    level unit is outside what it was trained on."""
    outside = outside_training(records, trained)
    if not outside.any():
        return records
    return records.replace(intensity_db=np.where(outside, np.nan, records.intensity_db).astype(np.float32))


def series_stimulus_notes(records: ABRRecords, trained: TrainedStimulus | None = None) -> dict[str, dict]:
    """Per series key: ``{"stimulus": text, "outside_training": bool, "note": str}`` for the reports."""
    trained = trained or TrainedStimulus()
    out = {}
    for key, s in series_stimulus(records).items():
        outside = bool(s["mixed"]) or bool(trained.outside(np.array([s["stimulus_type"]]),
                                                           np.array([s["level_unit"]]))[0])
        note = (f"recorded with {s['text']}, outside what the model was trained on ({trained.text}): it read the "
                f"intensity as unknown; the threshold is in the file's unit" if outside else
                f"stimulus not stated in the file; the model assumed {trained.text}"
                if s["stimulus_type"] == UNKNOWN else "")
        out[key] = {"stimulus": s["text"], "outside_training": outside, "note": note}
    return out


def norms_apply(stimulus_types: Sequence[str]) -> bool:
    """Click latency norms (``clinical.norms``) apply only to clicks (or an unstated stimulus)."""
    return all(t in ("click", UNKNOWN) for t in stimulus_types)
