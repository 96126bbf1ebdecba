"""Validation: allowed choices and numeric ranges, cross-field checks, nearest valid key for a typo."""

from __future__ import annotations

import difflib
import math
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError
from .schema import ABRConfig

# --------------------------------------------------------------------------- choices and ranges

CHOICES: dict[str, tuple[str, ...]] = {
    "data.normalization": ("global_robust", "per_sample", "none"),
    "model.architecture.encoder.s4_init": ("lin", "inv"),
    "diffusion.beta_schedule": ("squaredcos_cap_v2", "linear", "scaled_linear"),
    "diffusion.prediction_type": ("v_prediction", "epsilon", "sample"),
    "diffusion.sampler": ("ddpm", "ddim", "dpm_solver"),
    "training.optimizer.type": ("adamw", "adam", "sgd"),
    "training.scheduler.type": ("cosine_annealing_warm_restarts", "one_cycle", "reduce_on_plateau", "abr", "constant"),
    "training.early_stopping.mode": ("min", "max"),
    "training.nonfinite_loss": ("stop", "skip"),
    "loss.classification_loss": ("weighted_ce", "ce", "focal"),
    "loss.regression_loss": ("gaussian_nll", "huber"),
    "hardware.device": ("auto", "cpu", "cuda", "gpu", "mps"),
    "logging.log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}

# key -> (low, high, low_inclusive); None = unbounded
RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "data.signal_length": (16, 100_000, True),
    "data.input_highpass_hz": (0, None, False),
    "data.sampling_rate_hz": (0, None, False),
    "data.static_dim": (4, 4, True),
    "data.n_classes": (5, 5, True),
    "data.splits.train_ratio": (0, 1, False),
    "data.splits.val_ratio": (0, 1, False),
    "data.splits.test_ratio": (0, 1, False),
    "data.dataloader.batch_size": (1, None, True),
    "data.dataloader.num_workers": (0, None, True),
    "data.synthetic.n_patients": (1, None, True),
    "data.synthetic.artifact_rate": (0, 1, True),
    "data.table.max_sweeps_rejected": (0, None, True),
    "model.architecture.base_channels": (4, None, True),
    "model.architecture.n_levels": (1, 8, True),
    "model.architecture.n_res_blocks": (1, None, True),
    "model.architecture.dropout": (0, 1, True),
    "model.architecture.time_embed_dim": (8, None, True),
    "model.architecture.encoder.n_s4_layers": (0, None, True),
    "model.architecture.encoder.d_state": (2, None, True),
    "model.architecture.decoder.n_transformer_layers": (0, None, True),
    "model.architecture.decoder.n_heads": (1, None, True),
    "model.conditioning.static_missing_prob": (0, 1, True),
    "model.conditioning.cond_drop_prob": (0, 1, True),
    "diffusion.num_train_timesteps": (2, None, True),
    "diffusion.sampling_steps": (1, None, True),
    "diffusion.guidance_scale": (0, None, True),
    "diffusion.min_snr_gamma": (0, None, False),
    "training.epochs": (1, None, True),
    "training.optimizer.learning_rate": (0, 1, False),
    "training.optimizer.weight_decay": (0, None, True),
    "training.scheduler.T_0": (1, None, True),
    "training.scheduler.T_mult": (1, None, True),
    "training.scheduler.eta_min": (0, None, True),
    "training.scheduler.warmup_epochs": (0, None, True),
    "training.scheduler.pct_start": (0, 1, False),
    "training.scheduler.factor": (0, 1, False),
    "training.scheduler.patience": (0, None, True),
    "training.scheduler.min_lr": (0, None, True),
    "training.gradient_clip": (0, None, False),
    "training.accumulation_steps": (1, None, True),
    "training.early_stopping.patience": (1, None, True),
    "training.ema.decay": (0, 1, False),
    "training.checkpoint_every_n_epochs": (1, None, True),
    "loss.focal_gamma": (0, None, True),
    "loss.weights.diffusion": (0, None, True),
    "loss.weights.peak_exist": (0, None, True),
    "loss.weights.peak_latency": (0, None, True),
    "loss.weights.peak_amplitude": (0, None, True),
    "loss.weights.classification": (0, None, True),
    "loss.weights.threshold": (0, None, True),
    "training.early_stopping.min_delta": (0, None, True),
    "training.augmentation.probability": (0, 1, True),
    "training.augmentation.time_shift_ms": (0, None, True),
    "training.augmentation.time_stretch_max": (1, None, True),
    "training.augmentation.amplitude_scale_max": (1, None, True),
    "training.augmentation.noise_sd_max": (0, None, True),
    "training.augmentation.noise_exponent_max": (0, 4, True),
    "training.augmentation.drift_sd_max": (0, None, True),
    "project.seed": (0, 2**32 - 1, True),  # the seeds NumPy and Lightning accept
    "data.splits.seed": (0, 2**32 - 1, True),
    "data.synthetic.seed": (0, 2**32 - 1, True),
    "hardware.num_nodes": (1, None, True),
    "logging.log_every_n_steps": (1, None, True),
}

# --------------------------------------------------------------------------- valid keys


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            full = f"{prefix}.{k}" if prefix else str(k)
            keys.append(full)
            keys.extend(_all_keys(node._get_node(k), full))
    return keys


_VALID_KEYS = _all_keys(OmegaConf.structured(ABRConfig))


def _suggest(key: str) -> str:
    near = difflib.get_close_matches(key, _VALID_KEYS, n=1, cutoff=0.6)
    if not near:
        leaf = key.rsplit(".", 1)[-1]
        near = [k for k in _VALID_KEYS if k.rsplit(".", 1)[-1] in difflib.get_close_matches(
            leaf, [v.rsplit(".", 1)[-1] for v in _VALID_KEYS], n=1, cutoff=0.75)]
    return f"; did you mean {near[0]}?" if near else ""


# --------------------------------------------------------------------------- validation


def validate_config(cfg: DictConfig) -> None:
    """Range and consistency checks that types alone cannot express."""
    try:  # an interpolation such as ${foo} that does not resolve is named here, not as an OmegaConf error
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise ConfigError(f"{key}: cannot resolve its value ({str(exc).splitlines()[0]})") from None
    for key, choices in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in choices:
            raise ConfigError(f"{key} = {value!r} is not one of {list(choices)}")
    for key, (lo, hi, lo_incl) in RANGES.items():
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} = {value!r} must be a number")
        if not math.isfinite(value):  # NaN or ±inf: no option of abrflow means "infinitely much"
            raise ConfigError(f"{key} = {value!r} must be a finite number")
        if lo is not None and (value < lo if lo_incl else value <= lo):
            raise ConfigError(f"{key} = {value!r} is out of range: must be {'≥' if lo_incl else '>'} {lo}")
        if hi is not None and value > hi:
            raise ConfigError(f"{key} = {value!r} is out of range: must be ≤ {hi}")
    s = cfg.data.splits
    total = s.train_ratio + s.val_ratio + s.test_ratio
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(
            f"data.splits ratios must sum to 1, got {s.train_ratio} + {s.val_ratio} + {s.test_ratio} = {total:g}")
    exponents = list(cfg.data.synthetic.eeg_exponent_range)
    if len(exponents) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                                       for x in exponents) or not 0 <= exponents[0] <= exponents[1] <= 4:
        raise ConfigError(f"data.synthetic.eeg_exponent_range = {exponents} must be [low, high] with "
                          "0 ≤ low ≤ high ≤ 4 (spectral exponents: 0 white, 1 pink, 2 brown)")
    arch = cfg.model.architecture
    if len(arch.channel_mults) != arch.n_levels:
        raise ConfigError(f"model.architecture.channel_mults has {len(arch.channel_mults)} entries; "
                          f"must have one per level (n_levels = {arch.n_levels})")
    if any((not isinstance(m, int)) or m < 1 for m in arch.channel_mults):
        raise ConfigError(f"model.architecture.channel_mults = {list(arch.channel_mults)} must be integers ≥ 1")
    widths = [arch.base_channels * m for m in arch.channel_mults]
    for w in widths:
        if w % arch.decoder.n_heads:
            raise ConfigError(f"model.architecture.decoder.n_heads = {arch.decoder.n_heads} must divide every "
                              f"level width {widths}")
        if w % min(8, w):
            raise ConfigError(f"level width {w} must be divisible by the GroupNorm group count 8")
    if cfg.data.signal_length < 2 ** (arch.n_levels - 1):
        raise ConfigError(f"data.signal_length = {cfg.data.signal_length} is too short for "
                          f"model.architecture.n_levels = {arch.n_levels}")
    betas = list(cfg.training.optimizer.betas)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"training.optimizer.betas = {betas} must be two numbers in [0, 1)")
    if cfg.data.source != "synthetic" and not cfg.data.dataset_path:
        raise ConfigError(f"data.source = {cfg.data.source!r} needs data.dataset_path")
    if cfg.data.source not in ("synthetic", "file"):
        raise ConfigError(f"data.source = {cfg.data.source!r} is not one of ['synthetic', 'file']")
    if cfg.hardware.precision not in (None, "32-true", "bf16-mixed", "16-mixed", "64-true"):
        raise ConfigError(f"hardware.precision = {cfg.hardware.precision!r} is not one of "
                          "[null, '32-true', 'bf16-mixed', '16-mixed', '64-true']")
    for key in ("training.limit_train_batches", "training.limit_val_batches"):
        value = OmegaConf.select(cfg, key)  # Lightning: a fraction in (0, 1] or a whole number of batches
        if value is not None and not (math.isfinite(value) and value > 0 and (value <= 1 or float(value).is_integer())):
            raise ConfigError(f"{key} = {value!r} must be a fraction in (0, 1] or a whole number of batches ≥ 1")
    _validate_augmentation(cfg)
    hp = cfg.data.input_highpass_hz
    if hp is not None and hp >= cfg.data.sampling_rate_hz / 2:
        raise ConfigError(f"data.input_highpass_hz = {hp!r} must lie below Nyquist ({cfg.data.sampling_rate_hz / 2:g} Hz)")
    devices = cfg.hardware.devices
    if not (devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1)
            or (isinstance(devices, (list, ListConfig)) and len(devices) > 0
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices))):
        raise ConfigError(f"hardware.devices = {devices!r} must be 'auto', a count ≥ 1 or a list of ids")


def _validate_augmentation(cfg: DictConfig) -> None:
    """Both band corners are (low, high) pairs of positive frequencies below Nyquist, high-pass under low-pass."""
    aug, nyquist = cfg.training.augmentation, cfg.data.sampling_rate_hz / 2
    for name in ("highpass_hz", "lowpass_hz"):
        pair = list(aug[name])
        if (len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                      for v in pair) or not 0 < pair[0] <= pair[1] < nyquist):
            raise ConfigError(f"training.augmentation.{name} = {pair} must be [low, high] with "
                              f"0 < low ≤ high < Nyquist ({nyquist:g} Hz)")
    if aug.highpass_hz[1] >= aug.lowpass_hz[0]:
        raise ConfigError(f"training.augmentation.highpass_hz = {list(aug.highpass_hz)} must lie below "
                          f"training.augmentation.lowpass_hz = {list(aug.lowpass_hz)}")
