"""Interacoustics Eclipse CSV reader on generated exports: layout quirks, time base, marks, bad files.

No real Eclipse export is shipped, so ``write_export`` writes the documented layout (DESIGN.md §4)
with its awkward parts: BOM, CRLF, blank preamble lines, quoted strings with commas, space-padded
names, trailing commas, reordered columns, blank marks, negative sweep delays, a 40 kHz row.
"""

from __future__ import annotations

import numpy as np
import pytest

from abrflow.data.readers import load_records
from abrflow.data.readers.eclipse import read_eclipse
from abrflow.errors import ConfigError, DataError

PREAMBLE = ["Export: Eclipse EP25, v4.5", "Patient ID: 00123", "Name: Doe, Jane", "", "Date of Birth: 2020-01-02",
            "", "Protocol: ABR Click", "Units: µV"]
MARKS = [f"Mark{k} {what}" for k in range(1, 9) for what in ("Index", "Lat", "Ampl")]
COLUMNS = ["Mod No", " Mod Name", "Tr No", "Tr Name", "Date Time", " Avg No", " Accepted", " Rejected",
           " Art Level", "Stim Rate", " Stim Mode", " Set Intensity", " Stimulus", " Polarity", " Output",
           " Transducer", "LFF", "HFF", "Notch", *MARKS, "Sweep Delay", "Sampl Interval", "Samples"]
TEXT = {"Mod Name", "Tr Name", "Date Time", "Stim Mode", "Stimulus", "Polarity", "Output", "Transducer", "Notch"}


def waveform_uv(t_ms: np.ndarray) -> np.ndarray:
    """Waves I and V as smooth bumps plus a slow wave: easy to compare after resampling."""
    return (0.12 * np.exp(-(((t_ms - 1.6) / 0.25) ** 2)) + 0.35 * np.exp(-(((t_ms - 5.8) / 0.3) ** 2))
            + 0.05 * np.sin(2 * np.pi * 0.15 * t_ms))


def _row(output, intensity_db, interval_ms, delay_ms, n_samples, marks=None, **overrides):
    """One waveform row; ``marks`` = {k: (latency ms, amplitude µV)}; other marks are blank."""
    t_ms = delay_ms + interval_ms * np.arange(n_samples)
    row = {"Mod No": 1, "Mod Name": "ABR, Click", "Tr No": 1, "Tr Name": f"{output} {intensity_db} dB, alt",
           "Date Time": "2021-03-04 10:22:33", "Avg No": 1, "Accepted": 2000, "Rejected": 12, "Art Level": 40,
           "Stim Rate": 45.1, "Stim Mode": "Alternating", "Set Intensity": intensity_db, "Stimulus": "Click",
           "Polarity": "Alternating", "Output": output, "Transducer": "IP30", "LFF": 100, "HFF": 3000,
           "Notch": "Off", "Sweep Delay": delay_ms, "Sampl Interval": interval_ms, "Samples": n_samples}
    for k in range(1, 9):
        latency, amplitude = (marks or {}).get(k, ("", ""))
        index = "" if latency == "" else round((latency - delay_ms) / interval_ms)
        row.update({f"Mark{k} Index": index, f"Mark{k} Lat": latency, f"Mark{k} Ampl": amplitude})
    row.update({str(i): f"{v:.6f}" for i, v in enumerate(waveform_uv(t_ms))})
    row.update(overrides)
    return row


ROWS = [
    _row("Right", 80, 0.05, -2.0, 300, {1: (1.62, 0.12), 2: (2.7, 0.05), 3: (3.8, 0.2), 5: (5.81, 0.35)}),
    _row("Left", 40, 0.025, -1.0, 500, {5: (6.6, 0.21)}),       # 40 kHz → resampled
    _row("L", 20, 0.05, 0.0, 250),                               # no marks, no pre-stimulus part
    _row("Both", 60, 0.05, -1.0, 260, {5: (6.0, 0.3), 7: (8.1, -0.1)}),
]


def _quote(column: str, value) -> str:
    if value == "" or column.strip() not in TEXT:
        return str(value)
    return '"' + str(value) + '"'


def write_export(path, rows=ROWS, *, preamble=PREAMBLE, order=None, bom=True, newline="\r\n",
                 trailing_comma=True, encoding="utf-8", n_columns=None):
    """Write the Eclipse layout; returns (path, line number of the first data row)."""
    n_columns = n_columns or max(int(r["Samples"]) for r in rows)
    columns = COLUMNS + [str(i) for i in range(n_columns)]
    if order is not None:
        columns = [columns[i] for i in order]
    end = "," if trailing_comma else ""
    lines = list(preamble) + [",".join(columns) + end]
    for row in rows:
        lines.append(",".join(_quote(c, row.get(c.strip(), "")) for c in columns) + end)
    text = newline.join(lines) + newline
    path.write_bytes(("\ufeff" if bom else "").encode(encoding) + text.encode(encoding))
    return path, len(preamble) + 2


def _expected_window(row, length=200, rate_hz=20000.0):
    return waveform_uv(np.arange(length) * 1000.0 / rate_hz)


# ---------------------------------------------------------------- reading


def test_every_field_is_mapped(tmp_path):
    path, first_line = write_export(tmp_path / "eclipse.csv")
    rec = read_eclipse(path)
    assert len(rec) == 4 and rec.signal.shape == (4, 200) and rec.signal.dtype == np.float32
    assert rec.sampling_rate_hz == 20000.0 and rec.signal_unit == "uV" and rec.source == "eclipse:eclipse.csv"
    for i, row in enumerate(ROWS):
        # Resampled rows (40 kHz) may differ a little near the window's ends (filter edges).
        tol = 1e-5 if row["Sampl Interval"] == 0.05 else 3e-3
        np.testing.assert_allclose(rec.signal[i, 5:195], _expected_window(row)[5:195], atol=tol)
    assert list(rec.patient_id) == ["00123"] * 4                  # from "Patient ID", leading zeros kept
    assert list(rec.session_id) == ["2021-03-04"] * 4
    assert list(rec.ear) == ["R", "L", "L", "?"]
    np.testing.assert_array_equal(rec.intensity_db, [80, 40, 20, 60])
    np.testing.assert_allclose(rec.stimulus_rate_hz, 45.1)
    assert np.isnan(rec.fmp).all() and (rec.hearing_loss == -1).all() and np.isnan(rec.threshold_db).all()
    assert list(rec.v_present) == [True, True, False, True]
    np.testing.assert_allclose(rec.v_latency_ms, [5.81, 6.6, np.nan, 6.0], rtol=1e-6)
    np.testing.assert_allclose(rec.v_amplitude_uv, [0.35, 0.21, np.nan, 0.3], rtol=1e-6)
    np.testing.assert_allclose(rec.wave_latency_ms[0], [1.62, 3.8, 5.81], rtol=1e-6)
    assert np.isnan(rec.wave_latency_ms[1, :2]).all()
    np.testing.assert_allclose(rec.extra["mark2_latency_ms"], [2.7, np.nan, np.nan, np.nan], rtol=1e-6)
    np.testing.assert_allclose(rec.extra["mark7_amplitude_uv"], [np.nan, np.nan, np.nan, -0.1], rtol=1e-6)
    assert list(rec.extra["sweeps_accepted"]) == [2000] * 4 and list(rec.extra["sweeps_rejected"]) == [12] * 4
    assert list(rec.extra["stimulus_polarity"]) == ["Alternating"] * 4
    np.testing.assert_allclose(rec.extra["sample_interval_ms"], [0.05, 0.025, 0.05, 0.05])
    assert list(rec.extra["source_line"]) == list(range(first_line, first_line + 4))


def test_column_order_and_line_endings_do_not_matter(tmp_path):
    reference = read_eclipse(write_export(tmp_path / "a.csv")[0])
    order = np.random.default_rng(0).permutation(len(COLUMNS) + 500)
    variants = [
        write_export(tmp_path / "shuffled.csv", order=order)[0],
        write_export(tmp_path / "plain.csv", bom=False, newline="\n", trailing_comma=False)[0],
        write_export(tmp_path / "cp1252.csv", bom=False, encoding="cp1252")[0],
    ]
    with pytest.raises(DataError, match="pass encoding="):
        read_eclipse(variants[-1])  # "µ" in cp1252 is not UTF-8
    for path in variants:
        rec = read_eclipse(path, encoding="cp1252" if path.name == "cp1252.csv" else "utf-8-sig")
        np.testing.assert_array_equal(rec.signal, reference.signal)
        np.testing.assert_array_equal(rec.wave_latency_ms, reference.wave_latency_ms)
        assert list(rec.ear) == list(reference.ear)


def test_patient_id_falls_back_to_name_then_file_stem(tmp_path):
    named = write_export(tmp_path / "named.csv", preamble=["Name: Doe, Jane", "Test: ABR"])[0]
    assert read_eclipse(named).patient_id[0] == "Doe, Jane"
    anonymous = write_export(tmp_path / "clinic_0042.csv", preamble=[])[0]  # header is the first line
    assert read_eclipse(anonymous).patient_id[0] == "clinic_0042"


def test_time_base_options_and_dispatch(tmp_path):
    path = write_export(tmp_path / "eclipse.csv")[0]
    rec = load_records(path, signal_length=100, sampling_rate_hz=10000.0)
    assert rec.signal.shape == (4, 100) and rec.source.startswith("eclipse:")
    np.testing.assert_allclose(rec.signal[2, 5:95], _expected_window(ROWS[2], 100, 10000.0)[5:95], atol=3e-3)
    bare = write_export(tmp_path / "bare.csv", preamble=[], bom=False)[0]     # sniffed by "Mod No"
    assert load_records(bare).source == "eclipse:bare.csv"
    with pytest.raises(ConfigError, match="read_eclipse, which takes no option"):
        load_records(path, polarity="Alternate")  # a clinic-table filter


# ---------------------------------------------------------------- bad input


def _error(path, **options) -> DataError:
    with pytest.raises(DataError) as info:
        read_eclipse(path, **options)
    return info.value


def test_each_broken_part_names_file_line_and_column(tmp_path):
    path, first = write_export(tmp_path / "good.csv")
    text = path.read_bytes().decode("utf-8-sig")
    lines = text.split("\r\n")

    def broken(name, new_lines):
        p = tmp_path / name
        p.write_text("\r\n".join(new_lines), encoding="utf-8")
        return p

    # Truncated in the middle of the second data row: its last samples are missing.
    cut = broken("truncated.csv", lines[:first] + [lines[first][: len(lines[first]) // 2]])
    err = _error(cut)
    assert err.file == str(cut) and err.row == f"line {first + 1}" and err.field.isdigit()
    # A required column missing from the header.
    header = lines[first - 2].replace(" Set Intensity,", " Level,")
    err = _error(broken("no_level.csv", lines[: first - 2] + [header] + lines[first - 1:]))
    assert err.field == "Set Intensity" and "missing required column" in str(err)
    # Text in a number field.
    bad = lines[first - 1].replace(",45.1,", ",fast,", 1)
    err = _error(broken("text.csv", lines[: first - 1] + [bad] + lines[first:]))
    assert (err.row, err.field) == (f"line {first}", "Stim Rate") and "'fast'" in str(err)
    # A garbage preamble line.
    err = _error(broken("preamble.csv", ["this is not a key value line"] + lines[1:]))
    assert err.row == "line 1"


@pytest.mark.parametrize(("override", "field", "message"), [
    ({"Samples": 301}, "Samples", "header has 300 sample columns"),
    ({"Samples": 290}, "290", "beyond the row's 290 samples"),
    ({**_row("Right", 80, 0.05, -2.0, 230)}, "Samples", "190 samples after onset"),
    ({"Sweep Delay": 0.5}, "Sweep Delay", "after the stimulus"),
    ({"Sweep Delay": -2.01}, "Sweep Delay", "between samples"),
    ({"Sampl Interval": 0.0}, "Sampl Interval", "must be positive"),
    ({"Output": "Front"}, "Output", "cannot tell the ear"),
    ({"Mark5 Lat": ""}, "Mark5 Lat", "amplitude but no latency"),
    ({"Set Intensity": 300}, "Set Intensity", "outside"),
    ({"Accepted": 12.5}, "Accepted", "whole count"),
])
def test_bad_cells(tmp_path, override, field, message):
    rows = [ROWS[0], override if "Mod No" in override else {**ROWS[0], **override}]  # a whole row, or changes
    path, first = write_export(tmp_path / "bad.csv", rows=rows, n_columns=300)
    err = _error(path)
    assert (err.file, err.row, err.field) == (str(path), f"line {first + 1}", field)
    assert message in str(err)


def test_empty_unreadable_and_headerless_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"\r\n\r\n")
    assert "empty" in str(_error(empty))
    utf16 = write_export(tmp_path / "utf16.csv", bom=False, encoding="utf-16")[0]
    assert "not utf-8-sig" in str(_error(utf16))
    only_preamble = tmp_path / "preamble.csv"
    only_preamble.write_text("Patient ID: 1\r\nName: X\r\n", encoding="utf-8")
    assert "no header row" in str(_error(only_preamble))
    no_rows = write_export(tmp_path / "norows.csv", rows=ROWS)[0]
    no_rows.write_text("\r\n".join(no_rows.read_bytes().decode("utf-8-sig").split("\r\n")[: len(PREAMBLE) + 1]),
                       encoding="utf-8")
    assert "no data rows" in str(_error(no_rows))
