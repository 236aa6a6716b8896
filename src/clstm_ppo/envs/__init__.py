"""Trading environments (Gymnasium), single and batched: options, and the paper's stock
portfolio."""

from gymnasium.envs.registration import register, registry

from clstm_ppo.envs.portfolio import BatchedStockPortfolioEnv, StockPortfolioEnv
from clstm_ppo.envs.single import MultiLegOptionsEnv, OptionsTradingEnv
from clstm_ppo.envs.vector import BatchedOptionsEnv

__all__ = [
    "BatchedOptionsEnv",
    "BatchedStockPortfolioEnv",
    "MultiLegOptionsEnv",
    "OptionsTradingEnv",
    "StockPortfolioEnv",
]

if "clstm_ppo/OptionsTrading-v0" not in registry:
    register(
        id="clstm_ppo/OptionsTrading-v0", entry_point="clstm_ppo.envs.single:OptionsTradingEnv"
    )
    register(
        id="clstm_ppo/MultiLegOptions-v0", entry_point="clstm_ppo.envs.single:MultiLegOptionsEnv"
    )
if "clstm_ppo/StockPortfolio-v0" not in registry:
    register(
        id="clstm_ppo/StockPortfolio-v0", entry_point="clstm_ppo.envs.portfolio:StockPortfolioEnv"
    )
