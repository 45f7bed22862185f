"""What a trained classifier looks at: Captum's Saliency, Integrated Gradients and Occlusion on test images.

For a fixed, seeded choice of test images (a few per class, plus misclassified ones), each method
attributes the predicted class's logit to the input pixels; misclassified images are also
attributed toward their true class; and Integrated Gradients is averaged per class over correctly
classified images. Captum's own quality measures come with them: IG's convergence delta (how far
its sum is from the logit difference it explains), infidelity (does perturbing pixels change the
output as the map predicts) and sensitivity (does the map hold still under tiny input noise).

Plain torch and Captum, no MLflow. The baseline is a black image: the background of digits.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from captum.attr import IntegratedGradients, Occlusion, Saliency
from captum.metrics import infidelity, sensitivity_max
from torch import nn

from pipeline.data.splits import Split


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
    toward_predicted: torch.Tensor  # IG of each mistake toward the class it was given
    toward_true: torch.Tensor  # and toward the class it is
    class_means: torch.Tensor  # classes x C x H x W: mean IG over correctly classified images of each class
    class_counts: list[int]  # images in each mean
    metrics: dict[str, float]


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
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
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


def explain(model: nn.Module, test: Split, predicted: torch.Tensor, classes: int, settings: Settings) -> Attributions:
    """Attributions of ``model`` (in eval mode) on images of the test split, chosen by their ``predicted`` classes."""
    model.eval()
    with warnings.catch_warnings():
        # Captum notes that it switched on gradients for the input images: that is what it is for
        warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require gradients")
        return _explain(model, test, predicted, classes, settings)


def _explain(model: nn.Module, test: Split, predicted: torch.Tensor, classes: int, settings: Settings) -> Attributions:
    shown, wrong, averaged = choose(test.labels, predicted, classes, settings)
    examples = Examples(test.images[shown], test.labels[shown], predicted[shown])
    mistakes = Examples(test.images[wrong], test.labels[wrong], predicted[wrong])
    # the quality measures' noise is seeded; fork_rng leaves the run's own random stream (compression next) as it was
    with torch.enable_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        saliency = Saliency(model)
        occlusion = Occlusion(model)
        window = (test.images.shape[1], settings.occlusion_window, settings.occlusion_window)
        stride = (test.images.shape[1], settings.occlusion_stride, settings.occlusion_stride)
        target = examples.predicted
        ig, delta = _integrated_gradients(model, examples.images, target, settings.ig_steps)
        maps = {
            "Saliency": saliency.attribute(examples.images, target=target, abs=False),
            "Integrated Gradients": ig,
            "Occlusion": occlusion.attribute(
                examples.images, sliding_window_shapes=window, strides=stride, target=target, perturbations_per_eval=64
            ),
        }
        toward_predicted, _ = _integrated_gradients(model, mistakes.images, mistakes.predicted, settings.ig_steps)
        toward_true, _ = _integrated_gradients(model, mistakes.images, mistakes.labels, settings.ig_steps)
        means, counts = class_mean_maps(model, test, averaged, classes, settings.ig_steps)
        metrics = {"interpret/ig_convergence_delta": float(delta.abs().mean())}
        perturb = _noise(0.02)
        for key, method in (("saliency", "Saliency"), ("ig", "Integrated Gradients"), ("occlusion", "Occlusion")):
            scores = infidelity(
                model,
                perturb,
                examples.images,
                maps[method],
                target=target,
                n_perturb_samples=settings.perturbations,
                normalize=True,
            )
            metrics[f"interpret/{key}_infidelity"] = float(scores.mean())
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
    detached = {name: value.detach() for name, value in maps.items()}
    return Attributions(
        examples, detached, mistakes, toward_predicted.detach(), toward_true.detach(), means, counts, metrics
    )


def class_mean_maps(
    model: nn.Module, test: Split, averaged: list[int], classes: int, steps: int
) -> tuple[torch.Tensor, list[int]]:
    """Mean IG map of each class (toward the class itself) over its chosen, correctly classified images."""
    images, labels = test.images[averaged], test.labels[averaged]
    maps, _ = _integrated_gradients(model, images, labels, steps)
    means = torch.zeros(classes, *test.images.shape[1:])
    counts = [int((labels == index).sum()) for index in range(classes)]
    for index in range(classes):
        if counts[index]:
            means[index] = maps[labels == index].detach().mean(0)
    return means, counts
