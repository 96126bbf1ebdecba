"""``abrflow evaluate --data`` fed damaged files (property-based), as tests/test_fuzz_readers.py feeds the readers.

Each case runs the whole command, ``main(["evaluate", "--checkpoint", …, "--data", FILE…, "--output_dir",
OUT, *QUICK])`` on the tiny trained checkpoint, with:

- ``*_bytes``: a valid file damaged by ``fuzz_support.mutations`` (truncated, bytes flipped, overwritten,
  inserted or deleted, a field set to a hostile token, lines dropped or repeated, re-encoded, emptied):
  a generated Eclipse export (20 and 40 kHz rows), a real SmartEP file (plus aimed damage: cut at a
  line, a header row deleted, one cell set to text that is no number), a synthetic ``.npz`` records
  file; sometimes beside a valid SmartEP file in the same ``--data`` list (the error must name the
  damaged one). ``test_evaluate_thresholds_bytes``: a damaged ``--thresholds`` CSV beside a valid file.
- ``*_valid``: undamaged files and mixes of time bases (an Eclipse export at any device rate the
  readers resample, a SmartEP folder or file at 20 kHz, a ``.npz``): must exit 0 with every row evaluated.

The contract of every run (``_contract``): exit 0 with ``metrics.json`` and ``report.txt`` written and
the report printed, or exit 2 with exactly one line on stderr, starting ``abrflow: error:``, naming the
damaged file; after exit 2 no ``metrics.json``/``report.txt`` (no partial folder posing as a result).
Where the reader itself refuses the file (checked by calling it directly), the line carries the
reader's message (file, row, field); where the reader accepts it, evaluate must exit 0. Any exception
escaping ``main`` (a traceback) is an escape and fails the test (tests/fuzz_support.py counts both).

Each case that reads is a whole evaluation (1–4 s on 2 CPU cores): ``EVAL`` examples per test in
``make test`` (30 // 6 = 5; 166 under ``HYPOTHESIS_PROFILE=fuzz``), ``CHEAP`` (10; 333) for the damaged
``.npz`` files, which the reader nearly always refuses in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abrflow.cli import main
from abrflow.data.readers import load_many, load_records
from abrflow.data.readers.thresholds_csv import read_thresholds_csv
from abrflow.errors import AbrflowError

from .conftest import REAL, make_records
from .fixtures_checkpoint import one_thread, trained  # noqa: F401  (fixtures)
from .fuzz_support import HOSTILE_TOKENS, fail, must_succeed, mutations, outcome
from .test_evaluate_exports import QUICK
from .test_fuzz_readers import DEVICE_INTERVALS_MS, MODEL_LENGTH, NOT_NUMBERS, _eclipse_window_fits
from .test_readers_eclipse import ROWS as ECLIPSE_ROWS
from .test_readers_eclipse import _row, waveform_uv, write_export

SMARTEP_DIR = REAL / "ihs-smartep-human" / "P6"
SMARTEP_FILE = SMARTEP_DIR / "TEMP-06-60db.TXT"
SMARTEP_HEADER_LINES = 21  # "Identifier:" … "Zero Position:" and the "Data Pnt:" column row
#: Examples per test: each is a whole evaluation (the default profile's 30 // 6 = 5; fuzz: 166).
EVAL = max(4, settings.default.max_examples // 6)
#: Damaged .npz files: nearly all are refused by the reader in well under a second, so more examples.
CHEAP = max(8, settings.default.max_examples // 3)
MODEL_RATE_HZ = 20000.0


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="abrflow-fuzz-evaluate-") as folder:
        yield Path(folder)


def _one_line(exc: BaseException) -> str:
    """An AbrflowError as the CLI prints it (cli/main.py: one line)."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _fresh(workdir: Path, name: str) -> Path:
    """A new, empty folder for one example (removed by the caller's ``_cleanup``)."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir))


# ---------------------------------------------------------------- one run and its contract


def _evaluate(target: str, checkpoint: Path, data: list[Path], out: Path, *, thresholds: Path | None = None):
    """Run ``abrflow evaluate``: (exit code, stdout, stderr). Any exception out of ``main`` is an escape."""
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--data", *map(str, data), "--output_dir", str(out),
            *QUICK]
    if thresholds is not None:
        argv += ["--thresholds", str(thresholds)]
    stdout, stderr = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            return main(argv)

    code, _ = outcome(target, call, allowed=())  # main turns every AbrflowError into exit 2 itself
    return code, stdout.getvalue(), stderr.getvalue()


def _contract(target: str, run: tuple[int, str, str], out: Path, *, names: Path, what: str,
              reader_error: BaseException | None) -> dict | None:
    """Check one run: the metrics (exit 0) or None (exit 2, a one-line error naming ``names``).

    ``reader_error``: what the reader itself raised on the damaged file (None: it read). A refusal by
    the reader must reach the user as exit 2 with the reader's own message (file, row, field); a file
    the reader accepts must be evaluated (exit 0).
    """
    code, stdout, stderr = run
    if "Traceback" in stderr:
        fail(target, f"{what}: a traceback on stderr: {stderr[-2000:]}")
    if code == 0:
        if reader_error is not None:
            fail(target, f"{what}: exit 0 although the reader refuses the file: {reader_error}")
        if stderr.strip():  # a file that reads evaluates without complaint
            fail(target, f"{what}: exit 0 with stderr {stderr[-1000:]!r}")
        metrics_path, report_path = out / "metrics.json", out / "report.txt"
        if not metrics_path.is_file() or not report_path.is_file():
            fail(target, f"{what}: exit 0 without metrics.json/report.txt in {sorted(p.name for p in out.glob('*'))}")
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            fail(target, f"{what}: metrics.json is no JSON: {exc}")
        report = report_path.read_text(encoding="utf-8")
        if not report.strip() or not stdout.startswith(report.splitlines()[0]):
            fail(target, f"{what}: the report printed is not report.txt's: {stdout[:200]!r}")
        recordings = metrics.get("labels", {}).get("recordings")
        if not isinstance(recordings, int) or recordings < 1:
            fail(target, f"{what}: metrics.json says {recordings!r} recordings were evaluated")
        return metrics
    if code != 2:
        fail(target, f"{what}: exit code {code!r} (0 or 2 only); stderr {stderr[-1000:]!r}")
    lines = stderr.splitlines()
    if len(lines) != 1 or not lines[0].startswith("abrflow: error: "):
        fail(target, f"{what}: exit 2 must print exactly one line 'abrflow: error: …', got {stderr[-2000:]!r}")
    line = lines[0]
    if str(names) not in line:
        fail(target, f"{what}: the error does not name {str(names)!r}: {line}")
    if reader_error is not None and _one_line(reader_error) not in line:
        fail(target, f"{what}: the error is not the reader's ({_one_line(reader_error)!r}): {line}")
    if reader_error is None:
        fail(target, f"{what}: the reader accepts the file, evaluate refuses it: {line}")
    left = [p.name for p in (out / "metrics.json", out / "report.txt") if p.exists()]
    if left:
        fail(target, f"{what}: exit 2 left {left} in {out}: a partial result posing as one")
    return None


def _reader_error(paths: list[Path]) -> BaseException | None:
    """What ``load_many`` raises on ``paths`` with evaluate's options (the model's time base unless every
    file carries its own); None when it reads. Anything but an AbrflowError is the reader's escape."""
    own = all(p.suffix == ".npz" for p in paths)
    time_base = {} if own else {"signal_length": MODEL_LENGTH, "sampling_rate_hz": MODEL_RATE_HZ}
    table = {"polarity": None, "max_sweeps_rejected": None}
    try:
        load_many([str(p) for p in paths], table_options=table, **time_base).validate()
    except AbrflowError as exc:
        return exc
    return None


def _damaged_data_case(target: str, trained, workdir: Path, damaged: Path, companion: bool,  # noqa: F811
                       first: bool, what: str) -> None:
    """Evaluate ``damaged`` (alone, or before/after a valid SmartEP file) and check the contract."""
    data = [damaged]
    if companion:
        data = [damaged, SMARTEP_FILE] if first else [SMARTEP_FILE, damaged]
    out = _fresh(workdir, "out")
    try:
        reader_error = _reader_error(data)
        run = _evaluate(target, trained.best, data, out / "evaluation")
        _contract(target, run, out / "evaluation", names=damaged, what=what, reader_error=reader_error)
    finally:
        shutil.rmtree(out, ignore_errors=True)


# ---------------------------------------------------------------- seeds (valid files)

_SEEDS: dict[str, bytes] = {}


@functools.cache
def _smartep_key() -> str:
    """The series key (patient|ear|session) of the SmartEP file's one ear."""
    return load_records(SMARTEP_FILE).series_key[0]


def _seed(kind: str, workdir: Path) -> bytes:
    if kind not in _SEEDS:
        if kind == "eclipse":  # all four rows: 20 kHz with and without marks, a 40 kHz row, both ears
            path, _ = write_export(workdir / "seed_eclipse.csv", rows=ECLIPSE_ROWS)
            _SEEDS[kind] = path.read_bytes()
        elif kind == "smartep":
            _SEEDS[kind] = SMARTEP_FILE.read_bytes()
        elif kind == "npz":
            _SEEDS[kind] = make_records(n_patients=3, per_patient=2).save(workdir / "seed.npz").read_bytes()
        else:  # thresholds of the SmartEP file's ear, four raters (one: no response)
            patient, ear, session = _smartep_key().split("|")
            rows = "".join(f"{patient},{ear},{session},{db},{rater}\n"
                           for rater, db in (("A", "30"), ("B", "25"), ("C", "no response"), ("D", "35")))
            _SEEDS[kind] = ("patient_id,ear,session_id,threshold_db,rater\n" + rows).encode()
    return _SEEDS[kind]


# ---------------------------------------------------------------- damaged bytes


@settings(max_examples=EVAL)
@given(data=st.data(), companion=st.booleans(), first=st.booleans())
def test_evaluate_eclipse_bytes(trained, workdir, data, companion, first):  # noqa: F811
    damaged = _fresh(workdir, "in") / "clinic.csv"
    damaged.write_bytes(data.draw(mutations(_seed("eclipse", workdir), header_lines=12), label="bytes"))
    _damaged_data_case("evaluate_eclipse_bytes", trained, workdir, damaged, companion, first,
                       f"damaged Eclipse export{' beside a SmartEP file' if companion else ''}")


@st.composite
def _smartep_damage(draw, seed: bytes) -> bytes:
    """A damaged SmartEP export: aimed damage (cut at a line, a header row deleted, one cell set to text
    that is no number, one byte flipped) or any of ``mutations``."""
    kind = draw(st.sampled_from(["cut_line", "drop_header", "text_cell", "flip", "any"]))
    lines = seed.split(b"\n")
    if kind == "cut_line":  # the export stops after some line (a copy interrupted)
        return b"\n".join(lines[:draw(st.integers(0, len(lines) - 1))])
    if kind == "drop_header":
        row = draw(st.integers(0, SMARTEP_HEADER_LINES - 1))
        return b"\n".join(lines[:row] + lines[row + 1:])
    if kind == "text_cell":
        row = draw(st.one_of(st.integers(0, SMARTEP_HEADER_LINES - 1), st.integers(0, len(lines) - 1)))
        fields = lines[row].split(b",")
        token = draw(st.one_of(NOT_NUMBERS, st.sampled_from(HOSTILE_TOKENS)))
        fields[draw(st.integers(0, len(fields) - 1))] = token.encode("utf-8")
        lines[row] = b",".join(fields)
        return b"\n".join(lines)
    if kind == "flip":
        at = draw(st.integers(0, len(seed) - 1))
        return seed[:at] + bytes([seed[at] ^ draw(st.integers(1, 255))]) + seed[at + 1:]
    return draw(mutations(seed, header_lines=SMARTEP_HEADER_LINES))


@settings(max_examples=EVAL)
@given(data=st.data(), companion=st.booleans(), first=st.booleans())
def test_evaluate_smartep_bytes(trained, workdir, data, companion, first):  # noqa: F811
    damaged = _fresh(workdir, "in") / "TEMP-06-60db-copy.TXT"
    damaged.write_bytes(data.draw(_smartep_damage(_seed("smartep", workdir)), label="bytes"))
    _damaged_data_case("evaluate_smartep_bytes", trained, workdir, damaged, companion, first,
                       f"damaged SmartEP export{' beside a SmartEP file' if companion else ''}")


@settings(max_examples=CHEAP)
@given(data=st.data(), companion=st.booleans(), first=st.booleans())
def test_evaluate_npz_bytes(trained, workdir, data, companion, first):  # noqa: F811
    damaged = _fresh(workdir, "in") / "records.npz"
    damaged.write_bytes(data.draw(mutations(_seed("npz", workdir), sep=None), label="bytes"))
    _damaged_data_case("evaluate_npz_bytes", trained, workdir, damaged, companion, first,
                       f"damaged .npz records{' beside a SmartEP file' if companion else ''}")


@st.composite
def _thresholds_damage(draw, seed: bytes) -> bytes:
    """A damaged raters' CSV: one rating row's cell set to a hostile token, a rating dropped or repeated
    (a rater rating an ear twice), or any of ``mutations`` (which mostly hit the header)."""
    kind = draw(st.sampled_from(["cell", "cell", "drop_row", "repeat_row", "any"]))
    lines = seed.rstrip(b"\n").split(b"\n")
    row = draw(st.integers(1, len(lines) - 1))
    if kind == "cell":
        fields = lines[row].split(b",")
        token = draw(st.one_of(st.sampled_from(HOSTILE_TOKENS), NOT_NUMBERS, st.floats().map(repr),
                               st.sampled_from(["NR", "None", "no  response", "left", "Right", "?", "x|y", "130"])))
        fields[draw(st.integers(0, len(fields) - 1))] = token.encode("utf-8")
        lines[row] = b",".join(fields)
    elif kind == "drop_row":
        del lines[row]
    elif kind == "repeat_row":
        lines.insert(row, lines[row])
    else:
        return draw(mutations(seed, header_lines=1))
    return b"\n".join(lines) + b"\n"


@settings(max_examples=EVAL)
@given(data=st.data())
def test_evaluate_thresholds_bytes(trained, workdir, data):  # noqa: F811
    """A damaged --thresholds CSV beside a valid file: evaluated with the raters it still holds, or
    refused naming the CSV (and its row/field where the reader knows it)."""
    target = "evaluate_thresholds_bytes"
    folder = _fresh(workdir, "thresholds")
    csv = folder / "raters.csv"
    csv.write_bytes(data.draw(_thresholds_damage(_seed("thresholds", workdir)), label="bytes"))
    out = folder / "evaluation"
    try:
        ratings, reader_error = None, None
        try:
            ratings = read_thresholds_csv(csv)
        except AbrflowError as exc:
            reader_error = exc
        run = _evaluate(target, trained.best, [SMARTEP_FILE], out, thresholds=csv)
        metrics = _contract(target, run, out, names=csv, what="damaged --thresholds CSV", reader_error=reader_error)
        key = _smartep_key()
        if metrics is not None and key in ratings:  # the ear evaluated still has raters: each is compared
            agreement = metrics["threshold_agreement"]
            raters = agreement.get("ears", {}).get(key, {}).get("raters", {})
            if agreement.get("source") != str(csv) or set(raters) != {rater for rater, _ in ratings[key]}:
                fail(target, f"raters {ratings[key]} of the evaluated ear read, yet the threshold agreement is "
                             f"{agreement}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- valid by construction


def _eclipse_at(interval_ms: float, onset: int, extra: int):
    """Two Eclipse rows (right ear with marks I/III/V, left ear unmarked) sampled every ``interval_ms``,
    ``onset`` samples before the stimulus and ``extra`` after the model's window."""
    n = onset + math.ceil((MODEL_LENGTH - 1) * 1000.0 / MODEL_RATE_HZ / interval_ms - 1e-9) + 1 + extra
    delay = round(-onset * interval_ms, 9)
    assert _eclipse_window_fits(interval_ms, delay, n)
    return [_row("Right", 80, interval_ms, delay, n, {1: (1.62, 0.12), 3: (3.8, 0.2), 5: (5.81, 0.35)}),
            _row("Left", 40, interval_ms, delay, n)]


def _valid_input(kind: str, folder: Path, interval_ms: float, onset: int, extra: int) -> tuple[Path, int]:
    """(a valid file or folder of ``kind``, rows it holds)."""
    if kind == "eclipse":
        rows = _eclipse_at(interval_ms, onset, extra)
        return write_export(folder / "clinic.csv", rows=rows)[0], len(rows)
    if kind == "npz":
        records = make_records(n_patients=3, per_patient=2)
        return records.save(folder / "records.npz"), len(records)
    path = SMARTEP_DIR if kind == "smartep_folder" else SMARTEP_FILE
    return path, len(load_many([str(path)], signal_length=MODEL_LENGTH, sampling_rate_hz=MODEL_RATE_HZ))


@settings(max_examples=max(3, EVAL // 2))
@given(kinds=st.lists(st.sampled_from(["eclipse", "smartep_file", "npz", "smartep_folder"]), min_size=1,
                      max_size=3, unique=True),
       interval_ms=st.sampled_from(sorted(DEVICE_INTERVALS_MS, key=lambda i: abs(i - 0.025))),
       onset=st.integers(0, 40), extra=st.integers(0, 30))
def test_evaluate_valid(trained, workdir, kinds, interval_ms, onset, extra):  # noqa: F811
    """Undamaged files, joined in any order and mixing time bases (an Eclipse export at any device rate
    the readers resample to the model's 20 kHz): exit 0, every row evaluated, one file's rows or n joined."""
    target = "evaluate_valid"
    folder = _fresh(workdir, "valid")
    try:
        inputs = [_valid_input(kind, folder, interval_ms, onset, extra) for kind in kinds]
        what = f"valid {' + '.join(kinds)} (Eclipse every {interval_ms:g} ms, onset {onset}, +{extra})"
        reader_error = _reader_error([p for p, _ in inputs])
        if reader_error is not None:
            fail(target, f"{what}: the readers refuse valid input: {reader_error}")
        run = _evaluate(target, trained.best, [p for p, _ in inputs], folder / "evaluation")
        metrics = _contract(target, run, folder / "evaluation", names=inputs[0][0], what=what, reader_error=None)
        if metrics is None:
            fail(target, f"{what}: valid input refused: {run[2].strip()}")
        expected = sum(n for _, n in inputs)
        if metrics["labels"]["recordings"] != expected:
            fail(target, f"{what}: {metrics['labels']['recordings']} recordings evaluated, not {expected}")
        split = "whole file" if len(kinds) == 1 else f"{len(kinds)} files joined"
        if metrics["run"]["split"] != split:
            fail(target, f"{what}: split {metrics['run']['split']!r}, not {split!r}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_an_eclipse_export_at_40_khz_and_a_smartep_folder_are_resampled_and_evaluated(trained,  # noqa: F811
                                                                                       tmp_path):
    """The mix the issue names: Eclipse at 40 kHz (0.025 ms) and SmartEP's 20 kHz folder, one run."""
    target = "evaluate_valid"
    rows = [ECLIPSE_ROWS[1], _row("Right", 80, 0.025, -2.0, 600, {5: (5.81, 0.35)})]  # both 40 kHz
    export, _ = write_export(tmp_path / "clinic.csv", rows=rows)
    records = must_succeed(target, lambda: load_many([str(export), str(SMARTEP_DIR)], signal_length=MODEL_LENGTH,
                                                     sampling_rate_hz=MODEL_RATE_HZ), "40 kHz Eclipse + SmartEP P6")
    n_smartep = len(records) - len(rows)
    assert records.signal.shape == (len(rows) + n_smartep, MODEL_LENGTH) and records.sampling_rate_hz == MODEL_RATE_HZ
    assert n_smartep > 100
    window = waveform_uv(np.arange(MODEL_LENGTH) * 1000.0 / MODEL_RATE_HZ)
    for i in range(len(rows)):  # resampled to 20 kHz from onset (filter edges aside)
        np.testing.assert_allclose(records.signal[i, 5:195], window[5:195], atol=3e-3)
    run = _evaluate(target, trained.best, [export, SMARTEP_DIR], tmp_path / "evaluation")
    metrics = _contract(target, run, tmp_path / "evaluation", names=export, what="40 kHz Eclipse + SmartEP P6",
                        reader_error=None)
    assert metrics is not None
    assert metrics["labels"]["recordings"] == len(records) and metrics["run"]["split"] == "2 files joined"
    assert metrics["labels"]["v_marks"] == 2  # both Eclipse rows mark V; SmartEP exports carry no marks
    assert (tmp_path / "evaluation" / "report.txt").is_file()


pytestmark = pytest.mark.usefixtures("one_thread")
