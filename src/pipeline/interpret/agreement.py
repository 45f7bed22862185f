"""Do compressed variants look where the original looks? Their Occlusion maps against the fp32 model's.

Occlusion needs only a forward function, so it runs on every variant (int8, ONNX, half precision)
alike. Every variant explains the same images toward the same classes (the fp32 model's
predictions), so the maps differ only by what the variant computes. Agreement is the mean cosine
similarity of the maps, image by image: 1 means the same pixels matter in the same proportions; a
variant that is as accurate but looks elsewhere shows a lower number.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from pipeline.data.splits import Split
from pipeline.interpret.attributions import Forward, occlusion

PER_CLASS = 2  # probe images of each class
WINDOW, STRIDE = 4, 2  # Occlusion's square patch and step, in pixels (as the interpret defaults)


def probe_images(test: Split, seed: int) -> torch.Tensor:
    """PER_CLASS test images of each class, chosen with the run's seed."""
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
    classes = test.labels.unique().tolist()
    chosen = [index for label in classes for index in order[test.labels[order] == label][:PER_CLASS].tolist()]
    return test.images[chosen]


def occlusion_maps(forward: Forward, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """N x H x W: how much blanking each patch lowers the target logit (summed over channels)."""
    return occlusion(forward, images, targets, WINDOW, STRIDE).float().sum(1)


def cosine_agreement(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Mean cosine similarity of two stacks of maps, image by image (two all-zero maps agree fully)."""
    reference, other = reference.flatten(1).double(), other.flatten(1).double()
    both_zero = (reference.norm(dim=1) == 0) & (other.norm(dim=1) == 0)
    similarity = torch.nn.functional.cosine_similarity(reference, other, dim=1, eps=1e-12)
    return float(torch.where(both_zero, torch.ones_like(similarity), similarity).mean())


def attribution_agreement(forwards: Mapping[str, Forward], reference: str, test: Split, seed: int) -> dict[str, float]:
    """Each variant's agreement with the ``reference`` variant's Occlusion maps (the reference's own is 1)."""
    images = probe_images(test, seed)
    with torch.inference_mode():
        targets = forwards[reference](images).argmax(1)
    maps = {name: occlusion_maps(forward, images, targets) for name, forward in forwards.items()}
    return {name: cosine_agreement(maps[reference], variant_maps) for name, variant_maps in maps.items()}
