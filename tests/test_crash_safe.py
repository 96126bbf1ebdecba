"""Crash-safe training: atomic writes everywhere, SIGKILL at random points, resume, safe checkpoint loading.

- A writer killed mid-write leaves the previous complete file (``abrflow.io.atomic_open``), for
  checkpoints too (``AtomicCheckpointIO``).
- ``train.py`` is SIGKILLed from inside the checkpoint writer, half way through writing
  ``latest_model.pt`` at the end of epoch 2 (forced, not caught by polling), then at a seeded random
  point after resuming; each time resumed with ``--resume latest_model.pt``: every checkpoint on disk
  loads after every kill, and the finished run has the epoch/step count of an uninterrupted one.
- ``--resume`` refuses a checkpoint that needs code execution to load; nothing in it runs.
- No module writes a file any other way (a source audit, so a new writer cannot slip past).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from abrflow.checkpoint import read_checkpoint
from abrflow.cli import main
from abrflow.errors import CheckpointError
from abrflow.inference.checkpoint import load_checkpoint
from abrflow.io import atomic_open, atomic_write_text
from abrflow.training.checkpoint_io import AtomicCheckpointIO

from .conftest import REPO, make_records

TINY = REPO / "tests" / "data" / "tiny.yaml"
EPOCHS, STEPS_PER_EPOCH = 4, 3
RUN = ["--config", str(TINY), "--epochs", str(EPOCHS), "--seed", "5", f"training.limit_train_batches={STEPS_PER_EPOCH}",
       "training.limit_val_batches=1", "training.checkpoint_every_n_epochs=1", "data.dataloader.batch_size=8",
       "logging.use_tensorboard=false", "logging.log_level=WARNING", "logging.progress_bar=false"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return make_records(n_patients=40, per_patient=6).save(tmp_path_factory.mktemp("data") / "rec.npz")


# ---------------------------------------------------------------- atomic writes


def test_a_writer_killed_mid_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, '{"old": true}')
    pid = os.fork()
    if pid == 0:  # child: half a new file, then SIGKILL (no cleanup, no exception handler runs)
        with atomic_open(target, "w", encoding="utf-8") as fh:
            fh.write('{"new": ')
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert json.loads(target.read_text()) == {"old": True}
    leftovers = list(tmp_path.glob(".metrics.json.*.tmp"))  # the dead writer's temporary file, not the target
    assert len(leftovers) == 1 and leftovers[0].read_text() == '{"new": '
    atomic_write_text(target, '{"new": true}')
    assert json.loads(target.read_text()) == {"new": True}


def test_an_interrupted_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io_ = AtomicCheckpointIO()
    path = tmp_path / "latest_model.pt"
    io_.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def dies_half_way(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # Ctrl-C / a dying process in the middle of torch.save

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io_.save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert io_.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest_model.pt"]


# ---------------------------------------------------------------- SIGKILL and resume


def _checkpoints_all_load(folder: Path) -> list[str]:
    names = []
    for path in sorted(folder.glob("*.pt")):
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
        assert {"epoch", "global_step", "state_dict", "optimizer_states", "abrflow"} <= set(ckpt), path
        load_checkpoint(path)  # the inference loader accepts it too
        names.append(path.name)
    return names


def _snapshot(folder: Path) -> set:
    try:
        return {(e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(folder)}
    except FileNotFoundError:
        return set()


#: ``python kill_mid_write.py NAME K AT_BYTE MARKER -- train.py ARGS…``: train.py, except that the K-th
#: checkpoint write to a file named NAME SIGKILLs the process from inside the writer once AT_BYTE bytes
#: of it are in the temporary file (flushed), after recording that in MARKER. Only the file object
#: that ``abrflow.io.atomic_open`` yields to ``save_checkpoint`` is wrapped: the temporary file, the
#: rename and everything else are the real ones.
KILL_MID_WRITE = """
import contextlib, json, os, runpy, signal, sys
from pathlib import Path

import abrflow.checkpoint

NAME, NTH, AT_BYTE, MARKER = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
real_atomic_open = abrflow.checkpoint.atomic_open
opened = 0


class DiesAtByte:
    def __init__(self, fh):
        self.fh, self.written = fh, 0

    def write(self, data):
        data = memoryview(data).cast("B")
        if self.written + len(data) >= AT_BYTE:
            self.fh.write(data[:AT_BYTE - self.written])
            self.fh.flush()
            MARKER.write_text(json.dumps({"file": NAME, "write": opened, "bytes": AT_BYTE}))
            os.kill(os.getpid(), signal.SIGKILL)
        self.written += len(data)
        return self.fh.write(data)

    def __getattr__(self, attr):
        return getattr(self.fh, attr)


@contextlib.contextmanager
def atomic_open(path, mode="wb", encoding=None):
    global opened
    with real_atomic_open(path, mode, encoding) as fh:
        opened += Path(path).name == NAME
        yield DiesAtByte(fh) if Path(path).name == NAME and opened == NTH else fh


abrflow.checkpoint.atomic_open = atomic_open
assert sys.argv[5] == "--"
sys.argv = sys.argv[6:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _kill_mid_write(wrapper: Path, train_argv: list[str], env: dict, name: str, nth: int, at_byte: int,
                    marker: Path) -> tuple[int, str]:
    """Run train.py under ``KILL_MID_WRITE``; (exit status, the end of its stderr)."""
    argv = [sys.executable, str(wrapper), name, str(nth), str(at_byte), str(marker), "--", *train_argv]
    proc = subprocess.run(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    return proc.returncode, proc.stderr.decode(errors="replace")[-400:]


def _run_and_kill(argv: list[str], env: dict, folder: Path, rng: random.Random) -> tuple[int, str]:
    """Start train.py; SIGKILL it at a seeded random moment after its k-th checkpoint write (k in 1–3).
    Returns (exit status, what happened)."""
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    writes_before_kill = rng.randint(1, 3)
    seen, writes, start = _snapshot(folder), 0, time.monotonic()
    while proc.poll() is None and time.monotonic() - start < 300:
        now = _snapshot(folder)
        if now != seen:
            writes += len({n for n, *_ in now - seen if n.endswith(".pt")})
            seen = now
            if writes >= writes_before_kill:
                time.sleep(rng.uniform(0.0, 0.3))
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.002)
    proc.wait(timeout=60)
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    return proc.returncode, f"after {writes} checkpoint writes: {stderr[-400:]}"


def test_sigkill_mid_checkpoint_write_and_at_a_random_point_then_resume_matches_an_uninterrupted_run(
        tmp_path, data_file):
    data = ["data.source=file", f"data.dataset_path={data_file}"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *RUN, *data, "--output_root", str(tmp_path), "--experiment", "reference"]) == 0
    finally:
        torch.set_num_threads(threads)
    reference = json.loads((tmp_path / "outputs" / "reference" / "train_result.json").read_text())
    assert (reference["epochs_completed"], reference["global_step"]) == (EPOCHS, EPOCHS * STEPS_PER_EPOCH)
    half = (tmp_path / "checkpoints" / "reference" / "latest_model.pt").stat().st_size // 2

    folder = tmp_path / "checkpoints" / "crash"
    argv = [sys.executable, str(REPO / "train.py"), *RUN, *data, "--output_root", str(tmp_path), "--experiment", "crash"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    latest = folder / "latest_model.pt"

    # 1. Killed from inside the writer with half of epoch 2's latest_model.pt in its temporary file.
    wrapper, marker = tmp_path / "kill_mid_write.py", tmp_path / "killed_mid_write.json"
    wrapper.write_text(KILL_MID_WRITE)
    code, stderr = _kill_mid_write(wrapper, argv[1:], env, "latest_model.pt", 2, half, marker)
    assert code == -signal.SIGKILL, stderr
    assert json.loads(marker.read_text()) == {"file": "latest_model.pt", "write": 2, "bytes": half}, stderr
    partial = list(folder.glob(".latest_model.pt.*.tmp"))  # SIGKILL: nothing removed the temporary file
    assert len(partial) == 1 and partial[0].stat().st_size == half, partial
    assert partial[0].read_bytes()[:4] == b"PK\x03\x04"  # the start of torch.save's zip, cut off half way
    with pytest.raises(CheckpointError, match="corrupted"):
        read_checkpoint(partial[0])
    previous = torch.load(latest, weights_only=True)  # epoch 1's complete checkpoint is still the latest
    assert (previous["epoch"], previous["global_step"]) == (0, STEPS_PER_EPOCH)
    assert "latest_model.pt" in _checkpoints_all_load(folder)

    # 2. Resumed, then killed at a seeded random point after 1–3 checkpoint writes (or it finished first).
    code, what = _run_and_kill(argv + ["--resume", str(latest)], env, folder, random.Random(20240611))
    assert code in (0, -signal.SIGKILL), what
    _checkpoints_all_load(folder)  # every checkpoint on disk loads after every kill

    # 3. The last resume runs in this process (train.py's own entry point, main(["train", …])): it
    # spares a third start-up of torch and Lightning.
    torch.set_num_threads(1)
    try:
        assert main(["train", *argv[2:], "--resume", str(latest)]) == 0
    finally:
        torch.set_num_threads(threads)
    names = _checkpoints_all_load(folder)
    assert {"latest_model.pt", "best_model.pt", f"checkpoint_epoch_{EPOCHS}.pt"} <= set(names)
    crashed = json.loads((tmp_path / "outputs" / "crash" / "train_result.json").read_text())
    assert (crashed["epochs_completed"], crashed["global_step"]) == \
        (reference["epochs_completed"], reference["global_step"]), what
    final = torch.load(latest, weights_only=True)
    assert (final["epoch"], final["global_step"]) == (EPOCHS - 1, EPOCHS * STEPS_PER_EPOCH)
    assert partial[0].stat().st_size == half  # the dead writer's leftover never stood in for a checkpoint


# ---------------------------------------------------------------- safe loading on resume


class _Payload:
    """Unpickling this calls open(marker, "w"): a stand-in for code hidden in a checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_refuses_a_code_executing_checkpoint(tmp_path, data_file, capsys):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pt"
    torch.save({"epoch": 0, "global_step": 0, "state_dict": {}, "note": _Payload(marker)}, hostile)
    with pytest.raises(CheckpointError, match="refused"):
        AtomicCheckpointIO().load_checkpoint(hostile)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train", *RUN, "data.source=file", f"data.dataset_path={data_file}", "--output_root",
                     str(tmp_path), "--resume", str(hostile)])
    finally:
        torch.set_num_threads(threads)
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("abrflow: error:")]
    assert len(err) == 1 and "refused" in err[0] and "weights_only=False" in err[0]
    assert not marker.exists()


# ---------------------------------------------------------------- every writer is atomic

#: Raw writes that are fine: the atomic helpers themselves, log files (append-only by nature), and
#: libraries writing into a private temporary file that is then published with atomic_replace.
ALLOWED_RAW_WRITES = {
    ("io.py", "os.fdopen(fd, mode, encoding=encoding)"),
    ("trainer.py", "logging.FileHandler(path, encoding=\"utf-8\")"),
    ("export.py", "program.save(str(tmp / path.name))"),
    ("export.py", "quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)"),
}
RAW_WRITE = re.compile(r"\.write_text\(|\.write_bytes\(|\bopen\([^)]*[\"'][wax]b?\+?[\"']|torch\.save\((?![^)]*\bfh\b)|"
                       r"np\.save[z_compressed]*\((?!fh)|savefig\((?!fh)|\.to_csv\((?!fh)|\.to_excel\((?!fh)|json\.dump\((?![^,]*, fh)|"
                       r"FileHandler\(|program\.save\(|quantize_dynamic\(")


def test_every_writer_goes_through_the_atomic_helpers():
    for raw in ('Path(p).write_text("x")', 'open(p, "w")', "open(path, 'ab')", "torch.save(ckpt, path)",
                "np.savez(path, a=a)", "fig.savefig(path)", "frame.to_csv(path)", "json.dump(obj, f)"):
        assert RAW_WRITE.search(raw), raw  # the audit would see it
    for fine in ("torch.save(ckpt, fh)", "np.savez_compressed(fh, **arrays)", "fig.savefig(fh, format='png')",
                 "frame.to_csv(fh, index=False)", 'open(path, "rb")'):
        assert not RAW_WRITE.search(fine), fine
    offenders = []
    for path in sorted((REPO / "src" / "abrflow").rglob("*.py")):
        if path.name == "records_dir.py":
            continue  # writes a whole directory under a temporary name, renamed when complete
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            if RAW_WRITE.search(code) and not any(path.name == name and snippet in code
                                                  for name, snippet in ALLOWED_RAW_WRITES):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "non-atomic writes:\n" + "\n".join(offenders)


def test_every_loader_refuses_pickled_code():
    """torch.load only with weights_only=True, np.load only with allow_pickle=False, and no unpickling
    anywhere but the legacy reader's restricted unpickler."""
    offenders = []
    for path in sorted((REPO / "src" / "abrflow").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            bad = ("torch.load(" in code and "weights_only=True" not in code) or \
                  ("np.load(" in code and "allow_pickle=False" not in code) or \
                  re.search(r"pickle\.loads?\(|read_pickle\(|joblib|dill|shelve|marshal\.load", code) or \
                  ("Unpickler(" in code and path.name != "_restricted_pickle.py")
            if bad:
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "loads that could run code:\n" + "\n".join(offenders)
