"""Experiment-tracking pipeline: Hydra configs -> Lightning training -> MLflow store."""

from pipeline import lean_imports

lean_imports.install()  # before anything imports Lightning (and with it torchmetrics)
