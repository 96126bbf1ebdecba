"""The abrflow command: config show, simulate, and exit code 2 with one line on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from abrflow.cli import main


def test_config_show_prints_yaml_and_hash(capsys):
    assert main(["config", "show", "training.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 3" in out and "# config hash: " in out


def test_config_error_exit_2_one_line(capsys):
    assert main(["config", "show", "training.epochz=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean training.epochs?" in err


def test_help_says_what_the_tool_does_and_lists_every_command():
    """`abrflow --help` opens with what abrflow does for its user, not with a note for developers; it
    runs without importing torch (the CLI loads a command's machinery only when the command runs)."""
    proc = subprocess.run([sys.executable, "-c", "import sys; from abrflow.cli import main\n"
                           "try:\n    main(['--help'])\nexcept SystemExit as e:\n    code = e.code\n"
                           "print('TORCH', 'torch' in sys.modules); sys.exit(code)"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    description = proc.stdout.split("\n\n")[1]
    assert "Auditory Brainstem Response" in description and "hearing threshold" in description
    assert "parses arguments" not in proc.stdout
    for command in ("config", "simulate", "train", "evaluate", "infer", "export", "threshold"):
        assert command in proc.stdout.split("\n\n")[0]
    assert "TORCH False" in proc.stdout


def test_bad_argument_exit_2():
    proc = subprocess.run([sys.executable, "-m", "abrflow.cli", "simulate", "--patients", "many"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid int value" in proc.stderr


@pytest.mark.parametrize("argv", [["simulate", "--patients", "0"], ["config", "show", "--config", "missing.yaml"]])
def test_bad_values_exit_2(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("abrflow: error:")


def test_simulate_prints_summary_and_saves_loadable_records(tmp_path, capsys):
    out = tmp_path / "cohort.npz"
    assert main(["simulate", "--patients", "60", "--seed", "7", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["patients"] == 60 and summary["recordings"] > 60 * 10
    from abrflow import load_records

    rec = load_records(out)
    assert len(rec) == summary["recordings"] and rec.source == "synthetic:seed=7,patients=60"
    assert main(["simulate", "--patients", "60", "--seed", "7"]) == 0
    text = capsys.readouterr().out
    assert "wave V marked:" in text and "class shares:" in text
