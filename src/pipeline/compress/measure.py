"""What a variant costs and gains: test accuracy and loss, bytes on disk, CPU latency."""

from __future__ import annotations

import gzip
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.compress.variants import Predict, Variant
from pipeline.data.splits import Split
from pipeline.evaluation import bootstrap_interval, mcnemar_p
from pipeline.progress import progress

SIGNIFICANCE = 0.05  # a McNemar p-value under this: the variant's accuracy differs from fp32's


@dataclass(frozen=True)
class Measurement:
    name: str
    kind: str
    test_acc: float
    test_loss: float
    size_bytes: int
    gzip_bytes: int
    latency_b256_ms: float
    latency_b1_ms: float
    acc_ci95_low: float  # bootstrap interval of test_acc (a test split is a sample)
    acc_ci95_high: float
    mcnemar_p: float  # exact McNemar test against the first variant (fp32) on the same images; 1.0 for fp32

    @property
    def differs_from_reference(self) -> bool:
        return self.mcnemar_p < SIGNIFICANCE


def evaluate(predict: Predict, split: Split, batch_size: int = 512) -> tuple[torch.Tensor, float]:
    """Which test images the variant gets right, and its mean cross-entropy."""
    correct, loss = [], 0.0
    for start in range(0, len(split), batch_size):
        logits = predict(split.images[start : start + batch_size]).float()
        labels = split.labels[start : start + batch_size]
        correct.append(logits.argmax(dim=1) == labels)
        loss += float(F.cross_entropy(logits, labels, reduction="sum"))
    return torch.cat(correct), loss / len(split)


def sizes(path: Path) -> tuple[int, int]:
    """Bytes of the saved model, and after gzip (what pruning's zeros buy)."""
    data = path.read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=6))


def latencies(predictors: dict[str, Predict], batch: torch.Tensor, repeats: int) -> dict[str, tuple[float, float]]:
    """Median ms per batch of len(batch) and per single sample, interleaving the models each round.

    Interleaving spreads a noisy neighbour's load over every model instead of one.
    """
    sample = batch[:1].clone()
    timings: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in predictors}
    for predict in predictors.values():  # warm-up: first calls allocate, pack weights, pick kernels
        predict(batch), predict(sample)
    for _ in range(repeats):
        for name, predict in predictors.items():
            for inputs, store in ((batch, timings[name][0]), (sample, timings[name][1])):
                started = time.perf_counter()
                predict(inputs)
                store.append((time.perf_counter() - started) * 1000)
    return {name: (statistics.median(big), statistics.median(one)) for name, (big, one) in timings.items()}


def measure(variants: list[Variant], test: Split, repeats: int, seed: int, batch_size: int = 256) -> list[Measurement]:
    """Every variant on the same test images; intervals and tests against ``variants[0]`` (fp32)."""
    timing = latencies(
        {variant.name: variant.predict for variant in variants}, test.images[:batch_size].clone(), repeats
    )
    results, reference = [], None
    for variant in progress(variants, "compress: evaluate", lambda variant: variant.name):
        correct, loss = evaluate(variant.predict, test)
        reference = correct if reference is None else reference
        size, compressed = sizes(variant.artifact)
        low, high = bootstrap_interval(correct, seed)
        results.append(
            Measurement(
                variant.name,
                variant.kind,
                float(correct.double().mean()),
                loss,
                size,
                compressed,
                *timing[variant.name],
                low,
                high,
                mcnemar_p(reference, correct),
            )
        )
    return results


def cpu_int8_features() -> dict[str, bool]:
    """The CPU's int8 / bf16 instructions: they decide whether int8 and bf16 can be fast here."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    return {name: name in flags for name in ("avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "avx512_bf16")}
