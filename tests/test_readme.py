"""The README's inference examples run as written (paths aside): every CLI line and the Python block.

The lines are read from README.md itself, so an example that stops working (or a flag that is
renamed) fails here. They run in a scratch folder holding what they name: checkpoints/best_model.pt
(the test checkpoint), data/test_batch.npz, recordings.npz; ``../shared/real`` points at the real data.
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
from .fixtures_checkpoint import one_thread, trained  # noqa: F401  (fixtures)

README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.fixture
def scratch(trained, tmp_path, monkeypatch):  # noqa: F811
    (tmp_path / "checkpoints").mkdir()
    os.symlink(trained.best, tmp_path / "checkpoints" / "best_model.pt")
    os.symlink(trained.latest, tmp_path / "checkpoints" / "seed1.pt")  # stand-ins for other seeds' runs
    os.symlink(trained.best, tmp_path / "checkpoints" / "seed2.pt")
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "test_batch.npz", patients=np.array([[45, 80, 30, 0.75], [65, 90, 20, 0.60]]))
    simulate_cohort(n_patients=2, seed=3).save(tmp_path / "recordings.npz")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_inference_command_lines_run(scratch):
    lines = [line for line in _blocks(_section("Inference"), "bash")[0].splitlines() if line.strip()]
    assert len(lines) >= 8
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
    assert set(namespace["per_ear"]) == set(np.unique(namespace["recordings"].series_key))
