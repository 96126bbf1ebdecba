"""ABRInference and inference.py fed out-of-range, wrong-typed and missing inputs (property-based).

Each case either succeeds with finite outputs that carry the given inputs unchanged, or raises an
``AbrflowError`` (the CLI: one line, exit 2). Valid inputs must succeed: a clear error is not allowed
to become a refusal of everything. Anything else is an escape (tests/fuzz_support.py).

Where a test cannot tell from its generated input whether the input is valid, the input is built as one
or the other: ``*_valid`` tests build valid inputs, which must succeed (and come back unchanged where
they come back); ``*_invalid`` tests take a valid input and break exactly one thing, which must raise
an ``AbrflowError`` naming it.
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
from hypothesis.extra import numpy as hnp

from abrflow.data.schema import VALID_RANGES
from abrflow.errors import AbrflowError, DataError
from abrflow.inference.conditions import DEFAULT_GENERATION_CONDITIONS
from abrflow.inference.inputs import STATIC_RANGES, read_static_inputs, static_array
from abrflow.inference.predictor import ABRInference

from .fixtures_checkpoint import one_thread, trained  # noqa: F401  (fixtures)
from .fuzz_support import fail, hostile_floats, must_refuse, must_succeed, mutations, outcome

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


# ---------------------------------------------------------------- analyse one measured signal
#
# Valid by construction: a 1-D finite signal in µV (|x| ≤ 1e4, far beyond any ABR, far below the model's
# float32 limit) that is the model's window (no rate, or 20 kHz) or a longer recording at a rate with an
# exact small resampling ratio to 20 kHz, long enough for the window; every static input unknown
# (None/NaN) or a real number inside STATIC_RANGES. It must be analysed: finite outputs, the static
# inputs reported back unchanged, the waveform returned as measured where nothing is resampled.
# Invalid: the same case with exactly one defect; it must raise an AbrflowError naming the culprit.

MODEL_LENGTH, MODEL_RATE_HZ = 200, 20000.0  # the tiny checkpoint's window (checked in the tests)
#: Device rates (Hz) with an exact small resampling ratio to 20 kHz, at most 10× upsampling.
RESAMPLEABLE_HZ = (2000, 4000, 5000, 8000, 10000, 16000, 20000, 22050, 24000, 25000, 32000, 40000, 44100,
                   48000, 96000, 100000)
#: Rates that cannot be resampled: not positive, not finite, below 2 kHz (> 10× up), no small exact ratio.
BAD_RATES = (0.0, -1.0, -20000.0, float("nan"), float("inf"), -float("inf"), 1e-300, 7.0, 1999.0, 20001.0,
             44101.0, 1e300, True, "abc", "", "fast")
SIGNAL_UV = 1e4
ARGUMENTS = {"age_years": "age", "intensity_db": "intensity", "stimulus_rate_hz": "stimulus_rate", "fmp": "fmp"}


def _samples_needed(rate_hz: float) -> int:
    """Samples from onset that cover the model's window: its last sample lies at 199 / 20 kHz."""
    return math.ceil((MODEL_LENGTH - 1) * rate_hz / MODEL_RATE_HZ - 1e-9) + 1


def _valid_static(field: str):
    lo, hi = STATIC_RANGES[field]
    return st.one_of(st.none(), st.just(float("nan")), st.floats(lo, hi), st.sampled_from([lo, hi]),
                     st.integers(math.ceil(lo), math.floor(hi)), st.floats(lo, hi).map(np.float32),
                     st.floats(lo, hi).map(np.float64))


def _invalid_static(field: str):
    lo, hi = STATIC_RANGES[field]
    return st.one_of(st.floats(hi, 1e300, exclude_min=True), st.floats(-1e300, lo, exclude_max=True),
                     st.sampled_from([float("inf"), -float("inf"), 1e39, -1e39, True, False, "45", "", "abc"]),
                     st.integers(math.floor(hi) + 1, 10**20), st.integers(-10**20, math.ceil(lo) - 1),
                     st.floats(hi + 1, 1e30).map(np.float32), st.lists(st.floats(lo, hi), min_size=1, max_size=2))


def _signal_values(n: int):
    """n finite samples in µV: a smooth random waveform, or hypothesis' edge values (±1e4, subnormals, −0)."""
    smooth = st.tuples(st.integers(0, 2**32 - 1), st.floats(0, SIGNAL_UV)).map(
        lambda t: np.clip(np.cumsum(np.random.default_rng(t[0]).normal(size=n)) * t[1] / (3 * np.sqrt(n) + 1),
                          -SIGNAL_UV, SIGNAL_UV))
    edges = hnp.arrays(np.float64, n, elements=st.floats(-SIGNAL_UV, SIGNAL_UV), fill=st.floats(-SIGNAL_UV, SIGNAL_UV))
    return st.one_of(smooth, edges)


@st.composite
def valid_analysis(draw) -> dict:
    rate = draw(st.one_of(st.none(), st.sampled_from(RESAMPLEABLE_HZ).flatmap(
        lambda r: st.sampled_from([r, float(r), np.float32(r)]))))
    n = MODEL_LENGTH if rate is None else draw(st.integers(_samples_needed(rate), _samples_needed(rate) + 30))
    values = draw(_signal_values(n))
    form = draw(st.sampled_from(["float64", "float32", "list", "int"]))
    signal = {"float64": values, "float32": values.astype(np.float32), "list": values.tolist(),
              "int": np.round(values).astype(np.int64)}[form]
    static = {field: draw(_valid_static(field)) for field in STATIC_RANGES}
    return {"signal": signal, "sampling_rate_hz": rate, **{ARGUMENTS[f]: v for f, v in static.items()}}


def _analyse(inference, case: dict):
    return lambda: inference.analyse(case["signal"], age=case["age"], intensity=case["intensity"],
                                     stimulus_rate=case["stimulus_rate"], fmp=case["fmp"],
                                     sampling_rate_hz=case["sampling_rate_hz"], return_confidence=False)


def _reported(value) -> float | None:
    """How predict_single's ``inputs`` reports a static input: None for unknown, else float32 to 7 digits."""
    if value is None or math.isnan(float(value)):
        return None
    return float(f"{np.float32(value):.7g}")


@given(case=valid_analysis())
def test_analyse_valid_signal(inference, case):
    assert (inference.signal_length, inference.sampling_rate_hz) == (MODEL_LENGTH, MODEL_RATE_HZ)
    what = f"{len(case['signal'])} samples at {case['sampling_rate_hz']!r} Hz, statics " + repr(
        {k: case[k] for k in ARGUMENTS.values()})
    result = must_succeed("inference_analyse_valid", _analyse(inference, case), what)
    for field, name in ARGUMENTS.items():
        if result["inputs"][field] != _reported(case[name]):
            fail("inference_analyse_valid", f"{name} {case[name]!r} reported as {result['inputs'][field]!r}")
    waveform = np.asarray(result["waveform"]["signal_uv"])
    if waveform.shape != (MODEL_LENGTH,) or not np.isfinite(waveform).all():
        fail("inference_analyse_valid", f"waveform {waveform.shape} not a finite window for {what}")
    outputs = [result["threshold"]["value"], result["threshold"]["no_response_probability"],
               *(wave[k] for wave in result["peaks"].values() for k in ("present_probability", "latency_ms", "amplitude_uv")),
               *result["classification"]["probabilities"].values()]
    if not np.isfinite(outputs).all():
        fail("inference_analyse_valid", f"non-finite output {outputs} for {what}")
    rate = case["sampling_rate_hz"]
    if rate is None or float(rate) == MODEL_RATE_HZ:  # nothing resampled: the measured window comes back
        measured = np.asarray(case["signal"], np.float64)[:MODEL_LENGTH].astype(np.float32)
        if not np.array_equal(waveform.astype(np.float32), measured):
            fail("inference_analyse_valid", "the measured waveform came back changed")


DEFECTS = ("nonfinite", "length", "shape", "rate", "static", "units")


@given(case=valid_analysis(), defect=st.sampled_from(DEFECTS), data=st.data())
def test_analyse_invalid_input(inference, case, defect, data):
    signal = np.asarray(case["signal"], np.float64)
    rate = case["sampling_rate_hz"]
    if defect == "nonfinite":
        signal[data.draw(st.integers(0, len(signal) - 1))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        case["signal"], named = signal, "NaN or inf"
    elif defect == "length":
        if rate is None:
            n = data.draw(st.integers(0, 3 * MODEL_LENGTH).filter(lambda k: k != MODEL_LENGTH))
        else:
            n = data.draw(st.integers(0, _samples_needed(rate) - 1))
        case["signal"], named = np.resize(signal, n), "samples"
    elif defect == "shape":
        case["signal"] = data.draw(st.sampled_from([np.zeros((1, MODEL_LENGTH)), np.zeros((2, MODEL_LENGTH)),
                                                    np.zeros((0, MODEL_LENGTH)), 5.0, None, "abc",
                                                    [[1.0], [2.0, 3.0]], [signal.tolist()]]))
        named = "signal"
    elif defect == "rate":
        case["sampling_rate_hz"], named = data.draw(st.sampled_from(BAD_RATES)), "sampling_rate_hz"
    elif defect == "static":
        field = data.draw(st.sampled_from(list(STATIC_RANGES)))
        case[ARGUMENTS[field]], named = data.draw(_invalid_static(field)), f"{ARGUMENTS[field]} ({field})"
    else:  # a unit mistake: finite, but far beyond what the model can scale
        huge = data.draw(st.floats(1e30, 1e308)) * data.draw(st.sampled_from([1, -1]))
        case["signal"], named = np.full(len(signal), huge), "model units"
    error = must_refuse("inference_analyse_invalid", _analyse(inference, case),
                        f"{defect}: signal {case['signal']!r:.60} at {case['sampling_rate_hz']!r} Hz, "
                        f"statics {[case[k] for k in ARGUMENTS.values()]!r}")
    if named not in str(error):
        fail("inference_analyse_invalid", f"{defect}: the error does not name {named!r}: {error}")


# ---------------------------------------------------------------- generate
#
# Valid by construction: n a positive int; conditions with known keys (any accepted alias, each field at
# most once), each one value or n values: static inputs unknown or inside STATIC_RANGES, the class a
# code/name (or −1/None, unconditional), the threshold in range, NaN or +inf (no response). It must
# generate n finite waveforms and report the conditions it used: the given ones, defaults elsewhere.
# Invalid: one defect (n, an unknown or repeated key, a value out of range or of the wrong type, a list
# of the wrong length); it must raise an AbrflowError naming it.

CLASS_SPELLINGS = {"NORMAL": 0, "normal": 0, " Normal ": 0, "NEUROPATHY": 1, "NÖROPATİ": 1, "ANSD": 1,
                   "SENSORINEURAL": 2, "SNİK": 2, "snik": 2, "SNHL": 2, "TOTAL": 3, "PROFOUND": 3,
                   "CONDUCTIVE": 4, "İTİK": 4, "CHL": 4, "3": 3, "-1": -1}
ALIASES = {"age_years": ("age", "age_years"), "intensity_db": ("intensity", "intensity_db"),
           "stimulus_rate_hz": ("rate", "stimulus_rate", "stimulus_rate_hz"), "fmp": ("fmp",),
           "hearing_loss": ("hearing_loss", "class"), "threshold_db": ("threshold", "threshold_db")}


def _valid_condition(name: str):
    """(value as given, what generate must report as used: float/NaN/inf, or the class code)."""
    if name in STATIC_RANGES:
        return _valid_static(name).map(lambda v: (v, math.nan if v is None else float(np.float32(v))))
    if name == "hearing_loss":
        return st.one_of(st.none().map(lambda v: (v, -1)), st.integers(-1, 4).map(lambda v: (v, v)),
                         st.integers(0, 4).map(lambda v: (float(v), v)), st.integers(0, 4).map(lambda v: (np.int64(v), v)),
                         st.sampled_from(sorted(CLASS_SPELLINGS.items())))
    lo, hi = VALID_RANGES["threshold_db"]
    return st.one_of(st.none().map(lambda v: (v, math.nan)), st.just((math.nan, math.nan)), st.just((math.inf, math.inf)),
                     st.floats(lo, hi).map(lambda v: (v, float(np.float32(v)))),
                     st.integers(int(lo), int(hi)).map(lambda v: (v, float(v))))


def _invalid_condition(name: str):
    if name in STATIC_RANGES:
        return _invalid_static(name).filter(lambda v: not isinstance(v, list))
    if name == "hearing_loss":
        return st.one_of(st.integers(5, 10**6), st.integers(-10**6, -2), st.floats(0.1, 3.9).filter(
            lambda v: not v.is_integer()), st.sampled_from([float("nan"), float("inf"), True, "ABC", "", "5", "NORMALS",
                                                          "colour", 2.5]))
    lo, hi = VALID_RANGES["threshold_db"]
    return st.one_of(st.floats(hi, 1e300, exclude_min=True), st.floats(-1e300, lo, exclude_max=True),
                     st.sampled_from([-float("inf"), "abc", "", "loud", 1e39]))


@st.composite
def valid_generation(draw):
    n = draw(st.one_of(st.integers(1, 3), st.integers(1, 3).map(np.int64)))
    names = draw(st.lists(st.sampled_from(list(ALIASES)), unique=True, max_size=4))
    conditions, expected = {}, {}
    for name in names:
        key = draw(st.sampled_from(ALIASES[name]))
        if draw(st.booleans()):  # one value, repeated
            value, used = draw(_valid_condition(name))
            conditions[key], expected[name] = value, [used] * int(n)
        else:  # n values
            pairs = draw(st.lists(_valid_condition(name), min_size=int(n), max_size=int(n)))
            conditions[key], expected[name] = [v for v, _ in pairs], [u for _, u in pairs]
    return n, conditions, expected


def _generate(inference, n, conditions):
    return lambda: inference.generate(n, conditions, sampler="ddim", steps=1, seed=0)


@given(case=valid_generation())
def test_generate_valid_conditions(inference, case):
    n, conditions, expected = case
    conditioning = inference.cfg.model.conditioning
    assert conditioning.use_class_condition and conditioning.use_threshold_condition  # else class/threshold refused
    waveforms, used = must_succeed("inference_generate_valid", _generate(inference, n, conditions),
                                   f"n={n!r}, conditions {conditions!r}")
    if waveforms.shape != (n, MODEL_LENGTH) or not np.isfinite(waveforms).all():
        fail("inference_generate_valid", f"n={n!r} gave waveforms {waveforms.shape}, finite: "
                                         f"{np.isfinite(waveforms).all()}")
    for name, default in DEFAULT_GENERATION_CONDITIONS.items():
        want = np.asarray(expected.get(name, [float(np.float32(default))] * int(n)), np.float64)
        got = np.asarray(used[name], np.float64)
        if not np.array_equal(got, want, equal_nan=True):
            fail("inference_generate_valid", f"{name}: {conditions!r} used as {got.tolist()}, not {want.tolist()}")


GENERATION_DEFECTS = ("n", "unknown_key", "repeated", "value", "length")


@given(case=valid_generation(), defect=st.sampled_from(GENERATION_DEFECTS), data=st.data())
def test_generate_invalid_input(inference, case, defect, data):
    n, conditions, _ = case
    if defect == "n":
        n, named = data.draw(st.sampled_from([0, -1, -5, 2.5, "2", True, False, None, np.float64(2.0), [2]])), "n must"
    elif defect == "unknown_key":
        key = data.draw(st.sampled_from(["colour", "hl", "Age", "ages", "sex", "", "threshold_dB"]))
        conditions[key], named = 1.0, repr(key)
    elif defect == "repeated":  # two aliases of one condition
        name = data.draw(st.sampled_from([k for k, aliases in ALIASES.items() if len(aliases) > 1]))
        conditions = {k: v for k, v in conditions.items() if k not in ALIASES[name]}
        for key in ALIASES[name][:2]:
            conditions[key] = data.draw(_valid_condition(name))[0]
        named = f"{name} given twice"
    elif defect == "value":
        name = data.draw(st.sampled_from(list(ALIASES)))
        conditions = {k: v for k, v in conditions.items() if k not in ALIASES[name]}
        value = data.draw(_invalid_condition(name))
        if int(n) > 1 and data.draw(st.booleans()):  # the bad value among n values: its row is named
            row = data.draw(st.integers(0, int(n) - 1))
            value = [value if i == row else data.draw(_valid_condition(name))[0] for i in range(int(n))]
        conditions[data.draw(st.sampled_from(ALIASES[name]))] = value
        named = name if name != "hearing_loss" else "hearing"
    else:  # one value per row, but not n of them
        name = data.draw(st.sampled_from(list(ALIASES)))
        conditions = {k: v for k, v in conditions.items() if k not in ALIASES[name]}
        k = data.draw(st.sampled_from([0, int(n) + 1, int(n) + 2]))
        conditions[data.draw(st.sampled_from(ALIASES[name]))] = [data.draw(_valid_condition(name))[0] for _ in range(k)]
        named = f"{name} must be one value or"
    error = must_refuse("inference_generate_invalid", _generate(inference, n, conditions),
                        f"{defect}: n={n!r}, conditions {conditions!r}")
    if named not in str(error):
        fail("inference_generate_invalid", f"{defect}: the error does not name {named!r}: {error}")


# ---------------------------------------------------------------- the constructor
#
# Valid: an available device ("cpu", "auto"), a batch size that is an int ≥ 1, a confidence level
# None (the calibration's) or inside (0, 1): the checkpoint loads with exactly these settings. Invalid:
# exactly one of them wrong; it must raise an AbrflowError naming the argument.

VALID_DEVICES = ("cpu", "CPU", "auto")


@settings(max_examples=max(4, SLOW // 3))  # each case loads the checkpoint (~0.25 s)
@given(device=st.sampled_from(VALID_DEVICES),
       batch_size=st.one_of(st.integers(1, 600), st.integers(1, 600).map(np.int64), st.just(1)),
       level=st.one_of(st.none(), st.floats(0, 1, exclude_min=True, exclude_max=True), st.sampled_from([0.5, 0.9, 0.99])))
def test_constructor_valid_arguments(trained, device, batch_size, level):  # noqa: F811
    model = must_succeed("inference_constructor_valid",
                         lambda: ABRInference(trained.best, device=device, batch_size=batch_size,
                                              confidence_level=level),
                         f"device {device!r}, batch_size {batch_size!r}, confidence_level {level!r}")
    want_level = level if level is not None else model.calibration.level
    if model.batch_size != int(batch_size) or model.confidence_level != want_level:
        fail("inference_constructor_valid", f"batch_size {batch_size!r} / level {level!r} became "
                                            f"{model.batch_size!r} / {model.confidence_level!r}")


BAD_ARGUMENTS = {
    "device": ("tpu", "", "cuda:99", "mps:3", "cpu:banana", 3),
    "batch_size": (0, -2, -600, 0.5, 8.0, "8", None, True, False, np.float64(8)),
    "level": (0.0, 1.0, -0.1, 1.5, 90, float("nan"), float("inf"), -float("inf")),
}


@settings(max_examples=SLOW)
@given(argument=st.sampled_from(list(BAD_ARGUMENTS)), data=st.data())
def test_constructor_invalid_arguments(trained, argument, data):  # noqa: F811
    kwargs = {"device": data.draw(st.sampled_from(VALID_DEVICES)), "batch_size": data.draw(st.integers(1, 600)),
              "confidence_level": data.draw(st.one_of(st.none(), st.floats(0.01, 0.99)))}
    bad = data.draw(st.sampled_from(BAD_ARGUMENTS[argument]))
    kwargs["confidence_level" if argument == "level" else argument] = bad
    error = must_refuse("inference_constructor_invalid", lambda: ABRInference(trained.best, **kwargs),
                        f"{argument} {bad!r}")
    named = {"device": "device", "batch_size": "batch_size", "level": "confidence_level"}[argument]
    if named not in str(error):
        fail("inference_constructor_invalid", f"the error does not name {named}: {error}")


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
