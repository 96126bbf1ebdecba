"""What was played: every reader records the stimulus its export names (abrflow.data.stimulus)."""

from __future__ import annotations

import math
import pickle
import shutil
import warnings

import numpy as np
import pytest

from abrflow.data.readers import load_many
from abrflow.data.readers.eclipse import read_eclipse
from abrflow.data.readers.legacy_pickle import read_legacy_pickle
from abrflow.data.readers.smartep import read_smartep
from abrflow.data.readers.table import read_table
from abrflow.data.readers.wfdb import read_wfdb
from abrflow.data.records import ABRRecords
from abrflow.data.schema import DEFAULT_LEVEL_UNIT
from abrflow.data.stimulus import (
    LEVEL_UNITS,
    STIMULUS_FIELDS,
    STIMULUS_TYPES,
    frequency_khz_in,
    parse_level_unit,
    parse_stimulus_type,
    series_stimulus,
    stimulus_of,
    stimulus_text,
)
from abrflow.data.synthetic import simulate_cohort, simulate_cohort_to_dir
from abrflow.errors import DataError

from . import test_readers_eclipse as eclipse_export
from .conftest import REAL, make_records
from .test_readers_legacy import _legacy
from .test_readers_table import _csv

SMARTEP = REAL / "ihs-smartep-human"
SMARTEP_FILE = SMARTEP / "P6" / "TEMP-06-60db.TXT"
EARNDB = REAL / "earndb"


def _values(records: ABRRecords) -> dict[str, list]:
    """The distinct per-row values of each stimulus field (frequencies as floats, NaN as None)."""
    rows = stimulus_of(records)
    out = {name: sorted(set(rows[name].tolist())) for name in STIMULUS_FIELDS if name != "stimulus_frequency_khz"}
    freq = rows["stimulus_frequency_khz"]
    out["stimulus_frequency_khz"] = sorted({None if math.isnan(f) else f for f in freq.tolist()},
                                           key=lambda f: -1 if f is None else f)
    return out


def _smartep_copy(tmp_path, change, name="edited.TXT"):
    """A real SmartEP export with one header row changed (``change(line) -> line``)."""
    lines = SMARTEP_FILE.read_text(encoding="ascii").split("\n")
    target = tmp_path / name
    target.write_text("\n".join(change(line) for line in lines), encoding="ascii", newline="")
    return target


def _set_row(key: str, value: str):
    """Set every recording's value of header row ``key`` (values stand in every 6th field)."""
    def change(line: str) -> str:
        if not line.startswith(key):
            return line
        fields = line.split(",")
        return ",".join(value if i % 6 == 1 and f.strip() else f for i, f in enumerate(fields))
    return change


@pytest.fixture(scope="module")
def earndb_n1(tmp_path_factory):
    """Subject N1's two series (1 and 4 kHz), copied: enough to read both tone-burst frequencies."""
    folder = tmp_path_factory.mktemp("earndb_n1")
    for path in EARNDB.glob("N1_*"):
        shutil.copy(path, folder / path.name)
    return folder


# ---------------------------------------------------------------- each reader


def test_smartep_real_files_are_clicks_in_db_nhl():
    rec = read_smartep(SMARTEP / "P6")
    assert _values(rec) == {"stimulus_type": ["click"], "stimulus_polarity": ["Stim. Mode 0"],
                            "level_unit": [DEFAULT_LEVEL_UNIT], "stimulus_frequency_khz": [None]}
    series = series_stimulus(rec)
    assert len(series) == 1
    (only,) = series.values()
    assert only["text"] == "click, dB nHL" and not only["mixed"] and only["stimulus_polarity"] == ("Stim. Mode 0",)


def test_smartep_stim_freq_in_hz_makes_a_tone_burst(tmp_path):
    rec = read_smartep(_smartep_copy(tmp_path, _set_row("Stim. Freq.", "12000")))
    assert _values(rec)["stimulus_type"] == ["tone_burst"] and _values(rec)["stimulus_frequency_khz"] == [12.0]
    assert set(rec.extra["level_unit"]) == {DEFAULT_LEVEL_UNIT}  # the export names no unit: the default
    assert {s["text"] for s in series_stimulus(rec).values()} == {"tone burst 12 kHz, dB nHL"}
    # Only the stimulus fields moved: the signal is the real file's.
    np.testing.assert_array_equal(rec.signal, read_smartep(SMARTEP_FILE).signal)


def test_smartep_never_guesses_a_click(tmp_path):
    other_code = read_smartep(_smartep_copy(tmp_path, _set_row("Stimulus:", "3"), name="code3.TXT"))
    assert _values(other_code)["stimulus_type"] == ["unknown"]
    no_row = _smartep_copy(tmp_path, lambda line: "" if line.startswith("Stim. Freq.") else line, name="nofreq.TXT")
    assert _values(read_smartep(no_row))["stimulus_type"] == ["unknown"]
    for bad in ("-5", "nan", "1e9", "twelve"):
        path = _smartep_copy(tmp_path, _set_row("Stim. Freq.", bad), name="bad.TXT")
        with pytest.raises(DataError) as info:
            read_smartep(path)
        assert info.value.field == "Stim. Freq." and info.value.file == str(path)
        assert info.value.row == "line 17, recording 1"


def test_earndb_tone_bursts_in_db_pespl(earndb_n1):
    rec = read_wfdb(earndb_n1)
    assert _values(rec) == {"stimulus_type": ["tone_burst"], "stimulus_polarity": [""],
                            "level_unit": ["dB peSPL"], "stimulus_frequency_khz": [1.0, 4.0]}
    texts = {key: s["text"] for key, s in series_stimulus(rec).items()}
    assert texts == {"N1|R|F1": "tone burst 1 kHz, dB peSPL", "N1|R|F4": "tone burst 4 kHz, dB peSPL"}


def _eclipse(tmp_path, name, *, stimulus=None, preamble=None, **cells):
    rows = [dict(row, **({"Stimulus": stimulus} if stimulus is not None else {}), **cells)
            for row in eclipse_export.ROWS]
    path, _ = eclipse_export.write_export(tmp_path / name, rows,
                                          preamble=eclipse_export.PREAMBLE if preamble is None else preamble)
    return read_eclipse(path)


def test_eclipse_stimulus_polarity_and_unit(tmp_path, monkeypatch):
    click = _eclipse(tmp_path, "click.csv")  # the generated export's "Click"
    assert _values(click) == {"stimulus_type": ["click"], "stimulus_polarity": ["Alternating"],
                              "level_unit": [DEFAULT_LEVEL_UNIT], "stimulus_frequency_khz": [None]}
    tone = _eclipse(tmp_path, "tone.csv", stimulus="Tone Burst")
    assert _values(tone)["stimulus_type"] == ["tone_burst"] and _values(tone)["stimulus_frequency_khz"] == [None]
    assert {s["text"] for s in series_stimulus(tone).values()} == {"tone burst, dB nHL"}
    written = _eclipse(tmp_path, "tb2k.csv", stimulus="TB 2000 Hz")
    assert _values(written)["stimulus_frequency_khz"] == [2.0]
    chirp = _eclipse(tmp_path, "chirp.csv", stimulus="CE-Chirp")
    assert _values(chirp)["stimulus_type"] == ["chirp"]
    pespl = _eclipse(tmp_path, "pespl.csv", preamble=[*eclipse_export.PREAMBLE, "Intensity Unit: dB peSPL"])
    assert _values(pespl)["level_unit"] == ["dB peSPL"]
    with pytest.raises(DataError, match="dB HL"):
        _eclipse(tmp_path, "hl.csv", preamble=[*eclipse_export.PREAMBLE, "Level Unit: dB HL"])
    # A frequency column: a bare number is Hz when ≥ 100, kHz when ≤ 20.
    monkeypatch.setattr(eclipse_export, "COLUMNS", [*eclipse_export.COLUMNS, " Stim Freq"])
    hz = _eclipse(tmp_path, "freq_hz.csv", stimulus="Tone Burst", **{"Stim Freq": 4000})
    khz = _eclipse(tmp_path, "freq_khz.csv", stimulus="Tone Burst", **{"Stim Freq": 0.5})
    assert _values(hz)["stimulus_frequency_khz"] == [4.0] and _values(khz)["stimulus_frequency_khz"] == [0.5]
    with pytest.raises(DataError) as info:
        _eclipse(tmp_path, "freq_bad.csv", stimulus="Tone Burst", **{"Stim Freq": 50})
    assert info.value.field == "Stim Freq"
    clicked = _eclipse(tmp_path, "freq_click.csv", **{"Stim Freq": 4000})  # a click has no frequency
    assert _values(clicked)["stimulus_frequency_khz"] == [None]


def test_eclipse_without_a_stimulus_column_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(eclipse_export, "COLUMNS", [c for c in eclipse_export.COLUMNS if c.strip() != "Stimulus"])
    assert _values(_eclipse(tmp_path, "none.csv"))["stimulus_type"] == ["unknown"]


def test_table_records_polarity_only(tmp_path):
    rec = read_table(_csv(tmp_path), polarity=None)
    assert "stimulus_type" not in rec.extra and "level_unit" not in rec.extra
    values = _values(rec)
    assert values["stimulus_type"] == ["unknown"] and values["level_unit"] == [DEFAULT_LEVEL_UNIT]
    assert values["stimulus_polarity"] == ["Alternate", "Rarefaction", "alternate"]
    assert {s["text"] for s in series_stimulus(rec).values()} == {"unknown stimulus, dB nHL"}


def test_legacy_pickle_records_nothing(tmp_path):
    path = tmp_path / "legacy.pkl"
    path.write_bytes(pickle.dumps(_legacy(n=4)[0]))
    rec = read_legacy_pickle(path)
    assert not set(STIMULUS_FIELDS) & set(rec.extra)
    assert _values(rec) == {"stimulus_type": ["unknown"], "stimulus_polarity": [""],
                            "level_unit": [DEFAULT_LEVEL_UNIT], "stimulus_frequency_khz": [None]}


def test_synthetic_cohort_is_clicks_in_db_nhl(tmp_path):
    cohort = simulate_cohort(12, seed=3)
    assert _values(cohort) == {"stimulus_type": ["click"], "stimulus_polarity": ["alternating"],
                               "level_unit": [DEFAULT_LEVEL_UNIT], "stimulus_frequency_khz": [None]}
    assert _values(simulate_cohort(4, seed=3, alternate_polarity=False))["stimulus_polarity"] == [""]
    # String extras survive a records directory written in chunks, an .npz and concatenation.
    folder = simulate_cohort_to_dir(tmp_path / "cohort", 12, seed=3, chunk_patients=5)
    mapped = ABRRecords.load(folder)
    assert _values(mapped) == _values(cohort)
    saved = ABRRecords.load(cohort.save(tmp_path / "cohort.npz"))
    for name in STIMULUS_FIELDS:
        np.testing.assert_array_equal(saved.extra[name], cohort.extra[name])
    joined = ABRRecords.concatenate([cohort, simulate_cohort(3, seed=4)])
    assert _values(joined) == _values(cohort)


# ---------------------------------------------------------------- joining files


def test_load_many_keeps_each_files_stimulus(earndb_n1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smartep, earndb = read_smartep(SMARTEP / "P6"), read_wfdb(earndb_n1)
        both = load_many([SMARTEP / "P6", earndb_n1])
    assert len(both) == len(smartep) + len(earndb)
    rows = stimulus_of(both)
    first = np.arange(len(both)) < len(smartep)
    assert set(rows["stimulus_type"][first]) == {"click"} and set(rows["level_unit"][first]) == {"dB nHL"}
    assert set(rows["stimulus_polarity"][first]) == {"Stim. Mode 0"}
    assert np.isnan(rows["stimulus_frequency_khz"][first]).all()
    assert set(rows["stimulus_type"][~first]) == {"tone_burst"} and set(rows["level_unit"][~first]) == {"dB peSPL"}
    assert set(rows["stimulus_polarity"][~first]) == {""}  # EARNDB records none: unknown, not SmartEP's
    np.testing.assert_array_equal(rows["stimulus_frequency_khz"][~first], earndb.extra["stimulus_frequency_khz"])
    texts = [s["text"] for s in series_stimulus(both).values()]
    assert texts == ["click, dB nHL", "tone burst 1 kHz, dB peSPL", "tone burst 4 kHz, dB peSPL"]


def test_load_many_fills_what_a_file_lacks_as_unknown(tmp_path):
    table = _csv(tmp_path)
    both = load_many([SMARTEP_FILE, table])
    assert set(STIMULUS_FIELDS) <= set(both.extra)
    rows = stimulus_of(both)
    from_table = np.char.startswith(both.patient_id, "00")
    assert set(rows["stimulus_type"][from_table]) == {"unknown"}  # never taken for SmartEP's clicks
    assert set(rows["level_unit"][from_table]) == {DEFAULT_LEVEL_UNIT}
    assert set(rows["stimulus_polarity"][from_table]) == {"Alternate", "alternate"}
    assert set(rows["stimulus_type"][~from_table]) == {"click"}


# ---------------------------------------------------------------- vocabulary


@pytest.mark.parametrize("text, expected", [
    ("Click", "click"), ("CLICK", "click"), ("clicks", "click"), ("ABR, Click", "click"), (" click ", "click"),
    ("Tone Burst", "tone_burst"), ("TB", "tone_burst"), ("tone pip", "tone_burst"), ("ToneBurst", "tone_burst"),
    ("tone-burst 4 kHz", "tone_burst"), ("2kHz TB", "tone_burst"), ("tone_burst", "tone_burst"),
    ("Chirp", "chirp"), ("CE-Chirp", "chirp"), ("LS-Chirp", "chirp"), ("NB CE-Chirp 1 kHz", "chirp"),
    ("1", "unknown"), ("", "unknown"), ("Speech", "unknown"), ("Click/Chirp", "unknown"), ("unknown", "unknown"),
    ("noise burst", "unknown"), (None, "unknown"),
])
def test_parse_stimulus_type(text, expected):
    assert parse_stimulus_type(text) == expected
    assert expected in STIMULUS_TYPES


@pytest.mark.parametrize("text, expected", [
    ("dB nHL", "dB nHL"), ("dBnHL", "dB nHL"), ("nHL", "dB nHL"), ("dB peSPL", "dB peSPL"),
    ("dB pe SPL", "dB peSPL"), ("dB p.e. SPL", "dB peSPL"), ("dB SPL", "dB SPL"), ("dB HL", None),
    ("dB ppe SPL", None), ("µV", None), ("", None),
])
def test_parse_level_unit(text, expected):
    assert parse_level_unit(text) == expected
    assert expected is None or expected in LEVEL_UNITS


def test_frequency_in_text_and_descriptions():
    assert frequency_khz_in("TB 2000 Hz") == 2.0 and frequency_khz_in("4 kHz") == 4.0
    assert frequency_khz_in("tone 0,5 kHz") == 0.5 and frequency_khz_in("8k TB") == 8.0
    assert math.isnan(frequency_khz_in("Tone Burst")) and math.isnan(frequency_khz_in("4 kHzz"))
    assert stimulus_text("click", math.nan, "dB nHL") == "click, dB nHL"
    assert stimulus_text("tone_burst", 12.0, "dB peSPL") == "tone burst 12 kHz, dB peSPL"
    assert stimulus_text("chirp", math.nan, "dB nHL") == "chirp, dB nHL"
    assert stimulus_text("unknown", math.nan, "dB nHL") == "unknown stimulus, dB nHL"


def _with(records: ABRRecords, **fields) -> ABRRecords:
    return records.replace(extra={**records.extra, **{k: np.asarray(v) for k, v in fields.items()}})


def test_stimulus_of_defaults_and_refuses_words_outside_the_vocabulary():
    rec = make_records(n_patients=2, per_patient=4)
    n = len(rec)
    rows = stimulus_of(_with(rec, stimulus_type=np.array(["click", "", " tone_burst", "unknown"] * 2),
                             stimulus_frequency_khz=np.full(n, 4.0, np.float32), level_unit=np.full(n, "")))
    assert rows["stimulus_type"].tolist() == ["click", "unknown", "tone_burst", "unknown"] * 2
    np.testing.assert_array_equal(rows["stimulus_frequency_khz"], [np.nan, np.nan, 4.0, np.nan] * 2)
    assert set(rows["level_unit"]) == {DEFAULT_LEVEL_UNIT} and set(rows["stimulus_polarity"]) == {""}
    for field, value in (("stimulus_type", "noise"), ("level_unit", "dB HL")):
        with pytest.raises(DataError) as info:
            stimulus_of(_with(rec, **{field: np.full(n, value)}))
        assert info.value.field == field and info.value.row == 0
    with pytest.raises(DataError) as info:
        stimulus_of(_with(rec, stimulus_type=np.full(n, "tone_burst"), stimulus_frequency_khz=np.full(n, -1.0)))
    assert info.value.field == "stimulus_frequency_khz"


def test_series_stimulus_texts_and_mixed_series():
    rec = make_records(n_patients=3, per_patient=4)
    keys = list(dict.fromkeys(rec.series_key.tolist()))
    kind = np.where(rec.patient_id == "P000", "click", "tone_burst")
    freq = np.where(rec.patient_id == "P001", 12.0, 4.0).astype(np.float32)
    unit = np.where(rec.patient_id == "P000", "dB nHL", "dB peSPL")
    mixed_row = int(np.flatnonzero(rec.series_key == keys[-1])[0])
    kind[mixed_row], unit[mixed_row] = "click", "dB nHL"
    polarity = np.where(np.arange(len(rec)) % 3 == 0, "Rarefaction", "Condensation")
    series = series_stimulus(_with(rec, stimulus_type=kind, stimulus_frequency_khz=freq, level_unit=unit,
                                   stimulus_polarity=polarity))
    assert list(series) == keys  # in the order series first appear
    assert series[keys[0]]["text"] == "click, dB nHL"
    assert series[keys[2]]["text"] == "tone burst 12 kHz, dB peSPL"
    assert series[keys[2]]["stimulus_frequency_khz"] == 12.0 and series[keys[2]]["level_unit"] == "dB peSPL"
    last = series[keys[-1]]
    assert last["mixed"] and last["stimulus_type"] == "mixed" and last["level_unit"] == "mixed"
    assert math.isnan(last["stimulus_frequency_khz"])
    assert last["text"] == "mixed: click, dB nHL + tone burst 4 kHz, dB peSPL"
    assert all(set(s["stimulus_polarity"]) <= {"Rarefaction", "Condensation"} for s in series.values())
    assert not any(s["mixed"] for key, s in series.items() if key != keys[-1])
    assert series_stimulus(rec.select(np.zeros(len(rec), bool))) == {}
