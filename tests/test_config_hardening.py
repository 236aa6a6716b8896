"""Config hardening: hostile or broken YAML (alias bombs, duplicate keys, non-UTF-8, folders,
FIFOs), bounded sizes, errors that name the flag the user typed, run names that stay inside the
runs folder, and the ``train.env`` / ``--data`` / ``--env`` settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from clstm_ppo.cli import build_parser, main, train_config_from_args
from clstm_ppo.config import (
    MAX_CONFIG_BYTES,
    Config,
    build_config,
    config_to_dict,
    load_config,
    parse_override,
)
from clstm_ppo.errors import ConfigError

# 9 levels, each listing the previous anchor 9 times: 9**9 (387 million) values once expanded.
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{level}: &{level} [{', '.join(['*' + previous] * 9)}]\n"
    for previous, level in zip("abcdefgh", "bcdefghi", strict=True)
)


def _one_line(capsys, argv: list[str]) -> str:
    """Run the CLI in-process; it must fail with exit 2 and one line on stderr."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err and "\n" not in err and "Traceback" not in err, err
    return err.removeprefix("clstm-ppo: error: ")


def _cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # A separate process with a timeout: what this guards against is a hang, which would
    # otherwise hang the test run instead of failing it.
    return subprocess.run(
        [sys.executable, "-m", "clstm_ppo", *argv],
        capture_output=True, text=True, timeout=120, cwd=cwd, check=False,
    )  # fmt: skip


def _train_config(*argv: str) -> Config:
    return train_config_from_args(build_parser().parse_args(["train", *argv]))


# ------------------------------------------------------------------ 1. alias bombs, sizes


def test_alias_bomb_is_refused_quickly(tmp_path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    result = _cli(["data", "show", "--config", str(path)], tmp_path)
    assert result.returncode == 2, result.stderr
    err = result.stderr.strip()
    assert "\n" not in err and str(path) in err
    assert "more than 100,000 values once aliases are expanded" in err


def test_alias_bomb_in_a_set_value_is_refused() -> None:
    bomb = "[" + ",".join(["&a0 [1,1,1,1,1,1,1,1,1,1]"] + ["*a0"] * 9) + "]"
    for level in range(1, 6):  # 10**6 values from a value of a few hundred characters
        bomb = f"[&a{level} {bomb}," + ",".join([f"*a{level}"] * 9) + "]"
    with pytest.raises(ConfigError, match=r"^--set train\.run_name: more than 100,000 values"):
        parse_override(f"train.run_name={bomb}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &a [*a]\n", "line 1: alias refers to itself"),
        ("train: " + "[" * 100 + "]" * 100 + "\n", "line 1: nested deeper than 64 levels"),
    ],
    ids=["recursive-alias", "too-deep"],
)
def test_self_referring_or_deep_yaml_is_one_line(tmp_path, text, expected) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: {expected}"


def test_ordinary_anchors_aliases_and_merges_still_work(tmp_path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "env:\n  initial_capital: &capital 250000\n"
        "portfolio:\n  initial_capital: *capital\n"
        "data:\n  splits:\n"
        "    train: &range {start: 2000-01-01, end: 2005-12-31}\n"
        # A key that overrides a merged one ('<<') is not a duplicate.
        "    validation: {<<: *range, start: 2006-01-01, end: 2007-12-31}\n"
    )
    config = load_config(path)
    assert config.env.initial_capital == config.portfolio.initial_capital == 250_000
    assert str(config.data.splits.validation.start) == "2006-01-01"


def test_oversized_config_file_is_refused(tmp_path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=r"huge\.yaml: .*1,048,576-byte \(1 MiB\) limit"):
        load_config(path)


# ------------------------------------------------------------------ 2. duplicate keys


def test_duplicate_top_level_key_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("train:\n  seed: 1\nppo:\n  gamma: 0.9\ntrain:\n  episodes: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: line 5: duplicate key 'train'"


def test_duplicate_nested_key_in_a_file_and_in_set(tmp_path, capsys) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("ppo:\n  gamma: 0.9\n  gamma: 0.95\n")
    err = _one_line(capsys, ["data", "show", "--config", str(path)])
    assert err == f"{path}: line 3: duplicate key 'gamma'"
    with pytest.raises(ConfigError, match=r"^--set ppo: duplicate key 'gamma'$"):
        parse_override("ppo={gamma: 0.9, gamma: 0.95}")


def test_bad_date_in_yaml_is_one_line(tmp_path) -> None:
    path = tmp_path / "date.yaml"
    path.write_text("data:\n  splits:\n    test:\n      end: 2018-13-45\n")
    with pytest.raises(ConfigError, match=r"date\.yaml: line 4: invalid YAML \(bad date"):
        load_config(path)


# ------------------------------------------------------------------ 3. unreadable files


def test_non_utf8_config_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("train:\n  run_name: café\n".encode("latin-1"))
    err = _one_line(capsys, ["data", "show", "--config", str(path)])
    assert err == f"{path}: line 2: not UTF-8 text (byte 0xe9)"


def test_config_that_is_a_folder_is_one_line(tmp_path, capsys) -> None:
    err = _one_line(capsys, ["data", "show", "--config", str(tmp_path)])
    assert err == f"{tmp_path}: is a folder, expected a YAML config file"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_config_that_is_a_fifo_is_refused_without_blocking(tmp_path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    result = _cli(["data", "show", "--config", str(fifo)], tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"clstm-ppo: error: {fifo}: not a regular file (FIFO, device or socket), expected YAML"
    )


# ------------------------------------------------------------------ 4. bounded sizes


def _int_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += _int_fields(annotation, f"{prefix}{name}.")
        elif annotation in (int, int | None):
            found.append((f"{prefix}{name}", field))
    return found


def test_every_integer_setting_has_an_upper_bound() -> None:
    # An unbounded size or count reaches the allocator (or a loop) before any check.
    unbounded = [
        key
        for key, field in _int_fields(Config)
        if not any(hasattr(rule, "le") or hasattr(rule, "lt") for rule in field.metadata)
    ]
    assert unbounded == []


def test_defaults_are_within_the_bounds() -> None:
    # pydantic does not validate defaults: round-trip them through validation.
    assert Config.model_validate(config_to_dict(Config())) == Config()


@pytest.mark.parametrize(
    ("key", "value", "limit"),
    [
        ("agent.lstm_hidden", 100_000_000, "4096"),
        ("agent.policy_hidden", 5000, "4096"),
        ("agent.feature_dim", 4097, "4096"),
        ("agent.mlp_hidden", 10**9, "4096"),
        ("train.num_envs", 65_537, "65536"),
        ("ppo.rollout_length", 10**9, "100000"),
        ("ppo.num_minibatches", 10**9, "65536"),
        ("ppo.update_epochs", 10**6, "1000"),
        ("env.episode_length", 10**9, "100000"),
        ("train.episodes", 10**12, "1000000000"),
        ("train.validation_episodes", 10**9, "100000"),
        ("train.seed", 2**32, "4294967295"),
    ],
)
def test_sizes_have_upper_limits(key, value, limit) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(overrides={key: value})
    assert f"key '{key}'" in str(caught.value)
    assert f"less than or equal to {limit}" in str(caught.value)


def test_rollout_buffer_size_is_bounded() -> None:
    with pytest.raises(ConfigError, match=r"key 'ppo\.rollout_length'.*more than 16,777,216"):
        build_config(overrides={"train.num_envs": 65_536, "ppo.rollout_length": 100_000})


@pytest.mark.parametrize("key", ["env.initial_capital", "ppo.vf_coef", "portfolio.hmax"])
def test_infinite_numbers_are_refused(key) -> None:
    with pytest.raises(ConfigError, match=rf"key '{key}'"):
        build_config(overrides={key: float("inf")})


def test_infinite_fee_caps_are_still_allowed() -> None:
    assert build_config(overrides={"costs.occ_max_per_trade": float("inf")}) is not None


# ------------------------------------------------------------------ 5. the flag is blamed


@pytest.fixture
def fast_yaml(tmp_path) -> Path:
    path = tmp_path / "fast.yaml"
    path.write_text("train:\n  episodes: 10\n")
    return path


@pytest.mark.parametrize(
    ("argv", "flag", "message"),
    [
        (["--episodes", "0"], "--episodes", "greater than or equal to 1 (got 0)"),
        (["--num-envs", "0"], "--num-envs", "greater than or equal to 1 (got 0)"),
        (["--seed", "-1"], "--seed", "greater than or equal to 0 (got -1)"),
        (["--num_gpus", "-1"], "--num_gpus", "greater than or equal to 0 (got -1)"),
        (["--episode-length", "1"], "--episode-length", "greater than or equal to 2 (got 1)"),
        (["--run-name", "a/b"], "--run-name", "single folder name"),
        (["--set", "train.episodes=0"], "--set train.episodes", "greater than or equal to 1"),
        (["--set", "ppo.lr=0.1"], "--set ppo.lr", "unknown key"),
        (["--set", "train.episodes=0", "--episodes", "-2"], "--episodes", "(got -2)"),
        (["--data", "yahoo:SPY"], "--data", "unknown source 'yahoo'"),
    ],
)
def test_errors_in_flags_name_the_flag_not_the_file(fast_yaml, argv, flag, message) -> None:
    with pytest.raises(ConfigError) as caught:
        _train_config("--config", str(fast_yaml), *argv)
    error = str(caught.value)
    assert error.startswith(f"{flag}: "), error
    assert message in error and "fast.yaml" not in error


def test_a_bad_value_in_the_file_still_names_file_and_key(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  episodes: 0\n")
    with pytest.raises(ConfigError) as caught:
        _train_config("--config", str(path), "--num-envs", "4", "--set", "ppo.gamma=0.9")
    assert str(caught.value).startswith(f"{path}: key 'train.episodes': ")
    # A flag that replaces the bad value wins, as the precedence says.
    assert _train_config("--config", str(path), "--episodes", "3").train.episodes == 3


def test_section_checks_blame_the_flag_that_set_a_key_inside() -> None:
    with pytest.raises(ConfigError) as caught:
        _train_config("--set", "data.splits.validation.start=2012-06-01")
    assert str(caught.value).startswith("--set data.splits.validation.start: key 'data.splits'")
    with pytest.raises(ConfigError, match=r"^--set costs\.commission_per_contract: "):
        _train_config("--set", "costs.commission_per_contract=-1")


def test_cli_names_the_flag(fast_yaml, capsys) -> None:
    err = _one_line(capsys, ["train", "--config", str(fast_yaml), "--episodes", "0"])
    assert err.startswith("--episodes: ") and "fast.yaml" not in err


# ------------------------------------------------------------------ 6. run names


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b", "a\\b", ".", "..", "C:x", "a\0b"])
def test_run_names_outside_the_runs_folder_are_refused(name) -> None:
    with pytest.raises(ConfigError, match=r"^config: key 'train\.run_name': must "):
        build_config(overrides={"train.run_name": name})


def test_run_name_is_checked_in_yaml_and_flags(tmp_path, capsys) -> None:
    path = tmp_path / "escape.yaml"
    path.write_text("train:\n  run_name: ../../x\n")
    with pytest.raises(ConfigError, match=r"escape\.yaml: key 'train\.run_name': must"):
        load_config(path)
    err = _one_line(capsys, ["train", "--run-name", "/tmp/x"])
    assert err.startswith("--run-name: must be a single folder name") and "'/tmp/x'" in err


def test_plain_run_names_are_kept() -> None:
    for name in ("clstm_ppo", "exp-1 2024-01-01T10:00", "seed.3", "..x"):
        assert build_config(overrides={"train.run_name": name}).train.run_name == name


def test_evaluate_refuses_an_escaping_run_name(tmp_path, capsys) -> None:
    err = _one_line(capsys, ["evaluate", "--run-dir", str(tmp_path), "--run-name", ".."])
    assert err.startswith("--run-name: must be a folder name")


# ------------------------------------------------------------------ 7. evaluate --output


@pytest.fixture
def no_evaluation(monkeypatch) -> list[dict[str, Any]]:
    """Replace run_evaluation by a recorder of its keyword arguments."""
    from clstm_ppo.evaluate import runner

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(runner, "run_evaluation", lambda *args, **kwargs: calls.append(kwargs))
    return calls


def test_evaluate_output_that_is_a_file(tmp_path, capsys, no_evaluation) -> None:
    path = tmp_path / "report.txt"
    path.write_text("not a folder")
    err = _one_line(capsys, ["evaluate", "--run-dir", str(tmp_path), "--output", str(path)])
    assert err == f"--output {path}: is a file, expected a folder"
    err = _one_line(capsys, ["backtest", "--output", str(path / "sub")])
    assert err == f"--output {path / 'sub'}: {path} is a file, expected a folder"
    assert no_evaluation == []


# ------------------------------------------------------------------ 8. reproduce-paper on CPU


def test_reproduce_paper_refuses_gpus(tmp_path, capsys, monkeypatch) -> None:
    from clstm_ppo.evaluate import paper

    monkeypatch.setattr(paper, "reproduce_paper", lambda *a, **k: pytest.fail("trained"))
    argv = ["reproduce-paper", "--data", f"csv:{tmp_path / 'none.csv'}"]
    err = _one_line(capsys, [*argv, "--set", "train.num_gpus=1"])
    assert err.startswith("--set train.num_gpus: reproduce-paper runs on the CPU"), err
    path = tmp_path / "gpu.yaml"
    path.write_text("train:\n  num_gpus: 2\n  device: cuda\n")
    err = _one_line(capsys, [*argv, "--config", str(path)])
    assert err.startswith(f"{path}: key 'train.num_gpus': reproduce-paper runs on the CPU"), err
    err = _one_line(capsys, [*argv, "--set", "train.device=cuda"])
    assert err.startswith("--set train.device: reproduce-paper runs on the CPU"), err


# ------------------------------------------------------------------ 9. train.env and --data


def test_train_env_defaults_to_options_and_portfolio_needs_data(tmp_path) -> None:
    assert Config().train.env == "options"
    with pytest.raises(ConfigError, match=r"^config: key 'train\.env': 'portfolio' needs "):
        build_config(overrides={"train.env": "portfolio"})
    with pytest.raises(ConfigError, match=r"^--env: 'portfolio' needs portfolio\.data"):
        _train_config("--env", "portfolio")
    config = build_config(overrides={"train.env": "portfolio", "portfolio.data": "csv:x.csv"})
    assert config.train.env == "portfolio"


@pytest.mark.parametrize(
    ("spec", "source", "symbol", "path"),
    [
        ("bundled:NASDAQ", "bundled", "NASDAQ", None),
        ("NASDAQ", "bundled", "NASDAQ", None),
        ("csv:data/spy.csv", "csv", None, "data/spy.csv"),
        ("csv:data/bars.csv#SPY", "csv", "SPY", "data/bars.csv"),
        ("alpaca:SPY", "alpaca", "SPY", None),
        ("synthetic:heston", "synthetic", "heston", None),
    ],
)
def test_train_data_for_the_options_env(tmp_path, spec, source, symbol, path) -> None:
    # The file's symbol is replaced too: --data names the whole underlying.
    config_file = tmp_path / "c.yaml"
    config_file.write_text("data:\n  symbol: SPX\n")
    config = _train_config("--config", str(config_file), "--data", spec)
    data = config.data
    assert (data.source, data.symbol, data.path) == (source, symbol, path and Path(path))
    assert config.portfolio.data is None


def test_train_data_for_the_portfolio_env(tmp_path) -> None:
    config = _train_config("--env", "portfolio", "--data", "csv:stocks.csv")
    assert (config.train.env, config.portfolio.data) == ("portfolio", "csv:stocks.csv")
    assert config.data.source == "bundled"
    # train.env from --set or from the file decides what --data means as well.
    config = _train_config("--set", "train.env=portfolio", "--data", "alpaca:DOW30")
    assert config.portfolio.data == "alpaca:DOW30"
    path = tmp_path / "portfolio.yaml"
    path.write_text("train:\n  env: portfolio\n")
    assert _train_config("--config", str(path), "--data", "csv:a.csv").portfolio.data == "csv:a.csv"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "portfolio", "--data", "bundled:SPX"], "--data bundled:SPX: the portfolio env"),
        (["--data", "csv:x.csv", "--source", "csv"], "--data: give the data as --data SPEC or"),
        (["--data", "csv:"], "--data: data spec 'csv:': missing the part after 'csv:'"),
        (["--data", ""], "--data: empty"),
    ],
)
def test_bad_train_data(argv, message) -> None:
    with pytest.raises(ConfigError) as caught:
        _train_config(*argv)
    assert str(caught.value).startswith(message), caught.value


def _underlying(source: str, symbol: str | None, path: str | None) -> dict[str, Any]:
    return {"data.source": source, "data.symbol": symbol, "data.path": path}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, None),
        ("bundled:NASDAQ", _underlying("bundled", "NASDAQ", None)),
        # csv: and alpaca: fit both envs; the checkpoint's env reads its own keys.
        ("csv:spy.csv", _underlying("csv", None, "spy.csv") | {"portfolio.data": "csv:spy.csv"}),
        (
            "alpaca:AAPL,MSFT",
            _underlying("alpaca", "AAPL,MSFT", None) | {"portfolio.data": "alpaca:AAPL,MSFT"},
        ),
    ],
)
@pytest.mark.parametrize("command", ["evaluate", "backtest"])
def test_evaluate_data_reaches_run_evaluation(
    tmp_path, no_evaluation, command, spec, expected
) -> None:
    argv = [command, "--run-dir", str(tmp_path), "--output", str(tmp_path / "out")]
    assert main(argv + ([] if spec is None else ["--data", spec])) == 0
    assert no_evaluation == [{"data_overrides": expected}]


def test_evaluate_bad_data_is_refused_before_any_work(tmp_path, capsys, no_evaluation) -> None:
    err = _one_line(capsys, ["evaluate", "--run-dir", str(tmp_path), "--data", "yahoo:SPY"])
    assert err.startswith("--data: data spec 'yahoo:SPY': unknown source 'yahoo'")
    assert no_evaluation == []
