"""`pipeline-train [key=value | group=option ...]`: compose the config, then train, test and log one run.

With `-m`, Hydra runs a sweep: every job is one trial (pipeline.sweeps). `resume=<run id>`
continues a killed run from its last checkpoint, in the same MLflow run.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from pipeline.cli import import_user_code_from_here
from pipeline.cli.teardown import exit_after, stop_signals_exit
from pipeline.config import CONF_DIR
from pipeline.config.compose import compose_config, sweep_configs
from pipeline.config.targets import trust_composed_targets
from pipeline.distributed import launched_rank
from pipeline.errors import ConfigError, PipelineError, disk_full
from pipeline.heap import imports_uncollected
from pipeline.rendering import start_worker
from pipeline.sweeps.parent_run import parent_run_id
from pipeline.sweeps.trial import current_trial
from pipeline.workflows.run_plan import plan_run

if TYPE_CHECKING:
    from pipeline.workflows.train import TrainResult


def print_summary(result: TrainResult, throwaway_store: str | None = None) -> None:
    """What the run gave and where to look at it; ``throwaway_store``: the folder of a store nobody keeps."""
    metrics = "  ".join(
        f"{name}={value:.0f}" if name.endswith("samples") else f"{name}={value:.4f}"
        for name, value in sorted(result.test_metrics.items())
    )
    print(f"run id:  {result.run_id}")
    print(f"test:    {metrics}")
    if result.model_uri:
        print(f"model:   {result.model_uri}")
    if result.tracking_uri.startswith("sqlite:///"):
        print(f"ui:      scripts/ui.sh {result.tracking_uri}   then open")
        print(f"         http://127.0.0.1:5000/#/experiments/{result.experiment_id}/runs/{result.run_id}")
    else:
        print(f"ui:      {result.tracking_uri}/#/experiments/{result.experiment_id}/runs/{result.run_id}")
    if throwaway_store:
        print(
            f"note:    debug=fast: a throwaway store in {throwaway_store}, nothing went to yours (delete it any time)"
        )


def report_failure(err: PipelineError) -> float:
    """One line on stderr; a sweep's trial returns NaN (a failed trial), a single run exits 1."""
    print(f"error: {err}", file=sys.stderr)
    if parent_run_id() is not None:  # one bad trial must not end the sweep (and strand its parent run)
        return float("nan")
    raise SystemExit(1) from None


def draws_alongside(cfg: DictConfig) -> bool:
    """Whether the run's figures go to the worker; a resume's own config is not read yet: assume so."""
    try:
        return cfg.resume is not None or plan_run(cfg, resuming=False).figures_in_worker
    except OmegaConfBaseException:  # a missing key: validation rejects it in its own words, no worker to clean up
        return False


def run_job(cfg: DictConfig) -> TrainResult | None:
    """One job: a new run (a sweep's trial reports to its study) or the resume of a stored one."""
    devices = cfg.trainer.devices  # checked with the rest of the config later: a bad value only skips this
    if isinstance(devices, int) and launched_rank(devices) == 0 and draws_alongside(cfg):
        start_worker()  # the rank that logs: its figure worker imports while this process does
    with imports_uncollected():
        from pipeline.workflows.train import resume, train  # torch, Lightning, MLflow: only for a job that runs

    hydra_config = HydraConfig.get()
    overrides = list(hydra_config.overrides.task)
    if cfg.resume is not None:
        return resume(cfg, overrides)
    choices = hydra_config.runtime.choices.items()
    tags = {
        f"choice.{group}": str(option)
        for group, option in choices
        if option is not None and not group.startswith("hydra")
    }
    trust_composed_targets(cfg)  # composed from your own command line and config folders
    callbacks = []
    if (trial := current_trial(hydra_config.sweeper)) is not None:  # a job of an Optuna sweep
        from pipeline.sweeps.pruning import ReportToOptuna

        tags.update(trial.tags)
        callbacks.append(ReportToOptuna(trial, cfg.sweep.objective, cfg.sweep.direction))
    return train(cfg, overrides, extra_tags=tags, callbacks=callbacks)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_entry(cfg: DictConfig) -> float:
    try:
        with stop_signals_exit("the run is marked KILLED and can be resumed with resume=<run id>"):
            result = run_job(cfg)
    except PipelineError as err:
        return report_failure(err)
    except OSError as err:  # a checkpoint or an artifact that found the disk full
        if (full := disk_full(err, cfg.paths.output_root)) is None:
            raise
        return report_failure(full)
    if result is None:  # a DDP rank other than the first: rank 0 reports
        return float("nan")
    print_summary(result, cfg.paths.output_root if cfg.tags.get("debug") == "fast" else None)
    return result.metrics.get(cfg.sweep.objective, float("nan"))  # what a sweeper optimises


def main() -> None:
    """Console script. Runs and sweeps are composed and validated first, so bad input costs no imports.

    A sweep (`-m`) is checked through the runs that stand for it (`sweep_configs`); other flags
    (`--config-dir`, `--cfg`, ...) are left to Hydra.
    """
    import_user_code_from_here()
    args = sys.argv[1:]
    flags = {arg for arg in args if arg.startswith("-")}
    if flags <= {"-m", "--multirun"}:
        overrides = [arg for arg in args if arg not in flags]
        try:
            if flags:
                sweep_configs(overrides)
            else:
                compose_config(overrides)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
    _hydra_entry()


def console() -> NoReturn:
    """The `pipeline-train` script: ``main()``, then the process ends without the interpreter's teardown."""
    exit_after(main)


if __name__ == "__main__":
    console()
