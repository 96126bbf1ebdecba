"""Which recordings an evaluation reads: a split of the checkpoint's own data, or a file evaluated whole.

By default the checkpoint's data module is rebuilt from its stored config (same synthetic seed and
patients, hence the same patient-grouped split) and one split is taken; any records file
(``data=``) is evaluated whole instead. Only the ``data`` section may change: the model, diffusion
and training settings always come from the checkpoint.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import yaml

from ..config import from_dict, load_config, set_value, to_dict
from ..data.datamodule import ABRDataModule
from ..data.readers import load_many
from ..data.records import ABRRecords
from ..data.timebase import carries_own_time_base
from ..errors import AbrflowError, ConfigError

SPLITS = ("test", "val", "all")
THRESHOLD_TRUTH = {
    "measured": "measured clinically",
    "simulated": "simulated: the synthetic cohort's true thresholds, known by construction",
    "synthetic_from_class": "SYNTHESISED FROM THE CLASS LABEL by the legacy data set, not measured: threshold "
                            "metrics show agreement with that rule, not clinical accuracy",
    "unknown": "of unknown origin: treat threshold metrics with caution",
}


@dataclass
class EvaluationData:
    """The rows evaluated, the training split the baselines learn from, and where both came from."""

    records: ABRRecords
    train: ABRRecords | None
    source: str
    split: str
    notes: list[str]
    data_config: dict | None


def _data_config(inference, config: str | os.PathLike | None, overrides: Sequence[str]):
    """The checkpoint's stored config with its ``data`` section replaced by ``config``'s and ``data.*``
    overrides applied: the model always comes from the checkpoint, only the data may change."""
    cfg = inference.cfg
    if config is not None:
        file_cfg = load_config(config)
        cfg = from_dict({**to_dict(cfg), "data": to_dict(file_cfg)["data"]})
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.startswith("data."):
            raise ConfigError(f"evaluate accepts only data.* overrides (section.key=value), got {item!r}: the "
                              "model, diffusion and training settings come from the checkpoint")
        cfg = set_value(cfg, key, yaml.safe_load(value), f"override '{item}'")
    d, mine = cfg.data, inference
    if d.signal_length != mine.signal_length or not math.isclose(d.sampling_rate_hz, mine.sampling_rate_hz):
        raise ConfigError(f"data time base {d.signal_length} samples at {d.sampling_rate_hz:g} Hz differs from the "
                          f"checkpoint's {mine.signal_length} at {mine.sampling_rate_hz:g} Hz")
    return cfg


def _which_data(cfg) -> dict:
    """The data section minus the loader settings: what decides which recordings land in which split."""
    return {k: v for k, v in to_dict(cfg.data).items() if k != "dataloader"}


def load_evaluation_data(inference, *, config=None, overrides: Sequence[str] = (), split: str | None = None,
                         data: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> EvaluationData:
    """Resolve what to evaluate (module docstring). ``split`` is test/val/all; with ``data`` (one path or
    several: files and folders any reader takes, joined as one set) none."""
    if data is not None and split is not None:
        raise AbrflowError("--split selects from the checkpoint's data; a --data file is evaluated whole")
    split = split or "test"
    if split not in SPLITS:
        raise AbrflowError(f"split must be one of {list(SPLITS)}, got {split!r}")
    cfg = _data_config(inference, config, overrides)
    notes = []
    if _which_data(cfg) != _which_data(inference.cfg):
        notes.append("the data section differs from the checkpoint's: the split may overlap the model's training data")
    dm = ABRDataModule(cfg.data, seed=cfg.project.seed)
    if data is not None:
        paths = [str(data)] if isinstance(data, (str, os.PathLike)) else [str(p) for p in data]
        if not paths:
            raise AbrflowError("--data names no file")
        time_base = {} if all(carries_own_time_base(p) for p in paths) else {
            "signal_length": inference.signal_length, "sampling_rate_hz": inference.sampling_rate_hz}
        table = {"polarity": cfg.data.table.polarity, "max_sweeps_rejected": cfg.data.table.max_sweeps_rejected}
        records = load_many(paths, table_options=table, **time_base).validate()
        path = "; ".join(paths)
        try:
            dm.setup()
            train = dm.split_records("train")
        except AbrflowError as exc:  # the training data may live elsewhere; baselines then lack a classifier
            train = None
            notes.append(f"training split unavailable ({exc}): no hand-feature classifier or majority baseline")
        if train is not None and records.source == train.source:
            seen = np.isin(np.unique(records.patient_id), np.unique(train.patient_id)).sum()
            if seen:
                notes.append(f"{seen} patients of the file are in the training split of the same source: "
                             "those numbers are optimistic")
        return EvaluationData(records, train, path, "whole file" if len(paths) == 1 else f"{len(paths)} files joined",
                              notes, to_dict(cfg.data))
    dm.setup()
    records = dm.records if split == "all" else dm.split_records(split)
    if split == "all":
        notes.append("split 'all' includes the training split: the numbers are optimistic")
    return EvaluationData(records, dm.split_records("train"), dm.records.source, split, notes, to_dict(cfg.data))
