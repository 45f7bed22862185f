"""`pipeline-eval SOURCE [key=value ...]`: score a stored or registered model on a data set and log an evaluation run."""

from __future__ import annotations

from typing import NoReturn

from pipeline.cli import import_user_code_from_here
from pipeline.cli.arguments import overrides_of, stored_model_parser
from pipeline.cli.teardown import bad_input_exits, exit_after
from pipeline.heap import imports_uncollected


def main(argv: list[str] | None = None) -> None:
    parser = stored_model_parser(
        "pipeline-eval",
        "Score a stored or registered model on a data set of your choice and log an evaluation run.",
    )
    args = parser.parse_intermixed_args(argv)
    import_user_code_from_here()
    with bad_input_exits():
        with imports_uncollected():
            from pipeline.workflows.evaluate import evaluate_stored_model  # torch, MLflow: once the command line parsed

        evaluate_stored_model(args.run_id, overrides_of(args), args.variant)


def console() -> NoReturn:
    """The `pipeline-eval` script: ``main()``, then the process ends without the interpreter's teardown."""
    exit_after(main)


if __name__ == "__main__":
    console()
