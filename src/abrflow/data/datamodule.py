"""LightningDataModule: records → patient-grouped splits → normalised tensors with target masks.

Statistics are fitted on the training split only and exposed (``stats``) so that a checkpoint can
carry them. Batches are dicts of tensors (one tensor per field, never per-sample dicts).
"""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from ..errors import DataError
from .normalization import NormalizationStats
from .records import ABRRecords
from .splits import SPLIT_NAMES, Split, split_records

log = logging.getLogger(__name__)


def records_to_tensors(records: ABRRecords, stats: NormalizationStats) -> dict[str, torch.Tensor]:
    """All fields a model or loss needs, as tensors; a mask beside every target that can be missing.

    Threshold: finite → a number (mask 1); +inf → "no response" (a class of its own, not a
    number); NaN → unknown (both masks 0).
    """
    signal = stats.normalize_signal(records.signal)[:, None, :]
    static = stats.normalize_static(records.static)
    lat = records.v_latency_ms
    amp = records.v_amplitude_uv
    thr = records.threshold_db
    known_thr = ~np.isnan(thr)
    finite_thr = np.isfinite(thr)
    return {
        "signal": torch.from_numpy(np.ascontiguousarray(signal, np.float32)),
        "static": torch.from_numpy(static.astype(np.float32)),
        "v_present": torch.from_numpy(records.v_present.astype(np.float32)),
        "v_latency_ms": torch.from_numpy(np.nan_to_num(lat, nan=0.0).astype(np.float32)),
        "v_latency_mask": torch.from_numpy((records.v_present & np.isfinite(lat)).astype(np.float32)),
        "v_amplitude_uv": torch.from_numpy(np.nan_to_num(amp, nan=0.0).astype(np.float32)),
        "v_amplitude_mask": torch.from_numpy((records.v_present & np.isfinite(amp)).astype(np.float32)),
        "hearing_loss": torch.from_numpy(records.hearing_loss.astype(np.int64)),
        "threshold_db": torch.from_numpy(np.where(finite_thr, thr, 0.0).astype(np.float32)),
        "threshold_mask": torch.from_numpy(finite_thr.astype(np.float32)),
        "no_response": torch.from_numpy(np.isposinf(thr).astype(np.float32)),
        "no_response_mask": torch.from_numpy(known_thr.astype(np.float32)),
        "index": torch.arange(len(records), dtype=torch.int64),
    }


class TensorDictDataset(Dataset):
    """Rows of a dict of equal-length tensors; fetches whole batches at once via __getitems__."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        lengths = {len(v) for v in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"tensors have different lengths {lengths}")
        self.tensors = tensors
        self.length = lengths.pop()
        self.metadata: dict | None = None  # normalisation/target statistics, set for the training split

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return {k: v[idx] for k, v in self.tensors.items()}


class EpochShuffleSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch): a resumed run sees the same order as an
    uninterrupted one (Lightning calls ``set_epoch`` before every epoch)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def _identity_collate(batch):
    return batch


def class_balanced_weights(hearing_loss: np.ndarray) -> np.ndarray:
    """Per-recording sampling weight 1/count(class), so each class is drawn equally often."""
    codes = np.where(hearing_loss >= 0, hearing_loss, 5).astype(np.int64)
    counts = np.bincount(codes, minlength=6).astype(np.float64)
    return 1.0 / counts[codes]


class ABRDataModule(L.LightningDataModule):
    """Loads records (synthetic by default, or any reader), splits, normalises, serves tensors."""

    def __init__(self, data_cfg, seed: int = 42, records: ABRRecords | None = None):
        super().__init__()
        self.cfg = data_cfg
        self.seed = int(seed)
        self._given = records
        self.records: ABRRecords | None = None
        self.split: Split | None = None
        self.stats: NormalizationStats | None = None
        self._datasets: dict[str, TensorDictDataset] = {}

    # --------------------------------------------------------------- loading
    def load(self) -> ABRRecords:
        """The configured records, checked against the model's time base."""
        if self._given is not None:
            rec = self._given
        elif self.cfg.source == "synthetic":
            from .synthetic import simulate_cohort

            syn = self.cfg.synthetic
            rec = simulate_cohort(n_patients=syn.n_patients, seed=syn.seed,
                                  sampling_rate_hz=self.cfg.sampling_rate_hz,
                                  signal_length=self.cfg.signal_length,
                                  alternate_polarity=syn.alternate_polarity, artifact_rate=syn.artifact_rate)
        else:
            from .readers import load_records

            path = str(self.cfg.dataset_path)
            # .npz and legacy .pkl carry their own time base (checked below); the others are
            # resampled and cut to the model's.
            time_base = {} if path.lower().endswith((".npz", ".pkl", ".pickle")) else {
                "signal_length": self.cfg.signal_length, "sampling_rate_hz": self.cfg.sampling_rate_hz}
            table = {"polarity": self.cfg.table.polarity, "max_sweeps_rejected": self.cfg.table.max_sweeps_rejected}
            rec = load_records(path, table_options=table, **time_base)
        rec.validate()
        if rec.n_samples != self.cfg.signal_length or abs(rec.sampling_rate_hz - self.cfg.sampling_rate_hz) > 1e-6:
            raise DataError(
                f"records have {rec.n_samples} samples at {rec.sampling_rate_hz:g} Hz but the model's time base is "
                f"data.signal_length = {self.cfg.signal_length} at data.sampling_rate_hz = "
                f"{self.cfg.sampling_rate_hz:g}", file=rec.source or None)
        return rec

    def setup(self, stage: str | None = None) -> None:
        if self.records is not None:
            return
        self.records = self.load()
        s = self.cfg.splits
        self.split = split_records(self.records, s.train_ratio, s.val_ratio, s.test_ratio, seed=s.seed)
        train = self.records.select(self.split.train)
        self.stats = NormalizationStats.fit(train, self.cfg.normalization)
        for name in SPLIT_NAMES:
            part = self.records.select(self.split[name])
            self._datasets[name] = TensorDictDataset(records_to_tensors(part, self.stats))
        self._datasets["train"].metadata = {"normalization": self.stats.to_dict(),
                                            "target_stats": self.target_stats(),
                                            "class_counts": self.class_counts()}
        log.info("data: %d recordings (%s), split %s", len(self.records), self.records.source,
                 {n: len(self.split[n]) for n in SPLIT_NAMES})

    # --------------------------------------------------------------- access
    def split_records(self, name: str) -> ABRRecords:
        """The raw (un-normalised) records of one split, for evaluation and reports."""
        self._require_setup()
        return self.records.select(self.split[name])

    def target_stats(self) -> dict[str, tuple[float, float]]:
        """Mean and SD of the regression targets on the training split (for head normalisation)."""
        train = self.split_records("train")
        out = {}
        for name in ("v_latency_ms", "v_amplitude_uv", "threshold_db"):
            v = getattr(train, name)
            v = v[np.isfinite(v)]
            out[name] = (float(v.mean()), float(max(v.std(), 1e-3))) if v.size else (0.0, 1.0)
        return out

    def class_counts(self) -> np.ndarray:
        """Recordings per class in the training split (for class weights)."""
        hl = self.split_records("train").hearing_loss
        return np.bincount(hl[hl >= 0].astype(np.int64), minlength=5)

    def _require_setup(self) -> None:
        if self.records is None:
            raise RuntimeError("ABRDataModule.setup() has not run")

    def _loader(self, name: str, train: bool) -> DataLoader:
        self._require_setup()
        dl = self.cfg.dataloader
        ds = self._datasets[name]
        sampler = None
        if train and dl.balanced_sampler:
            weights = class_balanced_weights(self.split_records(name).hearing_loss)
            sampler = WeightedRandomSampler(torch.from_numpy(weights), num_samples=len(ds), replacement=True,
                                            generator=torch.Generator().manual_seed(self.seed))
        elif train:
            sampler = EpochShuffleSampler(len(ds), self.seed)
        return DataLoader(ds, batch_size=dl.batch_size, sampler=sampler,
                          drop_last=train and dl.drop_last and len(ds) > dl.batch_size,
                          num_workers=dl.num_workers, pin_memory=dl.pin_memory,
                          persistent_workers=dl.num_workers > 0, collate_fn=_identity_collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
