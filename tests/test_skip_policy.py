"""No silent skips (tests/conftest.py): every skipped, xfailed or xpassed test is listed at the end of
the run, and one outside ``ALLOWED_SKIPS`` fails the run. Proved on throwaway test files run by a real
pytest in a subprocess with this conftest's hooks (``-p tests.conftest``), once under pytest-xdist
(``make test`` runs it: the reports, a whole skipped module's too, come to the controller from a
worker) and once without it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import ALLOWED_SKIPS, REPO

ALLOWED = ALLOWED_SKIPS[0]  # tests/test_scale.py::test_…: the Linux-only /proc check

THROWAWAY = {
    "tests/test_scale.py": f"""
        import pytest

        @pytest.mark.skipif(True, reason="needs Linux /proc/self/smaps")
        def {ALLOWED.split("::")[1]}():
            pass
        """,
    "tests/test_other.py": """
        import pytest

        def test_runs():
            pass

        def test_skips():
            pytest.skip("onnxruntime is not installed")

        @pytest.mark.xfail(reason="known to fail")
        def test_xfails():
            assert False

        @pytest.mark.xfail(reason="thought to fail")
        def test_xpasses():
            pass
        """,
    "tests/test_gone.py": """
        import pytest

        pytest.importorskip("abrflow_no_such_module")

        def test_never_collected():
            pass
        """,
}


def _pytest(tmp_path: Path, files: dict[str, str], *args: str) -> tuple[int, str]:
    """Run pytest on ``files`` (written under ``tmp_path``, its rootdir) with the repo's conftest hooks."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -ra\n")
    argv = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "--rootdir",
            str(tmp_path), "-c", str(tmp_path / "pytest.ini"), "--import-mode=importlib", *args, str(tmp_path / "tests")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def test_a_skip_outside_the_allow_list_fails_the_run_and_is_named(tmp_path):
    code, out = _pytest(tmp_path, THROWAWAY, "-n", "1")  # one worker: its reports cross to the controller
    assert code == 1, out
    assert not re.search(r"\d+ failed", out.splitlines()[-1]), out  # no test failed: the policy failed the run
    assert "skipped tests: 5 (4 not allowed)" in out, out
    for line in (f"allowed  skipped {ALLOWED}: needs Linux /proc/self/smaps",
                 "NOT ALLOWED  skipped tests/test_other.py::test_skips: onnxruntime is not installed",
                 "NOT ALLOWED  xfailed tests/test_other.py::test_xfails: known to fail",
                 "NOT ALLOWED  xpassed tests/test_other.py::test_xpasses: thought to fail",
                 "NOT ALLOWED  skipped tests/test_gone.py: could not import 'abrflow_no_such_module'"):
        assert line in out, f"{line!r} not in:\n{out}"
    assert "FAILED: 4 test(s) skipped, xfailed or xpassed outside ALLOWED_SKIPS" in out, out


def test_an_allowed_skip_passes_and_is_listed(tmp_path):
    files = {"tests/test_scale.py": THROWAWAY["tests/test_scale.py"], "tests/test_fine.py": "def test_runs():\n    pass\n"}
    code, out = _pytest(tmp_path, files, "-p", "no:xdist")
    assert code == 0, out
    assert "skipped tests: 1 (0 not allowed)" in out and f"allowed  skipped {ALLOWED}: needs Linux" in out, out
    assert "NOT ALLOWED" not in out and "FAILED:" not in out, out


def test_the_allow_list_names_existing_tests():
    for nodeid in ALLOWED_SKIPS:
        path, name = nodeid.split("::")
        assert f"def {name}(" in (REPO / path).read_text(encoding="utf-8"), nodeid
