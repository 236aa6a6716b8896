"""Config: paper defaults, YAML < flags precedence, validation errors naming the key, hash."""

from __future__ import annotations

import datetime as dt

import pytest

from clstm_ppo.cli import main
from clstm_ppo.config import Config, build_config, config_hash, load_config
from clstm_ppo.errors import ConfigError


def test_defaults_are_the_papers() -> None:
    config = Config()
    assert config.env.window == 30
    assert (config.agent.lstm_hidden, config.agent.feature_dim) == (128, 128)
    assert config.agent.policy_hidden == 512
    ppo = config.ppo
    assert (ppo.learning_rate, ppo.gamma, ppo.gae_lambda, ppo.clip_coef) == (3e-4, 0.99, 0.95, 0.2)
    assert (ppo.vf_coef, ppo.ent_coef, ppo.max_grad_norm, ppo.rollout_length) == (
        0.5,
        0.01,
        0.5,
        128,
    )
    assert config.env.reward_scaling == 1e-4
    assert config.env.initial_capital == 1_000_000
    assert config.env.turbulence_percentile == 90


def test_every_field_has_a_docstring() -> None:
    def walk(model: type) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            annotation = field.annotation
            # CostModel is a dataclass; tests/test_costs.py checks its field docstrings.
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation)

    walk(Config)


def test_yaml_then_flags_override(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("ppo:\n  learning_rate: 1.0e-3\n  gamma: 0.95\nenv:\n  window: 10\n")
    config = load_config(path, {"ppo.gamma": 0.9})
    assert config.ppo.learning_rate == 1e-3  # from the file
    assert config.ppo.gamma == 0.9  # the flag beats the file
    assert config.env.window == 10
    assert config.ppo.clip_coef == 0.2  # untouched default


def test_partial_split_override_keeps_the_other_date() -> None:
    config = build_config(overrides={"data.splits.test.end": "2017-06-30"})
    assert config.data.splits.test.start == dt.date(2016, 1, 1)
    assert config.data.splits.test.end == dt.date(2017, 6, 30)


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        ({"ppo.learning_rate": -0.1}, "ppo.learning_rate", "greater than 0"),
        ({"env.window": "thirty"}, "env.window", "valid integer"),
        ({"ppo.lr": 0.1}, "ppo.lr", "unknown key"),
        ({"data.splits.validation.start": "2012-06-01"}, "data.splits", "overlap"),
        ({"data.splits.test.end": "2015-01-01"}, "data.splits.test", "before start"),
        ({"data.source": "yahoo"}, "data.source", "bundled"),
        ({"costs.comission_per_contract": 1.0}, "costs.comission_per_contract", "unknown key"),
        ({"costs.sec_fee_rate": "cheap"}, "costs.sec_fee_rate", "valid number"),
    ],
)
def test_bad_values_name_the_key(overrides, key, fragment) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(overrides=overrides)
    message = str(caught.value)
    assert f"key '{key}'" in message
    assert fragment in message
    assert "\n" not in message


def test_negative_fee_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"costs\.commission_per_contract must be >= 0"):
        build_config(overrides={"costs.commission_per_contract": -0.65})


def test_unknown_key_in_yaml_names_file_and_key(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("env:\n  windw: 30\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: key 'env\.windw': unknown key"):
        load_config(path)


def test_invalid_yaml_is_one_line(tmp_path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("env: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: line .* invalid YAML"):
        load_config(path)


def test_hash_is_stable_and_sensitive() -> None:
    assert config_hash(Config()) == config_hash(load_config())
    assert config_hash(Config()) != config_hash(build_config(overrides={"ppo.gamma": 0.98}))
    # Same effective config reached two ways hashes the same.
    assert config_hash(build_config({"ppo": {"gamma": 0.99}})) == config_hash(Config())


def test_cli_bad_config_exits_2_with_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "neg.yaml"
    path.write_text("ppo:\n  learning_rate: -3.0e-4\n")
    assert main(["data", "show", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "ppo.learning_rate" in err and "neg.yaml" in err
