"""What a stored or registered model looks at (`pipeline-explain SOURCE`): attribution maps in an evaluation run.

The same maps and quality metrics a training run logs under interpret/ (settings: the source
run's `interpret` section, or the overrides), for any model the store holds: a model that
gradients flow through gets Saliency, Integrated Gradients and Occlusion; an int8 or ONNX model,
which runs forward only, gets Occlusion. The evaluation run also holds the scores of
`pipeline-eval` (the maps are chosen by the model's own predictions). Everything is computed
before the run opens: a model that cannot be explained leaves no run behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.errors import PipelineError, first_line
from pipeline.interpret.attributions import Attributions, explain
from pipeline.rendering import Figures
from pipeline.workflows.attributions import log_maps, settings_from
from pipeline.workflows.evaluate import describe_evaluation, evaluation_run, score_stored_model


@dataclass(frozen=True)
class Explanation:
    run_id: str  # the evaluation run
    attributions: Attributions


def explain_stored_model(source_text: str, overrides: list[str], variant: str | None = None) -> Explanation:
    """Attribution maps of the model ``source_text`` names, on the data the overrides name, logged into an evaluation run."""
    scored = score_stored_model(source_text, overrides, variant)
    model = scored.classifier.differentiable()
    splits = scored.splits
    started = time.perf_counter()
    try:
        attributions = explain(
            model if model is not None else scored.classifier.logits,
            splits.test,
            scored.predicted,
            len(splits.class_names),
            settings_from(scored.cfg),
            gradients=model is not None,
        )
    except RuntimeError as err:
        raise PipelineError(f"{source_text}: Captum cannot explain this model: {first_line(str(err))}") from None
    seconds = time.perf_counter() - started
    methods = ", ".join(attributions.maps)
    with evaluation_run(scored, "explain") as run:
        run.set_tags({"interpret.methods": methods})
        with Figures(in_worker=False) as drawings:
            log_maps(run, attributions, splits.class_names, drawings)
            run.log_drawn_figures(drawings)
        describe_evaluation(run, f"What `{scored.source.given}` looks at ({methods})", scored)
    print(f"evaluation run {run.run_id} in {scored.source.tracking_uri}")
    print(scored.report)
    print(f"attribution maps ({methods}; {seconds:.1f} s) under interpret/ of that run:")
    for name, value in attributions.metrics.items():
        print(f"  {name} {value:.4g}")
    return Explanation(run.run_id, attributions)
