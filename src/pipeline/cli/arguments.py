"""The command-line grammar shared by the commands that read a stored run (pipeline-rerun, pipeline-compress, bench).

`RUN_ID [key=value | group=option ...] [options]`, options anywhere: the same overrides as
`pipeline-train`, where `tracking.uri=` or `paths.output_root=` name the store holding the run
and `--tracking-uri URI` is an alias of `tracking.uri=URI`.
"""

from __future__ import annotations

import argparse

STORE_HELP = "tracking.uri= or paths.output_root= name the store holding the run (default: outputs/mlflow.db)"


def stored_run_parser(
    prog: str, description: str, run_help: str, overrides_help: str, metavar: str = "RUN_ID"
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("run_id", metavar=metavar, help=run_help)
    parser.add_argument("overrides", nargs="*", help=f"{overrides_help}; {STORE_HELP}")
    parser.add_argument("--tracking-uri", help="the same as the override tracking.uri=URI")
    return parser


def overrides_of(args: argparse.Namespace) -> list[str]:
    """The overrides, with a `--tracking-uri URI` option turned into the override it stands for."""
    return [*args.overrides, f"tracking.uri={args.tracking_uri}"] if args.tracking_uri else list(args.overrides)
