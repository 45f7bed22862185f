"""`pipeline-compress RUN_ID [key=value ...]`: compress a FINISHED run's best model and log the variants into that run."""

from __future__ import annotations

import sys

from pipeline.cli import import_user_code_from_here
from pipeline.cli.arguments import overrides_of, stored_run_parser
from pipeline.cli.teardown import quick_exit
from pipeline.errors import PipelineError


def main(argv: list[str] | None = None) -> None:
    parser = stored_run_parser(
        "pipeline-compress",
        "Compress a FINISHED run's best model and log the variants into that run.",
        "a FINISHED run whose best checkpoint is compressed",
        "key=value or group=option changes, e.g. compression=quick or compression.variants=[int8_static,onnx_int8]",
    )
    args = parser.parse_intermixed_args(argv)
    import_user_code_from_here()
    with quick_exit():
        try:
            from pipeline.workflows.compress import compress_stored_run  # torch, MLflow: once the command line parsed

            compress_stored_run(args.run_id, overrides_of(args))
        except PipelineError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None


if __name__ == "__main__":
    main()
