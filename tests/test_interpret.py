"""Attribution maps (Captum): they point where a model looks, and every model family's run carries them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import run_training, store_client
from pipeline.config.compose import compose_config, stored_config
from pipeline.data.splits import Split
from pipeline.interpret import figures
from pipeline.interpret.agreement import attribution_agreement, cosine_agreement
from pipeline.interpret.attributions import Settings, choose, explain
from pipeline.sweeps.parent_run import PARENT_RUN_ENV
from pipeline.workflows.run_plan import attributions_wanted

SETTINGS = Settings(
    per_class=2,
    misclassified=4,
    mean_per_class=5,
    ig_steps=16,
    occlusion_window=4,
    occlusion_stride=4,
    perturbations=4,
    seed=0,
)


class LooksAtOneCorner(nn.Module):
    """Class 1's logit is the brightness of the top-left 8x8 corner (minus a bias); class 0's is constant."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        corner = images[:, :, :8, :8].flatten(1).sum(1)
        return torch.stack([torch.full_like(corner, 20.0), corner], dim=1)


def corner_images(count: int) -> Split:
    """Random images; half with a bright top-left corner (class 1), half without (class 0)."""
    images = torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.5
    labels = torch.arange(count) % 2
    images[labels == 1, :, :8, :8] = 1.0
    images[labels == 0, :, :8, :8] = 0.0
    return Split(images, labels)


def test_every_method_finds_the_pixels_the_model_looks_at() -> None:
    model, test = LooksAtOneCorner(), corner_images(16)
    predicted = model(test.images).argmax(1)
    attributions = explain(model, test, predicted, 2, SETTINGS)
    looked_at = attributions.examples.predicted == 1
    assert looked_at.any()
    for method, maps in attributions.maps.items():
        magnitude = maps[looked_at].abs().sum(1)
        corner_share = magnitude[:, :8, :8].sum() / magnitude.sum()
        assert corner_share > 0.99, method  # nothing outside the corner moves the logit
    # IG's attributions sum to the logit's rise over the black baseline: 64 bright pixels
    assert attributions.maps["Integrated Gradients"][looked_at].sum((1, 2, 3)) == pytest.approx(
        torch.full((int(looked_at.sum()),), 64.0), rel=1e-3
    )
    assert attributions.metrics["interpret/ig_convergence_delta"] < 1e-3
    for name, value in attributions.metrics.items():
        assert math.isfinite(value), name


def test_the_shown_images_are_seeded_per_class_and_the_mistakes_are_mistakes() -> None:
    labels = torch.arange(40) % 4
    predicted = labels.clone()
    predicted[:6] = (labels[:6] + 1) % 4
    settings = SETTINGS
    shown, wrong, averaged = choose(labels, predicted, 4, settings)
    assert (shown, wrong, averaged) == choose(labels, predicted, 4, settings)
    assert sorted(labels[shown].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len(wrong) == 4 and all(predicted[index] != labels[index] for index in wrong)
    assert all(predicted[index] == labels[index] for index in averaged)
    assert [int((labels[averaged] == c).sum()) for c in range(4)] == [5, 5, 5, 5]


def test_figures_show_every_map_and_say_what_the_colours_mean() -> None:
    model, test = LooksAtOneCorner(), corner_images(16)
    attributions = explain(model, test, model(test.images).argmax(1), 2, SETTINGS)
    maps = figures.method_maps(attributions, ["dark", "bright"])
    labels = [axis.get_ylabel() for axis in maps.axes if axis.get_ylabel()]
    assert labels == ["input", "Saliency", "Integrated Gradients", "Occlusion"]
    assert "red raises the class's logit" in maps._suptitle.get_text()
    none_wrong = figures.mistakes(attributions, ["dark", "bright"])
    assert none_wrong._suptitle.get_text() == "No misclassified test images"


def test_sweep_trials_skip_the_maps_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = compose_config([])
    assert attributions_wanted(cfg)
    monkeypatch.setenv(PARENT_RUN_ENV, "0" * 32)
    assert not attributions_wanted(cfg)
    assert attributions_wanted(compose_config(["interpret.in_sweep_trials=true"]))
    assert not attributions_wanted(compose_config(["interpret=none", "interpret.in_sweep_trials=true"]))


def test_a_config_stored_before_the_interpret_section_gets_its_defaults() -> None:
    current = compose_config([])
    older = {key: value for key, value in current.items() if key != "interpret"}
    cfg = stored_config(OmegaConf.to_yaml(OmegaConf.create(older)), [])
    assert cfg.interpret == current.interpret


@pytest.mark.slow
@pytest.mark.parametrize("family", ["cnn", "rnn", "transformer", "mlp"])
def test_every_model_family_logs_attribution_maps(family: str, tiny: list[str], output_root: Path) -> None:
    result = run_training([*tiny, f"model={family}", "interpret=default", "interpret.ig_steps=8"])
    client = store_client(output_root)
    run = client.get_run(result.run_id)
    metrics = run.data.metrics
    for name in ("ig_convergence_delta", "saliency_infidelity", "ig_infidelity", "occlusion_infidelity"):
        assert math.isfinite(metrics[f"interpret/{name}"]), name
    assert math.isfinite(metrics["interpret/saliency_sensitivity"])
    assert "interpret.skipped" not in run.data.tags
    logged = {artifact.path for artifact in client.list_artifacts(result.run_id, "interpret")}
    assert logged == {"interpret/maps.png", "interpret/class_mean_ig.png", "interpret/misclassified.png"}


class LooksAlsoAtTheOtherCorner(nn.Module):
    """Decides as LooksAtOneCorner does (both logits move together), but both logits mostly follow the bottom-right corner."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        corner = images[:, :, :8, :8].flatten(1).sum(1)
        other = images[:, :, -8:, -8:].flatten(1).sum(1) * 5
        return torch.stack([20.0 + other, corner + other], dim=1)


def test_agreement_is_one_for_the_same_model_and_low_for_one_that_looks_elsewhere() -> None:
    test = corner_images(16)
    original = LooksAtOneCorner()
    scores = attribution_agreement(
        {"fp32": original, "copy": LooksAtOneCorner(), "elsewhere": LooksAlsoAtTheOtherCorner()}, "fp32", test, seed=0
    )
    assert scores["fp32"] == scores["copy"] == pytest.approx(1.0)
    assert scores["elsewhere"] < 0.5
    predictions = {
        name: model(test.images).argmax(1) for name, model in (("a", original), ("b", LooksAlsoAtTheOtherCorner()))
    }
    assert torch.equal(predictions["a"], predictions["b"])  # as accurate: only the attributions tell them apart
    assert cosine_agreement(torch.ones(2, 3, 3), -torch.ones(2, 3, 3)) == pytest.approx(-1.0)
    assert cosine_agreement(torch.zeros(2, 3, 3), torch.zeros(2, 3, 3)) == 1.0
