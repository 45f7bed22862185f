"""Make every requested variant of a trained model and measure them all, side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn

from pipeline.compress import onnx_runtime
from pipeline.compress.measure import Measurement, cpu_int8_features, measure
from pipeline.compress.prune import prune_global
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

VARIANT_KINDS = ("fp16", "bf16", "pruned", "int8_static", "int8_dynamic", "pruned_int8", "onnx", "onnx_int8")


@dataclass(frozen=True)
class Settings:
    variants: list[str]
    sparsities: list[float]
    finetune_epochs: int
    finetune_lr: float
    batch_size: int
    calibration_batches: int
    latency_repeats: int
    threads: int
    seed: int


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


def _pruned_name(sparsity: float) -> str:
    return f"pruned{round(sparsity * 100)}"


def build_variants(
    model: nn.Module, splits: ImageSplits, settings: Settings, workdir: Path
) -> tuple[list[Variant], dict[str, str]]:
    model = model.eval()
    calibration = [splits.train.images[i * 128 : (i + 1) * 128] for i in range(settings.calibration_batches)]
    example = splits.test.images[:2].clone()
    variants, skipped = [fp32(model, workdir)], {}
    pruned: dict[str, nn.Module] = {}

    def attempt(name: str, make) -> None:
        try:
            variants.append(make())
        except VariantSkipped as reason:
            skipped[name] = str(reason)

    for kind in progress(settings.variants, "compress: build"):
        if kind == "fp16":
            attempt(kind, lambda: half(model, torch.float16, workdir, example))
        elif kind == "bf16":
            attempt(kind, lambda: half(model, torch.bfloat16, workdir, example))
        elif kind == "pruned":
            for sparsity in settings.sparsities:
                name = _pruned_name(sparsity)
                pruned[name] = prune_global(
                    model,
                    sparsity,
                    splits.train,
                    settings.finetune_epochs,
                    settings.finetune_lr,
                    settings.batch_size,
                    settings.seed,
                )
                variants.append(fp32(pruned[name], workdir, name))
        elif kind == "int8_static":
            attempt(kind, lambda: int8_static(model, calibration, workdir))
        elif kind == "int8_dynamic":
            attempt(kind, lambda: int8_dynamic(model, workdir))
        elif kind == "pruned_int8":
            if not pruned:
                skipped[kind] = "pruned_int8: needs 'pruned' earlier in compression.variants"
                continue
            name = max(pruned, key=lambda key: int(key.removeprefix("pruned")))
            source = pruned[name]
            attempt(kind, partial(int8_static, source, calibration, workdir, f"{name}_int8"))
            if kind in skipped:  # no convolutions: dynamic int8 is what applies
                skipped.pop(kind)
                attempt(kind, partial(int8_dynamic, source, workdir, f"{name}_int8"))
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


def compress(model: nn.Module, splits: ImageSplits, settings: Settings, workdir: Path) -> Report:
    """Build, then measure every variant on the test split at a fixed thread count, and compare what each looks at."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        with nondeterministic_kernels_allowed():
            variants, skipped = build_variants(model, splits, settings, workdir)
            measurements = measure(variants, splits.test, settings.latency_repeats, settings.seed)
            agreement = attribution_agreement(
                {variant.name: variant.predict for variant in variants}, "fp32", splits.test, settings.seed
            )
    finally:
        torch.set_num_threads(previous_threads)
    by_name = {variant.name: variant for variant in variants}
    return Report(measurements, skipped, by_name, threads=settings.threads, agreement=agreement)
