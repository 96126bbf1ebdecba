"""Shared fixtures: small hand-made records (no simulator needed), a tiny network, torch on one
thread, and paths to the real data."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

from abrflow.data.records import ABRRecords, empty_rows

# Under pytest-xdist each worker gets one core's worth of threads (no oversubscription on 2 cores).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

# Property-based fault tests: few derandomized examples in `make test`; HYPOTHESIS_PROFILE=fuzz (`make fuzz`)
# runs 1000 random ones per target. Counts per target are printed at the end (tests/fuzz_support.py).
settings.register_profile("default", max_examples=30, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fuzz", max_examples=1000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# No silent skips: every skipped, xfailed or xpassed test is listed at the end of the run, and any
# outside ALLOWED_SKIPS fails it (a missing test dependency is an error, not a skip). Reports reach
# these hooks in the process that prints the summary, under pytest-xdist too (the controller).

#: The only tests that may skip: node ids (parametrized ids match by the test's name), each with why.
ALLOWED_SKIPS: tuple[str, ...] = (
    "tests/test_scale.py::test_reading_a_memory_mapped_cohort_keeps_few_pages_resident",  # Linux /proc only
)
#: node id → (skipped | xfailed | xpassed, reason), in the order the reports arrived.
SKIPPED: dict[str, tuple[str, str]] = {}


def _record_skip(report, kind: str) -> None:
    if hasattr(report, "wasxfail"):
        reason = report.wasxfail or "xfail"
    elif isinstance(report.longrepr, (tuple, list)) and len(report.longrepr) == 3:  # (path, line, "Skipped: …")
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
    else:
        reason = str(report.longrepr)
    SKIPPED.setdefault(report.nodeid, (kind, reason))


def pytest_runtest_logreport(report):
    if report.skipped:  # skip/skipif/importorskip in a test or its fixtures, or an xfail that failed
        _record_skip(report, "xfailed" if hasattr(report, "wasxfail") else "skipped")
    elif report.passed and report.when == "call" and hasattr(report, "wasxfail"):
        _record_skip(report, "xpassed")


def pytest_collectreport(report):
    if report.skipped:  # a whole module: module-level importorskip or skip(allow_module_level=True)
        _record_skip(report, "skipped")


def skip_allowed(nodeid: str) -> bool:
    return nodeid.split("[", 1)[0] in ALLOWED_SKIPS


def pytest_sessionfinish(session):
    from . import fuzz_support

    counts = {"cases": dict(fuzz_support.CASES), "escapes": dict(fuzz_support.ESCAPES)}
    if hasattr(session.config, "workeroutput"):  # an xdist worker: hand the counts to the controller
        session.config.workeroutput["abrflow_fuzz"] = json.dumps(counts)
    elif session.exitstatus == pytest.ExitCode.OK and not all(map(skip_allowed, SKIPPED)):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # the run fails; the summary says why


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    from . import fuzz_support

    counts = json.loads(getattr(node, "workeroutput", {}).get("abrflow_fuzz", "{}") or "{}")
    fuzz_support.CASES.update(counts.get("cases", {}))
    fuzz_support.ESCAPES.update(counts.get("escapes", {}))


def pytest_terminal_summary(terminalreporter):
    from . import fuzz_support

    if not hasattr(terminalreporter.config, "workeroutput"):
        _skip_summary(terminalreporter)
    if not fuzz_support.CASES:
        return
    terminalreporter.section(f"generated fault cases ({settings.default.max_examples} examples per test)")
    for target, n in sorted(fuzz_support.CASES.items()):
        terminalreporter.write_line(f"{target:28s} {n:6d} cases, {fuzz_support.ESCAPES[target]} escaped")
    if os.environ.get("ABRFLOW_FUZZ_COUNTS"):
        counts = {"cases": dict(fuzz_support.CASES), "escapes": dict(fuzz_support.ESCAPES)}
        Path(os.environ["ABRFLOW_FUZZ_COUNTS"]).write_text(json.dumps(counts, indent=1, sort_keys=True))


def _skip_summary(terminalreporter) -> None:
    """The skipped/xfailed/xpassed tests with their reasons; why the run fails where one is not allowed."""
    refused = [nodeid for nodeid in SKIPPED if not skip_allowed(nodeid)]
    terminalreporter.section(f"skipped tests: {len(SKIPPED)} ({len(refused)} not allowed)", red=bool(refused),
                             green=not refused)
    if not SKIPPED:
        terminalreporter.write_line("none")
    for nodeid, (kind, reason) in SKIPPED.items():
        allowed = skip_allowed(nodeid)
        terminalreporter.write_line(f"{'allowed' if allowed else 'NOT ALLOWED'}  {kind} {nodeid}: {reason}",
                                    red=not allowed)
    if refused:
        terminalreporter.write_line(
            f"FAILED: {len(refused)} test(s) skipped, xfailed or xpassed outside ALLOWED_SKIPS (tests/conftest.py); "
            "a missing test dependency is an error (install with `pip install -e '.[dev]'`), and a test that "
            "cannot run here must be allow-listed there with its reason", red=True, bold=True)


REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REAL = SHARED / "real"


def make_records(n_patients: int = 30, per_patient: int = 4, seed: int = 0, length: int = 200) -> ABRRecords:
    """Hand-made records: every class present, V marked on half, thresholds finite or +inf."""
    rng = np.random.default_rng(seed)
    n = n_patients * per_patient
    rows = empty_rows(n)
    patient = np.repeat(np.arange(n_patients), per_patient)
    rows["patient_id"] = np.array([f"P{p:03d}" for p in patient])
    rows["ear"] = np.where(np.arange(n) % 2 == 0, "L", "R")
    cls = (np.arange(n_patients) % 5).astype(np.int8)
    rows["hearing_loss"] = cls[patient]
    rows["age_years"] = rng.uniform(0, 70, n).astype(np.float32)
    rows["intensity_db"] = rng.choice([20, 40, 60, 80], n).astype(np.float32)
    rows["stimulus_rate_hz"] = np.full(n, 33.1, np.float32)
    rows["fmp"] = rng.uniform(0.2, 4, n).astype(np.float32)
    marked = (np.arange(n) % 2 == 0) & (rows["hearing_loss"] != 3)
    rows["v_present"] = marked
    rows["v_latency_ms"] = np.where(marked, rng.uniform(5.5, 9.5, n), np.nan).astype(np.float32)
    rows["v_amplitude_uv"] = np.where(marked, rng.uniform(0.1, 0.6, n), np.nan).astype(np.float32)
    thr = np.where(rows["hearing_loss"] == 3, np.inf, rng.uniform(0, 60, n)).astype(np.float32)
    rows["threshold_db"] = thr
    signal = rng.normal(0, 0.1, (n, length)).astype(np.float32)
    return ABRRecords(signal=signal, sampling_rate_hz=20000.0, source="test:make_records",
                      threshold_source="simulated", **rows).validate()


@pytest.fixture
def records() -> ABRRecords:
    return make_records()


#: Overrides that make the default network tiny (seconds to build and run on a CPU).
SMALL_MODEL = ("model.architecture.base_channels=8", "model.architecture.time_embed_dim=32",
               "model.architecture.encoder.d_state=8", "model.architecture.decoder.n_heads=2")


def small_model(*overrides: str, length: int = 64, seed: int = 0):
    """The default architecture at a tiny width for a ``length``-sample window, seeded."""
    from abrflow.config import load_config
    from abrflow.models.unet import build_model

    cfg = load_config(overrides=[*SMALL_MODEL, f"data.signal_length={length}", *overrides], environ={})
    torch.manual_seed(seed)
    return build_model(cfg)


@contextlib.contextmanager
def torch_threads(n: int):
    """Torch on ``n`` threads inside the block: on a shared 2-core machine, OpenMP threads that
    busy-wait for a core another process holds make tiny-model steps 20–100× slower; for these
    sizes one thread is as fast on an idle machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a whole test module (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    with torch_threads(1):
        yield
