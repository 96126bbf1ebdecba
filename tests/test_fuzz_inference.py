"""ABRInference and inference.py fed out-of-range, wrong-typed and missing inputs (property-based).

Each case either succeeds with finite outputs that carry the given inputs unchanged, or raises an
``AbrflowError`` (the CLI: one line, exit 2). Valid inputs must succeed: a clear error is not allowed
to become a refusal of everything. Anything else is an escape (tests/fuzz_support.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abrflow.errors import AbrflowError, DataError
from abrflow.inference.inputs import STATIC_RANGES, read_static_inputs, static_array
from abrflow.inference.predictor import ABRInference

from .fixtures_checkpoint import one_thread, trained  # noqa: F401  (fixtures)
from .fuzz_support import fail, hostile_floats, mutations, outcome

FIELDS = list(STATIC_RANGES)
SLOW = max(8, settings.default.max_examples // 3)  # cases that load the checkpoint (CLI, constructor)


@pytest.fixture(scope="module")
def inference(trained):  # noqa: F811
    return ABRInference(trained.best, device="cpu")


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="abrflow-fuzz-inference-") as folder:
        yield Path(folder)


def _cell_strategy(field: str):
    lo, hi = STATIC_RANGES[field]
    return st.one_of(st.floats(lo, hi), st.none(), st.just(float("nan")), hostile_floats(-1e4, 1e5),
                     st.integers(-10**20, 10**20), st.booleans(), st.text(max_size=4),
                     st.floats(lo, hi).map(np.float32), st.lists(st.floats(0, 1), max_size=2))


def _valid_cell(field: str, value: object) -> bool:
    """What the static inputs accept: unknown (None/NaN) or a real number inside the clinical range."""
    if value is None:
        return True
    if isinstance(value, (bool, np.bool_, str, list)):
        return False
    v = float(value)
    lo, hi = STATIC_RANGES[field]
    return math.isnan(v) or lo <= v <= hi


ROWS = st.lists(st.tuples(*[_cell_strategy(f) for f in FIELDS]), min_size=0, max_size=3)


@given(rows=ROWS, ragged=st.booleans())
def test_static_inputs(inference, rows, ragged):
    inputs = [list(r) for r in rows]
    if ragged and inputs:
        inputs[-1] = inputs[-1][:3]
    valid = bool(inputs) and not ragged and all(_valid_cell(f, v) for row in inputs for f, v in zip(FIELDS, row))
    result, error = outcome("inference_static_inputs",
                            lambda: inference.predict_arrays(inputs, seed=0, sampler="ddim", steps=1))
    if error is not None:
        if valid:
            fail("inference_static_inputs", f"valid inputs {inputs!r} refused: {error}")
        return
    if not valid:
        fail("inference_static_inputs", f"invalid inputs {inputs!r} accepted")
    expected = static_array(inputs)
    got = np.stack([result[f] for f in FIELDS], axis=1)
    if not np.array_equal(got, expected.astype(np.float64), equal_nan=True):
        fail("inference_static_inputs", f"inputs {inputs!r} became {got!r}")
    for key in ("v_present_prob", "v_latency_ms", "hearing_loss_prob", "threshold_db", "waveform"):
        if not np.isfinite(result[key]).all():
            fail("inference_static_inputs", f"{key} not finite for {inputs!r}")


SIGNALS = st.one_of(
    st.builds(lambda n, v: np.full(n, v), st.sampled_from([0, 1, 199, 200, 201, 480]), hostile_floats(-5, 5)),
    st.lists(st.floats(-3, 3), min_size=195, max_size=205),
    st.builds(lambda n: np.zeros((n, 200)), st.integers(0, 2)), st.text(max_size=3), st.none(),
    st.just([[1.0], [2.0, 3.0]]),
)
RATES = st.one_of(st.none(), st.sampled_from([20000.0, 40000.0, 48000.0, 0.0, -1.0, float("nan"), float("inf"),
                                              1e-300, 1e300, 7.0]), st.text(max_size=3))


@given(signal=SIGNALS, rate=RATES, age=_cell_strategy("age_years"))
def test_analyse_one_signal(inference, signal, rate, age):
    result, error = outcome("inference_analyse",
                            lambda: inference.analyse(signal, age=age, sampling_rate_hz=rate, return_confidence=False))
    if error is not None:
        return
    x = np.asarray(signal, np.float64)
    if not (np.isfinite(x).all() and _valid_cell("age_years", age)):
        fail("inference_analyse", f"accepted signal {signal!r:.60} / age {age!r}")
    if not np.isfinite(result["waveform"]["signal_uv"]).all() or not math.isfinite(result["threshold"]["value"]):
        fail("inference_analyse", f"non-finite output for a finite signal (max |x| {np.abs(x).max():g})")
    if rate is None and not np.array_equal(np.asarray(result["waveform"]["signal_uv"], np.float32),
                                           x.astype(np.float32)):
        fail("inference_analyse", "the measured waveform came back changed")


CONDITION_KEYS = st.sampled_from(["age", "age_years", "intensity", "rate", "stimulus_rate_hz", "fmp", "hearing_loss",
                                  "threshold", "threshold_db", "colour", "hl"])
CONDITION_VALUES = st.one_of(hostile_floats(-200, 200), st.none(), st.text(max_size=6),
                             st.sampled_from(["NORMAL", "SNİK", "TOTAL", 4, -1, 7, "inf"]),
                             st.lists(st.floats(0, 80), min_size=1, max_size=3))


@given(n=st.one_of(st.integers(-1, 3), st.sampled_from([2.5, "2", True, None])),
       conditions=st.dictionaries(CONDITION_KEYS, CONDITION_VALUES, max_size=3))
def test_generate(inference, n, conditions):
    result, error = outcome("inference_generate",
                            lambda: inference.generate(n, conditions, sampler="ddim", steps=1, seed=0))
    if error is None:
        waveforms, used = result
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1) or waveforms.shape != (n, 200):
            fail("inference_generate", f"n={n!r} gave {waveforms.shape}")
        if not np.isfinite(waveforms).all():
            fail("inference_generate", f"non-finite waveforms for {conditions!r}")


@settings(max_examples=SLOW)
@given(device=st.sampled_from(["cpu", "auto", "tpu", "cuda:99", "", 3]),
       batch_size=st.one_of(st.integers(-2, 600), st.sampled_from([0.5, "8", None, True])),
       level=st.one_of(st.none(), st.floats(-1, 2), st.sampled_from([float("nan"), "0.9"])))
def test_constructor_arguments(trained, device, batch_size, level):  # noqa: F811
    outcome("inference_constructor",
            lambda: ABRInference(trained.best, device=device, batch_size=batch_size, confidence_level=level))


@given(data=st.data(), kind=st.sampled_from(["json", "csv", "npz"]))
def test_static_input_files(workdir, data, kind):
    seeds = {
        "json": json.dumps([{"id": "a", "age": 45, "intensity": 80, "rate": 30, "fmp": None},
                            {"id": "b", "age": 1, "intensity": 40, "rate": 33.1, "fmp": 0.7}]).encode(),
        "csv": b"patient_id,Age,Intensity,Stimulus Rate,FMP\nx,45,80,30,0.75\ny,0.5,,33.1,\n",
        "npz": _npz_bytes(workdir),
    }
    path = workdir / f"static.{kind}"
    path.write_bytes(data.draw(mutations(seeds[kind], sep=None if kind == "npz" else b",")))
    result, error = outcome("static_input_files", lambda: read_static_inputs(path), file=str(path))
    if error is None:
        values = result.values
        for j, field in enumerate(FIELDS):
            lo, hi = STATIC_RANGES[field]
            col = values[:, j]
            if not (np.isnan(col) | ((col >= lo) & (col <= hi))).all():
                fail("static_input_files", f"{field} out of range accepted: {col}")


def _npz_bytes(folder: Path) -> bytes:
    path = folder / "seed_static.npz"
    np.savez(path, patients=np.array([[45, 80, 30, 0.75], [65, 90, 20, 0.60]]))
    return path.read_bytes()


def test_static_npz_with_object_arrays_or_damage_is_a_named_error(workdir):
    """Escapes the fuzzing found in read_static_inputs, pinned: object arrays (allow_pickle=False) and a
    damaged zip were a bare ValueError / BadZipFile."""
    path = workdir / "objects.npz"
    np.savez(path, patients=np.array([[1, 2, 3, None]], dtype=object))
    with pytest.raises(DataError, match="object arrays"):
        read_static_inputs(path)
    path.write_bytes(b"PK\x03\x04 damaged")
    with pytest.raises(DataError, match="objects.npz"):
        read_static_inputs(path)


FLAG_VALUES = st.one_of(st.sampled_from(["35", "-1", "121", "nan", "inf", "1e400", "abc", "", "0", "200", "0.5"]),
                        st.floats(-50, 300).map(repr))


@settings(max_examples=SLOW)
@given(flags=st.dictionaries(st.sampled_from(["--age", "--intensity", "--rate", "--fmp", "--batch_size",
                                              "--confidence_level", "--steps", "--generate", "--threshold",
                                              "--hearing_loss", "--guidance", "--input_file", "--seed"]),
                             FLAG_VALUES, max_size=3),
       missing_checkpoint=st.booleans())
def test_inference_cli(trained, workdir, flags, missing_checkpoint):  # noqa: F811
    from abrflow.cli import main

    checkpoint = workdir / "no_such.pt" if missing_checkpoint else trained.best
    argv = ["infer", "--checkpoint", str(checkpoint), "--output_dir", str(workdir / "out"), "--device", "cpu"]
    for flag, value in flags.items():
        argv += [flag, str(workdir / f"missing{value}.json") if flag == "--input_file" else value]
    if "--generate" in flags or any(f in flags for f in ("--age", "--intensity", "--rate", "--fmp")):
        argv += ["--steps", "1"] if "--steps" not in flags else []
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code, _ = outcome("inference_cli", lambda: _exit_code(main, argv), allowed=())
    err = stderr.getvalue().strip()
    if code == 2:
        ours = [ln for ln in err.splitlines() if ln.startswith("abrflow: error:")]
        if ours and len(err.splitlines()) != 1:
            fail("inference_cli", f"not one line: {err!r}")
        if not ours and "error:" not in err:  # argparse: usage line + "error:" line
            fail("inference_cli", f"exit 2 without a message: {err!r}")
    elif code != 0:
        fail("inference_cli", f"exit {code}: {err!r}")


def _exit_code(main, argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse rejects a flag's type
        return int(exc.code)


def test_out_of_range_or_missing_inputs_are_clear_errors(inference):
    """A few of the generated cases, spelled out."""
    with pytest.raises(AbrflowError, match=r"age \(age_years\) = 1e\+39 is outside"):
        inference.predict_single(age=1e39, steps=1)
    with pytest.raises(AbrflowError, match=r"shape \[N, 4\]"):
        inference.predict_batch([])
    with pytest.raises(AbrflowError, match=r"row 1: intensity \(intensity_db\) = 141"):
        inference.predict_batch([[1, 80, 33.1, 1], [1, 141, 33.1, 1]])
    with pytest.raises(AbrflowError, match="NaN or inf"):
        inference.analyse(np.full(200, np.nan))
    # Found by the fuzzing: a finite but absurd signal (a unit mistake) gave NaN predictions silently.
    for huge in (1e30, 1e39, 1e308):
        with pytest.raises(DataError, match="model units"):
            inference.analyse(np.full(200, huge))
