"""The simulation as a whole: plan → physiology → waveforms + noise → labels, into :class:`ABRRecords`.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed`` in a fixed order, and
signal synthesis runs in fixed-size row chunks, so a seed always gives the same arrays.
"""

from __future__ import annotations

import math

import numpy as np

from ..records import ABRRecords
from ..records_dir import RecordsDirWriter
from ..schema import DEFAULT_LEVEL_UNIT
from .components import _component_parameters, _ear_components, _mark_v
from .noise import _CHUNK_ROWS, _half_averages, _noise_parameters, amplifier_sos, eeg_noise_uv
from .physiology import N_CLASSES, NEUROPATHY, Physiology, _bad, make_physiology
from .plan import _allocate, _ear_physiology, _patient_class_probabilities, _plan_cohort
from .waveform import (
    _clinician_marks,
    _fmp,
    _marked_truth,
    _non_neural_uv,
    _response_uv,
    _response_window,
    _wave_parameters,
)


# ---------------------------------------------------------------------------- arguments and signals
def _validate_run(n_patients, seed, sampling_rate_hz, signal_length, artifact_rate, phys) -> None:
    """Check the cohort-level arguments, naming the argument and its value."""
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)) or n_patients < 1:
        raise _bad("n_patients", n_patients, "an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise _bad("seed", seed, "a non-negative integer")
    if isinstance(signal_length, bool) or not isinstance(signal_length, (int, np.integer)) \
            or signal_length < 16:
        raise _bad("signal_length", signal_length, "an integer >= 16 samples")
    if not isinstance(sampling_rate_hz, (int, float)) or not math.isfinite(sampling_rate_hz) \
            or sampling_rate_hz <= 0:
        raise _bad("sampling_rate_hz", sampling_rate_hz, "a positive sampling rate in Hz")
    if sampling_rate_hz / 2 <= phys.amplifier_band_hz[1]:
        raise _bad("sampling_rate_hz", sampling_rate_hz,
                   f"more than twice the amplifier's high cut of {phys.amplifier_band_hz[1]} Hz")
    if not isinstance(artifact_rate, (int, float)) or not 0 <= artifact_rate <= 1:
        raise _bad("artifact_rate", artifact_rate, "a probability in [0, 1]")


def _synthesise(rng: np.random.Generator, plan: dict, waves: dict, noise: dict, fs_hz: float,
                n_samples: int, alternate_polarity: bool, phys: Physiology) -> tuple[np.ndarray, np.ndarray]:
    """Signals [N, T] in µV and the realised in-band noise SD per row, chunk by chunk."""
    n = len(plan["intensity_db"])
    t_ms = (np.arange(n_samples) * 1000.0 / fs_hz).astype(np.float32)
    sos = amplifier_sos(fs_hz, phys)
    neuropathy = plan["ear_class"][plan["ear"]] == NEUROPATHY
    signal = np.empty((n, n_samples), np.float32)
    noise_sd_uv = np.empty(n, np.float32)
    window = _response_window(t_ms, phys)
    for start in range(0, n, _CHUNK_ROWS):
        rows = slice(start, min(start + _CHUNK_ROWS, n))
        eeg = eeg_noise_uv(rng, noise["residual_noise_uv"][rows], noise["artifact"][rows],
                           n_samples, fs_hz, sos, phys, noise["eeg_exponent"][rows])
        noise_sd_uv[rows] = eeg[:, window].std(axis=1)
        signal[rows] = _response_uv(t_ms, waves, rows, phys) + eeg + _non_neural_uv(
            rng, t_ms, plan["intensity_db"][rows], neuropathy[rows], alternate_polarity, phys)
    return signal, noise_sd_uv


def _cohort_waves(rng: np.random.Generator, n_patients: int, phys: Physiology) -> tuple[dict, dict]:
    """Plan and noise-free wave parameters (I–VI, IV–V shape, V as marked): the first draws of
    :func:`simulate_cohort`, so that checks can rebuild a cohort's noise-free responses."""
    counts = _allocate(int(n_patients), _patient_class_probabilities(phys))
    patient_class = rng.permutation(np.repeat(np.arange(N_CLASSES), counts))
    plan = _plan_cohort(rng, patient_class, phys)
    ear_patient = np.repeat(np.arange(n_patients), 2)
    ear_phys = _ear_physiology(rng, plan["age_years"][ear_patient], phys)
    waves = _wave_parameters(plan, ear_phys, phys)
    ear_comp = _ear_components(rng, ear_phys["imm"], phys)
    comp = _component_parameters(waves, ear_comp, plan["ear"], waves["growth"], phys)
    waves["components"] = comp
    waves["v_mark_ms"], waves["v_peak_to_trough_uv"] = _mark_v(comp, waves["sn10_uv"], phys)
    return plan, waves


def noise_free_waves(n_patients: int = 2038, seed: int = 42, **physiology) -> tuple[Physiology, dict, dict]:
    """``(phys, plan, waves)`` exactly as :func:`simulate_cohort` with the same arguments draws
    them (rows in the same order): for checks of the waveform model without noise."""
    phys = make_physiology(**physiology)
    return (phys, *_cohort_waves(np.random.default_rng(seed), n_patients, phys))


# ---------------------------------------------------------------------------- public entry point
def simulate_cohort(n_patients: int = 2038, seed: int = 42, *, sampling_rate_hz: float = 20000.0,
                    signal_length: int = 200, alternate_polarity: bool = True, artifact_rate: float = 0.02,
                    half_averages: bool = False, **physiology) -> ABRRecords:
    """Simulate a clinic's ABR cohort: ``n_patients`` patients, ≈25 recordings each.

    ``physiology`` overrides fields of :class:`Physiology` by name (unknown names and bad values
    raise :class:`~abrflow.errors.ConfigError`). The window starts at stimulus onset and has
    ``signal_length`` samples at ``sampling_rate_hz``. Returns validated :class:`ABRRecords` in µV
    with clinician-style labels; true values are in ``extra`` (see the package docstring).

    ``half_averages=True`` adds the two interleaved half-averages a clinician overlays
    (``extra["half_a"]``, ``extra["half_b"]``, ``extra["sweeps"]``), as SmartEP and EARNDB exports
    carry them: average ± d, with d an independent averaged-EEG trace at the recording's residual
    noise, so each half has √2 × its noise and their mean is the recording. d comes from a generator
    of its own, so the cohort itself is the same with or without halves.
    """
    phys = make_physiology(**physiology)
    _validate_run(n_patients, seed, sampling_rate_hz, signal_length, artifact_rate, phys)
    fs_hz, n_samples = float(sampling_rate_hz), int(signal_length)
    rng = np.random.default_rng(seed)
    plan, waves = _cohort_waves(rng, n_patients, phys)
    comp = waves["components"]
    true_lat, true_amp = _marked_truth(waves)
    n = len(plan["ear"])
    noise = _noise_parameters(rng, n, artifact_rate, phys)
    signal, noise_sd_uv = _synthesise(rng, plan, waves, noise, fs_hz, n_samples, alternate_polarity, phys)
    t_ms = np.arange(n_samples) * 1000.0 / fs_hz
    fmp = _fmp(signal, noise["residual_noise_uv"], t_ms, phys)
    marked_lat, marked_amp = _clinician_marks(rng, waves, noise_sd_uv, signal, fs_hz, phys)

    e = plan["ear"]
    patient = e // 2
    true_present = waves["amplitude_uv"][:, 2] > 0
    records = ABRRecords(
        signal=signal, sampling_rate_hz=fs_hz,
        age_years=plan["age_years"][patient], intensity_db=plan["intensity_db"],
        stimulus_rate_hz=plan["stimulus_rate_hz"], fmp=fmp,
        patient_id=np.char.add("P", np.char.zfill((patient + 1).astype(str), 5)),
        ear=np.where(e % 2 == 0, "L", "R"), session_id=np.full(n, "S1"),
        v_present=np.isfinite(marked_lat[:, 2]), v_latency_ms=marked_lat[:, 2], v_amplitude_uv=marked_amp[:, 2],
        wave_latency_ms=marked_lat, wave_amplitude_uv=marked_amp,
        hearing_loss=plan["ear_class"][e], threshold_db=plan["threshold_db"][e],
        signal_unit="uV", threshold_source="simulated", source=f"synthetic:seed={seed},patients={n_patients}",
        extra={
            "true_v_present": true_present,
            "true_v_latency_ms": true_lat[:, 2].astype(np.float32),
            "true_v_amplitude_uv": true_amp[:, 2].astype(np.float32),
            "true_wave_latency_ms": true_lat.astype(np.float32),
            "true_wave_amplitude_uv": true_amp.astype(np.float32),
            "true_component_latency_ms": comp["latency_ms"].astype(np.float32),
            "true_component_amplitude_uv": comp["amplitude_uv"].astype(np.float32),
            "iv_v_shape": comp["shape"],
            "sensation_level_db": waves["sl_db"].astype(np.float32),
            "air_bone_gap_db": plan["air_bone_gap_db"][e].astype(np.float32),
            "sweeps_accepted": noise["sweeps_accepted"].astype(np.int32),
            "sweeps_rejected": noise["sweeps_rejected"].astype(np.int32),
            "sigma_eeg_uv": noise["sigma_eeg_uv"].astype(np.float32),
            "residual_noise_uv": noise["residual_noise_uv"].astype(np.float32),
            "noise_sd_uv": noise_sd_uv,
            "artifact_burst": noise["artifact"],
            "eeg_exponent": noise["eeg_exponent"].astype(np.float32),
            # What was played (abrflow.data.stimulus): clicks at dB nHL; a single polarity is not named.
            "stimulus_type": np.full(n, "click"),
            "stimulus_frequency_khz": np.full(n, np.nan, np.float32),
            "stimulus_polarity": np.full(n, "alternating" if alternate_polarity else ""),
            "level_unit": np.full(n, DEFAULT_LEVEL_UNIT),
        })
    if half_averages:
        records.extra.update(_half_averages(seed, signal, noise, fs_hz, n_samples, phys))
    return records.validate()


def simulator_options(data_cfg) -> dict:
    """``simulate_cohort`` options (all but size and seed) from a ``data`` config section: one place,
    so that training, ``abrflow simulate`` and the benchmarks' tuning cohorts simulate alike."""
    syn = data_cfg.synthetic
    return {"sampling_rate_hz": float(data_cfg.sampling_rate_hz), "signal_length": int(data_cfg.signal_length),
            "alternate_polarity": bool(syn.alternate_polarity), "artifact_rate": float(syn.artifact_rate),
            "eeg_exponent_range": tuple(float(x) for x in syn.get("eeg_exponent_range", (1.0, 1.0)))}


def simulate_cohort_to_dir(path, n_patients: int = 2038, seed: int = 42, *, chunk_patients: int = 2000,
                           **options):
    """Simulate a cohort ``chunk_patients`` patients at a time into a records directory
    (:mod:`abrflow.data.records_dir`): a cohort of any size is written in the memory of one chunk
    (2,000 patients ≈ 51k recordings ≈ 40 MB of signal). Returns the directory's path.

    Chunk i is ``simulate_cohort(size_i, seed_i, **options)`` with its patients renumbered after
    those of the chunks before; seed_i comes from ``numpy.random.SeedSequence(seed)`` (one chunk:
    ``seed`` itself, so the result equals ``simulate_cohort(n_patients, seed)``). Each chunk has the
    class prevalence of the defaults, so chunks of fewer than about 1,000 patients lose the rare
    classes' exact shares.
    """
    if isinstance(chunk_patients, bool) or not isinstance(chunk_patients, (int, np.integer)) or chunk_patients < 1:
        raise _bad("chunk_patients", chunk_patients, "an integer >= 1")
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)) or n_patients < 1:
        raise _bad("n_patients", n_patients, "an integer >= 1")
    sizes = [chunk_patients] * (n_patients // chunk_patients)
    if n_patients % chunk_patients:
        sizes.append(n_patients % chunk_patients)
    if len(sizes) == 1:
        seeds = [int(seed)]
    else:
        seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(int(seed)).spawn(len(sizes))]
    width = max(5, len(str(n_patients)))
    source = f"synthetic:seed={seed},patients={n_patients},chunk_patients={chunk_patients}"
    offset = 0
    with RecordsDirWriter(path, string_widths={"patient_id": width + 1}, source=source) as writer:
        for size, chunk_seed in zip(sizes, seeds):
            rec = simulate_cohort(n_patients=size, seed=chunk_seed, **options)
            local = np.char.lstrip(rec.patient_id, "P").astype(np.int64)
            rec.patient_id = np.char.add("P", np.char.zfill((local + offset).astype(str), width))
            writer.append(rec)
            offset += size
    return writer.path
