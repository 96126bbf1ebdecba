"""Data beyond memory and compiled models: records directories (memory-mapped, written in chunks),
batches read a slice at a time, bounded resident memory, chunked simulation, torch.compile."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from abrflow.cli import main
from abrflow.config import load_config
from abrflow.data.datamodule import ABRDataModule
from abrflow.data.normalization import NormalizationStats
from abrflow.data.records import ABRRecords
from abrflow.data.records_dir import META_NAME, RecordsDirWriter, is_records_dir, read_rows
from abrflow.errors import DataError

from .conftest import REPO, make_records

TINY = REPO / "tests" / "data" / "tiny.yaml"
FIELDS = ("signal", "age_years", "intensity_db", "stimulus_rate_hz", "fmp", "patient_id", "ear", "session_id",
          "v_present", "v_latency_ms", "v_amplitude_uv", "wave_latency_ms", "wave_amplitude_uv", "hearing_loss",
          "threshold_db")


def _assert_same(a: ABRRecords, b: ABRRecords) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.extra.keys() == b.extra.keys()
    for k in a.extra:
        np.testing.assert_array_equal(a.extra[k], b.extra[k], err_msg=k)
    assert (a.sampling_rate_hz, a.signal_unit, a.threshold_source) == (b.sampling_rate_hz, b.signal_unit,
                                                                       b.threshold_source)


def test_records_directory_round_trip_is_exact_and_memory_mapped(tmp_path):
    rec = make_records(12)
    rec.extra["sweeps_accepted"] = np.arange(len(rec), dtype=np.int32)
    rec.extra["polarity"] = np.where(np.arange(len(rec)) % 3, "alternate", "rarefaction")
    path = rec.save_dir(tmp_path / "cohort", chunk_rows=7)  # 48 rows in 7 chunks
    assert is_records_dir(path) and not list(tmp_path.glob(".*partial"))
    assert np.load(path / "signal.npy").shape == (48, 200)  # plain .npy files, readable one by one
    back = ABRRecords.load(path)
    assert back.is_memory_mapped and isinstance(back.patient_id, np.memmap)
    _assert_same(back, rec)
    assert np.isposinf(back.threshold_db).any() and np.isnan(back.v_latency_ms).any()
    with pytest.raises(ValueError):
        back.signal[0, 0] = 1.0  # read-only
    # Rows of the mapped signal are read from the file (not through the mapping): the same values.
    np.testing.assert_array_equal(read_rows(back.signal, [3, 47, -1, 3]), rec.signal[[3, 47, -1, 3]])
    assert read_rows(back.signal, []).shape == (0, 200)
    with pytest.raises(IndexError):
        read_rows(back.signal, [48])
    in_memory = ABRRecords.load(path, mmap=False)
    assert not in_memory.is_memory_mapped
    _assert_same(in_memory, rec)
    # Pickled (a DataLoader worker, a spawned process): the directory is mapped again, not copied.
    blob = pickle.dumps(back)
    assert len(blob) < 1000
    again = pickle.loads(blob)
    assert again.is_memory_mapped
    _assert_same(again, rec)
    np.testing.assert_array_equal(read_rows(again.signal, [5, 6]), rec.signal[5:7])
    sub = back.select([1, 5])  # a selection is an ordinary in-memory container
    assert not sub.is_memory_mapped and len(pickle.dumps(sub)) > 2 * 200 * 4
    # Writing again replaces the directory; a folder that is not a records directory is left alone.
    make_records(5).save_dir(path)
    assert len(ABRRecords.load(path)) == 20
    (tmp_path / "mine").mkdir()
    with pytest.raises(DataError, match="not an abrflow records directory"):
        rec.save_dir(tmp_path / "mine")


def test_writer_checks_every_chunk_and_leaves_nothing_when_interrupted(tmp_path):
    a = make_records(10)
    b = make_records(10)
    b.patient_id = np.char.add(b.patient_id, "-SITE-B")
    with pytest.raises(DataError, match=r"string_widths=\{'patient_id': N\}"):
        with RecordsDirWriter(tmp_path / "c1") as w:
            w.append(a)
            w.append(b)
    assert not (tmp_path / "c1").exists() and not list(tmp_path.iterdir())
    with RecordsDirWriter(tmp_path / "c1", string_widths={"patient_id": 16}) as w:
        w.append(a)
        w.append(b)
    assert ABRRecords.load(tmp_path / "c1").patient_id[-1] == "P009-SITE-B"
    with pytest.raises(DataError, match="time base differs"):
        with RecordsDirWriter(tmp_path / "c2") as w:
            w.append(a)
            w.append(make_records(10, length=100))
    bad = make_records(10)
    bad.signal[3, 7] = np.nan
    with pytest.raises(DataError, match="row 3"):
        with RecordsDirWriter(tmp_path / "c3") as w:
            w.append(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c1"]


def test_broken_records_directories_name_the_file(tmp_path):
    path = make_records(10).save_dir(tmp_path / "cohort")
    (path / "fmp.npy").unlink()
    with pytest.raises(DataError, match="fmp.npy"):
        ABRRecords.load(path)
    path = make_records(10).save_dir(tmp_path / "cohort")
    meta = json.loads((path / META_NAME).read_text())
    meta["rows"] = 41
    (path / META_NAME).write_text(json.dumps(meta))
    with pytest.raises(DataError, match="41 rows"):
        ABRRecords.load(path)
    (path / META_NAME).write_text("{")
    with pytest.raises(DataError, match=META_NAME):
        ABRRecords.load(path)
    np.save(path / "ear.npy", np.array([object()] * 40, dtype=object), allow_pickle=True)
    (path / META_NAME).write_text(json.dumps({**meta, "rows": 40}))
    with pytest.raises(DataError, match="ear.npy"):
        ABRRecords.load(path)


def _dm(records=None, path=None):
    overrides = ["data.dataloader.batch_size=16", "data.dataloader.drop_last=false"]
    if path is not None:
        overrides += ["data.source=file", f"data.dataset_path={path}"]
    dm = ABRDataModule(load_config(overrides=overrides, environ={}).data, seed=3, records=records)
    dm.setup("fit")
    return dm


def test_memory_mapped_batches_equal_in_memory_batches(tmp_path):
    rec = make_records(40)
    disk = _dm(path=rec.save_dir(tmp_path / "cohort", chunk_rows=50))
    memory = _dm(records=rec)
    assert disk.records.is_memory_mapped and not memory.records.is_memory_mapped
    assert disk.stats == memory.stats and disk.target_stats() == memory.target_stats()
    np.testing.assert_array_equal(disk.class_counts(), memory.class_counts())
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        a, b = list(getattr(disk, loader)()), list(getattr(memory, loader)())
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            assert x.keys() == y.keys()
            for k in x:
                assert torch.equal(x[k], y[k]), (loader, k)


def _mapped_rss_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of ``path`` (Linux /proc/self/smaps)."""
    total, current = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0]:
            current = line.rstrip().endswith(str(path))
        elif current and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc/self/smaps")
def test_reading_a_memory_mapped_cohort_keeps_few_pages_resident(tmp_path):
    rec = make_records(100, per_patient=200)  # 20,000 rows: 16 MB of signal
    back = ABRRecords.load(rec.save_dir(tmp_path / "cohort"))
    signal_file = (tmp_path / "cohort" / "signal.npy").resolve()
    back.validate()  # a full pass, in chunks
    stats = NormalizationStats.fit(back, max_signal_rows=15_000)  # a 15,000-row sample
    assert _mapped_rss_kib(signal_file) < 8 * 1024  # at most a chunk (8192 rows = 6.4 MB) stays resident
    assert stats.signal_scale == pytest.approx(NormalizationStats.fit(rec).signal_scale, rel=0.02)
    dm = _dm(path=tmp_path / "cohort")
    for _ in dm.train_dataloader():  # a whole epoch of batches in random order
        pass
    # Through the mapping, random rows would each map a page-cache folio (up to 2 MiB) and an epoch
    # would leave the whole 16 MB file resident; read from the file, nothing of it stays.
    assert _mapped_rss_kib(signal_file) < 1024


def test_signal_scale_is_exact_up_to_the_row_cap_then_sampled():
    rec = make_records(50)
    exact = NormalizationStats.fit(rec)
    assert NormalizationStats.fit(rec, max_signal_rows=len(rec)) == exact
    rows = np.arange(0, len(rec), 2)
    assert NormalizationStats.fit(rec, rows=rows) == NormalizationStats.fit(rec.select(rows))
    sampled = NormalizationStats.fit(rec, max_signal_rows=60)
    assert sampled.signal_scale == pytest.approx(exact.signal_scale, rel=0.05)
    assert sampled.static_mean == exact.static_mean  # static statistics always use every row
    assert NormalizationStats.fit(rec, max_signal_rows=60) == sampled  # deterministic


def test_simulator_writes_a_cohort_in_patient_chunks(tmp_path, capsys):
    from abrflow.data.synthetic import simulate_cohort, simulate_cohort_to_dir

    path = simulate_cohort_to_dir(tmp_path / "c", 50, seed=4, chunk_patients=20)  # chunks of 20, 20, 10
    rec = ABRRecords.load(path)
    assert len(np.unique(rec.patient_id)) == 50 and rec.patient_id[-1] == "P00050"
    assert "chunk_patients=20" in rec.source
    one = ABRRecords.load(simulate_cohort_to_dir(tmp_path / "one", 30, seed=4, chunk_patients=100))
    _assert_same(one, simulate_cohort(30, seed=4))  # a single chunk is the in-memory cohort
    assert main(["simulate", "--patients", "30", "--seed", "4", "--out_dir", str(tmp_path / "cli"),
                 "--chunk_patients", "100"]) == 0
    assert "saved:" in capsys.readouterr().out
    _assert_same(ABRRecords.load(tmp_path / "cli"), one)


def test_compiled_model_trains_with_the_eager_loss(tmp_path):
    # hardware.compile wraps the network in torch.compile. The inductor backend (the default, for
    # GPUs) generates and compiles C++ kernels: minutes on a small CPU, so this checks the path with
    # the "eager" backend, which traces the same graphs without code generation.
    from abrflow.training.calibration import model_weights
    from abrflow.training.trainer import ABRTrainer

    cfg = load_config(TINY, ["hardware.compile=true", "hardware.compile_backend=eager",
                             "model.architecture.dropout=0.0", f"project.output_root={tmp_path}"], environ={})
    dm = ABRDataModule(cfg.data, seed=0, records=make_records(30))
    module = ABRTrainer(cfg, datamodule=dm).build_module()
    assert isinstance(module.model, torch._dynamo.eval_frame.OptimizedModule)
    batch = next(iter(dm.train_dataloader()))
    eager = module.model._orig_mod  # the same network, not compiled
    for step in range(2):
        torch.manual_seed(step)
        loss, _, _ = module.shared_step(batch)
        loss.backward()
        module.model, compiled = eager, module.model
        torch.manual_seed(step)
        expected, _, _ = module.shared_step(batch)
        module.model = compiled
        assert torch.isfinite(loss) and float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    # A checkpoint of the compiled module loads into a plain network (torch.compile's key prefix).
    from abrflow.models.unet import build_model

    build_model(cfg).load_state_dict(model_weights(module.state_dict()))
