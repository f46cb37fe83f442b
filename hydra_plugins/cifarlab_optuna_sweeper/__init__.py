"""A Hydra sweeper on Optuna's ask-and-tell API, for Optuna 3 to 5 (see config.py)."""
