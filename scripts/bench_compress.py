#!/usr/bin/env python
"""Re-measure the compressed variants of a stored run and print their table (nothing is logged).

Usage: .venv/bin/python scripts/bench_compress.py RUN_ID [key=value | group=option ...] (tracking.uri=URI names the store)
e.g.   .venv/bin/python scripts/bench_compress.py 3f2a... compression.latency_repeats=100 compression.threads=1
       .venv/bin/python scripts/bench_compress.py 3f2a... --int8-paths --compile   (torch.ao FX against torchao PT2E)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from pipeline.cli.arguments import overrides_of, stored_run_parser
from pipeline.compress.build import compress
from pipeline.compress.int8_paths import PathResult, compare_int8_paths
from pipeline.compress.measure import cpu_int8_features
from pipeline.compress.variants import nondeterministic_kernels_allowed
from pipeline.tracking.compressed_models import format_table
from pipeline.workflows.compress import load_stored_model, model_factory, settings_from


def cpu_line() -> str:
    return "CPU " + ", ".join(f"{name}={'yes' if present else 'no'}" for name, present in cpu_int8_features().items())


def int8_paths_table(results: list[PathResult]) -> str:
    """One line per path: accuracy, ms per batch of 256, speed-up over fp32 eager, time to build (and compile)."""
    reference = results[0].latency_b256_ms
    lines = [f"{'path':20} {'test acc':>9} {'b256 ms':>9} {'x fp32':>7} {'build s':>8}"]
    for row in results:
        if row.skipped:
            lines.append(f"{row.name:20} skipped: {row.skipped}")
        else:
            lines.append(
                f"{row.name:20} {row.test_acc:9.4f} {row.latency_b256_ms:9.2f} "
                f"{reference / row.latency_b256_ms:7.2f} {row.build_s:8.1f}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = stored_run_parser(
        "bench_compress.py",
        __doc__.splitlines()[0],
        "the run whose best model is measured",
        "key=value or group=option changes",
    )
    parser.add_argument(
        "--int8-paths", action="store_true", help="compare torch.ao FX int8 with torchao PT2E int8 instead"
    )
    parser.add_argument("--compile", action="store_true", help="with --int8-paths: also under torch.compile")
    args = parser.parse_intermixed_args()
    cfg, model, splits = load_stored_model(args.run_id, overrides_of(args))
    settings = settings_from(cfg)
    torch.set_num_threads(settings.threads)
    with tempfile.TemporaryDirectory() as workdir, nondeterministic_kernels_allowed():
        if args.int8_paths:
            results = compare_int8_paths(
                model, splits, settings.calibration_batches, settings.latency_repeats, args.compile
            )
            print(f"run {args.run_id}: {len(splits.test)} test images, {settings.threads} threads; {cpu_line()}")
            print(int8_paths_table(results))
            return
        report = compress(model, splits, settings, Path(workdir), model_factory(cfg, splits))
    print(
        f"run {args.run_id}: {len(splits.test)} test images, {report.threads} threads, "
        f"{settings.latency_repeats} rounds; {cpu_line()}"
    )
    print(format_table(report))


if __name__ == "__main__":
    main()
