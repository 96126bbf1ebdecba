"""Structured configuration: dataclass schema, YAML + environment + CLI dotlist, validation, hash.

Precedence (lowest first): schema defaults < YAML file < environment < command-line dotlist.
Code receives the typed section it needs (``cfg.data``, ``cfg.model``…), never raw YAML.

Modules, each importing only those before it: ``schema`` (the dataclasses), ``checks`` (CHOICES,
RANGES, ``validate_config``, the nearest-key suggestion), ``loading`` (``load_config``, ``set_value``,
environment shortcuts), ``serialise`` (``to_yaml``, ``config_hash``, ``to_dict``, ``from_dict``).
"""

from __future__ import annotations

from ..errors import ConfigError
from .checks import _VALID_KEYS as _VALID_KEYS  # private, but imported by the tests
from .checks import CHOICES, RANGES, validate_config
from .loading import ENV_SHORTCUTS, load_config, set_value
from .schema import (
    ABRConfig,
    ArchitectureConfig,
    AugmentationConfig,
    ConditioningConfig,
    DataConfig,
    DataloaderConfig,
    DecoderConfig,
    DiffusionConfig,
    EarlyStoppingConfig,
    EMAConfig,
    EncoderConfig,
    HardwareConfig,
    LoggingConfig,
    LossConfig,
    LossWeightsConfig,
    ModelConfig,
    OptimizerConfig,
    ProjectConfig,
    SchedulerConfig,
    SplitsConfig,
    SyntheticConfig,
    TableConfig,
    TrainingConfig,
)
from .serialise import config_hash, from_dict, to_dict, to_yaml

__all__ = [
    "ABRConfig", "ArchitectureConfig", "AugmentationConfig", "CHOICES", "ConditioningConfig", "ConfigError",
    "DataConfig", "DataloaderConfig", "DecoderConfig", "DiffusionConfig", "EMAConfig", "ENV_SHORTCUTS",
    "EarlyStoppingConfig", "EncoderConfig", "HardwareConfig", "LoggingConfig", "LossConfig",
    "LossWeightsConfig", "ModelConfig", "OptimizerConfig", "ProjectConfig", "RANGES", "SchedulerConfig",
    "SplitsConfig", "SyntheticConfig", "TableConfig", "TrainingConfig", "config_hash", "from_dict",
    "load_config", "set_value", "to_dict", "to_yaml", "validate_config",
]
