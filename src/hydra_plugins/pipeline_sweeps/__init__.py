"""The project's Hydra plugins: the Optuna sweeper and the worker-pool launcher.

Hydra loads sweepers and launchers only from the `hydra_plugins` namespace.
"""
