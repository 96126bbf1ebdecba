"""The configuration schema: one dataclass per section, with its defaults (the lowest precedence)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

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
