"""`pipeline-compress RUN_ID [key=value ...]`: compress a FINISHED run's best model and log the variants into that run."""

from __future__ import annotations

from typing import NoReturn

from pipeline.cli import import_user_code_from_here, log_to_stderr
from pipeline.cli.arguments import overrides_of, stored_run_parser
from pipeline.cli.teardown import bad_input_exits, exit_after, stop_signals_exit
from pipeline.heap import imports_uncollected


def main(argv: list[str] | None = None) -> None:
    parser = stored_run_parser(
        "pipeline-compress",
        "Compress a FINISHED run's best model and log the variants into that run.",
        "a FINISHED run whose best checkpoint is compressed",
        "key=value or group=option changes, e.g. compression=quick or compression.variants=[int8_static,onnx_int8]",
    )
    args = parser.parse_intermixed_args(argv)
    import_user_code_from_here()
    log_to_stderr()
    run_id = args.run_id
    stopped = f"run {run_id} stays FINISHED, tagged compression.failure_reason; pipeline-compress {run_id} starts again"
    with bad_input_exits(), stop_signals_exit(stopped):
        with imports_uncollected():
            from pipeline.workflows.compress import compress_stored_run  # torch, MLflow: once the command line parsed

        compress_stored_run(run_id, overrides_of(args))


def console() -> NoReturn:
    """The `pipeline-compress` script: ``main()``, then the process ends without the interpreter's teardown."""
    exit_after(main)


if __name__ == "__main__":
    console()
