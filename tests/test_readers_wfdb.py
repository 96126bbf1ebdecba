"""EARNDB WFDB reader on every real record (shared/real/earndb) and on broken copies of a record pair."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
from scipy.signal import resample_poly

from abrflow.data.readers import load_records
from abrflow.data.readers.wfdb import read_wfdb
from abrflow.errors import DataError

from .conftest import REAL

EARNDB = REAL / "earndb"
PAIR = "N1_evoked_ave100_F1"
HEADERLESS = "N8_evoked_ave55_F1_R2"


@pytest.fixture(scope="module")
def earndb():
    with pytest.warns(UserWarning, match=HEADERLESS):
        return read_wfdb(EARNDB)


def _series(rec):
    return {key: np.flatnonzero(rec.series_key == key) for key in np.unique(rec.series_key)}


# ---------------------------------------------------------------- the real records


def test_every_record_pair_loads(earndb):
    rec = earndb
    n_dat = len(list(EARNDB.glob("*.dat")))
    assert n_dat == 466 and len(rec) == n_dat // 2 == 233  # R1 + R2 → one row per level
    assert rec.signal.shape == (233, 200) and rec.sampling_rate_hz == 20000.0 and rec.signal_unit == "uV"
    assert set(rec.patient_id) == {f"N{k}" for k in range(1, 9)} and set(rec.session_id) == {"F1", "F4"}
    assert len(np.unique(rec.series_key)) == 16  # subject × frequency
    assert set(rec.ear) == {"R"} and (rec.hearing_loss == 0).all()  # Condition: Normal
    levels = rec.intensity_db
    assert levels.min() == 10 and levels.max() == 100 and (levels % 5 == 0).all()
    assert set(rec.extra["level_unit"]) == {"dB peSPL"}
    assert set(rec.extra["stimulus_frequency_khz"].tolist()) == {1.0, 4.0}
    assert np.isfinite(rec.fmp).all() and (rec.fmp > 0).all()
    assert np.isnan(rec.age_years).all() and np.isnan(rec.stimulus_rate_hz).all() and not rec.v_present.any()
    assert rec.extra["record"][rec.extra["header_borrowed"]].tolist() == [HEADERLESS[:-3]]
    n8_f1 = np.sort(levels[(rec.patient_id == "N8") & (rec.session_id == "F1")]).tolist()
    assert n8_f1 == [30, 35, 40, 45, 50, 55, 100]  # the documented level gaps


def test_gain_multiplies_and_amplitudes_are_physiological(earndb):
    import wfdb

    stock = wfdb.rdrecord(str(EARNDB / f"{PAIR}_R1"))  # divides by the gain: absurd values
    assert np.abs(stock.p_signal[:, 0]).max() > 1e15
    digital = wfdb.rdrecord(str(EARNDB / f"{PAIR}_R1"), physical=False)
    row = int(np.flatnonzero(earndb.extra["record"] == PAIR)[0])
    onset = round(float(earndb.extra["stimulus_onset_ms"][row]) * 48)  # 48 samples per ms
    expected = resample_poly(digital.d_signal[onset:, 0] * digital.adc_gain[0], 5, 12)[:200]
    np.testing.assert_allclose(earndb.extra["half_a"][row], expected, rtol=1e-5, atol=1e-7)
    peaks = np.abs(np.concatenate([earndb.extra["half_a"], earndb.extra["half_b"]])).max(axis=1)
    assert 0.04 < peaks.min() and peaks.max() < 0.6          # measured 0.049–0.595 µV
    assert 0.08 < np.median(peaks) < 0.3
    np.testing.assert_allclose(earndb.signal, (earndb.extra["half_a"] + earndb.extra["half_b"]) / 2, atol=1e-6)


def test_comment_line_is_mapped(earndb):
    row = int(np.flatnonzero(earndb.extra["record"] == PAIR)[0])
    # R1: 1511 trials, wnsfmp 4.1448, noise 2.8407; R2: 1465, 3.4244, 2.8047
    assert earndb.intensity_db[row] == 100 and earndb.extra["sweeps"][row] == 1511 + 1465
    assert earndb.fmp[row] == pytest.approx((4.1448 + 3.4244) / 2)
    assert earndb.extra["fmp_half_a"][row] == pytest.approx(4.1448)
    assert earndb.extra["residual_noise_half_b"][row] == pytest.approx(2.8047)
    assert (earndb.patient_id[row], earndb.session_id[row]) == ("N1", "F1")


def test_split_half_correlation_rises_with_level(earndb):
    r = earndb.extra["split_half_r"]
    lowest, loudest = [], []
    for rows in _series(earndb).values():
        order = rows[np.argsort(earndb.intensity_db[rows])]
        lowest.append(r[order[0]])    # the behavioural threshold the series started at
        loudest.append(r[order[-1]])  # 100 dB peSPL
    lowest, loudest = np.array(lowest), np.array(loudest)
    assert len(lowest) == 16
    assert (loudest > 0.6).all() and np.median(loudest) > 0.8         # measured 0.63–0.99, median 0.85
    assert (lowest < 0.5).all() and abs(np.median(lowest)) < 0.1      # measured −0.67–0.49, median 0.02


def test_time_zero_is_the_onset_the_ear_canal_microphone_heard(earndb):
    """In N3, N6 (1 kHz) and N8 the burst comes ~5.5 ms after sample 0; a window cut at sample 0 missed wave V."""
    onset = {}
    for key, rows in _series(earndb).items():
        values = earndb.extra["stimulus_onset_ms"][rows]
        assert np.ptp(values) == 0 and earndb.extra["onset_from_microphone"][rows].all()  # one onset per series
        onset[key] = float(values[0])
    late = {"N3|R|F1", "N3|R|F4", "N6|R|F1", "N8|R|F1", "N8|R|F4"}
    for key, ms in onset.items():
        low, high = (5.2, 5.8) if key in late else (0.25, 0.7)  # measured 5.33–5.60 and 0.31–0.56 ms
        assert low <= ms <= high, (key, ms)
    # Cut at the onset, N8's 4 kHz series at 100 dB replicates and its largest peak sits where wave V
    # belongs (measured 6.1 ms); cut at sample 0 the halves disagreed 5 ms later in the record.
    row = int(np.flatnonzero(earndb.extra["record"] == "N8_evoked_ave100_F4")[0])
    assert earndb.extra["split_half_r"][row] > 0.8
    assert 5.0 < np.argmax(earndb.signal[row, 60:]) / 20 + 3.0 < 7.5


def test_an_onset_the_microphone_cannot_place_falls_back_to_sample_0_with_a_warning(tmp_path):
    quiet = "N1_evoked_ave10_F1"  # 10 dB peSPL: the burst is only 6× the microphone's noise
    with pytest.warns(UserWarning, match="too faint a burst"):
        rec = read_wfdb(EARNDB / f"{quiet}_R1.hea")
    assert rec.extra["stimulus_onset_ms"].tolist() == [0.0] and not rec.extra["onset_from_microphone"][0]
    for half in ("R1", "R2"):  # the same pair with the microphone channel taken out of the files
        samples = np.fromfile(EARNDB / f"{quiet}_{half}.dat", "<i4").reshape(-1, 2)[:, :1].copy()
        samples.tofile(tmp_path / f"{quiet}_{half}.dat")
        lines = (EARNDB / f"{quiet}_{half}.hea").read_text(encoding="ascii").splitlines()
        lines[0] = lines[0].replace(" 2 48000 ", " 1 48000 ")
        (tmp_path / f"{quiet}_{half}.hea").write_text("\n".join(lines[:2] + lines[3:]) + "\n", encoding="ascii")
    with pytest.warns(UserWarning, match="has no microphone channel"):
        bare = read_wfdb(tmp_path)
    np.testing.assert_allclose(bare.signal, rec.signal, atol=1e-6)


def test_single_record_paths_read_their_pair(tmp_path):
    for path in (EARNDB / f"{PAIR}_R1.hea", EARNDB / f"{PAIR}_R2.dat", EARNDB / f"{PAIR}_R2"):
        rec = read_wfdb(path)
        assert len(rec) == 1 and rec.extra["record"][0] == PAIR
    via_dispatch = load_records(EARNDB / f"{PAIR}_R1.hea", signal_length=100, sampling_rate_hz=10000.0)
    assert via_dispatch.signal.shape == (1, 100)
    with pytest.warns(UserWarning, match=HEADERLESS):
        borrowed = load_records(EARNDB / f"{HEADERLESS}.dat")
    assert borrowed.extra["header_borrowed"].tolist() == [True] and borrowed.intensity_db[0] == 55
    folder = tmp_path / "two"
    folder.mkdir()
    for half in ("R1", "R2"):
        for suffix in (".hea", ".dat"):
            shutil.copy(EARNDB / f"{PAIR}_{half}{suffix}", folder)
    assert len(load_records(folder)) == 1


def test_missing_wfdb_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wfdb", None)  # makes "import wfdb" raise ImportError
    with pytest.raises(DataError, match=r"pip install 'abrflow\[wfdb\]'"):
        read_wfdb(EARNDB / f"{PAIR}_R1.hea")


# ---------------------------------------------------------------- broken copies


def _pair_copy(tmp_path, header_change=None, halves=("R1",)):
    """A writable copy of one level pair; ``header_change`` edits the headers of ``halves``; returns R1's."""
    for h in ("R1", "R2"):
        for suffix in (".hea", ".dat"):
            target = tmp_path / f"{PAIR}_{h}{suffix}"
            shutil.copy(EARNDB / target.name, target)
            target.chmod(0o644)
            if suffix == ".hea" and h in halves and header_change is not None:
                target.write_text(header_change(target.read_text(encoding="ascii")), encoding="ascii")
    return tmp_path / f"{PAIR}_R1.hea"


def _error(path) -> DataError:
    with pytest.raises(DataError) as info:
        read_wfdb(path)
    return info.value


def test_truncated_signal_file(tmp_path):
    header = _pair_copy(tmp_path)
    dat = header.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:10000])
    err = _error(tmp_path)
    assert err.file == str(dat) and err.field == "sig_len" and "16016 bytes" in str(err)


def test_divided_gain_is_refused_as_unphysiological(tmp_path):
    # A header whose gain would need dividing (as a stock reader does) gives absurd amplitudes.
    header = _pair_copy(tmp_path, lambda t: t.replace("1.9327e-010/nV", "5.174e+009/nV"))
    err = _error(header)
    assert err.file == str(header.with_suffix(".dat")) and err.field == "amplitude"
    assert "not physiological" in str(err)


@pytest.mark.parametrize(("change", "field", "message"), [
    (lambda t: t.replace("<wnsfmp>:4.1448 ", ""), "wnsfmp", "missing"),
    (lambda t: t.replace("<SPL>: 100", "<SPL>: loud"), "SPL", "'loud'"),
    (lambda t: t.replace("<SPL>: 100", "<SPL>: 95"), "SPL", "file name says level 100"),
    (lambda t: t.replace("<Ear>: r", "<Ear>: l"), "Ear", "R1 says 'l', R2 says 'r'"),
    (lambda t: t.replace("<Total Trials Used>:1511", "<Total Trials Used>:15.5"), "Total Trials Used", "whole"),
])
def test_bad_comment_values(tmp_path, change, field, message):
    header = _pair_copy(tmp_path, change)
    err = _error(header)
    assert (err.file, err.row, err.field) == (str(header), "comment line", field)
    assert message in str(err)


@pytest.mark.parametrize(("change", "field", "message"), [
    (lambda t: t.replace("<Ear>: r", "<Ear>: x"), "Ear", "unknown ear"),
    (lambda t: t.replace("<Condition>: Normal", "<Condition>: Unusual"), "Condition", "unknown hearing-loss"),
])
def test_bad_values_in_both_halves(tmp_path, change, field, message):
    header = _pair_copy(tmp_path, change, halves=("R1", "R2"))
    err = _error(tmp_path)
    assert (err.file, err.row, err.field) == (str(header), "comment line", field) and message in str(err)


def test_malformed_headers(tmp_path):
    header = _pair_copy(tmp_path, lambda t: "")
    err = _error(header)
    assert err.file == str(header) and "cannot read the WFDB header" in str(err)
    one_line = _pair_copy(tmp_path, lambda t: "\n".join(t.split("\n")[:2] + t.split("\n")[3:]))
    assert "declares 2 signals but describes 1" in str(_error(one_line))
    utf16 = _pair_copy(tmp_path)
    utf16.write_text(utf16.read_text(encoding="ascii"), encoding="utf-16")
    assert "cannot read the WFDB header" in str(_error(utf16))


def test_missing_halves_and_foreign_names(tmp_path):
    header = _pair_copy(tmp_path)
    (tmp_path / f"{PAIR}_R2.hea").unlink()
    (tmp_path / f"{PAIR}_R2.dat").unlink()
    assert "has no twin R2" in str(_error(tmp_path))
    assert "signal file is missing" in str(_error(header))
    header.unlink()
    (tmp_path / f"{PAIR}_R2.dat").write_bytes(b"\0" * 16016)
    assert "neither this half nor its twin" in str(_error(tmp_path / f"{PAIR}_R1.dat"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "record_1.hea").write_text("record_1 1 1000 10\n", encoding="ascii")
    assert "not an EARNDB record name" in str(_error(other))
