"""What a run already holds in the store, so that a resumed run writes nothing twice.

A run killed in any phase after training (test, figures, model logging, compression,
registry) is finished by `resume=`, which runs those phases again. Figures, texts and the
checkpoint overwrite their artifact; everything that would otherwise pile up asks the ledger
first: a metric point at a step already stored, a logged model of the same name, a table
(MLflow appends to an existing one), a registered version of the same variant.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlflow import MlflowClient

from pipeline.tracking.mlflow_internals import metric_points


class RunLedger:
    def __init__(self, uri: str, run_id: str, reopened: bool) -> None:
        """``reopened``: the run existed before this process (a new run holds nothing: no queries)."""
        self.client, self.run_id, self.reopened = MlflowClient(tracking_uri=uri), run_id, reopened
        self.last_steps: dict[str, int] = self._last_steps() if reopened else {}

    def _last_steps(self) -> dict[str, int]:
        """For each metric of the run, the highest step already stored."""
        metrics = self.client.get_run(self.run_id).data.metrics
        return {key: max(step for step, _ in metric_points(self.client, self.run_id, key)) for key in metrics}

    def new_metrics(self, metrics: Mapping[str, float], step: int) -> dict[str, float]:
        """The metrics whose point at ``step`` is not stored yet."""
        return {key: value for key, value in metrics.items() if step > self.last_steps.get(key, -1)}

    def logged_model(self, name: str) -> str | None:
        """The URI of this run's finished logged model called ``name``, if an earlier process logged it."""
        if not self.reopened:
            return None
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        models = self.client.search_logged_models(
            [experiment_id], filter_string=f"source_run_id = '{self.run_id}' AND name = '{name}'"
        )
        ready = [model for model in models if str(model.status).endswith("READY")]
        return ready[0].model_uri if ready else None

    def has_artifact(self, path: str) -> bool:
        if not self.reopened:
            return False
        folder = path.rsplit("/", 1)[0] if "/" in path else None
        return any(info.path == path for info in self.client.list_artifacts(self.run_id, folder))

    def registered(self, model_name: str, variant: str) -> bool:
        """Whether this run already registered ``variant`` as a version of ``model_name``."""
        if not self.reopened:
            return False
        versions = self.client.search_model_versions(f"name = '{model_name}' and run_id = '{self.run_id}'")
        return any(version.tags.get("variant") == variant for version in versions)
