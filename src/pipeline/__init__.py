"""Experiment-tracking pipeline: Hydra configs -> Lightning training -> MLflow store."""
