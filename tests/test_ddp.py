"""Multi-process training: Lightning DDP over gloo with 2 CPU processes, and the samplers that shard.

The end-to-end test runs train.py's own code path (`abrflow train --devices 2 --strategy ddp`) in a
subprocess. Lightning's ``ddp`` strategy starts the second rank by running the same script again
(``sys.argv``), so the run must be a real script, not the pytest process: inside pytest the
re-launched command would be pytest itself. ``ddp_spawn`` would pickle the trainer into spawned
interpreters instead; plain ``ddp`` is what train.py, torchrun and SLURM use, so that is what is
tested. A recording callback (added to the trainer's callbacks by the script) writes, per rank,
the rows each training and validation batch held and the validation metrics each rank saw.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from abrflow.checkpoint import CHECKPOINT_FORMAT
from abrflow.config import load_config
from abrflow.data.datamodule import ABRDataModule, EpochShuffleSampler, ShardedBatchSampler
from abrflow.errors import DataError

from .conftest import REPO, make_records

TINY = REPO / "tests" / "data" / "tiny.yaml"

_SCRIPT = r'''
import json, os, sys
from lightning.pytorch.callbacks import Callback
from abrflow.cli import main
from abrflow.training.trainer import ABRTrainer

class RecordRows(Callback):
    """Per rank: rows of every training/validation batch by epoch, and the validation metrics."""
    def __init__(self):
        self.train, self.val, self.val_batches, self.metrics = {}, {}, {}, {}
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.setdefault(trainer.current_epoch, []).extend(batch["index"].tolist())
    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val.setdefault(trainer.current_epoch, []).extend(batch["index"].tolist())
        self.val_batches[trainer.current_epoch] = self.val_batches.get(trainer.current_epoch, 0) + 1
    def on_train_epoch_end(self, trainer, pl_module):  # after this epoch's validation
        self.metrics[trainer.current_epoch] = {k: float(v) for k, v in trainer.callback_metrics.items()
                                               if k.startswith("val/")}
    def on_fit_end(self, trainer, pl_module):
        out = os.path.join(os.environ["ABRFLOW_TEST_ROWS"], f"rank{trainer.global_rank}.json")
        with open(out, "w") as fh:
            json.dump({"world_size": trainer.world_size, "train": self.train, "val": self.val,
                       "val_batches": self.val_batches, "metrics": self.metrics}, fh)

_callbacks = ABRTrainer._callbacks
ABRTrainer._callbacks = lambda self: _callbacks(self) + [RecordRows()]
sys.exit(main(["train", *sys.argv[1:]]))
'''

OVERRIDES = ["data.source=file", "data.dataloader.batch_size=8", "data.dataloader.drop_last=false",
             "training.checkpoint_every_n_epochs=1", "logging.use_tensorboard=false"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Two epochs of the tiny model on 2 CPU processes, reading a memory-mapped records directory."""
    root = tmp_path_factory.mktemp("ddp")
    # 4 recordings per patient: every split has an even number of rows (no row left out by the shards).
    data = make_records(n_patients=20, per_patient=4).save_dir(root / "cohort")
    script = root / "ddp_train.py"
    script.write_text(_SCRIPT)
    (root / "rows").mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_", "PL_")) and k not in
           ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")}
    env.update(OMP_NUM_THREADS="1", ABRFLOW_TEST_ROWS=str(root / "rows"))
    argv = [sys.executable, str(script), "--config", str(TINY), "--output_root", str(root / "out"),
            "--experiment", "ddp", "--device", "cpu", "--devices", "2", "--strategy", "ddp", "--num_nodes", "1",
            "--epochs", "2", f"data.dataset_path={data}", *OVERRIDES]
    # Output to files, not pipes: the second rank inherits them, and a pipe nobody reads can block it.
    # A session of its own: on a timeout the whole process group goes, the rank Lightning started too.
    with open(root / "stdout.txt", "w") as out, open(root / "stderr.txt", "w") as err:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    stdout, stderr = (root / "stdout.txt").read_text(), (root / "stderr.txt").read_text()
    assert rc == 0, stdout[-3000:] + stderr[-5000:]
    cfg = load_config(TINY, [*OVERRIDES, f"data.dataset_path={data}"], environ={})
    dm = ABRDataModule(cfg.data, seed=cfg.project.seed)
    dm.setup("fit")
    ranks = [json.loads((root / "rows" / f"rank{r}.json").read_text()) for r in range(2)]
    return {"root": root, "stdout": stdout, "ranks": ranks, "dm": dm, "seed": cfg.project.seed}


def test_ddp_shards_the_single_process_epoch(ddp_run):
    ranks, n_train = ddp_run["ranks"], len(ddp_run["dm"].split.train)
    assert [r["world_size"] for r in ranks] == [2, 2] and n_train % 2 == 0
    single = EpochShuffleSampler(n_train, ddp_run["seed"])
    for epoch in ("0", "1"):
        seen = [r["train"][epoch] for r in ranks]
        for rows in seen:
            assert len(rows) == len(set(rows)) == n_train // 2  # no row twice within an epoch
        assert not set(seen[0]) & set(seen[1])
        assert set(seen[0]) | set(seen[1]) == set(range(n_train))  # the single-process epoch's rows
        single.set_epoch(int(epoch))
        order = list(single)
        assert seen[0] == order[0::2] and seen[1] == order[1::2]  # the same epoch permutation, dealt out
    assert ranks[0]["train"]["0"] != ranks[0]["train"]["1"]  # reshuffled each epoch


def test_ddp_validation_sees_each_row_once_and_metrics_agree(ddp_run):
    ranks, n_val = ddp_run["ranks"], len(ddp_run["dm"].split.val)
    for epoch in ("0", "1"):
        val = [r["val"][epoch] for r in ranks]
        assert sorted(val[0] + val[1]) == list(range(n_val))
        assert ranks[0]["val_batches"][epoch] == ranks[1]["val_batches"][epoch]
        m0, m1 = ranks[0]["metrics"][epoch], ranks[1]["metrics"][epoch]
        assert {"val/loss", "val/v_f1", "val/macro_f1", "val/latency_mae_ms", "val/threshold_mae_db"} <= set(m0)
        assert m0 == m1  # reduced across processes: the same numbers on both ranks
        assert all(np.isfinite(v) for v in m0.values())


def test_ddp_writes_one_set_of_checkpoints_that_loads(ddp_run):
    root = ddp_run["root"]
    ck = root / "out" / "checkpoints" / "ddp"
    assert sorted(p.name for p in ck.iterdir()) == ["best_model.pt", "checkpoint_epoch_1.pt",
                                                     "checkpoint_epoch_2.pt", "latest_model.pt"]
    steps = 2 * -(-len(ddp_run["dm"].split.train) // 2 // 8)  # 2 epochs of ceil(shard / batch) steps
    ckpt = torch.load(ck / "best_model.pt", weights_only=True, map_location="cpu")
    assert ckpt["abrflow"]["format"] == CHECKPOINT_FORMAT and "calibration" in ckpt["abrflow"]
    assert ckpt["global_step"] == steps
    from abrflow.inference.predictor import ABRInference

    model = ABRInference(ck / "best_model.pt", device="cpu")
    out = model.analyse_records(ddp_run["dm"].split_records("test"), return_confidence=False)
    assert len(out["v_present_prob"]) == len(ddp_run["dm"].split.test)
    result = json.loads((root / "out" / "outputs" / "ddp" / "train_result.json").read_text())
    assert result["global_step"] == steps and result["epochs_completed"] == 2
    assert ddp_run["stdout"].count("experiment ddp") == 1  # rank 0 alone reports
    history = json.loads((root / "out" / "outputs" / "ddp" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]


# ------------------------------------------------------------------ samplers, in process
@pytest.mark.parametrize("n", [37, 40])
def test_epoch_shuffle_shards_are_disjoint_equal_and_resume_exactly(n):
    shards = [EpochShuffleSampler(n, seed=5, num_replicas=3, rank=r) for r in range(3)]
    for s in shards:
        s.set_epoch(4)
    rows = [list(s) for s in shards]
    assert all(len(r) == n // 3 == len(s) for r, s in zip(rows, shards))
    flat = sum(rows, [])
    assert len(flat) == len(set(flat)) == n - n % 3  # each row at most once; n mod 3 left out this epoch
    again = EpochShuffleSampler(n, seed=5, num_replicas=3, rank=1)
    again.set_epoch(4)
    assert list(again) == rows[1]  # depends only on (seed, epoch, rank)
    with pytest.raises(ValueError, match="rank 3"):
        EpochShuffleSampler(n, 0, num_replicas=3, rank=3)


@pytest.mark.parametrize("n, batch, world", [(20, 8, 2), (21, 8, 2), (17, 4, 3), (16, 8, 2), (3, 1, 2), (5, 64, 4)])
def test_sharded_eval_batches_cover_every_row_once_with_equal_batch_counts(n, batch, world):
    samplers = [ShardedBatchSampler(n, batch, world, r) for r in range(world)]
    assert len({len(s) for s in samplers}) == 1
    rows = [i for s in samplers for b in s for i in b]
    assert sorted(rows) == list(range(n))
    assert all(b and len(b) <= max(batch, math.ceil(math.ceil(n / world) / len(s))) for s in samplers for b in s)
    with pytest.raises(DataError, match="cannot be shared by 4 processes"):
        ShardedBatchSampler(3, 8, 4, 0)


def test_datamodule_shards_by_the_attached_trainers_rank():
    cfg = load_config(overrides=["data.dataloader.batch_size=8", "data.dataloader.drop_last=false"], environ={})
    dm = ABRDataModule(cfg.data, seed=0, records=make_records(30))
    dm.setup("fit")

    class _Trainer:  # what the datamodule reads of Lightning's trainer
        world_size, global_rank = 2, 1

    dm.trainer = _Trainer()
    train = torch.cat([b["index"] for b in dm.train_dataloader()]).tolist()
    val = torch.cat([b["index"] for b in dm.val_dataloader()]).tolist()
    full = torch.cat([b["index"] for b in dm.full_dataloader("val")]).tolist()
    assert len(train) == len(dm.split.train) // 2 and len(set(train)) == len(train)
    assert val == list(range(1, len(dm.split.val), 2))  # rank 1's rows of the validation split
    assert full == list(range(len(dm.split.val)))  # the whole split, for calibration on rank 0


def test_readme_cluster_commands_use_real_flags(monkeypatch):
    """Every train.py / abrflow line of the README's cluster section parses into a valid config."""
    import re
    import shlex

    from abrflow.cli import build_parser, train_config_from_args

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Training on a GPU cluster\n")
    section = readme[start:readme.index("\n## ", start + 1)]
    lines = [line for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
             for line in block.replace("\\\n", " ").splitlines() if line.strip() and not line.startswith("#")]
    monkeypatch.chdir(REPO)
    checked = 0
    for line in lines:
        argv = shlex.split(line)
        if "train.py" in argv:
            args = build_parser().parse_args(["train", *argv[argv.index("train.py") + 1:]])
            cfg = train_config_from_args(args)
            assert cfg.hardware.strategy == "ddp" or "--strategy" not in argv
            checked += 1
        elif argv[0] == "abrflow":
            build_parser().parse_args(argv[1:])
            checked += 1
    assert checked >= 5
