"""Jobs of a multirun in a pool of worker processes that stay warm between jobs (`hydra/launcher=parallel`).

Like Hydra's joblib launcher (the same loky worker pool, the same per-job setup), plus `submit()`:
one job at a time, answered by a future. The Optuna sweeper uses it to start a new trial as soon
as any running one ends, instead of waiting for a whole batch (a short trial paired with a long
one would leave its worker idle). `launch()` runs a batch and waits, for grid sweeps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def run_in_worker(
    sweep_config: DictConfig, hydra_context: HydraContext, task_function: TaskFunction, singleton_state: dict[Any, Any]
) -> JobReturn:
    """One job in a worker process: Hydra's global state as in the launching process, then the job."""
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    return run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=task_function,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


class PoolLauncher(Launcher):
    def __init__(self, n_jobs: int) -> None:
        self.n_jobs = n_jobs
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        self._executor: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _pool(self) -> Any:
        if self._executor is None:
            from joblib.externals.loky import get_reusable_executor

            setup_globals()
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            self._executor = get_reusable_executor(max_workers=self.n_jobs, reuse=True)
        return self._executor

    def submit(self, overrides: Sequence[str], job_idx: int) -> Future:
        """Start one job; its future resolves to the job's JobReturn (failures are inside it, as with launch)."""
        assert self.config is not None and self.hydra_context is not None
        pool = self._pool()
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{job_idx}"
            sweep_config.hydra.job.num = job_idx
        log.info("\t#%d : %s", job_idx, " ".join(filter_overrides(overrides)))
        return pool.submit(run_in_worker, sweep_config, self.hydra_context, self.task_function, Singleton.get_state())

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        log.info(
            "Launching %d jobs on %d workers, sweep output dir: %s",
            len(job_overrides),
            self.n_jobs,
            self.config.hydra.sweep.dir,
        )
        futures = [self.submit(overrides, initial_job_idx + index) for index, overrides in enumerate(job_overrides)]
        return [future.result() for future in futures]

    def shutdown(self) -> None:
        """Stop the workers and the jobs in them (an interrupted sweep)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, kill_workers=True)
            self._executor = None
