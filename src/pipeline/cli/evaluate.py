"""`pipeline-eval SOURCE [key=value ...]`: score a stored or registered model on a data set and log an evaluation run."""

from __future__ import annotations

import sys

from pipeline.cli import import_user_code_from_here
from pipeline.cli.arguments import overrides_of, stored_run_parser
from pipeline.cli.teardown import quick_exit
from pipeline.errors import PipelineError


def main(argv: list[str] | None = None) -> None:
    parser = stored_run_parser(
        "pipeline-eval",
        "Score a stored or registered model on a data set of your choice and log an evaluation run.",
        "a run id (its trained model; --variant picks a compressed one), runs:/<run id>/<model name>, "
        "models:/<name>@<alias>, models:/<name>/<version> or models:/m-<id>",
        "the data to score on (default: the source run's own test split), e.g. data=synthetic or "
        "data=mnist data.root=DIR",
        metavar="SOURCE",
    )
    parser.add_argument("--variant", help="with a run id: a compressed variant of its model, e.g. int8_static or onnx")
    args = parser.parse_intermixed_args(argv)
    import_user_code_from_here()
    with quick_exit():
        try:
            from pipeline.workflows.evaluate import evaluate_stored_model  # torch, MLflow: once the command line parsed

            evaluate_stored_model(args.run_id, overrides_of(args), args.variant)
        except PipelineError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None


if __name__ == "__main__":
    main()
