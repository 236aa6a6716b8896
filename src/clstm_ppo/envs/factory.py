"""Build simulators from user-facing arguments (data spec, split, episode length...)."""

from __future__ import annotations

from functools import lru_cache

from clstm_ppo.config import Config, build_config, config_from_key, config_key
from clstm_ppo.envs.actions import (
    N_LEGACY_ACTIONS,
    N_MULTI_LEG_ACTIONS,
    ActionBook,
    build_action_book,
)
from clstm_ppo.envs.simulator import OptionsSimulator
from clstm_ppo.envs.tape import MarketTape, tape_for


def env_config(
    config: Config | None = None,
    data: str | None = None,
    initial_capital: float | None = None,
    window: int | None = None,
    episode_length: int | None = None,
) -> Config:
    """The config with the env's keyword arguments applied on top (validated like any flag)."""
    overrides: dict[str, object] = {}
    if data is not None:
        source, sep, argument = data.partition(":")
        if not sep:
            source, argument = "bundled", data
        overrides["data.source"] = source
        if source == "csv":
            path, _, symbol = argument.partition("#")
            overrides["data.path"] = path
            overrides["data.symbol"] = symbol or None
        else:
            overrides["data.symbol"] = argument
    if initial_capital is not None:
        overrides["env.initial_capital"] = initial_capital
    if window is not None:
        overrides["env.window"] = window
    if episode_length is not None:
        overrides["env.episode_length"] = episode_length
    base = (config or Config()).model_dump(mode="json")
    return build_config(base, overrides, origin="env")


@lru_cache(maxsize=8)
def _book(tape: MarketTape, key: str, n_actions: int) -> ActionBook:
    return build_action_book(tape, config_from_key(key), n_actions)


def make_simulator(
    config: Config,
    n_envs: int,
    multi_leg: bool,
    split: str = "train",
    episode_length: int | None = None,
    random_start: bool = True,
) -> OptionsSimulator:
    """A simulator over ``split`` of the config's data (tape and action book cached per process)."""
    tape = tape_for(config)
    n_actions = N_MULTI_LEG_ACTIONS if multi_leg else N_LEGACY_ACTIONS
    book = _book(tape, config_key(config, {"costs", "env", "market"}), n_actions)
    length = config.env.episode_length if episode_length is None else episode_length
    return OptionsSimulator(tape, book, config, n_envs, split, length, random_start)
