"""The project's Optuna sweeper. Hydra loads sweepers only from the `hydra_plugins` namespace."""
