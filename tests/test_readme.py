"""The README's inference examples run as written (paths aside): every CLI line and the Python block.

The lines are read from README.md itself, so an example that stops working (or a flag that is
renamed) fails here. They run in a scratch folder holding what they name: checkpoints/best_model.pt
(the test checkpoint), checkpoints/seed2.pt (the same recipe trained separately with another seed: the
ensemble examples' second member), data/test_batch.npz, recordings.npz; ``../shared/real`` points at
the real data.
"""

from __future__ import annotations

import os
import re
import shlex

import numpy as np
import pytest

from abrflow.cli import main
from abrflow.data.synthetic import simulate_cohort

from .conftest import REAL, REPO
from .fixtures_checkpoint import one_thread, trained, trained_seed2  # noqa: F401  (fixtures)

README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.fixture
def scratch(trained, trained_seed2, tmp_path, monkeypatch):  # noqa: F811
    (tmp_path / "checkpoints").mkdir()
    os.symlink(trained.best, tmp_path / "checkpoints" / "best_model.pt")
    os.symlink(trained_seed2.best, tmp_path / "checkpoints" / "seed2.pt")  # another seed's run of the recipe
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "test_batch.npz", patients=np.array([[45, 80, 30, 0.75], [65, 90, 20, 0.60]]))
    simulate_cohort(n_patients=2, seed=3).save(tmp_path / "recordings.npz")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _checkpoints(argv: list[str]) -> list[str]:
    """The paths after --checkpoint (several: an ensemble)."""
    if "--checkpoint" not in argv:
        return []
    rest = argv[argv.index("--checkpoint") + 1:]
    return rest[:next((i for i, a in enumerate(rest) if a.startswith("--")), len(rest))]


def _separate_runs(paths) -> bool:
    """Every checkpoint comes from another training run (its own project.seed): an ensemble of
    separately trained members, not one file twice nor two checkpoints of one run."""
    import torch

    seeds = {torch.load(p, map_location="cpu", weights_only=True)["abrflow"]["config"]["project"]["seed"]
             for p in paths}
    return len(seeds) == len(paths)


def test_readme_inference_command_lines_run(scratch):
    lines = [line for line in _blocks(_section("Inference"), "bash")[0].splitlines() if line.strip()]
    assert len(lines) >= 8
    ensembles = [_checkpoints(shlex.split(line)) for line in lines if len(_checkpoints(shlex.split(line))) > 1]
    assert ensembles and all(_separate_runs(paths) for paths in ensembles), ensembles
    for line in lines:
        argv = shlex.split(line.replace("../shared/real", str(REAL)))
        if argv[:2] == ["python", "inference.py"]:
            argv = ["infer", *argv[2:]]
        else:
            assert argv[0] == "abrflow", line
            argv = argv[1:]
        assert main(argv) == 0, line
    assert (scratch / "results" / "synthetic_data" / "generated.npz").is_file()
    assert (scratch / "export" / "model.int8.onnx").is_file()


def test_readme_python_api_block_runs(scratch):
    code = _blocks(_section("Inference"), "python")[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102  (our own README)
    assert namespace["waveforms"].shape == (8, 200) and len(namespace["rows"]) == 2
    assert namespace["onnx"].backend == "onnx"
    assert _separate_runs(namespace["ensemble"].checkpoint_path) and len(namespace["ensemble"].members) == 2
    assert set(namespace["per_ear"]) == set(np.unique(namespace["recordings"].series_key))
