#!/usr/bin/env python
"""Re-measure the compressed variants of a stored run and print their table (nothing is logged).

Usage: .venv/bin/python scripts/bench_compress.py RUN_ID [key=value | group=option ...] (tracking.uri=URI names the store)
e.g.   .venv/bin/python scripts/bench_compress.py 3f2a... compression.latency_repeats=100 compression.threads=1
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pipeline.cli.arguments import overrides_of, stored_run_parser
from pipeline.compress.build import compress
from pipeline.compress.variants import nondeterministic_kernels_allowed
from pipeline.tracking.compressed_models import format_table
from pipeline.workflows.compress import load_stored_model, settings_from


def main() -> None:
    parser = stored_run_parser(
        "bench_compress.py",
        __doc__.splitlines()[0],
        "the run whose best model is measured",
        "key=value or group=option changes",
    )
    args = parser.parse_intermixed_args()
    cfg, model, splits = load_stored_model(args.run_id, overrides_of(args))
    settings = settings_from(cfg)
    with tempfile.TemporaryDirectory() as workdir, nondeterministic_kernels_allowed():
        report = compress(model, splits, settings, Path(workdir))
    flags = ", ".join(f"{name}={'yes' if present else 'no'}" for name, present in report.cpu.items())
    print(
        f"run {args.run_id}: {len(splits.test)} test images, {report.threads} threads, {settings.latency_repeats} rounds; CPU {flags}"
    )
    print(format_table(report))


if __name__ == "__main__":
    main()
