"""Train-only augmentation built from config values (torchvision transforms v2, per image)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchvision.transforms import v2


def build_augmentation(
    image_size: tuple[int, int], degrees: float, translate: float, scale_min: float, scale_max: float, crop_padding: int
) -> v2.Transform:
    from torchvision.transforms import v2  # 2 s of imports: only for a run that augments

    steps: list[v2.Transform] = [
        v2.RandomAffine(degrees=degrees, translate=(translate, translate), scale=(scale_min, scale_max))
    ]
    if crop_padding > 0:
        steps.append(v2.RandomCrop(image_size, padding=crop_padding))
    return v2.Compose(steps)
