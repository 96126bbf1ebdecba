"""The whole simulated brainstem response: waves I–VI, the IV–V complex shapes, V as it is marked."""

from __future__ import annotations

import numpy as np
import pytest

from abrflow.data.synthetic import (
    CONDUCTIVE,
    IV_V_SHAPES,
    NEUROPATHY,
    NORMAL,
    TOTAL,
    Physiology,
    complex_shape,
    noise_free_waves,
    simulate_cohort,
)
from abrflow.errors import ConfigError

I, II, III, IV, V, VI = range(6)  # noqa: E741


@pytest.fixture(scope="module")
def clean():
    """Noise-free waves of 300 patients (≈7,500 recordings), drawn as simulate_cohort draws them."""
    return noise_free_waves(300, seed=21)


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(300, seed=21, class_prevalence=(0.6, 0.05, 0.15, 0.05, 0.15))


def test_every_iv_v_shape_occurs_in_its_share_and_is_what_the_trace_shows(clean):
    phys, plan, waves = clean
    comp = waves["components"]
    ear_shape = {}
    for ear, shape in zip(plan["ear"], comp["shape"]):
        if shape >= 0:
            ear_shape[ear] = shape
    shares = np.bincount(list(ear_shape.values()), minlength=len(IV_V_SHAPES)) / len(ear_shape)
    np.testing.assert_allclose(shares, Physiology().iv_v_shape_weights, atol=0.06)
    rows = np.flatnonzero(comp["shape"] >= 0)
    seen = complex_shape(comp, waves["sn10_uv"], phys, rows)
    for code, name in enumerate(IV_V_SHAPES):
        drawn = comp["shape"][rows] == code
        assert drawn.sum() > 300, name
        assert np.mean(seen[drawn] == code) > 0.75, name  # the drawn shape is the trace's shape


def test_vi_follows_v_as_a_second_positivity(clean):
    phys, plan, waves = clean
    comp = waves["components"]
    lat = comp["latency_ms"]
    has_vi = np.isfinite(lat[:, VI])
    assert has_vi.mean() > 0.3
    gap = lat[has_vi, VI] - lat[has_vi, V]
    assert gap.min() >= 0.95 and np.median(gap) < 1.8
    # A local maximum of the noise-free response between V' and VI + 0.2 ms.
    rows = np.flatnonzero(has_vi & (comp["amplitude_uv"][:, VI] > 0.1))[:500]
    offsets = np.linspace(0.3, 2.2, 96, dtype=np.float32)
    grid = lat[rows, V, None].astype(np.float32) + offsets
    from abrflow.data.synthetic.components import _components_uv
    y = _components_uv(grid, comp, waves["sn10_uv"], rows, phys)
    s = np.diff(y, axis=1)
    peak = (s[:, :-1] >= 0) & (s[:, 1:] < 0)
    assert peak.any(axis=1).mean() > 0.9


def test_marked_v_follows_the_convention_for_each_shape(clean):
    phys, plan, waves = clean
    comp = waves["components"]
    lat, mark = comp["latency_ms"], waves["v_mark_ms"]
    shape = comp["shape"]
    err = mark - lat[:, V]
    # IV a shoulder on V, or two peaks: V is the later peak, at the V component, never at IV.
    for code in (IV_V_SHAPES.index("iv_shoulder"), IV_V_SHAPES.index("separate")):
        rows = shape == code
        assert np.all(np.abs(err[rows]) < 0.15)
        assert np.all(mark[rows] - lat[rows, IV] > 0.3)
    # V a shoulder on IV: marked on the shoulder, after IV's peak, before the negative slope.
    rows = shape == IV_V_SHAPES.index("v_shoulder")
    assert np.median(np.abs(err[rows])) < 0.15 and np.all(mark[rows] > lat[rows, IV])
    # Fused: the one peak of the complex, between IV and V.
    rows = shape == IV_V_SHAPES.index("fused")
    assert np.all((mark[rows] >= lat[rows, IV] - 0.03) & (mark[rows] <= lat[rows, V] + 0.03))


def test_marked_labels_are_the_convention_point_with_jitter(cohort):
    marked = cohort.v_present
    err = cohort.v_latency_ms[marked] - cohort.extra["true_v_latency_ms"][marked]
    assert np.abs(err).max() <= 0.05 + 1e-4
    shape = cohort.extra["iv_v_shape"]
    comp = cohort.extra["true_component_latency_ms"]
    rows = marked & (shape == IV_V_SHAPES.index("iv_shoulder"))
    assert np.all(np.abs(cohort.v_latency_ms[rows] - comp[rows, V]) < 0.2)
    assert np.all(cohort.v_latency_ms[rows] - comp[rows, IV] > 0.3)


def test_adult_interpeak_intervals_are_within_the_cited_norms(clean):
    phys, plan, waves = clean
    lat = waves["components"]["latency_ms"]
    age = plan["age_years"][plan["ear"] // 2]
    at = (plan["ear_class"][plan["ear"]] == NORMAL) & (plan["intensity_db"] == 80) & np.isfinite(lat[:, I])
    adult, newborn = at & (age >= 18), at & (age < 0.1)
    assert adult.sum() > 20 and newborn.sum() > 50
    i_v, iii_v = lat[:, V] - lat[:, I], lat[:, V] - lat[:, III]
    assert abs(i_v[adult].mean() - 3.95) < 2 * 0.23  # Picton, via BrainWave.jl
    assert abs(iii_v[adult].mean() - 2.07) < 2 * 0.19
    assert abs(i_v[newborn].mean() - 4.97) < 2 * 0.43  # term newborns [NEO]
    assert i_v[newborn].mean() > i_v[adult].mean() + 0.5
    order = lat[at][:, [I, II, III, IV, V, VI]]
    present = np.isfinite(order)
    for a, b in [(I, II), (II, III), (III, IV), (IV, V), (V, VI)]:
        both = present[:, a] & present[:, b]
        assert np.all(order[both, b] > order[both, a]), (a, b)


def test_conductive_loss_shifts_all_waves_equally():
    """Adults only, so that maturation does not confound the interpeak intervals."""
    cohort = simulate_cohort(80, seed=5, class_prevalence=(0.5, 0.0, 0.0, 0.0, 0.5),
                             age_group_weights=(0.0, 0.0, 0.0, 0.0, 1.0))
    comp = cohort.extra["true_component_latency_ms"]
    gap = cohort.extra["air_bone_gap_db"]
    mature = cohort.age_years >= 18
    cd = (cohort.hearing_loss == CONDUCTIVE) & mature & np.isfinite(comp[:, I])
    nm = (cohort.hearing_loss == NORMAL) & mature & np.isfinite(comp[:, I])
    assert cd.sum() >= 10 and np.all(gap[cd] >= 20)
    i_v = comp[:, V] - comp[:, I]
    assert abs(np.median(i_v[cd]) - np.median(i_v[nm])) < 0.1
    iii_v = comp[:, V] - comp[:, III]
    assert abs(np.median(iii_v[cd]) - np.median(iii_v[nm])) < 0.1
    # ...while every wave is later at the same level (the L–I curve moves right by the gap).
    at80 = cohort.intensity_db == 80
    assert np.median(comp[cd & at80, I]) > np.median(comp[nm & at80, I]) + 0.2
    # Marked V is still the convention point on the same complex: within jitter of the truth.
    marked = cohort.v_present & (cohort.hearing_loss == CONDUCTIVE)
    assert marked.sum() > 20
    assert np.all(np.abs(cohort.v_latency_ms[marked] - cohort.extra["true_v_latency_ms"][marked]) <= 0.05 + 1e-4)


def test_no_neural_components_in_neuropathy_or_total(cohort):
    none = np.isin(cohort.hearing_loss, [NEUROPATHY, TOTAL])
    assert none.sum() > 50
    assert not np.isfinite(cohort.extra["true_component_latency_ms"][none]).any()
    assert np.all(cohort.extra["true_component_amplitude_uv"][none] == 0)
    assert np.all(cohort.extra["iv_v_shape"][none] == -1)


def test_extra_keys_shapes_and_determinism():
    a, b = simulate_cohort(15, seed=4), simulate_cohort(15, seed=4)
    n = len(a)
    assert a.extra["true_component_latency_ms"].shape == (n, 6)
    assert a.extra["true_component_latency_ms"].dtype == np.float32
    assert a.extra["true_component_amplitude_uv"].shape == (n, 6)
    assert a.extra["iv_v_shape"].dtype == np.int8
    for key in ("true_component_latency_ms", "true_component_amplitude_uv", "iv_v_shape"):
        np.testing.assert_array_equal(a.extra[key], b.extra[key])
    np.testing.assert_array_equal(a.signal, b.signal)


@pytest.mark.parametrize("name, value", [
    ("iv_v_shape_weights", (0.5, 0.3, 0.3, 0.2)),
    ("iv_v_shape_weights", (0.5, 0.5)),
    ("wave_iv_ratio_fused_range", (1.0, 0.5)),
    ("newborn_i_iii_fraction_of_i_v", 1.2),
    ("v_maturation_slow_weeks", 0.0),
    ("wave_vi_presence_probability", 1.5),
])
def test_bad_overrides_name_the_field(name, value):
    with pytest.raises(ConfigError, match=name):
        simulate_cohort(3, seed=0, **{name: value})
