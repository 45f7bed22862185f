"""Score a stored model on a data set of your choice and log it as an evaluation run (`pipeline-eval SOURCE`).

The data is the source run's own (its test split, checked against its digest) unless the
overrides name other data (`data=fashion_mnist`, `data.root=...`): then its test split. Every
check (the model exists and loads, the data loads, image shape and class count fit) happens
before the evaluation run opens, so bad input leaves nothing RUNNING in the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from pipeline import figures
from pipeline.config.compose import store_location, stored_config
from pipeline.config.validation import validate
from pipeline.data.build import load_data
from pipeline.data.splits import ImageSplits
from pipeline.errors import DataError
from pipeline.evaluation import Scores, score
from pipeline.interrupts import signals_raise
from pipeline.run_summary import evaluation_summary
from pipeline.tracking.model_sources import ModelSource, StoredClassifier, find_model
from pipeline.tracking.run import TrackedRun
from pipeline.tracking.store import resolve_tracking_uri
from pipeline.tracking.stored_runs import StoredRun, fetch_run

EVALUATION_OF = "evaluation_of"  # tag: the run whose model an evaluation run scored


@dataclass(frozen=True)
class Evaluation:
    run_id: str  # the evaluation run
    source: ModelSource
    scores: Scores


def names_other_data(overrides: list[str]) -> bool:
    """Whether the overrides change the `data` section (then the source run's data digest no longer applies)."""
    return any(override.split("=", 1)[0].lstrip("+~").split(".")[0] == "data" for override in overrides)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(size) for size in shape)


def check_fits(classifier: StoredClassifier, splits: ImageSplits, data_name: str) -> None:
    """The data's images and classes are what the model takes and predicts; DataError (one line) if not."""
    given = classifier.source.given
    if classifier.input_shape != splits.image_shape:
        raise DataError(
            f"data={data_name}: its images are {_shape(splits.image_shape)} but {given} takes {_shape(classifier.input_shape)}"
        )
    if classifier.num_classes != len(splits.class_names):
        raise DataError(
            f"data={data_name}: it has {len(splits.class_names)} classes but {given} predicts {classifier.num_classes}"
        )


def report(source: ModelSource, data_name: str, scores: Scores) -> str:
    """What the command prints: the accuracy with its interval, the loss, and the per-class table."""
    lines = [
        f"{source.given} ({source.variant} of run {source.run_id}) on the {data_name} test split:",
        f"  {scores.accuracy_line()}",
        f"  loss {scores.loss:.4f}, macro F1 {scores.macro_f1:.4f}",
        f"  {'class':>12} {'precision':>9} {'recall':>7} {'F1':>7} {'images':>7}",
    ]
    lines += [
        f"  {row.name:>12} {row.precision:9.4f} {row.recall:7.4f} {row.f1:7.4f} {row.support:7d}"
        for row in scores.per_class
    ]
    return "\n".join(lines)


def _log(run: TrackedRun, scores: Scores, splits: ImageSplits, predicted: torch.Tensor, text: str) -> None:
    run.log_metrics(
        {
            "eval/acc": scores.accuracy,
            "eval/acc_ci95_low": scores.accuracy_low,
            "eval/acc_ci95_high": scores.accuracy_high,
            "eval/loss": scores.loss,
            "eval/macro_f1": scores.macro_f1,
            "eval/samples": float(scores.samples),
        },
        step=0,
    )
    rows = scores.per_class
    run.log_table(
        {
            "class": [row.name for row in rows],
            "precision": [row.precision for row in rows],
            "recall": [row.recall for row in rows],
            "f1": [row.f1 for row in rows],
            "support": [row.support for row in rows],
        },
        "eval/per_class.json",
    )
    run.log_text(text + "\n", "eval/report.txt")
    test, names = splits.test, splits.class_names
    run.log_figure(figures.confusion_matrix(test.labels, predicted, names), "eval/confusion_matrix.png")
    run.log_figure(figures.misclassified(test.images, test.labels, predicted, names), "eval/misclassified.png")


@dataclass(frozen=True)
class Scored:
    """A stored model scored on a test split, before any run is opened: everything an evaluation run logs."""

    source: ModelSource
    stored: StoredRun
    cfg: DictConfig  # the source run's config with the overrides
    overrides: list[str]
    splits: ImageSplits
    classifier: StoredClassifier
    logits: torch.Tensor
    scores: Scores
    report: str

    @property
    def predicted(self) -> torch.Tensor:
        return self.logits.argmax(dim=1)


def score_stored_model(source_text: str, overrides: list[str], variant: str | None = None) -> Scored:
    """Find, load and score the model ``source_text`` names on the data the overrides name; PipelineError if any fails."""
    uri = resolve_tracking_uri(*store_location(overrides))
    source = find_model(uri, source_text, variant)
    stored = fetch_run(uri, source.run_id)
    cfg = validate(stored_config(stored.config_yaml, [f"tracking.uri={uri}", *overrides]))
    own_data = not names_other_data(overrides)
    splits = load_data(cfg, stored.tags.get("data.digest") if own_data else None).splits
    classifier = StoredClassifier(source)
    check_fits(classifier, splits, cfg.data.name)
    logits = classifier.logits(splits.test.images)
    scores = score(logits, splits.test.labels, splits.class_names, cfg.seed)
    text = report(source, cfg.data.name, scores)
    return Scored(source, stored, cfg, overrides, splits, classifier, logits, scores, text)


@contextmanager
def evaluation_run(scored: Scored, purpose: str) -> Iterator[TrackedRun]:
    """An evaluation run in the source run's experiment, holding the scores; ``purpose`` starts its name (eval, explain)."""
    source, stored, cfg, splits = scored.source, scored.stored, scored.cfg, scored.splits
    tags = {
        EVALUATION_OF: source.run_id,
        "eval.source": source.given,
        "eval.model_uri": source.uri,
        "eval.variant": source.variant,
        "data.name": cfg.data.name,
        "data.digest": splits.digest(),
        "data.test_digest": splits.test.digest(),
        "overrides": " ".join(scored.overrides),
    }
    if "model" in stored.tags:
        tags["model"] = stored.tags["model"]
    run_name = f"{purpose}-{stored.run_name}-{source.variant}-{cfg.data.name}"
    output_root = Path(cfg.paths.output_root)
    with signals_raise(), TrackedRun(source.tracking_uri, stored.experiment, output_root, run_name, tags) as run:
        run.metrics_logger(flush_every_s=0).log_hyperparams(
            {"data": OmegaConf.to_container(cfg.data), "seed": cfg.seed}
        )
        run.log_text(OmegaConf.to_yaml(cfg), "eval/config.yaml")
        _log(run, scored.scores, splits, scored.predicted, scored.report)
        yield run


def describe_evaluation(run: TrackedRun, title: str, scored: Scored) -> None:
    run.set_description(evaluation_summary(title, scored.report, run.figure_paths(), run.experiment_id, run.run_id))


def evaluate_stored_model(source_text: str, overrides: list[str], variant: str | None = None) -> Evaluation:
    """Score the model ``source_text`` names on the data the overrides name; log and print the evaluation run."""
    scored = score_stored_model(source_text, overrides, variant)
    with evaluation_run(scored, "eval") as run:
        describe_evaluation(run, f"Evaluation of `{scored.source.given}`", scored)
    print(f"evaluation run {run.run_id} in {scored.source.tracking_uri}")
    print(scored.report)
    return Evaluation(run.run_id, scored.source, scored.scores)
