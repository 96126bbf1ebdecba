"""Configuration: precedence, validation with named keys, hash stability, the documented default."""

from __future__ import annotations

import pytest

from abrflow.config import config_hash, from_dict, load_config, set_value, to_dict
from abrflow.errors import ConfigError

from .conftest import REPO

DEFAULT_YAML = REPO / "configs" / "config.yaml"


def test_documented_default_equals_schema_defaults():
    assert to_dict(load_config(DEFAULT_YAML, environ={})) == to_dict(load_config(environ={}))


def test_every_yaml_config_in_repo_loads():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_config(path, environ={})


def test_precedence_defaults_yaml_env_cli(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("training:\n  epochs: 7\n  optimizer:\n    learning_rate: 0.002\ndata:\n  dataloader:\n    batch_size: 8\n")
    cfg = load_config(f, environ={})
    assert (cfg.training.epochs, cfg.training.optimizer.learning_rate, cfg.data.dataloader.batch_size) == (7, 0.002, 8)
    env = {"ABR_EPOCHS": "9", "ABR_BATCH_SIZE": "16", "ABR_LEARNING_RATE": "5e-5"}
    cfg = load_config(f, environ=env)
    assert (cfg.training.epochs, cfg.training.optimizer.learning_rate, cfg.data.dataloader.batch_size) == (9, 5e-5, 16)
    cfg = load_config(f, ["training.epochs=3"], environ=env)
    assert cfg.training.epochs == 3
    assert cfg.data.dataloader.batch_size == 16


def test_general_env_form_is_case_insensitive_and_typed():
    cfg = load_config(environ={"ABR__TRAINING__SCHEDULER__T_0": "7", "ABR__HARDWARE__DEVICE": "cpu"})
    assert cfg.training.scheduler.T_0 == 7
    assert cfg.hardware.device == "cpu"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("training.epochz=3", "did you mean training.epochs?"),
        ("data.dataloader.batchsize=3", "did you mean data.dataloader.batch_size?"),
        ("modle.architecture.n_levels=3", "modle"),
    ],
)
def test_unknown_key_names_key_and_suggests(override, expected):
    with pytest.raises(ConfigError, match="unknown config key") as err:
        load_config(overrides=[override], environ={})
    assert expected in str(err.value)


def test_unknown_key_in_yaml_names_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("training:\n  learnig_rate: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={})
    assert str(f) in str(err.value) and "training.learnig_rate" in str(err.value)


def test_unknown_env_key_names_variable():
    with pytest.raises(ConfigError, match="ABR__TRAINING__EPOCHZ"):
        load_config(environ={"ABR__TRAINING__EPOCHZ": "3"})


@pytest.mark.parametrize(
    "override, key",
    [
        ("training.optimizer.learning_rate=-1", "training.optimizer.learning_rate"),
        ("data.signal_length=8", "data.signal_length"),
        ("data.splits.train_ratio=0.5", "sum to 1"),
        ("training.epochs=abc", "training.epochs"),
        ("training.epochs=0", "training.epochs"),
        ("model.architecture.dropout=1.5", "model.architecture.dropout"),
        ("diffusion.sampler=euler", "diffusion.sampler"),
        ("training.scheduler.type=step", "training.scheduler.type"),
        ("model.architecture.n_levels=4", "channel_mults"),
        ("data.dataloader.batch_size=0", "data.dataloader.batch_size"),
        ("hardware.devices=-2", "hardware.devices"),
        ("data.source=file", "dataset_path"),
        ("data.synthetic.eeg_exponent_range=[2.0,1.0]", "data.synthetic.eeg_exponent_range"),
        ("data.synthetic.eeg_exponent_range=[1.0,5.0]", "data.synthetic.eeg_exponent_range"),
        ("data.synthetic.eeg_exponent_range=[1.0]", "data.synthetic.eeg_exponent_range"),
    ],
)
def test_bad_values_are_named(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override], environ={})
    assert key in str(err.value)


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(overrides=["training.epochs"], environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad, environ={})


def test_hash_stable_and_sensitive():
    a = config_hash(load_config(environ={}))
    assert a == config_hash(load_config(environ={}))
    assert a == config_hash(load_config(DEFAULT_YAML, environ={}))
    assert a != config_hash(load_config(overrides=["training.epochs=3"], environ={}))
    assert a != config_hash(load_config(overrides=["model.architecture.dropout=0.2"], environ={}))
    assert len(a) == 12


def test_round_trip_through_dict_and_set_value():
    cfg = load_config(overrides=["training.epochs=5"], environ={})
    again = from_dict(to_dict(cfg))
    assert config_hash(again) == config_hash(cfg)
    changed = set_value(cfg, "training.epochs", 9)
    assert changed.training.epochs == 9 and cfg.training.epochs == 5
    with pytest.raises(ConfigError):
        set_value(cfg, "training.epochs", -1)
