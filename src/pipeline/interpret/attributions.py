"""What a trained classifier looks at: Captum's Saliency, Integrated Gradients and Occlusion on test images.

For a fixed, seeded choice of test images (a few per class, plus misclassified ones), each method
attributes the predicted class's logit to the input pixels; misclassified images are also
attributed toward their true class; and Integrated Gradients is averaged per class over correctly
classified images. Captum's own quality measures come with them: IG's convergence delta (how far
its sum is from the logit difference it explains), infidelity (does perturbing pixels change the
output as the map predicts) and sensitivity (does the map hold still under tiny input noise).
A model without gradients (int8, ONNX) is explained by Occlusion alone: it needs forward passes only.

Plain torch and Captum, no MLflow. The baseline is a black image: the background of digits.
Captum is imported where a method runs: `captum.attr` imports matplotlib's pyplot (~0.4 s), which
a run's process otherwise never needs before its training ends.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from pipeline.data.splits import Split

Forward = Callable[[torch.Tensor], torch.Tensor]  # float images in [0, 1] -> logits: a module, or any function


@dataclass(frozen=True)
class Settings:
    per_class: int  # test images per class shown with every method
    misclassified: int  # at most this many misclassified images, toward the predicted and the true class
    mean_per_class: int  # correctly classified images per class averaged into the class's mean IG map
    ig_steps: int
    occlusion_window: int  # side of the square patch Occlusion greys out (pixels, every channel)
    occlusion_stride: int
    perturbations: int  # noisy copies per image for infidelity and sensitivity
    seed: int


@dataclass(frozen=True)
class Examples:
    images: torch.Tensor  # K x C x H x W, values in [0, 1]
    labels: torch.Tensor  # K
    predicted: torch.Tensor  # K


@dataclass(frozen=True)
class Attributions:
    examples: Examples  # per_class images of each class
    maps: dict[str, torch.Tensor]  # method -> K x C x H x W, toward the predicted class
    mistakes: Examples  # misclassified images
    toward_predicted: torch.Tensor  # `method`'s map of each mistake toward the class it was given
    toward_true: torch.Tensor  # and toward the class it is
    class_means: torch.Tensor  # classes x C x H x W: mean `method` map over correctly classified images of each class
    class_counts: list[int]  # images in each mean
    metrics: dict[str, float]
    method: str  # behind the mistakes and the class means: Integrated Gradients, or Occlusion without gradients


def choose(labels: torch.Tensor, predicted: torch.Tensor, classes: int, settings: Settings) -> tuple[list[int], ...]:
    """Indices of the shown images per class, of the misclassified ones, and of the averaged ones; seeded."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(settings.seed))
    shown, averaged = [], []
    for index in range(classes):
        members = order[labels[order] == index]
        shown += members[: settings.per_class].tolist()
        right = members[predicted[members] == index]
        averaged += right[: settings.mean_per_class].tolist()
    wrong = order[predicted[order] != labels[order]][: settings.misclassified].tolist()
    return shown, wrong, averaged


def _integrated_gradients(
    model: Forward, images: torch.Tensor, targets: torch.Tensor, steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    from captum.attr import IntegratedGradients

    if not len(images):
        return torch.zeros_like(images), torch.zeros(0)
    method = IntegratedGradients(model)
    return method.attribute(
        images,
        torch.zeros_like(images),
        target=targets,
        n_steps=steps,
        internal_batch_size=256,
        return_convergence_delta=True,
    )


def occlusion(forward: Forward, images: torch.Tensor, targets: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """K x C x H x W: how much blanking each square patch (every channel) lowers the target logit; forward passes only."""
    from captum.attr import Occlusion

    if not len(images):
        return torch.zeros_like(images)
    channels = images.shape[1]
    return Occlusion(forward).attribute(
        images,
        sliding_window_shapes=(channels, window, window),
        strides=(channels, stride, stride),
        target=targets,
        perturbations_per_eval=64,
    )


def _noise(scale: float) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Captum's perturbation protocol: (the perturbation, the perturbed inputs)."""

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn_like(inputs) * scale
        return noise, inputs - noise

    return perturb


def _contiguous(attribute: Callable[..., Any]) -> Callable[..., Any]:
    """Captum's sensitivity flattens attributions with `view`, which an RNN's (permuted) gradients refuse."""

    def contiguous_attribute(inputs: Any, **kwargs: Any) -> Any:
        result = attribute(inputs, **kwargs)
        return tuple(part.contiguous() for part in result) if isinstance(result, tuple) else result.contiguous()

    return contiguous_attribute


def explain(
    model: Forward, test: Split, predicted: torch.Tensor, classes: int, settings: Settings, gradients: bool = True
) -> Attributions:
    """Attributions of ``model`` on images of the test split, chosen by their ``predicted`` classes.

    A module must be in eval mode already (an exported one is for good, and refuses `eval()`).

    ``gradients=False`` explains a model that only runs forward (int8, ONNX): Occlusion alone, for
    the chosen images, the mistakes and the class means, and only Occlusion's infidelity.
    """
    with warnings.catch_warnings():
        # Captum notes that it switched on gradients for the input images: that is what it is for
        warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require gradients")
        return _explain(model, test, predicted, classes, settings, gradients)


def _explain(
    model: Forward, test: Split, predicted: torch.Tensor, classes: int, settings: Settings, gradients: bool
) -> Attributions:
    from captum.attr import Saliency
    from captum.metrics import sensitivity_max

    shown, wrong, averaged = choose(test.labels, predicted, classes, settings)
    examples = Examples(test.images[shown], test.labels[shown], predicted[shown])
    mistakes = Examples(test.images[wrong], test.labels[wrong], predicted[wrong])

    def occlude(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return occlusion(model, images, targets, settings.occlusion_window, settings.occlusion_stride)

    def integrate(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return _integrated_gradients(model, images, targets, settings.ig_steps)[0].detach()

    primary = integrate if gradients else occlude  # the method behind the mistakes and the class means
    # the quality measures' noise is seeded; fork_rng leaves the run's own random stream (compression next) as it was
    with torch.enable_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        target = examples.predicted
        maps = {"Occlusion": occlude(examples.images, target)}
        metrics = {}
        if gradients:
            ig, delta = _integrated_gradients(model, examples.images, target, settings.ig_steps)
            saliency = Saliency(model)
            maps = {
                "Saliency": saliency.attribute(examples.images, target=target, abs=False),
                "Integrated Gradients": ig,
                **maps,
            }
            metrics["interpret/ig_convergence_delta"] = float(delta.abs().mean())
            # sensitivity of Saliency only: IG's and Occlusion's repeat the whole method per noisy copy (5-8 s a run)
            metrics["interpret/saliency_sensitivity"] = float(
                sensitivity_max(
                    _contiguous(saliency.attribute),
                    examples.images,
                    target=target,
                    n_perturb_samples=settings.perturbations,
                    perturb_radius=0.02,
                    abs=False,
                ).mean()
            )
        toward_predicted = primary(mistakes.images, mistakes.predicted)
        toward_true = primary(mistakes.images, mistakes.labels)
        means, counts = class_mean_maps(primary, test, averaged, classes)
        for method, scores in infidelities(model, examples, maps, settings.perturbations).items():
            metrics[f"interpret/{method}_infidelity"] = scores
    detached = {name: value.detach() for name, value in maps.items()}
    method = "Integrated Gradients" if gradients else "Occlusion"
    return Attributions(examples, detached, mistakes, toward_predicted, toward_true, means, counts, metrics, method)


SHORT_NAMES = {"Saliency": "saliency", "Integrated Gradients": "ig", "Occlusion": "occlusion"}


def infidelities(
    model: Forward, examples: Examples, maps: dict[str, torch.Tensor], perturbations: int
) -> dict[str, float]:
    """Captum's infidelity of each method's maps (short name -> mean): forward passes only."""
    from captum.metrics import infidelity

    perturb = _noise(0.02)
    return {
        SHORT_NAMES[method]: float(
            infidelity(
                model,
                perturb,
                examples.images,
                method_maps,
                target=examples.predicted,
                n_perturb_samples=perturbations,
                normalize=True,
            ).mean()
        )
        for method, method_maps in maps.items()
    }


def class_mean_maps(
    attribute: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], test: Split, averaged: list[int], classes: int
) -> tuple[torch.Tensor, list[int]]:
    """Mean map of each class (toward the class itself) over its chosen, correctly classified images."""
    images, labels = test.images[averaged], test.labels[averaged]
    maps = attribute(images, labels)
    means = torch.zeros(classes, *test.images.shape[1:])
    counts = [int((labels == index).sum()) for index in range(classes)]
    for index in range(classes):
        if counts[index]:
            means[index] = maps[labels == index].detach().float().mean(0)
    return means, counts
