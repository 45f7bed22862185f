"""Log a compression report to the open MLflow run: models, each with its metrics, one table, one figure, registry.

Formats, by what loads back (docs/dependencies.md): fp32 / pruned / half precision modules go through
torch.export (`pt2`); statically quantized int8 modules cannot be exported or pickled, so their
int8 state dict is logged with a pyfunc wrapper that rebuilds the module from the run's config;
dynamically quantized modules are pickled; ONNX models use MLflow's onnx flavor.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.models import infer_signature
from omegaconf import OmegaConf

from pipeline.compress.build import Report
from pipeline.compress.measure import Measurement
from pipeline.compress.variants import Variant
from pipeline.failpoints import failpoint
from pipeline.tracking.ledger import RunLedger
from pipeline.tracking.mlflow_internals import without_redundant_model_checks
from pipeline.tracking.quantized_model import IMPORTED_DISTRIBUTIONS, QuantizedClassifier, code_paths
from pipeline.tracking.requirements import ONNX_MODEL, TORCH_MODEL, exact_requirements
from pipeline.tracking.run import quiet_export_warnings
from pipeline.tracking.store import register_model


def log_variant_model(variant: Variant, example: torch.Tensor, config_yaml: str, num_classes: int) -> str:
    """Log one variant as an MLflow model under the open run; return its model URI."""
    example_np = example.numpy()
    output = variant.predict(example).numpy()
    signature = infer_signature(example_np, output)
    name = f"model-{variant.name}"
    common = {"name": name, "signature": signature, "input_example": example_np}
    with quiet_export_warnings(), without_redundant_model_checks():
        if variant.kind == "onnx":
            import onnx

            info = mlflow.onnx.log_model(
                onnx.load(str(variant.artifact)),
                onnx_execution_providers=["CPUExecutionProvider"],
                pip_requirements=exact_requirements(ONNX_MODEL),
                **common,
            )
        elif variant.kind == "torch":
            info = mlflow.pytorch.log_model(variant.module, pip_requirements=exact_requirements(TORCH_MODEL), **common)
        elif variant.recipe == "dynamic":
            info = mlflow.pytorch.log_model(
                variant.module,
                serialization_format="pickle",
                pip_requirements=exact_requirements(TORCH_MODEL),
                **common,
            )
        else:
            if (
                variant.model_section is not None
            ):  # a narrower model (slim): the int8 module is rebuilt from its section
                config_yaml = OmegaConf.to_yaml(
                    OmegaConf.merge(OmegaConf.create(config_yaml), {"model": variant.model_section})
                )
            with tempfile.TemporaryDirectory() as scratch:
                folder = Path(scratch)
                (folder / "config.yaml").write_text(config_yaml)
                (folder / "input_shape.txt").write_text(" ".join(str(size) for size in example.shape[1:]))
                (folder / "num_classes.txt").write_text(str(num_classes))
                artifacts = {
                    "config": str(folder / "config.yaml"),
                    "state_dict": str(variant.artifact),
                    "input_shape": str(folder / "input_shape.txt"),
                    "num_classes": str(folder / "num_classes.txt"),
                }
                info = mlflow.pyfunc.log_model(
                    python_model=QuantizedClassifier(),
                    artifacts=artifacts,
                    code_paths=code_paths(),
                    pip_requirements=exact_requirements(IMPORTED_DISTRIBUTIONS),
                    **common,
                )
    return info.model_uri


def comparison_with_reference(measurement: Measurement, is_reference: bool) -> str:
    """The significance mark: `reference` (fp32), `n.s.` (not told apart from fp32 on these images) or the p-value."""
    if is_reference:
        return "reference"
    return f"p={measurement.mcnemar_p:.2g}" if measurement.differs_from_reference else "n.s."


def variant_rows(report: Report) -> list[dict[str, Any]]:
    rows = []
    for index, measurement in enumerate(report.measurements):
        row = {
            "variant": measurement.name,
            "format": measurement.kind,
            "test_acc": measurement.test_acc,
            "acc_ci95_low": measurement.acc_ci95_low,
            "acc_ci95_high": measurement.acc_ci95_high,
            "mcnemar_p": measurement.mcnemar_p,
            "vs_fp32": comparison_with_reference(measurement, index == 0),
            "test_loss": measurement.test_loss,
            "size_bytes": measurement.size_bytes,
            "gzip_bytes": measurement.gzip_bytes,
            "latency_b256_ms": measurement.latency_b256_ms,
            "latency_b1_ms": measurement.latency_b1_ms,
        }
        row.update(report.ratios(measurement))
        row["attribution_agreement"] = report.agreement.get(measurement.name, math.nan)
        rows.append(row)
    return rows


def format_table(report: Report) -> str:
    """The variants as a fixed-width text table (also printed by the benchmark script).

    `vs fp32`: an exact McNemar test on the same test images; `n.s.` means the accuracy
    difference is within what those images can tell apart (p >= 0.05).
    """
    header = (
        f"{'variant':16} {'acc (95% interval)':>21} {'Δacc':>7} {'vs fp32':>9} {'size':>10} {'gzip':>10} "
        f"{'size x':>7} {'gzip x':>7} {'b256 ms':>9} {'b1 ms':>8} {'b256 x':>7} {'attr':>6}"
    )
    lines = [header]
    for row in variant_rows(report):
        accuracy = f"{row['test_acc']:.4f} ({row['acc_ci95_low']:.3f}-{row['acc_ci95_high']:.3f})"
        lines.append(
            f"{row['variant']:16} {accuracy:>21} {row['acc_delta'] * 100:+6.2f}p {row['vs_fp32']:>9} "
            f"{row['size_bytes']:10d} {row['gzip_bytes']:10d} {row['size_ratio']:7.2f} {row['gzip_ratio']:7.2f} "
            f"{row['latency_b256_ms']:9.2f} {row['latency_b1_ms']:8.3f} {row['speedup_b256']:7.2f} "
            f"{row['attribution_agreement']:6.3f}"
        )
    lines += [f"{name:16} skipped: {reason}" for name, reason in report.skipped.items()]
    return "\n".join(lines)


def log_report(
    report: Report,
    example: torch.Tensor,
    config_yaml: str,
    num_classes: int,
    registered_model: str | None,
    original_uri: str | None,
    ledger: RunLedger | None = None,
) -> dict[str, str]:
    """Everything about the variants into the open run; returns variant name -> model URI.

    The models go first, then each variant's metrics, linked to its own model: MLflow links every
    metric a run holds at a model's step to each model it logs, so models logged after the 17
    variants' ~270 metrics would each carry all of them (the UI showing int8's accuracy on the fp16
    model) and each read the run's every metric history to copy them (~0.4 s a model here).
    With a ``ledger`` (a resumed run), metrics, models, the table and registered versions that an
    earlier process logged are kept and not logged again.
    """
    from pipeline.compress.tradeoff import tradeoff_figure  # matplotlib: only where a run logs its variants
    from pipeline.plotting import pyplot

    uris = {}
    for name, variant in report.variants.items():
        if name == "fp32" and original_uri:
            uris[name] = original_uri
        else:
            logged = ledger.logged_model(f"model-{name}") if ledger is not None else None
            uris[name] = logged or log_variant_model(variant, example, config_yaml, num_classes)
    failpoint("compression")
    rows = variant_rows(report)
    for row in rows:
        metrics = {
            f"compress/{row['variant']}/{key}": float(value)
            for key, value in row.items()
            if not isinstance(value, str) and not math.isnan(value)
        }
        if ledger is not None:
            metrics = ledger.new_metrics(metrics, step=0)
        if metrics:
            mlflow.log_metrics(metrics, step=0, model_id=model_id(uris.get(row["variant"])))
    if ledger is None or not ledger.has_artifact("compression/variants.json"):  # log_table appends to an existing table
        mlflow.log_table({key: [row[key] for row in rows] for key in rows[0]}, "compression/variants.json")
    mlflow.log_text(format_table(report) + "\n", "compression/variants.txt")
    figure = tradeoff_figure(rows)
    mlflow.log_figure(figure, "compression/tradeoff.png")
    pyplot().close(figure)
    tags = {f"cpu.{name}": str(present).lower() for name, present in report.cpu.items()}
    tags["compress.threads"] = str(report.threads)
    tags.update({f"compress.skipped.{name}": reason for name, reason in report.skipped.items()})
    mlflow.set_tags(tags)
    if registered_model:
        for name, uri in uris.items():
            if ledger is None or not ledger.registered(registered_model, name):
                register_model(uri, registered_model, {"variant": name})
                failpoint("registry")
    return uris


def model_id(uri: str | None) -> str | None:
    """The logged model's id in a `models:/<id>` URI (what `log_model` returns); None for anything else."""
    return uri.removeprefix("models:/") if uri and uri.startswith("models:/m-") else None
