"""Everything MLflow: the only package of the pipeline that imports mlflow."""

import os

# MLflow draws a progress bar for every artifact download (a run's config, a diff): noise in a CLI.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
