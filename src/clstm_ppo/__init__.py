"""clstm-ppo: cascaded-LSTM PPO agents for US equity options on real market data."""

__version__ = "0.1.0"
