"""Structured configuration: dataclass schema, YAML + environment + CLI dotlist, validation, hash.

Precedence (lowest first): schema defaults < YAML file < environment < command-line dotlist.
Code receives the typed section it needs (``cfg.data``, ``cfg.model``…), never raw YAML.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from .errors import ConfigError

# --------------------------------------------------------------------------- schema


@dataclass
class ProjectConfig:
    name: str = "ABR_HierarchicalUNet_Diffusion"
    version: str = "1.0.0"
    seed: int = 42
    output_root: str = "."


@dataclass
class SplitsConfig:
    train_ratio: float = 0.7
    val_ratio: float = 0.15
    test_ratio: float = 0.15
    seed: int = 42


@dataclass
class DataloaderConfig:
    batch_size: int = 32
    num_workers: int = 0
    pin_memory: bool = False
    balanced_sampler: bool = False
    drop_last: bool = True


@dataclass
class SyntheticConfig:
    n_patients: int = 2038
    seed: int = 42
    alternate_polarity: bool = True
    artifact_rate: float = 0.02
    eeg_exponent_range: list[float] = field(default_factory=lambda: [1.0, 1.0])


@dataclass
class TableConfig:
    polarity: Optional[str] = "Alternate"
    max_sweeps_rejected: Optional[int] = 100


@dataclass
class DataConfig:
    source: str = "synthetic"
    dataset_path: Optional[str] = None
    signal_length: int = 200
    sampling_rate_hz: float = 20000.0
    static_dim: int = 4
    n_classes: int = 5
    normalization: str = "global_robust"
    input_highpass_hz: Optional[float] = 30.0
    splits: SplitsConfig = field(default_factory=SplitsConfig)
    dataloader: DataloaderConfig = field(default_factory=DataloaderConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    table: TableConfig = field(default_factory=TableConfig)


@dataclass
class EncoderConfig:
    n_s4_layers: int = 1
    d_state: int = 32
    s4_init: str = "lin"
    bidirectional: bool = True


@dataclass
class DecoderConfig:
    n_transformer_layers: int = 1
    n_heads: int = 1


@dataclass
class ArchitectureConfig:
    # Defaults sized to train ≥ 136 samples/s on a 2-core CPU (benchmarks/model_speed.py);
    # configs/large.yaml is the GPU-sized network.
    base_channels: int = 16
    n_levels: int = 3
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 2])
    n_res_blocks: int = 1
    dropout: float = 0.1
    time_embed_dim: int = 128
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)


@dataclass
class ConditioningConfig:
    static_missing_prob: float = 0.1
    use_class_condition: bool = True
    use_threshold_condition: bool = True
    cond_drop_prob: float = 0.1


@dataclass
class ModelConfig:
    architecture: ArchitectureConfig = field(default_factory=ArchitectureConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)


@dataclass
class DiffusionConfig:
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    sampler: str = "dpm_solver"
    sampling_steps: int = 20
    guidance_scale: float = 1.0
    min_snr_gamma: Optional[float] = 5.0


@dataclass
class OptimizerConfig:
    type: str = "adamw"
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class SchedulerConfig:
    type: str = "cosine_annealing_warm_restarts"
    T_0: int = 50
    T_mult: int = 1
    eta_min: float = 1e-6
    warmup_epochs: int = 10
    max_lr: Optional[float] = None
    pct_start: float = 0.3
    factor: float = 0.5
    patience: int = 10
    min_lr: float = 1e-6
    restart_patience: Optional[int] = None


@dataclass
class EarlyStoppingConfig:
    enabled: bool = True
    patience: int = 20
    monitor: str = "val/loss"
    mode: str = "min"
    min_delta: float = 0.0


@dataclass
class EMAConfig:
    enabled: bool = True
    decay: float = 0.999


@dataclass
class AugmentationConfig:
    probability: float = 0.3
    lowpass_hz: list[float] = field(default_factory=lambda: [1200.0, 4000.0])
    highpass_hz: list[float] = field(default_factory=lambda: [20.0, 200.0])
    time_shift_ms: float = 0.3
    time_stretch_max: float = 1.25
    amplitude_scale_max: float = 1.6
    noise_sd_max: float = 0.5
    noise_exponent_max: float = 2.0
    drift_sd_max: float = 1.0


@dataclass
class TrainingConfig:
    epochs: int = 200
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    gradient_clip: Optional[float] = 1.0
    accumulation_steps: int = 1
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    checkpoint_every_n_epochs: int = 10
    limit_train_batches: Optional[float] = None
    limit_val_batches: Optional[float] = None
    nonfinite_loss: str = "stop"
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)


@dataclass
class LossWeightsConfig:
    diffusion: float = 1.0
    peak_exist: float = 0.5
    peak_latency: float = 1.0
    peak_amplitude: float = 0.5
    classification: float = 1.0
    threshold: float = 0.8


@dataclass
class LossConfig:
    weights: LossWeightsConfig = field(default_factory=LossWeightsConfig)
    classification_loss: str = "weighted_ce"
    focal_gamma: float = 2.0
    regression_loss: str = "gaussian_nll"
    uncertainty_weighting: bool = False


@dataclass
class HardwareConfig:
    device: str = "auto"
    mixed_precision: bool = True
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    compile: bool = False
    compile_backend: str = "inductor"
    precision: Optional[str] = None


@dataclass
class LoggingConfig:
    use_tensorboard: bool = True
    use_wandb: bool = False
    wandb_project: str = "abrflow"
    wandb_offline: bool = True
    log_every_n_steps: int = 10
    log_level: str = "INFO"
    progress_bar: bool = True


@dataclass
class ABRConfig:
    project: ProjectConfig = field(default_factory=ProjectConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


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

ENV_SHORTCUTS = {
    "ABR_BATCH_SIZE": "data.dataloader.batch_size",
    "ABR_LEARNING_RATE": "training.optimizer.learning_rate",
    "ABR_EPOCHS": "training.epochs",
}

# --------------------------------------------------------------------------- loading


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


def _merge(base: DictConfig, other: Any, origin: str, key: str | None = None) -> DictConfig:
    """``base`` updated by ``other``; ``key``: the dotted key being set, named when OmegaConf names none."""
    try:
        return OmegaConf.merge(base, other)
    except TypeError as exc:  # a mapping given where a list belongs, or the reverse
        raise ConfigError(f"{origin}: invalid value for '{key or '?'}': {exc}") from None
    except ConfigKeyError as exc:
        key = exc.full_key or str(exc.key)
        raise ConfigError(f"{origin}: unknown config key '{key}'{_suggest(key)}") from None
    except ValidationError as exc:
        named = exc.full_key if exc.full_key and exc.full_key != "None" else key
        raise ConfigError(f"{origin}: invalid value for '{named}': {str(exc.msg).splitlines()[0]}") from None
    except OmegaConfBaseException as exc:
        named = f"'{key}': " if key and key not in origin else ""
        raise ConfigError(f"{origin}: {named}{str(exc).splitlines()[0]}") from None


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, Any, str]]:
    out = []
    for name, key in ENV_SHORTCUTS.items():
        if name in environ:
            out.append((key, _parse_scalar(environ[name]), name))
    lower_map = {k.lower(): k for k in _VALID_KEYS}
    for name, value in sorted(environ.items()):
        if name.startswith("ABR__"):
            dotted = ".".join(name[len("ABR__"):].split("__")).lower()
            key = lower_map.get(dotted, dotted)
            out.append((key, _parse_scalar(value), name))
    return out


def _nested(key: str, value: Any) -> dict:
    out: dict = {}
    cur = out
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = (),
                environ: Mapping[str, str] | None = None) -> DictConfig:
    """Resolve the configuration: defaults < YAML ``path`` < environment < ``overrides`` dotlist.

    Raises ConfigError naming the key (and the nearest valid key) on anything invalid.
    """
    cfg = OmegaConf.structured(ABRConfig)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read the file ({exc.strerror or exc})") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections, got {type(raw).__name__}")
        cfg = _merge(cfg, raw, str(p))
    environ = os.environ if environ is None else environ
    for key, value, name in _env_overrides(environ):
        cfg = _merge(cfg, _nested(key, value), f"environment variable {name}")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        key, value = item.split("=", 1)
        key = key.strip().lstrip("+")
        cfg = _merge(cfg, _nested(key, _parse_scalar(value)), f"override '{item}'", key)
    validate_config(cfg)
    return cfg


def set_value(cfg: DictConfig, key: str, value: Any, origin: str = "argument") -> DictConfig:
    """Set one dotted key with the same checks as an override, then re-validate."""
    new = _merge(cfg, _nested(key, value), origin, key)
    validate_config(new)
    return new


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


# --------------------------------------------------------------------------- hash and output


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True, sort_keys=False)


def config_hash(cfg: DictConfig) -> str:
    """Stable 12-hex-digit hash of the resolved config: same config, same hash; any change, new hash."""
    container = OmegaConf.to_container(cfg, resolve=True)
    canonical = yaml.safe_dump(container, sort_keys=True, default_flow_style=True, width=10**9)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def from_dict(data: Mapping) -> DictConfig:
    """Rebuild a validated config from a plain dict (e.g. stored in a checkpoint)."""
    cfg = _merge(OmegaConf.structured(ABRConfig), dict(data), "stored config")
    validate_config(cfg)
    return cfg
