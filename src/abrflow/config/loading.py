"""Loading: defaults < YAML file < environment < command-line dotlist, merged with errors that name the key."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from ..errors import ConfigError
from .checks import _VALID_KEYS, _suggest, validate_config
from .schema import ABRConfig

ENV_SHORTCUTS = {
    "ABR_BATCH_SIZE": "data.dataloader.batch_size",
    "ABR_LEARNING_RATE": "training.optimizer.learning_rate",
    "ABR_EPOCHS": "training.epochs",
}

# --------------------------------------------------------------------------- loading


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
