"""Legacy pickle reader: round trip to raw units, masks, flagged thresholds, refused payloads."""

from __future__ import annotations

import builtins
import collections
import copyreg
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.preprocessing import LabelEncoder, StandardScaler

from abrflow.data.readers import load_records
from abrflow.data.readers.legacy_pickle import read_legacy_pickle
from abrflow.errors import DataError

ORIGINAL_CODES = ["NORMAL", "NÖROPATİ", "SNİK", "TOTAL", "İTİK"]


def _raw_static(n: int, rng: np.random.Generator) -> np.ndarray:
    """Made-up raw [age y, intensity dB nHL, rate Hz, Fmp]."""
    return np.column_stack([rng.uniform(0, 70, n), rng.choice([20.0, 40.0, 60.0, 80.0], n),
                            rng.choice([11.1, 33.1, 49.1], n), rng.uniform(0, 4, n)])


def _legacy(n: int = 6, seed: int = 0, *, thresholds: bool = True, classes=ORIGINAL_CODES):
    """A legacy container with a really fitted StandardScaler/LabelEncoder, and the raw statics."""
    rng = np.random.default_rng(seed)
    raw = _raw_static(n, rng)
    scaler = StandardScaler().fit(raw)
    z = scaler.transform(raw)
    data = []
    for i in range(n):
        marked = i % 2 == 1
        rec = {
            "patient_id": f"P{i // 2:03d}",
            "static_params": z[i],
            "signal": rng.normal(size=200),
            "v_peak": np.array([5.5 + 0.1 * i, 0.3]) if marked else np.zeros(2),
            "v_peak_mask": np.array([marked, marked]),
            "target": i % 5,
        }
        if thresholds:
            rec["clinical_threshold"] = 10.0 * (i % 5)
        data.append(rec)
    container = {"data": data, "scaler": scaler, "label_encoder": LabelEncoder().fit(classes),
                 "metadata": {"created": "2024-01-01", "n": n}}
    return container, raw


def _write(path, container, protocol: int = pickle.HIGHEST_PROTOCOL):
    with open(path, "wb") as fh:
        pickle.dump(container, fh, protocol=protocol)
    return path


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_round_trip_to_raw_units(tmp_path, protocol):
    container, raw = _legacy()
    path = _write(tmp_path / "legacy.pkl", container, protocol)
    rec = read_legacy_pickle(path)
    assert len(rec) == 6 and rec.signal.shape == (6, 200) and rec.signal.dtype == np.float32
    np.testing.assert_allclose(rec.age_years, raw[:, 0], atol=1e-4)
    np.testing.assert_allclose(rec.intensity_db, raw[:, 1], atol=1e-4)
    np.testing.assert_allclose(rec.stimulus_rate_hz, raw[:, 2], atol=1e-4)
    np.testing.assert_allclose(rec.fmp, raw[:, 3], atol=1e-4)
    np.testing.assert_allclose(rec.signal, np.stack([d["signal"] for d in container["data"]]), rtol=1e-6)
    assert rec.signal_unit == "zscore" and rec.sampling_rate_hz == 20000.0
    assert rec.source == "legacy_pickle:legacy.pkl"
    assert list(rec.hearing_loss) == [0, 1, 2, 3, 4, 0]
    assert set(rec.ear) == {"?"}
    assert list(rec.patient_id[:3]) == ["P000", "P000", "P001"]


def test_masked_peaks_are_nan_never_zero(tmp_path):
    container, _ = _legacy()
    container["data"][2]["v_peak"] = np.array([6.2, 0.0])
    container["data"][2]["v_peak_mask"] = np.array([True, False])  # latency marked, amplitude not
    rec = read_legacy_pickle(_write(tmp_path / "m.pkl", container))
    assert not rec.v_present[0] and np.isnan(rec.v_latency_ms[0]) and np.isnan(rec.v_amplitude_uv[0])
    assert rec.v_present[1] and rec.v_latency_ms[1] == pytest.approx(5.6) and rec.v_amplitude_uv[1] == pytest.approx(0.3)
    assert rec.v_present[2] and rec.v_latency_ms[2] == pytest.approx(6.2) and np.isnan(rec.v_amplitude_uv[2])
    assert not (rec.v_latency_ms == 0).any() and not (rec.v_amplitude_uv == 0).any()
    np.testing.assert_array_equal(rec.wave_latency_ms[:, 2], rec.v_latency_ms)
    assert np.isnan(rec.wave_latency_ms[:, :2]).all()


def test_thresholds_are_flagged_synthetic(tmp_path):
    container, _ = _legacy()
    rec = read_legacy_pickle(_write(tmp_path / "t.pkl", container))
    assert rec.threshold_source == "synthetic_from_class"
    assert rec.extra["threshold_is_synthetic"].dtype == bool and rec.extra["threshold_is_synthetic"].all()
    np.testing.assert_array_equal(rec.threshold_db, [0, 10, 20, 30, 40, 0])

    container, _ = _legacy(thresholds=False)
    rec = read_legacy_pickle(_write(tmp_path / "u.pkl", container))
    assert rec.threshold_source == "unknown" and np.isnan(rec.threshold_db).all()
    assert not rec.extra["threshold_is_synthetic"].any()


def test_targets_follow_the_label_encoder_order_and_accept_names(tmp_path):
    english = ["CONDUCTIVE", "NEUROPATHY", "NORMAL", "SENSORINEURAL", "TOTAL"]  # a different order
    container, _ = _legacy(classes=english)
    container["data"][5]["target"] = "SNİK"
    rec = read_legacy_pickle(_write(tmp_path / "e.pkl", container))
    # index 0 CONDUCTIVE→4, 1 NEUROPATHY→1, 2 NORMAL→0, 3 SENSORINEURAL→2, 4 TOTAL→3; name SNİK→2
    assert list(rec.hearing_loss) == [4, 1, 0, 2, 3, 2]

    container, _ = _legacy()
    del container["label_encoder"]
    rec = read_legacy_pickle(_write(tmp_path / "n.pkl", container))
    assert list(rec.hearing_loss) == [0, 1, 2, 3, 4, 0]


def test_load_records_dispatches_pickles(tmp_path):
    container, raw = _legacy()
    rec = load_records(_write(tmp_path / "d.pickle", container))
    assert rec.source == "legacy_pickle:d.pickle"
    np.testing.assert_allclose(rec.age_years, raw[:, 0], atol=1e-4)


# ---------------------------------------------------------------- malformed files


def _error(path) -> DataError:
    with pytest.raises(DataError) as info:
        read_legacy_pickle(path)
    assert str(path) in str(info.value)
    return info.value


def test_wrong_signal_length_names_the_record(tmp_path):
    container, _ = _legacy()
    container["data"][3]["signal"] = np.zeros(199)
    err = _error(_write(tmp_path / "s.pkl", container))
    assert (err.row, err.field) == (3, "signal") and "(200,)" in str(err) and "(199,)" in str(err)


@pytest.mark.parametrize("index, key, value, field", [
    (2, "v_peak_mask", None, "v_peak_mask"),           # missing key
    (1, "static_params", np.zeros(3), "static_params"),  # wrong shape
    (4, "static_params", np.array(["a", "b", "c", "d"]), "static_params"),  # non-numeric
    (0, "v_peak", "6.1 ms", "v_peak"),
    (0, "v_peak_mask", np.array([2, 0]), "v_peak_mask"),
    (5, "target", 7, "target"),                        # out of range
    (5, "target", "OTITIS", "target"),                 # unknown name
    (3, "patient_id", "  ", "patient_id"),
    (1, "signal", np.r_[np.zeros(199), np.nan], "signal"),
    (2, "clinical_threshold", "high", "clinical_threshold"),
])
def test_malformed_record_names_file_index_and_field(tmp_path, index, key, value, field):
    container, _ = _legacy()
    if value is None:
        del container["data"][index][key]
    else:
        container["data"][index][key] = value
    err = _error(_write(tmp_path / "bad.pkl", container))
    assert (err.row, err.field) == (index, field)


def test_scaler_without_mean_is_an_error(tmp_path):
    container, _ = _legacy()
    del container["scaler"].mean_
    assert _error(_write(tmp_path / "a.pkl", container)).field == "scaler.mean_"
    del container["scaler"]
    assert _error(_write(tmp_path / "b.pkl", container)).field == "scaler"


def test_not_a_legacy_container(tmp_path):
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x05this is not a pickle")
    assert "not a readable legacy pickle" in str(_error(tmp_path / "junk.pkl"))
    assert _error(_write(tmp_path / "list.pkl", [1, 2, 3])).row is None
    assert _error(_write(tmp_path / "nodata.pkl", {"scaler": None})).field == "data"


# ---------------------------------------------------------------- hostile pickles


class _Payload:
    """Unpickling this would call ``func(*args)``; ``func`` may itself be a payload (its result is called)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # pickle requires a callable first item; never called here
        raise AssertionError("a payload is only ever pickled")


def _payloads(marker):
    """Each payload creates ``marker`` when unpickled without restriction; the key is the global that
    comes first in its byte stream, the one abrflow's reader must refuse."""
    touch = f"open({str(marker)!r}, 'w').close()"
    imported_os = _Payload(builtins.__import__, "os")
    return {
        "posix.system": _Payload(os.system, f"touch {marker}"),
        "os.popen": _Payload(os.popen, f"touch {marker}"),
        "subprocess.Popen": _Payload(subprocess.Popen, ["touch", str(marker)]),
        "subprocess.check_output": _Payload(subprocess.check_output, ["touch", str(marker)]),
        "builtins.eval": _Payload(builtins.eval, touch),
        "builtins.exec": _Payload(builtins.exec, touch),
        # getattr(__import__("os"), "system")("touch …")
        "builtins.getattr": _Payload(_Payload(getattr, _Payload(builtins.__import__, "os"), "system"),
                                     f"touch {marker}"),
        # (__import__("os"), getattr(<that module, from the pickle memo>, "system")("touch …")):
        # __import__ is the first global in the stream
        "builtins.__import__": (imported_os, _Payload(_Payload(getattr, imported_os, "system"), f"touch {marker}")),
        "io.open": _Payload(builtins.open, str(marker), "w"),
    }


#: Plain ``pickle`` (no restriction) in a fresh interpreter; it waits up to 10 s for the marker, as
#: os.popen and subprocess.Popen start ``touch`` without waiting for it.
_PLAIN_UNPICKLE = """
import pathlib, pickle, sys, time
pickle.loads(pathlib.Path(sys.argv[1]).read_bytes())
marker, deadline = pathlib.Path(sys.argv[2]), time.monotonic() + 10
while not marker.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
"""


def _plain_unpickle_creates(path, marker) -> bool:
    """Whether unpickling ``path`` with plain ``pickle`` (what the restriction stops) creates ``marker``."""
    assert not marker.exists()
    subprocess.run([sys.executable, "-c", _PLAIN_UNPICKLE, str(path), str(marker)], cwd=path.parent, check=True,
                   timeout=60, capture_output=True)
    return marker.exists()


@pytest.mark.parametrize("name", ["posix.system", "os.popen", "subprocess.Popen", "subprocess.check_output",
                                  "builtins.eval", "builtins.exec", "builtins.getattr", "builtins.__import__",
                                  "io.open"])
@pytest.mark.parametrize("where", ["top", "metadata", "record", "signal", "object_array", "dict_key"])
def test_hostile_payload_is_refused_without_running(tmp_path, name, where):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[name]
    container, _ = _legacy(n=3)
    if where == "top":
        container = payload
    elif where == "metadata":
        container["metadata"] = {"notes": [1, {"deep": (payload,)}]}
    elif where == "record":
        container["data"][1]["extra"] = [payload]
    elif where == "signal":
        container["data"][2]["signal"] = payload
    elif where == "object_array":  # inside a NumPy object array, inside a dict
        container["metadata"] = {"arrays": np.array([1.5, "x", payload], dtype=object)}
    else:
        container["metadata"] = {(1, payload): "key"}
    path = _write(tmp_path / "evil.pkl", container)
    err = _error(path)
    assert f"refused to load {name!r}" in str(err)
    assert not marker.exists()
    if where == "top":  # the bare payload: live, as plain pickle shows (the same object is nested elsewhere)
        assert _plain_unpickle_creates(path, marker), name


@pytest.mark.parametrize("payload, message", [
    (_Payload(bytearray, 2**40), "bytearray(size)"),                   # 1 TiB of zeros from 10 bytes
    (_Payload(bytes, 2**40), "bytes(size)"),
    (_Payload(list, range(2**62)), "refused to load 'builtins.range'"),
    (_Payload(np.ndarray, (2**40,)), "numpy.ndarray(shape) called directly"),
    (_Payload(np.ndarray.__reduce__(np.zeros(1))[0], np.ndarray, (2**40,), b"b"), "_reconstruct is only allowed"),
])
def test_memory_bombs_are_refused_before_allocating(tmp_path, payload, message):
    """A few bytes that name an allowed constructor with a huge size must not allocate that size."""
    container, _ = _legacy(n=3)
    container["metadata"] = {"bomb": [payload]}
    assert message in str(_error(_write(tmp_path / "bomb.pkl", container)))


def test_hand_written_os_system_global_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil0.pkl"
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    assert "refused to load 'os.system'" in str(_error(path))
    assert not marker.exists()
    assert _plain_unpickle_creates(path, marker)  # the file is live: plain pickle runs `touch`


@pytest.mark.parametrize("cls, base, state", [(collections.OrderedDict, dict, [("a", 1)]), (list, list, [1, 2])])
def test_allowed_reconstructor_cannot_build_other_classes(tmp_path, cls, base, state):
    """copyreg._reconstructor is allowed (protocols 0/1 rebuild the scikit-learn stand-ins with it), but
    only for those: built from allowed globals alone, another class is refused by its guard. (A class
    that could run code is a global of its own, refused before the reconstructor is reached.)"""
    path = _write(tmp_path / "r.pkl", {"data": [_Payload(copyreg._reconstructor, cls, base, state)]})
    with open(path, "rb") as fh:
        assert type(pickle.load(fh)["data"][0]) is cls  # plain pickle builds it (inert classes, in-process)
    assert "copyreg._reconstructor only allowed for scikit-learn stand-ins" in str(_error(path))


def test_out_of_range_values_name_the_pickle_key(tmp_path):
    container, _ = _legacy()
    container["data"][4]["static_params"] = np.array([50.0, 0.0, 0.0, 0.0])  # z = 50 → age far above 120 y
    err = _error(_write(tmp_path / "age.pkl", container))
    assert (err.row, err.field) == (4, "static_params[0] (Age)")
    container, _ = _legacy()
    container["data"][1]["v_peak"] = np.array([45.0, 0.3])
    assert _error(_write(tmp_path / "lat.pkl", container)).field == "v_peak[0]"


def test_nan_threshold_is_not_flagged(tmp_path):
    container, _ = _legacy()
    container["data"][0]["clinical_threshold"] = float("nan")
    container["data"][1]["clinical_threshold"] = float("inf")  # no response
    rec = read_legacy_pickle(_write(tmp_path / "nan.pkl", container))
    assert np.isnan(rec.threshold_db[0]) and not rec.extra["threshold_is_synthetic"][0]
    assert np.isposinf(rec.threshold_db[1]) and rec.extra["threshold_is_synthetic"][1:].all()


def test_newborns_age_zero_survives_the_scaler_round_trip(tmp_path):
    """Age 0 z-scored by the file's scaler comes back as ±2e-16; that round-off is undone at the
    range's bound (the file is read, age is exactly 0), while every other value is as computed."""
    raw = np.array([[0.0, 80, 33.1, 0.5], [0.15, 60, 33.1, 1.2], [3.0, 40, 33.1, 2.0], [3.15, 20, 33.1, 3.1]])
    container, _ = _legacy(n=4)
    container["scaler"] = StandardScaler().fit(raw)
    z = container["scaler"].transform(raw)
    assert z[0, 0] * container["scaler"].scale_[0] + container["scaler"].mean_[0] != 0.0  # the round-off is there
    for rec, row in zip(container["data"], z):
        rec["static_params"] = row
    path = tmp_path / "infants.pkl"
    path.write_bytes(pickle.dumps(container, protocol=4))
    records = load_records(path)
    assert records.age_years[0] == 0.0
    np.testing.assert_allclose(records.static, raw.astype(np.float32), rtol=1e-6, atol=1e-6)
