"""LightningDataModule: records → patient-grouped splits → normalised tensors with target masks.

Statistics are fitted on the training split only and exposed (``stats``) so that a checkpoint can
carry them. Batches are dicts of tensors (one tensor per field, never per-sample dicts), built
when a batch is asked for from the rows it holds: a split is never copied whole, so a cohort
memory-mapped from a records directory trains in memory bounded by a batch (plus ~120 bytes of
labels per recording).

Under DDP each process reads its own shard: the training permutation of an epoch is dealt out
rank by rank (each row once, the ``n mod world_size`` rows at its end left out that epoch), and
validation/test rows are split so that every row is evaluated exactly once and every process
has the same number of batches (metrics are then reduced across processes exactly).
"""

from __future__ import annotations

import logging
import math

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from ..errors import DataError
from .normalization import NormalizationStats
from .records import STATIC_FIELDS, ABRRecords
from .records_dir import is_records_dir, read_rows
from .schema import WAVE_NAMES
from .splits import SPLIT_NAMES, Split, split_records
from .wave_labels import marks_minor_waves, wave_labels

log = logging.getLogger(__name__)


def records_to_tensors(records: ABRRecords, stats: NormalizationStats,
                       rows: np.ndarray | None = None, minor_waves_judged: bool | None = None
                       ) -> dict[str, torch.Tensor]:
    """All fields a model or loss needs for ``rows`` of ``records`` (default: all), as tensors;
    a mask beside every target that can be missing. ``index`` is the position in ``rows``.

    Waves I, III, V (``wave_*`` [N, 3], ``abrflow.data.wave_labels``): presence with a mask of where it
    was judged, latency and amplitude with masks of where they were marked. Threshold: finite → a
    number (mask 1); +inf → "no response" (a class of its own, not a number); NaN → unknown (both
    masks 0). ``minor_waves_judged``: as :func:`~abrflow.data.wave_labels.wave_labels` takes it.
    """
    take = slice(None) if rows is None else np.asarray(rows, dtype=np.int64)
    signal = records.signal[take] if rows is None else read_rows(records.signal, take)
    signal = stats.normalize_signal(signal)[:, None, :]
    static = stats.normalize_static(np.stack([getattr(records, f)[take] for f in STATIC_FIELDS], axis=1))
    waves = wave_labels(records, None if rows is None else take, minor_waves_judged)
    lat, amp = waves["latency_ms"], waves["amplitude_uv"]
    thr = records.threshold_db[take]
    known_thr = ~np.isnan(thr)
    finite_thr = np.isfinite(thr)

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(values, np.float32))

    return {
        "signal": torch.from_numpy(np.ascontiguousarray(signal, np.float32)),
        "static": torch.from_numpy(static.astype(np.float32)),
        "wave_present": tensor(waves["present"]),
        "wave_present_mask": tensor(waves["judged"]),
        "wave_latency_ms": tensor(np.nan_to_num(lat, nan=0.0)),
        "wave_latency_mask": tensor(np.isfinite(lat)),
        "wave_amplitude_uv": tensor(np.nan_to_num(amp, nan=0.0)),
        "wave_amplitude_mask": tensor(np.isfinite(amp)),
        "hearing_loss": torch.from_numpy(records.hearing_loss[take].astype(np.int64)),
        "threshold_db": torch.from_numpy(np.where(finite_thr, thr, 0.0).astype(np.float32)),
        "threshold_mask": torch.from_numpy(finite_thr.astype(np.float32)),
        "no_response": torch.from_numpy(np.isposinf(thr).astype(np.float32)),
        "no_response_mask": torch.from_numpy(known_thr.astype(np.float32)),
        "index": torch.arange(len(signal), dtype=torch.int64),
    }


class RecordsDataset(Dataset):
    """One split: ``rows`` of ``records``, read and normalised a whole batch at a time (``__getitems__``).

    Nothing is copied up front: in memory or memory-mapped, a batch gathers its rows when asked for.
    ``index`` in a batch is the position within the split (0 … len − 1). A memory-mapped signal's
    rows are read from its file (``read_rows``), so however long the epoch and however large the
    cohort, a batch adds only its own rows to the resident set.
    """

    def __init__(self, records: ABRRecords, rows: np.ndarray, stats: NormalizationStats):
        self.records = records
        self.rows = np.asarray(rows, dtype=np.int64)
        self.stats = stats
        # Whether the source marks waves I/III at all: a scan of every row, done once, not per batch.
        self.minor_waves_judged = marks_minor_waves(records)
        self.metadata: dict | None = None  # normalisation/target statistics, set for the training split

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        batch = records_to_tensors(self.records, self.stats, self.rows[idx], self.minor_waves_judged)
        batch["index"] = torch.from_numpy(idx)
        return batch


class EpochShuffleSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch): a resumed run sees the same order as an
    uninterrupted one (Lightning calls ``set_epoch`` before every epoch).

    With ``num_replicas`` > 1 (DDP) rank r takes every num_replicas-th position of the same
    permutation starting at r, after cutting it to a multiple of num_replicas: the ranks' shards are
    disjoint and equal in size, no row is seen twice in an epoch, and the ``n mod num_replicas``
    rows at the permutation's end (different ones each epoch) are left out of that epoch — torch's
    ``DistributedSampler(drop_last=True)``, with no padding by repeated rows.
    """

    def __init__(self, n: int, seed: int, num_replicas: int = 1, rank: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.n, self.seed, self.epoch = int(n), int(seed), 0
        self.num_replicas, self.rank = int(num_replicas), int(rank)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.num_replicas

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        if self.num_replicas > 1:
            perm = perm[: len(self) * self.num_replicas][self.rank::self.num_replicas]
        return iter(perm.tolist())


class ShardedBatchSampler(Sampler[list[int]]):
    """Evaluation batches of one DDP rank: every row exactly once across ranks, in order, with the
    same number of batches on every rank (no padding by repeated rows; a batch may hold one row
    fewer than another). Rank r takes rows r, r + W, r + 2W, … split into B near-equal batches,
    B = ceil(ceil(n / W) / batch_size) (capped at the smallest shard, so no batch is empty)."""

    def __init__(self, n: int, batch_size: int, num_replicas: int, rank: int):
        if n < num_replicas:
            raise DataError(f"a split of {n} recordings cannot be shared by {num_replicas} processes: "
                            f"every process needs at least one")
        self.rows = np.arange(rank, n, num_replicas)
        n_batches = min(math.ceil(math.ceil(n / num_replicas) / batch_size), n // num_replicas)
        self.batches = [b.tolist() for b in np.array_split(self.rows, n_batches)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


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
        self._datasets: dict[str, RecordsDataset] = {}

    # --------------------------------------------------------------- loading
    def load(self) -> ABRRecords:
        """The configured records, checked against the model's time base."""
        if self._given is not None:
            rec = self._given
        elif self.cfg.source == "synthetic":
            from .synthetic import simulate_cohort, simulator_options

            syn = self.cfg.synthetic
            rec = simulate_cohort(n_patients=syn.n_patients, seed=syn.seed, **simulator_options(self.cfg))
        else:
            from .readers import load_records

            path = str(self.cfg.dataset_path)
            # .npz, records directories and legacy .pkl carry their own time base (checked below);
            # the others are resampled and cut to the model's.
            time_base = {} if path.lower().endswith((".npz", ".pkl", ".pickle")) else {
                "signal_length": self.cfg.signal_length, "sampling_rate_hz": self.cfg.sampling_rate_hz}
            table = {"polarity": self.cfg.table.polarity, "max_sweeps_rejected": self.cfg.table.max_sweeps_rejected}
            if is_records_dir(path):  # memory-mapped, read a batch at a time; validated in chunks on opening
                rec = ABRRecords.load(path, mmap=True)
            else:
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
        self.stats = NormalizationStats.fit(self.records, self.cfg.normalization, rows=self.split.train,
                                            highpass_hz=self.cfg.input_highpass_hz)
        for name in SPLIT_NAMES:
            self._datasets[name] = RecordsDataset(self.records, self.split[name], self.stats)
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
        self._require_setup()
        out = {}
        amplitude = wave_labels(self.records, self.split.train)["amplitude_uv"]
        targets = {f"{name.lower()}_amplitude_uv": amplitude[:, j] for j, name in enumerate(WAVE_NAMES)}
        targets["threshold_db"] = self.records.threshold_db[self.split.train]
        for name, v in targets.items():
            v = v[np.isfinite(v)]
            out[name] = (float(v.mean()), float(max(v.std(), 1e-3))) if v.size else (0.0, 1.0)
        return out

    def class_counts(self) -> np.ndarray:
        """Recordings per class in the training split (for class weights)."""
        self._require_setup()
        hl = self.records.hearing_loss[self.split.train]
        return np.bincount(hl[hl >= 0].astype(np.int64), minlength=5)

    def _require_setup(self) -> None:
        if self.records is None:
            raise RuntimeError("ABRDataModule.setup() has not run")

    def _replicas(self) -> tuple[int, int]:
        """(world size, global rank) of the attached trainer; (1, 0) without one."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _loader(self, name: str, train: bool, *, shard: bool = True) -> DataLoader:
        self._require_setup()
        dl = self.cfg.dataloader
        ds = self._datasets[name]
        world, rank = self._replicas() if shard else (1, 0)
        common = {"num_workers": dl.num_workers, "pin_memory": dl.pin_memory,
                  "persistent_workers": dl.num_workers > 0, "collate_fn": _identity_collate}
        if not train and world > 1:
            return DataLoader(ds, batch_sampler=ShardedBatchSampler(len(ds), dl.batch_size, world, rank), **common)
        sampler = None
        if train and dl.balanced_sampler:
            weights = class_balanced_weights(self.records.hearing_loss[self.split[name]])
            # Drawn with replacement: each rank draws its share with its own generator.
            sampler = WeightedRandomSampler(torch.from_numpy(weights), num_samples=len(ds) // world,
                                            replacement=True,
                                            generator=torch.Generator().manual_seed(self.seed + 7919 * rank))
        elif train:
            sampler = EpochShuffleSampler(len(ds), self.seed, world, rank)
        per_rank = len(ds) // world
        return DataLoader(ds, batch_size=dl.batch_size, sampler=sampler,
                          drop_last=train and dl.drop_last and per_rank > dl.batch_size, **common)

    def full_dataloader(self, name: str) -> DataLoader:
        """The whole split ``name`` in order on this process alone (not sharded across DDP ranks)."""
        return self._loader(name, train=False, shard=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
