"""Output: YAML text, the stable config hash, and the plain-dict round trip (e.g. for checkpoints)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import yaml
from omegaconf import DictConfig, OmegaConf

from .checks import validate_config
from .loading import _merge
from .schema import ABRConfig

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
