"""The command-line grammar shared by the commands that read a stored run or model (rerun, compress, eval, explain, bench).

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


def stored_model_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """`SOURCE [key=value ...] [--variant NAME] [--tracking-uri URI]`: the grammar of the commands that load a stored model."""
    parser = stored_run_parser(
        prog,
        description,
        "a run id (its trained model; --variant picks a compressed one), runs:/<run id>/<model name>, "
        "models:/<name>@<alias>, models:/<name>/<version> or models:/m-<id>",
        "the data to use (default: the source run's own test split), e.g. data=synthetic or data=mnist data.root=DIR",
        metavar="SOURCE",
    )
    parser.add_argument("--variant", help="with a run id: a compressed variant of its model, e.g. int8_static or onnx")
    return parser
