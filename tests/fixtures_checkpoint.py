"""One small trained, calibrated checkpoint shared by the inference, export and inference-CLI tests,
and a second, separately trained one (another ``project.seed``) for the ensemble tests.

Import the ``trained`` fixture into a test module (``from .fixtures_checkpoint import trained``).
Pytest registers an imported fixture once per importing module, so the training itself is cached
here: it runs once per test session (per xdist worker). ``trained_seed2`` likewise, and only where
a module asks for it (about as long again as ``trained``: 12–20 s on 2 CPU cores).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from abrflow.data.records import ABRRecords

from .conftest import REPO, torch_threads

TINY = REPO / "tests" / "data" / "tiny.yaml"
#: Enough patients that val and test hold ~2,000 recordings each from ~90 patients (coverage test),
#: few enough steps that training takes seconds. EMA decay 0.9: a short run's EMA must move off
#: the initial weights.
OVERRIDES = (
    "data.synthetic.n_patients=600", "data.dataloader.batch_size=32", "training.epochs=2",
    "training.limit_train_batches=20", "training.limit_val_batches=4", "training.ema.decay=0.9",
    "training.optimizer.learning_rate=0.002", "training.scheduler.type=constant",
    "training.scheduler.warmup_epochs=0", "logging.use_tensorboard=false", "logging.log_level=WARNING",
)


@dataclass(frozen=True)
class Trained:
    best: Path
    latest: Path
    root: Path
    val: ABRRecords
    test: ABRRecords


_CACHE: dict[str, object] = {}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Torch on one thread in every module that imports the trained checkpoint (conftest.torch_threads)."""
    with torch_threads(1):
        yield


#: ``project.seed`` of the second run: the same recipe, data and splits (their seeds are data.*), a
#: different initialisation, batch order and noise. ``trained`` keeps the config's default seed.
SECOND_SEED = 2


def _train(root: Path, *overrides: str) -> Trained:
    from abrflow.config import load_config
    from abrflow.training.trainer import ABRTrainer

    cfg = load_config(TINY, [*OVERRIDES, *overrides, f"project.output_root={root}"])
    trainer = ABRTrainer(cfg, experiment="inference")
    with torch_threads(1):  # see conftest.torch_threads
        result = trainer.train()
    dm = trainer.datamodule
    return Trained(best=Path(result["best_model"]), latest=Path(result["latest_model"]), root=root,
                   val=dm.split_records("val"), test=dm.split_records("test"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    if "trained" not in _CACHE:
        _CACHE["trained"] = _train(tmp_path_factory.mktemp("trained_checkpoint"))
    return _CACHE["trained"]


@pytest.fixture(scope="session")
def trained_seed2(tmp_path_factory) -> Trained:
    """The ``trained`` recipe run again with ``project.seed`` = SECOND_SEED: a separately trained member."""
    if "trained_seed2" not in _CACHE:
        _CACHE["trained_seed2"] = _train(tmp_path_factory.mktemp("trained_checkpoint_seed2"),
                                         f"project.seed={SECOND_SEED}")
    return _CACHE["trained_seed2"]


@dataclass(frozen=True)
class Exported:
    folder: Path
    stdout: str
    exit_code: int


def _export(folder: Path, checkpoint: Path) -> Exported:
    """``abrflow export --int8`` through the CLI: the export tests and the CLI test share one run."""
    import contextlib
    import io

    from abrflow.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["export", "--checkpoint", str(checkpoint), "--output_dir", str(folder), "--int8"])
    return Exported(folder=folder, stdout=buffer.getvalue(), exit_code=code)


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory) -> Exported:
    import onnxruntime  # noqa: F401  (a test dependency: missing, the tests using this fixture error, never skip)

    if "exported" not in _CACHE:
        _CACHE["exported"] = _export(tmp_path_factory.mktemp("onnx"), trained.best)
    return _CACHE["exported"]
