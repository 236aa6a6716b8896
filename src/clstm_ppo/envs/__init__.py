"""Trading environments (Gymnasium), single and batched: options, and the paper's stock
portfolio.

The Gymnasium ids are registered by the package itself (:data:`clstm_ppo.ENV_IDS`), on
``import clstm_ppo``, which any import of this module implies."""

from clstm_ppo import ENV_IDS
from clstm_ppo.envs.portfolio import BatchedStockPortfolioEnv, StockPortfolioEnv
from clstm_ppo.envs.single import MultiLegOptionsEnv, OptionsTradingEnv
from clstm_ppo.envs.vector import BatchedOptionsEnv

__all__ = [
    "ENV_IDS",
    "BatchedOptionsEnv",
    "BatchedStockPortfolioEnv",
    "MultiLegOptionsEnv",
    "OptionsTradingEnv",
    "StockPortfolioEnv",
]
