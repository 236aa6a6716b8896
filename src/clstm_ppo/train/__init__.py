"""Training: the CLSTM-PPO trainer, its metrics, checkpoints and reporting."""
