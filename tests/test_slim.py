"""Structured pruning keeps the right units, and distillation learns from its teacher (real models, tiny data)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from pipeline.compress.build import Distillation, Settings, build_variants
from pipeline.compress.finetune import DistillationTask, Teacher, Training, fine_tune, teacher_logits
from pipeline.compress.slim import UNIT_RULES, narrower_section, slimmed
from pipeline.compress.variants import VariantSkipped
from pipeline.config.compose import compose_config
from pipeline.config.instantiate import safe_instantiate
from pipeline.data.splits import ImageSplits
from pipeline.models.build import build_model
from pipeline.workflows.compress import model_factory

FAMILIES = {
    "cnn": ["model=cnn"],
    "cnn without batch norm or hidden layer": ["model=cnn", "model.batch_norm=false", "model.hidden=null"],
    "mlp": ["model=mlp"],
    "lstm": ["model=rnn"],
    "two-layer bidirectional gru": ["model=rnn", "model.cell=gru", "model.num_layers=2", "model.bidirectional=true"],
    "transformer": ["model=transformer", "model.num_layers=1"],
}


def family(
    overrides: list[str], data: tuple[str, ...] = ("data=synthetic", "data.train_size=96", "data.test_size=64")
) -> tuple[dict, nn.Module, ImageSplits, object]:
    cfg = compose_config([*overrides, *data])
    splits = safe_instantiate(cfg.data, "data", shuffle_seed=0).splits
    torch.manual_seed(0)
    model = build_model(cfg, splits.image_shape, 10).eval()
    return OmegaConf.to_container(cfg.model, resolve=True), model, splits, model_factory(cfg, splits)


def kill_units(model: nn.Module, narrow: nn.Module, image_shape: tuple[int, ...]) -> None:
    """Zero every entry of the units a narrower model has no room for (in each group, the odd-numbered
    first): those units then contribute nothing, and the narrow model must compute the same function."""
    rule = UNIT_RULES[type(model[-1])]
    state = model.state_dict()
    with torch.no_grad():
        for group in rule(model[-1], narrow[-1], f"{len(model) - 1}.", image_shape):
            dead = sorted(range(group.count), key=lambda unit: (unit % 2 == 0, unit))[: group.count - group.keep]
            for span in group.spans:
                state[span.key].index_fill_(span.axis, torch.tensor(span.indices(dead), dtype=torch.long), 0.0)


@pytest.mark.parametrize("name", FAMILIES)
def test_slimming_keeps_exactly_the_units_that_matter(name: str) -> None:
    section, model, splits, build = family(FAMILIES[name])
    if name == "transformer":  # layer norms see the residual width: only narrower attention heads' inner units
        narrow_section = {**section, "ff_dim": section["ff_dim"] // 2}  # and feed-forward neurons change nothing
    else:
        narrow_section = narrower_section(section, 0.5, "slim50")
    narrow = build(narrow_section)
    kill_units(model, narrow, splits.image_shape)
    images = splits.test.images
    expected = model(images)
    slim = slimmed(model, narrow, splits.image_shape).eval()
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in model.parameters())
    torch.testing.assert_close(slim(images), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["cnn", "lstm", "transformer"])
def test_a_slim_model_is_the_family_at_the_narrower_widths(name: str) -> None:
    section, model, splits, build = family(FAMILIES[name])
    narrow_section = narrower_section(section, 0.25, "slim75")
    slim = slimmed(model, build(narrow_section), splits.image_shape)  # strict load: every shape as the section says
    backbone = slim[-1]
    if name == "cnn":
        assert narrow_section["channels"] == [8, 16] and narrow_section["hidden"] == 32
        assert [layer.out_channels for layer in backbone.features if isinstance(layer, nn.Conv2d)] == [8, 16]
    elif name == "lstm":
        assert backbone.rnn.hidden_size == 32 and backbone.head.in_features == 32
    else:
        assert narrow_section["d_model"] == 32 and narrow_section["num_heads"] == section["num_heads"]
        assert backbone.encoder.layers[0].self_attn.head_dim == 32 // section["num_heads"]
    assert slim(splits.test.images[:3]).shape == (3, 10)


def test_a_model_without_a_width_rule_is_skipped_with_the_reason(tmp_path: Path) -> None:
    _, model, splits, build = family(FAMILIES["mlp"])
    settings = Settings(
        ["slim", "slim_int8", "distilled"],
        [],
        [0.5],
        Training(0, 1e-3, 32, 0),
        Distillation(0.25, 0, 1e-3, 4.0, 0.5, 0),
        1,
        1,
        1,
        {"_target_": "my_models.Net", "width": 64},
    )
    variants, skipped = build_variants(model, splits, settings, tmp_path, build)
    assert [variant.name for variant in variants] == ["fp32"]
    assert skipped == {
        "slim50": "slim50: no width rule for model 'my_models.Net' (CNN, MLP, RNN, Transformer)",
        "slim_int8": "slim_int8: needs a built 'slim' variant earlier in compression.variants",
        "distilled": "distilled: no width rule for model 'my_models.Net' (CNN, MLP, RNN, Transformer)",
    }
    with pytest.raises(VariantSkipped, match="no width rule"):
        narrower_section({"_target_": "my_models.Net"}, 0.5, "slim50")


def test_the_cnn_student_halves_the_image_with_strided_convolutions_and_no_pooling(tmp_path: Path) -> None:
    """compression.student_model.CNN (downsample: stride by default): the student and its scratch twin are that
    design; slim models keep the trained model's, since they hold its sliced weights; int8 goes on top."""
    section, model, splits, build = family(FAMILIES["cnn"])
    compression = compose_config([]).compression
    settings = Settings(
        ["slim", "distilled", "distilled_int8"],
        [],
        [0.5],
        Training(0, 1e-3, 32, 0),
        Distillation(0.25, 1, 1e-3, 4.0, 0.5, 0, OmegaConf.to_container(compression.student_model)),
        1,
        1,
        1,
        section,
    )
    variants, skipped = build_variants(model, splits, settings, tmp_path, build)
    assert skipped == {}
    by_name = {variant.name: variant for variant in variants}
    assert list(by_name) == ["fp32", "slim50", "distilled", "student_scratch", "distilled_int8"]
    for name in ("distilled", "student_scratch"):
        backbone = by_name[name].module[-1]
        assert by_name[name].model_section == {**section, "channels": [8, 16], "hidden": 32, "downsample": "stride"}
        assert [layer.stride for layer in backbone.features if isinstance(layer, nn.Conv2d)] == [(2, 2), (2, 2)]
        assert not any(isinstance(layer, nn.MaxPool2d) for layer in backbone.modules())
    assert any(isinstance(layer, nn.MaxPool2d) for layer in by_name["slim50"].module.modules())
    assert by_name["distilled_int8"].recipe == "static"
    assert by_name["distilled_int8"].model_section == by_name["distilled"].model_section
    images = splits.test.images
    agreement = by_name["distilled_int8"].predict(images).argmax(1) == by_name["distilled"].predict(images).argmax(1)
    assert agreement.float().mean() > 0.9


def test_the_distillation_loss_is_the_labels_loss_at_weight_zero_and_zero_against_itself() -> None:
    _, model, splits, _ = family(FAMILIES["mlp"])
    images, labels = splits.train.images[:16], splits.train.labels[:16]
    logits = model(images)
    batch = (images, labels, teacher_logits(model, images))
    at_zero = DistillationTask(model, 10, torch.optim.Adam, Teacher(batch[2], 4.0, 0.0))
    torch.testing.assert_close(at_zero.training_loss(batch, logits), F.cross_entropy(logits, labels))
    only_teacher = DistillationTask(model, 10, torch.optim.Adam, Teacher(batch[2], 4.0, 1.0))
    assert float(only_teacher.training_loss(batch, logits).detach()) == pytest.approx(0.0, abs=1e-6)


def test_a_distilled_student_moves_toward_its_teacher_and_one_from_scratch_does_not() -> None:
    """Same initial weights, batches and epochs; only the loss differs. On digits: a teacher with something to teach."""
    section, teacher, splits, build = family(FAMILIES["mlp"], data=("data=mnist_subset",))
    fine_tune(teacher, splits.train, Training(2, 2e-3, 128, 0))
    taught_by = Teacher(teacher_logits(teacher, splits.train.images), 4.0, 0.7)
    students = []
    for taught in (True, False):
        torch.manual_seed(1)
        student = build(narrower_section(section, 0.25, "student"))
        fine_tune(student, splits.train, Training(6, 2e-3, 128, 0), taught_by if taught else None)
        students.append(student)

    def divergence_from_teacher(student: nn.Module) -> float:
        with torch.no_grad():
            target = F.log_softmax(teacher(splits.test.images), dim=1)
            predicted = F.log_softmax(student(splits.test.images), dim=1)
            return float(F.kl_div(predicted, target, log_target=True, reduction="batchmean"))

    distilled, scratch = students
    assert divergence_from_teacher(distilled) < 0.5 * divergence_from_teacher(scratch)  # 0.021 against 0.144 here
