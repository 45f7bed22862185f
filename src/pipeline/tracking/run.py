"""The one MLflow run of a training run: opened, filled and closed with an honest status.

Every fluent ``mlflow.*`` call made while the run is open lands in it (no stray runs).
Leaving the block marks it FINISHED, FAILED (an exception; the reason is tagged) or
KILLED (SIGINT / SIGTERM); it is never left RUNNING. A reopened run (resume) writes nothing
twice (see `pipeline.tracking.ledger`) and loses the failure reason of its earlier end once
it finishes. A FINISHED run reopened to add to it (compression of a stored run, a sweep's
best trial) stays FINISHED whatever happens to the addition: its training stands, and
`<addition>.failure_reason` says why the addition did not finish.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from pipeline.data.splits import ImageSplits
from pipeline.errors import DiskFull, RunInterrupted, TrackingError, disk_full, first_line
from pipeline.interrupts import received_signal
from pipeline.provenance import GitState
from pipeline.rendering import Figures
from pipeline.run_summary import training_summary
from pipeline.tracking.ledger import RunLedger
from pipeline.tracking.logger import MlflowBatchLogger
from pipeline.tracking.mlflow_internals import metric_points, without_git_lookup, without_redundant_model_checks
from pipeline.tracking.requirements import TORCH_MODEL, exact_requirements
from pipeline.tracking.spool import MetricSpool, answer_quickly, is_unreachable
from pipeline.tracking.store import ensure_experiment, is_server_uri, release_reserve
from pipeline.tracking.system_metrics import SystemMetrics

# MLflow's datasets table stores digests of at most 36 characters; the full SHA-256 is a tag.
_DATASET_DIGEST_CHARS = 32
_SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}
LOG_FILES_TAG = "log_files"  # the log file of each process that worked on the run, one per line
DESCRIPTION_TAG = "mlflow.note.content"  # the Markdown the MLflow UI shows on a run's Overview
FIGURE_FOLDERS = ("figures", "interpret", "compression", "eval")  # where a run's figures are, in the order shown


def _log_input_shared(dataset: Any, context: str, tags: dict[str, str], attempts: int = 3) -> None:
    """`mlflow.log_input`, safe when parallel runs log the same data set at once.

    MLflow looks the data set up, then inserts it: two runs of a parallel sweep can both miss
    it and the second insert fails on the unique key. Looking again then finds it.
    """
    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=context, tags=tags)
            return
        except MlflowException as err:
            duplicate = "UNIQUE constraint failed" in str(err) or "duplicate key" in str(err)
            if not duplicate or attempt == attempts - 1:
                raise


@contextmanager
def quiet_export_warnings() -> Iterator[None]:
    """Silence notes of torch.export and MLflow's model writers that say nothing about the logged model."""
    chatty = [logging.getLogger(name) for name in ("mlflow.pyfunc", "mlflow.pytorch")]
    levels = [logger.level for logger in chatty]
    with warnings.catch_warnings():
        # nn.LSTM re-assigns its flat weights during export: harmless for inference
        warnings.filterwarnings("ignore", message=r"The tensor attributes .* were assigned during export")
        # channels_last weights are saved whole; the archive notes it did not find a shared storage
        warnings.filterwarnings("ignore", message=r"No complete tensor found in the group")
        # torch's own pickling of quantized modules (the pickled int8 variants) uses the old storage API
        warnings.filterwarnings("ignore", message=r"TypedStorage is deprecated")
        # MLflow warns about pickled models (dynamic int8 cannot be exported, docs/dependencies.md; the static int8
        # pyfunc is a small class loading weights_only state) and logs each signature check at INFO
        for logger in chatty:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(chatty, levels, strict=True):
                logger.setLevel(level)


class TrackedRun:
    def __init__(
        self,
        uri: str,
        experiment: str,
        output_root: Path,
        run_name: str | None,
        tags: dict[str, str],
        resume_run_id: str | None = None,
        addition: str | None = None,
    ) -> None:
        """``resume_run_id`` reopens that run (its status goes back to RUNNING) instead of starting one;
        ``addition`` names what is added to that FINISHED run (a tag prefix): the run ends FINISHED even if it fails."""
        self.uri, self.experiment, self.output_root = uri, experiment, output_root
        self.run_name, self.tags, self.resume_run_id = run_name, tags, resume_run_id
        self.addition = addition
        self.client: MlflowClient | None = None
        self.run_id = resume_run_id or ""
        self.experiment_id = ""
        self.ledger: RunLedger | None = None
        self.log_files: list[Path] = []

    def __enter__(self) -> TrackedRun:
        mlflow.set_tracking_uri(self.uri)
        try:
            self.experiment_id = ensure_experiment(self.uri, self.experiment, self.output_root)  # creates a new store
            self.client = MlflowClient(tracking_uri=self.uri)
            with without_git_lookup():
                run = mlflow.start_run(
                    run_id=self.run_id or None, experiment_id=self.experiment_id, run_name=self.run_name, tags=self.tags
                )
        except MlflowException as err:
            raise TrackingError(f"tracking.uri={self.uri}: {first_line(str(err))}") from None
        self.run_id = run.info.run_id
        self._deliver_spooled_metrics()  # what a process that lost the server left behind, before the ledger reads the run
        self.ledger = RunLedger(self.uri, self.run_id, reopened=self.run_id == self.resume_run_id)
        self._remember_log_files()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, OSError):
            exc = disk_full(exc, self.output_root) or exc  # recorded as the one line the command prints
        if isinstance(exc, DiskFull):
            release_reserve(self.uri)
        try:
            with answer_quickly() if isinstance(exc, TrackingError) else contextlib.nullcontext():
                self._end(exc)
        except MlflowException as err:  # the server went away: say so once, the original error goes on
            if exc is None or not is_unreachable(err):
                raise
            logging.getLogger("pipeline").warning(
                "run %s stays RUNNING: %s does not answer (resume=%s ends it)", self.run_id, self.uri, self.run_id
            )
            # MLflow's active run goes too: left on its stack, MLflow's exit handler would try (and retry) again
            with answer_quickly(), contextlib.suppress(MlflowException):
                mlflow.end_run(status="FAILED")

    def _end(self, exc: BaseException | None) -> None:
        stop_signal = received_signal()
        reason_tag = f"{self.addition}.failure_reason" if self.addition else "failure_reason"
        if exc is None:
            status = "FINISHED"
            if self.ledger is not None and self.ledger.reopened and reason_tag in self._tags():
                self.client.delete_tag(self.run_id, reason_tag)  # the earlier end's reason no longer holds
        elif stop_signal or isinstance(exc, (KeyboardInterrupt, RunInterrupted)):
            status = "KILLED"
            mlflow.set_tag(reason_tag, f"interrupted by {stop_signal or 'SIGINT'}")
        else:
            status = "FAILED"
            mlflow.set_tag(reason_tag, f"{type(exc).__name__}: {first_line(str(exc))}"[:5000])
        self._log_log_files()
        mlflow.end_run(status="FINISHED" if self.addition else status)

    @property
    def spool(self) -> MetricSpool | None:
        """Where metrics wait while a tracking server is away (a local store needs none)."""
        return (
            MetricSpool(self.output_root / "checkpoints" / self.run_id / "metrics-spool.jsonl")
            if is_server_uri(self.uri)
            else None
        )

    def _deliver_spooled_metrics(self) -> None:
        if self.spool is not None and (waiting := self.spool.read()):
            self.metrics_logger(flush_every_s=0, spool=False).send(waiting)
            self.spool.replace([])
            logging.getLogger("pipeline").info(
                "%d metric points that waited in %s are stored", len(waiting), self.spool.path
            )

    def _remember_log_files(self) -> None:
        """Note this process's log files (Hydra's job log) on the run: a resume uploads a killed process's log too."""
        here = [
            handler.baseFilename for handler in logging.getLogger().handlers if isinstance(handler, logging.FileHandler)
        ]
        earlier = self._tags().get(LOG_FILES_TAG, "").split("\n") if self.ledger.reopened else []
        files = [path for path in dict.fromkeys([*earlier, *here]) if path]
        if files:
            mlflow.set_tag(LOG_FILES_TAG, "\n".join(files))
        self.log_files = [Path(path) for path in files]

    def _log_log_files(self) -> None:
        """The run's log files under logs/, each named by its folder (one per process that worked on the run)."""
        for handler in logging.getLogger().handlers:
            handler.flush()
        for path in self.log_files:
            if not path.is_file():
                continue
            try:
                mlflow.log_text(path.read_text(errors="replace"), f"logs/{path.parent.name}-{path.name}")
            except (MlflowException, OSError) as err:  # the run's status matters more than its log
                logging.getLogger("pipeline").warning("log file %s not uploaded: %s", path, first_line(str(err)))

    def _tags(self) -> dict[str, str]:
        return self.client.get_run(self.run_id).data.tags

    @contextmanager
    def system_metrics(self, interval_s: float | None) -> Iterator[None]:
        """Sample the machine into this run as `system/*` every ``interval_s`` s while the block runs (None: off)."""
        if interval_s is None or self.ledger is None:
            yield
            return
        monitor = SystemMetrics(self.uri, self.run_id, interval_s, self.ledger.last_steps).start()
        try:
            yield
        finally:
            monitor.stop()

    def metrics_logger(self, flush_every_s: float, spool: bool = True) -> MlflowBatchLogger:
        """A Lightning logger into this run that skips the points a reopened run already holds."""
        if not self.run_id:
            raise RuntimeError("metrics_logger() needs an open run: use TrackedRun as a context manager")
        already_logged = self.ledger.last_steps if self.ledger is not None else {}
        spooling = self.spool if spool else None
        return MlflowBatchLogger(self.uri, self.run_id, flush_every_s, already_logged, spooling, self.output_root)

    def log_config(self, resolved: dict[str, Any], config_yaml: str, overrides: list[str]) -> None:
        """The resolved config as params (flattened, full values) and as YAML; the overrides as given."""
        self.metrics_logger(flush_every_s=0).log_hyperparams(resolved)
        mlflow.log_text(config_yaml, "config/config.yaml")
        mlflow.log_text("\n".join(overrides) + ("\n" if overrides else ""), "config/overrides.txt")
        mlflow.set_tag("overrides", " ".join(overrides))

    def log_provenance(self, git: GitState, versions: dict[str, str], packages: str) -> None:
        tags = {f"version.{name}": value for name, value in versions.items()}
        tags["git.dirty"] = str(git.dirty).lower()
        if git.commit:  # MLflow's own git tags: the UI shows them; its lookup is skipped (mlflow_internals)
            tags["git.commit"] = git.commit
            tags["mlflow.source.git.commit"] = git.commit
        if git.branch:
            tags["mlflow.source.git.branch"] = git.branch
        mlflow.set_tags(tags)
        if git.dirty:
            mlflow.log_text(git.diff, "code/git.diff")
        mlflow.log_text(packages, "environment/requirements.lock")

    def log_dataset(self, name: str, splits: ImageSplits) -> None:
        """Each split as an MLflow dataset input (schema, profile, digest); the full digest as a tag."""
        mlflow.set_tags({"data.name": name, "data.digest": splits.digest()})
        for split_name, split in splits.splits().items():
            dataset = mlflow.data.from_numpy(
                split.images.numpy(),
                targets=split.labels.numpy(),
                name=f"{name}-{split_name}",
                digest=split.digest()[:_DATASET_DIGEST_CHARS],
            )
            _log_input_shared(dataset, context=_SPLIT_CONTEXTS[split_name], tags={"num_samples": str(len(split))})

    def set_tags(self, tags: dict[str, str]) -> None:
        mlflow.set_tags(tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if new := self.ledger.new_metrics(metrics, step):
            mlflow.log_metrics(new, step=step)

    def log_checkpoint(self, path: Path) -> None:
        mlflow.log_artifact(str(path), artifact_path="checkpoints")

    def log_profile(self, report: Path) -> None:
        mlflow.log_artifact(str(report), artifact_path="profile")

    def log_model(self, model: torch.nn.Module, example: torch.Tensor, name: str = "model") -> str:
        """Log ``model`` as an MLflow model (signature + input example) and return its URI (a reopened run's, if logged)."""
        if logged := self.ledger.logged_model(name):
            return logged
        model = model.eval()
        example_np = example.numpy()
        with torch.no_grad():
            output = model(example).numpy()
        with quiet_export_warnings(), without_redundant_model_checks():
            info = mlflow.pytorch.log_model(
                model,
                name=name,
                signature=infer_signature(example_np, output),
                input_example=example_np,
                pip_requirements=exact_requirements(TORCH_MODEL),
            )
        return info.model_uri

    def final_metrics(self) -> dict[str, float]:
        return dict(self.client.get_run(self.run_id).data.metrics)

    def metric_histories(self, keys: list[str]) -> dict[str, list[tuple[int, float]]]:
        """(step, value) points of each metric, from the store."""
        return {key: metric_points(self.client, self.run_id, key) for key in keys}

    def figure_paths(self) -> list[str]:
        """The run's figures in the store (artifact paths)."""
        return [
            artifact.path
            for folder in FIGURE_FOLDERS
            for artifact in self.client.list_artifacts(self.run_id, folder)
            if artifact.path.endswith(".png")
        ]

    def describe(self, title: str, variants: Sequence[Mapping[str, Any]] = ()) -> None:
        """The run's Markdown description (its Overview in the MLflow UI), from what the store now holds."""
        summary = training_summary(
            title, self.final_metrics(), variants, self.figure_paths(), self.experiment_id, self.run_id
        )
        mlflow.set_tag(DESCRIPTION_TAG, summary)

    def set_description(self, markdown: str) -> None:
        mlflow.set_tag(DESCRIPTION_TAG, markdown)

    def log_table(self, columns: dict[str, list[Any]], artifact_file: str) -> None:
        """A table the MLflow UI shows as one (its Artifacts tab; Evaluation across runs)."""
        mlflow.log_table(columns, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        mlflow.log_text(text, artifact_file)

    def log_drawn_figures(self, drawings: Figures) -> None:
        """Each figure of ``drawings`` under its artifact path, once drawn."""
        for artifact_file, png in drawings.drawn():
            folder = str(Path(artifact_file).parent)
            mlflow.log_artifact(str(png), artifact_path=None if folder == "." else folder)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        from pipeline.plotting import pyplot

        mlflow.log_figure(figure, artifact_file)
        pyplot().close(figure)
