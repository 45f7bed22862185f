"""`pipeline-rerun RUN_ID [key=value ...]`: rebuild a stored run, train it again, and compare every final metric.

The exit code says whether it reproduced: 0 yes, 1 metrics differ, 2 bad input, 3 the code differs.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from pipeline.cli import import_user_code_from_here
from pipeline.cli.arguments import overrides_of, stored_run_parser
from pipeline.cli.teardown import exit_after
from pipeline.errors import PipelineError
from pipeline.heap import imports_uncollected


def main(argv: list[str] | None = None) -> None:
    parser = stored_run_parser(
        "pipeline-rerun",
        "Rebuild a stored run, train it again, and compare every final metric.",
        "the MLflow run to reproduce",
        "key=value or group=option changes to the stored config (e.g. trainer.threads=1); the rerun goes to the same store",
    )
    parser.add_argument(
        "--allow-code-change", action="store_true", help="rerun even if the code differs from the original's"
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.0, help="largest absolute metric difference still counted as equal"
    )
    args = parser.parse_intermixed_args(argv)
    import_user_code_from_here()
    try:
        with imports_uncollected():
            from pipeline.workflows.rerun import rerun  # torch, Lightning, MLflow: once the command line parsed

        code = rerun(args.run_id, overrides_of(args), args.allow_code_change, args.tolerance)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    raise SystemExit(code)


def console() -> NoReturn:
    """The `pipeline-rerun` script: ``main()``, then the process ends without the interpreter's teardown."""
    exit_after(main)


if __name__ == "__main__":
    console()
