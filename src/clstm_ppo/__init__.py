"""clstm-ppo: cascaded-LSTM PPO agents for US equity options on real market data."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

# The Gymnasium ids, defined here only. They are registered when the package is imported, so
# ``import clstm_ppo; gym.make(ENV_ID)`` works; the entry points are strings, resolved by
# ``gym.make``, so importing the package loads neither torch nor the environment modules.
ENV_IDS: dict[str, str] = {
    "clstm_ppo/OptionsTrading-v0": "clstm_ppo.envs.single:OptionsTradingEnv",
    "clstm_ppo/MultiLegOptions-v0": "clstm_ppo.envs.single:MultiLegOptionsEnv",
    "clstm_ppo/StockPortfolio-v0": "clstm_ppo.envs.portfolio:StockPortfolioEnv",
}

for _env_id, _entry_point in ENV_IDS.items():
    # A re-import (importlib.reload, a test harness) must not register twice: gymnasium warns.
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry_point)
del _env_id, _entry_point
