"""Configuration fed unknown keys, wrong types, out-of-range values and damaged files (property-based).

Every case either resolves to a config that passes validation, with each value of its schema type
and inside its documented range, or raises ``ConfigError`` naming the key (or the file); the CLI
turns that into one line and exit 2. Anything else is an escape (tests/fuzz_support.py).
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, ListConfig, OmegaConf

from abrflow.config import _VALID_KEYS, CHOICES, RANGES, load_config, set_value, validate_config
from abrflow.errors import ConfigError

from .conftest import REPO
from .fuzz_support import fail, mutations, outcome

BASE = load_config(environ={})
LEAVES = sorted(k for k in _VALID_KEYS if not isinstance(OmegaConf.select(BASE, k), DictConfig))
SECTIONS = sorted(k for k in _VALID_KEYS if isinstance(OmegaConf.select(BASE, k), DictConfig))
SLOW = max(8, settings.default.max_examples // 3)  # cases that resolve a whole config from a file (~0.3 s each)

ANY_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=12),
              st.sampled_from(["${foo}", "${oc.env:HOME}", "${training.epochs}", "${", "???", "auto", "inf", "-1",
                               "1e400", "nan", "null", "[1, 2]", "{a: 1}"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="abrflow-fuzz-config-") as folder:
        yield Path(folder)


def _check_valid(target: str, cfg) -> None:
    """A config that was accepted: resolvable, validated, every ranged number finite and inside its range."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
        validate_config(cfg)
    except ConfigError as exc:
        fail(target, f"accepted a config that does not validate: {exc}")
    for key, (lo, hi, lo_incl) in RANGES.items():
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        if not math.isfinite(value) or (lo is not None and (value < lo if lo_incl else value <= lo)) or \
                (hi is not None and value > hi):
            fail(target, f"accepted {key} = {value!r} outside its range")
    for key, choices in CHOICES.items():
        if OmegaConf.select(cfg, key) not in choices:
            fail(target, f"accepted {key} = {OmegaConf.select(cfg, key)!r}")


def _set(target: str, key: str, value: object) -> None:
    result, error = outcome(target, lambda: set_value(BASE, key, value, "fuzz"), allowed=(ConfigError,))
    if error is None:
        _check_valid(target, result)
    elif key.split(".")[0] not in str(error) and "interpolation" not in str(error).lower():
        fail(target, f"error does not name the key {key!r}: {error}")


@given(key=st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="=\n"), min_size=1, max_size=30),
    st.builds(lambda section, leaf: f"{section}.{leaf}", st.sampled_from(SECTIONS),
              st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)),
    st.builds(lambda key, tail: key[:-1] + tail, st.sampled_from(LEAVES), st.sampled_from(["s", "_", "X", "1"]))))
def test_unknown_keys_are_named(key):
    if key.strip().lstrip("+") in _VALID_KEYS or not key.strip():
        return
    result, error = outcome("config_unknown_keys", lambda: load_config(overrides=[f"{key}=1"], environ={}),
                            allowed=(ConfigError,))
    if error is None:
        fail("config_unknown_keys", f"unknown key {key!r} accepted")


@given(key=st.sampled_from(LEAVES), value=ANY_VALUE)
def test_wrong_types_are_named_or_converted(key, value):
    _set("config_wrong_types", key, value)


RANGED = sorted(RANGES) + sorted(CHOICES) + ["training.limit_train_batches", "training.limit_val_batches",
                                             "hardware.devices", "training.optimizer.betas",
                                             "model.architecture.channel_mults"]
NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.floats(), st.sampled_from([0, -1, 1e400, -0.0, 2**64, 1e-320]),
                    st.lists(st.floats(-2, 2), max_size=4), st.lists(st.integers(-3, 10), max_size=4),
                    st.text(max_size=8))


@given(key=st.sampled_from(RANGED), value=NUMBERS)
def test_out_of_range_values_are_named(key, value):
    _set("config_ranges", key, value)


@settings(max_examples=SLOW)
@given(document=st.dictionaries(st.sampled_from(SECTIONS + LEAVES + ["bogus", "training.epochz"]), ANY_VALUE,
                                max_size=4))
def test_yaml_documents(workdir, document):
    nested: dict = {}
    for dotted, value in document.items():
        node = nested
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[parts[-1]] = value
    path = workdir / "fuzz.yaml"
    path.write_text(yaml.safe_dump(nested, allow_unicode=True), encoding="utf-8")
    result, error = outcome("config_yaml", lambda: load_config(path, environ={}), allowed=(ConfigError,))
    named = [str(path), *document, *(k.rsplit(".", 1)[-1] for k in document)]
    if error is None:
        _check_valid("config_yaml", result)
    elif not any(name in str(error) for name in named):  # the file, or the key whose value is wrong
        fail("config_yaml", f"error names neither the file nor a key: {error}")


@settings(max_examples=SLOW)
@given(data=st.data())
def test_damaged_config_files(workdir, data):
    path = workdir / "damaged.yaml"
    path.write_bytes(data.draw(mutations((REPO / "configs" / "config.yaml").read_bytes(), sep=b":", header_lines=200)))
    result, error = outcome("config_file_bytes", lambda: load_config(path, environ={}), allowed=(ConfigError,))
    if error is None:
        _check_valid("config_file_bytes", result)
    elif str(path) not in str(error) and not any(key in str(error) for key in _VALID_KEYS):
        fail("config_file_bytes", f"error names neither the file nor a key: {error}")  # a bad value names its key


@settings(max_examples=SLOW)
@given(key=st.sampled_from(LEAVES + ["training.epochz", "bogus.key"]), value=st.one_of(
    st.sampled_from(["-1", "nan", "inf", "abc", "${foo}", "[1,", "{}", "1e400", "", "0"]), st.text(max_size=6)))
def test_cli_config_errors_are_one_line_exit_2(key, value):
    from abrflow.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code, _ = outcome("config_cli", lambda: main(["config", "show", f"{key}={value}"]), allowed=())
    err = stderr.getvalue().strip()
    if code == 2:
        if len(err.splitlines()) != 1 or not err.startswith("abrflow: error:"):
            fail("config_cli", f"not one line: {err!r}")
    elif code != 0:
        fail("config_cli", f"exit {code}: {err!r}")


def test_ranged_values_are_finite_and_loss_weights_seeds_limits_devices_checked():
    """The escapes the fuzzing found, pinned: each is now a named error."""
    for key, value in [("data.sampling_rate_hz", float("inf")), ("training.gradient_clip", float("inf")),
                       ("loss.weights.diffusion", float("nan")), ("loss.weights.threshold", -1.0),
                       ("project.seed", -1), ("training.limit_train_batches", -1.0),
                       ("training.limit_train_batches", 2.5), ("hardware.devices", ["x"]),
                       ("training.epochs", "${foo}"), ("project.name", "${missing.key}")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            set_value(BASE, key, value)
    assert set_value(BASE, "training.limit_train_batches", 4).training.limit_train_batches == 4
    assert set_value(BASE, "hardware.devices", [0, 1]).hardware.devices == ListConfig([0, 1])
