"""The entry points: `pipeline-train`, `pipeline-rerun`, `pipeline-compress`.

A thin layer: each one parses and checks its input with nothing heavier than Hydra and
OmegaConf, so a bad override is one line before torch, Lightning or MLflow is imported; then it
hands over to pipeline.workflows, which does the work.
"""
