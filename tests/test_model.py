"""HierarchicalUNet and its heads: the predecessor's failures (DESIGN.md §9) each get a test here."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import abrflow
from abrflow.config import load_config
from abrflow.models.heads import LOCAL_WINDOW_MS, WAVE_KEYS, HeadOutput, local_readout
from abrflow.models.unet import HierarchicalUNet, ModelOutput, build_model

from .conftest import small_model

HEAD_SHAPES = {"hearing_loss_logits": (5,), "wave_heatmap_logits": (3, 64)}
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: thread barriers cost more than they save


def inputs(batch: int = 4, length: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 1, length, generator=g), torch.randint(0, 1000, (batch,), generator=g),
            torch.randn(batch, 4, generator=g))


@pytest.fixture(scope="module")
def model() -> HierarchicalUNet:
    return small_model().eval()


# ----------------------------------------------------------------- shapes, any length


@pytest.mark.parametrize("length,levels", [(200, 3), (173, 3), (64, 3), (173, 4), (50, 1)])
def test_output_is_full_length_for_any_signal_length(length, levels):
    mults = ",".join(["1"] + ["2"] * (levels - 1))
    m = small_model(f"model.architecture.n_levels={levels}", f"model.architecture.channel_mults=[{mults}]",
                    length=length).eval()
    x, t, s = inputs(3, length)
    out = m(x, t, s)
    assert isinstance(out, ModelOutput) and out.sample.shape == (3, 1, length)
    assert torch.isfinite(out.sample).all()


def test_every_head_has_its_documented_shape(model):
    x, t, s = inputs(5)
    heads = model(x, t, s).heads
    assert isinstance(heads, HeadOutput)
    for name, value in heads.to_dict().items():
        assert value.shape == (5, *HEAD_SHAPES.get(name, ())), name
        assert torch.isfinite(value).all(), name
    half = model(x, t, s)[2:]  # the t = 0 half of a doubled batch
    assert half.sample.shape == (3, 1, 64) and half.heads.hearing_loss_logits.shape == (3, 5)


def test_bad_input_shapes_are_clear_errors(model):
    x, t, s = inputs()
    with pytest.raises(ValueError, match=r"\[batch, 1, length\]"):
        model(x[:, 0], t, s)
    with pytest.raises(ValueError, match=r"\[batch, 4\]"):
        model(x, t, s[:, :3])
    with pytest.raises(ValueError, match="hearing_loss"):
        model(x, t, s, hearing_loss=torch.tensor([0, 1, 5, 2]))


# ----------------------------------------------------------------- the network sees its inputs


def test_output_changes_when_only_the_timestep_changes(model):
    x, _, s = inputs()
    with torch.no_grad():
        a = model(x, torch.full((4,), 10), s).sample
        b = model(x, torch.full((4,), 900), s).sample
        c = model(x, torch.full((4,), 10.5), s).sample  # float timesteps are accepted too
    assert (a - b).abs().max() > 1e-3
    assert (a - c).abs().max() > 0


@pytest.mark.parametrize("column", range(4))
def test_output_changes_when_only_one_static_input_changes(model, column):
    x, t, s = inputs()
    s2 = s.clone()
    s2[:, column] += 1.0
    with torch.no_grad():
        assert (model(x, t, s).sample - model(x, t, s2).sample).abs().max() > 1e-4


def test_unknown_static_inputs_use_the_missing_embedding_and_never_nan(model):
    x, t, s = inputs()
    s_nan = s.clone()
    s_nan[0, 0] = s_nan[1, 3] = float("nan")
    s_nan[2] = float("nan")
    with torch.no_grad():
        out = model(x, t, s_nan)
        ref = model(x, t, s)
    for name, value in [("sample", out.sample), *out.heads.to_dict().items()]:
        assert torch.isfinite(value).all(), name
    assert (out.sample[0] - ref.sample[0]).abs().max() > 1e-4  # unknown ≠ the known value
    torch.testing.assert_close(out.sample[3], ref.sample[3])  # rows without NaN are untouched


def test_training_masks_static_inputs_with_the_configured_rate():
    m = small_model("model.architecture.dropout=0", "model.conditioning.cond_drop_prob=0",
                    "model.conditioning.static_missing_prob=1.0")
    x, t, s = inputs()
    with torch.no_grad():
        masked = m.train()(x, t, s).sample
        all_unknown = m.eval()(x, t, torch.full_like(s, float("nan"))).sample
        known = m(x, t, s).sample
    torch.testing.assert_close(masked, all_unknown)  # p = 1: every input replaced by its missing vector
    assert (masked - known).abs().max() > 1e-4
    m0 = small_model("model.architecture.dropout=0", "model.conditioning.cond_drop_prob=0",
                     "model.conditioning.static_missing_prob=0.0")
    with torch.no_grad():
        torch.testing.assert_close(m0.train()(x, t, s).sample, m0.eval()(x, t, s).sample)


def test_class_and_threshold_conditions_and_their_null_tokens(model):
    x, t, s = inputs()
    with torch.no_grad():
        none = model(x, t, s).sample
        null = model(x, t, s, hearing_loss=torch.full((4,), -1), threshold_db=torch.full((4,), float("nan")))
        cls0 = model(x, t, s, hearing_loss=torch.zeros(4, dtype=torch.long)).sample
        cls2 = model(x, t, s, hearing_loss=torch.full((4,), 2)).sample
        thr20 = model(x, t, s, threshold_db=torch.full((4,), 20.0)).sample
        thr60 = model(x, t, s, threshold_db=torch.full((4,), 60.0)).sample
        no_resp = model(x, t, s, threshold_db=torch.full((4,), float("inf"))).sample
    torch.testing.assert_close(none, null.sample)  # None, −1 and NaN are the same null token
    for a, b in [(cls0, cls2), (cls0, none), (thr20, thr60), (thr20, none), (no_resp, none), (no_resp, thr60)]:
        assert (a - b).abs().max() > 1e-4


def test_condition_dropout_for_classifier_free_guidance():
    m = small_model("model.architecture.dropout=0", "model.conditioning.static_missing_prob=0",
                    "model.conditioning.cond_drop_prob=1.0")
    x, t, s = inputs()
    with torch.no_grad():
        dropped = m.train()(x, t, s, hearing_loss=torch.full((4,), 2), threshold_db=torch.full((4,), 30.0))
        null = m.eval()(x, t, s)
    torch.testing.assert_close(dropped.sample, null.sample)


def test_conditions_can_be_switched_off():
    full = small_model()
    off = small_model("model.conditioning.use_class_condition=false",
                      "model.conditioning.use_threshold_condition=false")
    assert full.class_embed is not None and off.class_embed is None and off.threshold_embed is None
    assert sum(p.numel() for p in off.parameters()) < sum(p.numel() for p in full.parameters())
    x, t, s = inputs()
    with torch.no_grad():  # a condition it cannot use is ignored, not an error
        torch.testing.assert_close(off.eval()(x, t, s, hearing_loss=torch.full((4,), 2)).sample,
                                   off(x, t, s).sample)


# ----------------------------------------------------------------- every parameter learns


def _head_losses(model: HierarchicalUNet, heads: HeadOutput, batch: int) -> torch.Tensor:
    from abrflow.training.losses import heatmap_divergence

    g = torch.Generator().manual_seed(1)
    nrm = model.heads.normalise
    lat = torch.tensor([1.5, 3.5, 5.5]) + torch.rand(batch, 3, generator=g)
    amp, thr = torch.rand(batch, generator=g), 80 * torch.rand(batch)

    def nll(name, pred, log_std_name, log_std, target):
        return F.gaussian_nll_loss(nrm(name, pred), nrm(name, target), (2 * nrm(log_std_name, log_std)).exp())

    waves = sum(F.binary_cross_entropy_with_logits(heads.wave(w, "present_logit"), torch.ones(batch))
                + nll(f"{w}_amplitude_uv", heads.wave(w, "amplitude_uv"), f"{w}_amplitude_log_std",
                      heads.wave(w, "amplitude_log_std"), amp) for w in WAVE_KEYS)
    return (waves + heatmap_divergence(heads.wave_heatmap_logits, lat, 1000.0 / 20000.0).mean()
            + F.cross_entropy(heads.hearing_loss_logits, torch.arange(batch) % 5)
            + nll("threshold_db", heads.threshold_db, "threshold_log_std", heads.threshold_log_std, thr)
            + F.binary_cross_entropy_with_logits(heads.threshold_no_response_logit, torch.zeros(batch)))


def test_gradients_reach_every_parameter_in_one_training_step():
    from abrflow.diffusion import ABRDiffusion

    m = small_model("model.conditioning.cond_drop_prob=0", length=64).train()  # no random drops: every row counts
    diffusion = ABRDiffusion()
    batch = 8
    x0, _, s = inputs(batch)
    s[0, 0] = s[1, 1] = s[2, 2] = s[3, 3] = float("nan")  # every missing embedding in use
    t = torch.randint(0, 1000, (batch,))
    noise = torch.randn_like(x0)
    hearing_loss = torch.tensor([-1, 0, 1, 2, 3, 4, -1, 0])  # null token and every class
    threshold = torch.tensor([float("nan"), float("inf"), 10.0, 40.0, 80.0, float("nan"), 20.0, 0.0])
    # doubled batch as training runs it: rows [batch:] are the recordings at t = 0, no conditions
    out = m(torch.cat([diffusion.add_noise(x0, noise, t), x0]), torch.cat([t, torch.zeros_like(t)]),
            torch.cat([s, s]), torch.cat([hearing_loss, torch.full_like(hearing_loss, -1)]),
            torch.cat([threshold, torch.full_like(threshold, float("nan"))]))
    mse = (out.sample[:batch] - diffusion.target(x0, noise, t)).square().mean(dim=(1, 2))
    loss = (diffusion.loss_weight(t) * mse).mean() + _head_losses(m, out.heads[batch:], batch)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    opt.zero_grad()
    loss.backward()
    dead = [n for n, p in m.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, f"no gradient reaches: {dead}"
    before = [p.detach().clone() for p in m.parameters()]
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, m.parameters()))


# ----------------------------------------------------------------- heads in physical units


def test_latency_is_read_at_the_heatmaps_mode_not_pulled_by_a_second_hump():
    """A IV–V complex or wave VI as a second hump must not drag V's latency toward it (issue 19)."""
    dt = 0.05
    grid = torch.arange(200) * dt
    hump = lambda centre, height: height - 0.5 * ((grid - centre) / 0.1) ** 2  # noqa: E731
    logits = torch.logaddexp(hump(6.2, 3.0), hump(7.0, 2.5))[None, None, :]  # V at 6.2, a later hump
    amp_map = (grid * 0.1)[None, None, None, :].expand(1, 1, 2, 200)  # amplitude map = 0.1 · t
    latency, log_std, read = local_readout(logits, amp_map, dt, round(LOCAL_WINDOW_MS / dt))
    assert abs(float(latency) - 6.2) < 0.01  # a whole-trace soft-argmax would give ≈ 6.5
    assert float(torch.exp(log_std)) < 0.15
    assert abs(float(read[0, 0, 0]) - 0.62) < 0.01  # the amplitude map is read at the latency
    whole = float((torch.softmax(logits[0, 0], -1) * grid).sum())
    assert whole > 6.4


def test_the_heads_waves_are_the_records_wave_columns():
    from abrflow.data.schema import WAVE_KEYS as RECORD_WAVES

    assert WAVE_KEYS == RECORD_WAVES


def test_latencies_lie_in_the_window_and_a_flat_heatmap_reads_its_first_neighbourhood(model):
    m = small_model().eval()
    x, t, s = inputs(3)
    with torch.no_grad():
        heads = m(x, t, s).heads
        assert ((heads.v_latency_ms >= 0) & (heads.v_latency_ms <= 63 * 0.05)).all()
        conv = m.heads.wave_maps[-1]
        conv.weight.zero_()
        conv.bias.zero_()  # every heatmap flat
        flat = m(x, t, s).heads
        # a flat heatmap reads the neighbourhood of its first sample with the neighbourhood's spread
        half = round(LOCAL_WINDOW_MS / 0.05)
    torch.testing.assert_close(flat.v_latency_ms, torch.full((3,), half / 2 * 0.05))
    assert (flat.v_latency_log_std > math.log(0.05)).all()


def test_target_stats_map_between_normalised_and_physical_units():
    m = small_model().eval()
    x, t, s = inputs()
    with torch.no_grad():
        before = m(x, t, s).heads
        m.set_target_stats(v_amplitude_uv=(0.5, 0.1), i_amplitude_uv=(0.2, 0.05), threshold_db=(40.0, 20.0))
        after = m(x, t, s).heads
    assert (after.v_amplitude_uv - before.v_amplitude_uv).mean() > 0.1
    assert (after.threshold_db - before.threshold_db).mean() > 5
    assert torch.equal(m.state_dict()["heads.threshold_db_stats"], torch.tensor([40.0, 20.0]))
    assert torch.equal(m.state_dict()["heads.i_amplitude_uv_stats"], torch.tensor([0.2, 0.05]))
    heads = m.heads
    for name, value in [("v_amplitude_uv", torch.tensor([-0.2, 0.4])), ("iii_amplitude_uv", torch.tensor([0.1])),
                        ("threshold_db", torch.tensor([-10.0, 95.0])), ("v_amplitude_log_std", torch.tensor([-1.0]))]:
        torch.testing.assert_close(heads.denormalise(name, heads.normalise(name, value)), value)
    torch.testing.assert_close(heads.normalise("threshold_db", torch.tensor([40.0])), torch.tensor([0.0]))
    torch.testing.assert_close(heads.normalise("v_amplitude_log_std", torch.tensor([0.0])),
                               -torch.log(torch.tensor([0.1])))
    with pytest.raises(KeyError, match="v_amplitude"):
        heads.normalise("latency", torch.tensor([1.0]))
    with pytest.raises(ValueError, match="std > 0"):
        m.set_target_stats(threshold_db=(30.0, 0.0))
    with pytest.raises(KeyError, match="v_latency_ms"):  # a heatmap has no latency statistics to set
        m.set_target_stats(v_latency_ms=(6.5, 1.2))


# ----------------------------------------------------------------- config drives the network

VARIATIONS = [
    ("model.architecture.base_channels=16", "eval"),
    ("model.architecture.n_levels=2;model.architecture.channel_mults=[1,2]", "eval"),
    ("model.architecture.channel_mults=[1,2,4]", "eval"),
    ("model.architecture.n_res_blocks=2", "eval"),
    ("model.architecture.dropout=0.4", "train"),
    ("model.architecture.time_embed_dim=64", "eval"),
    ("model.architecture.encoder.n_s4_layers=2", "eval"),
    ("model.architecture.encoder.d_state=16", "eval"),
    ("model.architecture.encoder.s4_init=inv", "eval"),
    ("model.architecture.encoder.bidirectional=false", "eval"),
    ("model.architecture.decoder.n_transformer_layers=2", "eval"),
    ("model.architecture.decoder.n_heads=4", "eval"),
    ("model.conditioning.static_missing_prob=0.6", "train"),
    ("model.conditioning.use_class_condition=false", "eval"),
    ("model.conditioning.use_threshold_condition=false", "eval"),
    ("model.conditioning.cond_drop_prob=0.6", "train"),
]


def _run(m: HierarchicalUNet, mode: str) -> torch.Tensor:
    x, t, s = inputs(8)
    m.train(mode == "train")
    torch.manual_seed(123)  # same random draws (dropout, masking) in both networks
    with torch.no_grad():
        return m(x, t, s, hearing_loss=torch.arange(8) % 5, threshold_db=torch.full((8,), 30.0)).sample


@pytest.mark.parametrize("override,mode", VARIATIONS, ids=[v[0].split(";")[0] for v in VARIATIONS])
def test_every_architecture_key_changes_the_network(override, mode):
    base, changed = small_model(), small_model(*override.split(";"))
    n_base, n_changed = (sum(p.numel() for p in m.parameters()) for m in (base, changed))
    structure_differs = n_base != n_changed or repr(base) != repr(changed)
    assert structure_differs or mode == "train", f"{override} changed neither parameters nor modules"
    assert not torch.allclose(_run(base, mode), _run(changed, mode)), f"{override} did not change the output"


def test_build_model_reads_the_config():
    cfg = load_config(environ={})
    m = build_model(cfg)
    a = cfg.model.architecture
    assert m.signal_length == cfg.data.signal_length and m.n_levels == a.n_levels
    assert m.in_conv.out_channels == a.base_channels * a.channel_mults[0]
    assert len(m.encoder) == len(m.decoder) == a.n_levels
    kinds = [type(b).__name__ for level in m.encoder for b in level.blocks]
    assert kinds.count("S4Block") == a.n_levels * a.encoder.n_s4_layers
    kinds = [type(b).__name__ for level in m.decoder for b in level.blocks]
    assert kinds.count("TransformerBlock") == a.n_levels * a.decoder.n_transformer_layers
    assert m.n_levels >= 3, "the default keeps the hierarchy"


def test_models_and_diffusion_import_nothing_downstream():
    """DESIGN.md §1: arrows point one way; the network and the diffusion process know no data or training."""
    package = Path(abrflow.__file__).parent
    forbidden = ("training", "evaluation", "inference", "data")
    for path in [*sorted((package / "models").glob("*.py")), package / "diffusion.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                assert not any(part in forbidden for part in parts[:2]), f"{path.name} imports {name}"
