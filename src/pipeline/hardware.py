"""What this machine computes with: the CPU's numeric features, and the precision `trainer.precision=auto` picks.

The same config and seed give different metrics on CPUs with different instruction sets
(docs/dependencies.md), so a run records its CPU and the features that change numerics; a
rerun says when they differ. bf16 autocast pays where the hardware has bf16 matrix units:
AMX on CPUs (1.9-2.2x the fp32 throughput of our CNN, same accuracy) and bf16-capable GPUs.
Without them bf16 is emulated and slower, so `auto` stays in fp32.
"""

from __future__ import annotations

import platform
from collections.abc import Collection
from functools import cache
from pathlib import Path

# instruction-set features that change which kernels run, hence speed and the last bits of results
NUMERIC_CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
CPUINFO = Path("/proc/cpuinfo")


@cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        first = CPUINFO.read_text().split("\n\n", 1)[0]
    except OSError:
        return {}
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in first.splitlines())}


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The NUMERIC_CPU_FEATURES this CPU has, in that order."""
    flags = set(_cpuinfo().get("flags", "").split())
    return [feature for feature in NUMERIC_CPU_FEATURES if feature in flags]


def auto_precision(on_gpu: bool, gpu_has_bf16: bool, features: Collection[str]) -> str:
    """bf16-mixed where bf16 has hardware (a bf16 GPU, a CPU with AMX), else 32-true."""
    if on_gpu:
        return "bf16-mixed" if gpu_has_bf16 else "32-true"
    return "bf16-mixed" if "amx_bf16" in features else "32-true"
