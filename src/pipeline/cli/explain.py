"""`pipeline-explain SOURCE [key=value ...]`: what a stored or registered model looks at, logged as an evaluation run."""

from __future__ import annotations

from typing import NoReturn

from pipeline.cli import import_user_code_from_here
from pipeline.cli.arguments import overrides_of, stored_model_parser
from pipeline.cli.teardown import bad_input_exits, exit_after
from pipeline.heap import imports_uncollected


def main(argv: list[str] | None = None) -> None:
    parser = stored_model_parser(
        "pipeline-explain",
        "Attribution maps (Saliency, Integrated Gradients, Occlusion; Occlusion alone for int8 and ONNX) of a stored "
        "or registered model on test images, logged under interpret/ of an evaluation run. interpret.* overrides "
        "change the maps, e.g. interpret.per_class=4.",
    )
    args = parser.parse_intermixed_args(argv)
    import_user_code_from_here()
    with bad_input_exits():
        with imports_uncollected():  # torch, Captum, MLflow: once the command line parsed
            from pipeline.workflows.explain import explain_stored_model

        explain_stored_model(args.run_id, overrides_of(args), args.variant)


def console() -> NoReturn:
    """The `pipeline-explain` script: ``main()``, then the process ends without the interpreter's teardown."""
    exit_after(main)


if __name__ == "__main__":
    console()
