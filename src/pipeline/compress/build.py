"""Make every requested variant of a trained model and measure them all, side by side."""

from __future__ import annotations

from collections.abc import Callable, Sized
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn

from pipeline.compress import onnx_runtime
from pipeline.compress.finetune import Teacher, Training, fine_tune, teacher_logits
from pipeline.compress.measure import Measurement, cpu_int8_features, measure
from pipeline.compress.prune import prune_global
from pipeline.compress.slim import ModelSection, narrower_section, slimmed
from pipeline.compress.variants import (
    Variant,
    VariantSkipped,
    fp32,
    half,
    int8_dynamic,
    int8_static,
    nondeterministic_kernels_allowed,
)
from pipeline.data.splits import ImageSplits
from pipeline.interpret.agreement import attribution_agreement
from pipeline.progress import progress

ModelFactory = Callable[[ModelSection], nn.Module]  # a model section -> a new, untrained model for the run's data


@dataclass(frozen=True)
class Distillation:
    """The student (the model's family at ``width`` of each width) and how it learns from the trained model."""

    width: float
    epochs: int
    lr: float
    temperature: float
    weight: float
    slim_epochs: int  # slim models learn from the trained model too, for this many epochs at ``lr``
    model_changes: dict[str, dict] = field(default_factory=dict)  # per family (class name): the student's own arguments


@dataclass(frozen=True)
class Settings:
    variants: list[str]
    sparsities: list[float]
    slim_fractions: list[float]
    finetune: Training  # of pruned variants; its batch size and seed are every training's
    distillation: Distillation
    calibration_batches: int
    latency_repeats: int
    threads: int
    model_section: ModelSection | None = None  # the trained model's `model` section: what slim and students narrow


@dataclass
class Report:
    measurements: list[Measurement]
    skipped: dict[str, str]
    variants: dict[str, Variant]
    cpu: dict[str, bool] = field(default_factory=cpu_int8_features)
    threads: int = 0
    agreement: dict[str, float] = field(default_factory=dict)  # variant -> attribution agreement with fp32

    def ratios(self, measurement: Measurement) -> dict[str, float]:
        """Each figure against the fp32 original (>1 means smaller or faster)."""
        base = self.measurements[0]
        return {
            "size_ratio": base.size_bytes / measurement.size_bytes,
            "gzip_ratio": base.gzip_bytes / measurement.gzip_bytes,
            "speedup_b256": base.latency_b256_ms / measurement.latency_b256_ms,
            "speedup_b1": base.latency_b1_ms / measurement.latency_b1_ms,
            "acc_delta": measurement.test_acc - base.test_acc,
        }


def _percent_name(prefix: str, fraction: float) -> str:
    return f"{prefix}{round(fraction * 100)}"


def _narrow_model(
    settings: Settings, build: ModelFactory | None, keep: float, name: str, changes: dict | None = None
) -> tuple[ModelSection, nn.Module]:
    """A new model of the trained one's family with every width scaled by ``keep`` and ``changes`` applied, and its section."""
    if settings.model_section is None or build is None:
        raise VariantSkipped(f"{name}: needs the run's model section to build a narrower model")
    section = {**narrower_section(settings.model_section, keep, name), **(changes or {})}
    torch.manual_seed(settings.finetune.seed)  # the same initial weights for every model of this width
    return section, build(section)


def student_changes(settings: Settings) -> dict:
    """What `compression.student_model` changes in the student of this run's model family (e.g. the CNN's downsampling)."""
    family = (settings.model_section or {}).get("_target_", "").rsplit(".", 1)[-1]
    return settings.distillation.model_changes.get(family, {})


def slim_variant(
    model: nn.Module,
    teacher: Teacher,
    splits: ImageSplits,
    settings: Settings,
    build: ModelFactory | None,
    fraction: float,
    workdir: Path,
) -> Variant:
    """Structured pruning: the ``fraction`` least important of every kind of unit removed, then fine-tuned
    in the task's loop with the trained model as teacher."""
    name = _percent_name("slim", fraction)
    section, narrow = _narrow_model(settings, build, 1 - fraction, name)
    try:
        narrow = slimmed(model, narrow, splits.image_shape)
    except VariantSkipped as reason:
        raise VariantSkipped(f"{name}: {reason}") from None
    distillation = settings.distillation
    training = Training(distillation.slim_epochs, distillation.lr, settings.finetune.batch_size, settings.finetune.seed)
    fine_tune(narrow, splits.train, training, teacher)
    return fp32(narrow, workdir, name, section)


def student_variants(
    teacher: Teacher, splits: ImageSplits, settings: Settings, build: ModelFactory | None, workdir: Path
) -> list[Variant]:
    """`distilled`: a narrow student trained on the model's softened outputs and the labels; `student_scratch`:
    the same student (same initial weights, data, epochs) on the labels alone, so the table shows what the teacher adds."""
    distillation = settings.distillation
    training = Training(distillation.epochs, distillation.lr, settings.finetune.batch_size, settings.finetune.seed)
    changes = student_changes(settings)
    section, student = _narrow_model(settings, build, distillation.width, "distilled", changes)
    _, scratch = _narrow_model(settings, build, distillation.width, "student_scratch", changes)
    fine_tune(student, splits.train, training, teacher)
    fine_tune(scratch, splits.train, training)
    return [fp32(student, workdir, "distilled", section), fp32(scratch, workdir, "student_scratch", section)]


def int8_on_top(source: Variant, calibration: list[torch.Tensor], workdir: Path) -> Variant:
    """``source`` in int8: static where it has convolutions, dynamic (Linear, LSTM, GRU) otherwise."""
    name = f"{source.name}_int8"
    try:
        variant = int8_static(source.module, calibration, workdir, name)
    except VariantSkipped:
        variant = int8_dynamic(source.module, workdir, name)
    variant.model_section = source.model_section
    return variant


def onnx_of(source: Variant, example: torch.Tensor, threads: int, workdir: Path) -> Variant:
    """``source`` (a narrower model) run by ONNX Runtime, as the `onnx` variant runs the trained model."""
    name = f"{source.name}_onnx"
    return onnx_runtime.onnx_variant(
        name, onnx_runtime.export(source.module, example, workdir / f"{name}.onnx"), threads
    )


def build_variants(
    model: nn.Module, splits: ImageSplits, settings: Settings, workdir: Path, build: ModelFactory | None = None
) -> tuple[list[Variant], dict[str, str]]:
    """Every variant of ``settings.variants`` that applies (``build`` makes the narrower models of slim and
    distilled), and why each one that does not was skipped."""
    model = model.eval()
    calibration = [splits.train.images[i * 128 : (i + 1) * 128] for i in range(settings.calibration_batches)]
    example = splits.test.images[:2].clone()
    variants, skipped = [fp32(model, workdir)], {}
    pruned: dict[str, Variant] = {}
    slim: list[Variant] = []
    students: list[Variant] = []
    distillation = settings.distillation
    teacher = (  # slim fine-tuning and the student both learn from the trained model's outputs
        Teacher(teacher_logits(model, splits.train.images), distillation.temperature, distillation.weight)
        if {"slim", "distilled"} & set(settings.variants)
        else None
    )

    def attempt(name: str, make) -> Variant | None:
        try:
            made = make()
        except VariantSkipped as reason:
            skipped[name] = str(reason)
            return None
        variants.extend(made if isinstance(made, list) else [made])
        return made

    def built(kind: str, sources: Sized, source: str) -> bool:
        """Whether ``kind``'s ``source`` variants were built earlier; if not, ``kind`` is skipped saying so."""
        if not sources:
            skipped[kind] = f"{kind}: needs a built '{source}' variant earlier in compression.variants"
        return bool(sources)

    for kind in progress(settings.variants, "compress: build"):
        if kind == "fp16":
            attempt(kind, lambda: half(model, torch.float16, workdir, example))
        elif kind == "bf16":
            attempt(kind, lambda: half(model, torch.bfloat16, workdir, example))
        elif kind == "pruned":
            for sparsity in settings.sparsities:
                name = _percent_name("pruned", sparsity)
                pruned[name] = fp32(prune_global(model, sparsity, splits.train, settings.finetune), workdir, name)
                variants.append(pruned[name])
        elif kind == "slim":
            for fraction in settings.slim_fractions:
                made = attempt(
                    _percent_name("slim", fraction),
                    partial(slim_variant, model, teacher, splits, settings, build, fraction, workdir),
                )
                slim += [made] if made else []
        elif kind in ("slim_int8", "slim_onnx"):
            if not built(kind, slim, "slim"):
                continue
            slimmest = max(slim, key=lambda variant: int(variant.name.removeprefix("slim")))
            if kind == "slim_int8":
                attempt(kind, partial(int8_on_top, slimmest, calibration, workdir))
            else:
                attempt(kind, partial(onnx_of, slimmest, example, settings.threads, workdir))
        elif kind == "distilled":
            students = attempt(kind, partial(student_variants, teacher, splits, settings, build, workdir)) or []
        elif kind == "distilled_int8":
            if built(kind, students, "distilled"):
                attempt(kind, partial(int8_on_top, students[0], calibration, workdir))
        elif kind == "int8_static":
            attempt(kind, lambda: int8_static(model, calibration, workdir))
        elif kind == "int8_dynamic":
            attempt(kind, lambda: int8_dynamic(model, workdir))
        elif kind == "pruned_int8":
            if built(kind, pruned, "pruned"):
                sparsest = max(pruned, key=lambda key: int(key.removeprefix("pruned")))
                attempt(kind, partial(int8_on_top, pruned[sparsest], calibration, workdir))
        elif kind == "onnx":
            attempt(
                kind,
                lambda: onnx_runtime.onnx_variant(
                    "onnx", onnx_runtime.export(model, example, workdir / "model.onnx"), settings.threads
                ),
            )
        elif kind == "onnx_int8":
            attempt(
                kind,
                lambda: onnx_runtime.onnx_variant(
                    "onnx_int8", onnx_runtime.quantized(model, example, calibration, workdir), settings.threads
                ),
            )
    return variants, skipped


def compress(
    model: nn.Module, splits: ImageSplits, settings: Settings, workdir: Path, build: ModelFactory | None = None
) -> Report:
    """Build, then measure every variant on the test split at a fixed thread count, and compare what each looks at."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        with nondeterministic_kernels_allowed():
            variants, skipped = build_variants(model, splits, settings, workdir, build)
            measurements = measure(variants, splits.test, settings.latency_repeats, settings.finetune.seed)
            agreement = attribution_agreement(
                {variant.name: variant.predict for variant in variants}, "fp32", splits.test, settings.finetune.seed
            )
    finally:
        torch.set_num_threads(previous_threads)
    by_name = {variant.name: variant for variant in variants}
    return Report(measurements, skipped, by_name, threads=settings.threads, agreement=agreement)
