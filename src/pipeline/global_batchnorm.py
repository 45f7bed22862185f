"""Batch norm over the global batch under DDP, on CPUs (gloo) as on GPUs: `trainer.sync_batchnorm`.

Each DDP process sees its share of the batch; plain batch norm then normalises over that share,
so a CNN trained on N processes is a different model from one trained in one. torch's SyncBatchNorm
fixes that on GPUs only (it refuses CPU tensors). GlobalBatchNorm sums each channel's count, sum
and sum of squares over the processes with a differentiable all-reduce (the gradient flows back
through the statistics to every process), normalises with the global mean and variance, and
updates the running statistics as one process would. Outside training, or with one process, it is
the layer it replaced. After fit, ``GlobalBatchNormSync.revert`` puts the model's own layers back
(BatchNorm2d stays BatchNorm2d, so int8 quantization still fuses it and an exported model is plain).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from pytorch_lightning.plugins.layer_sync import LayerSync
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) with its gradient: every process's statistics depend on every process's inputs.

    (torch.distributed.nn.functional.all_reduce does this too, but is deprecated for functional
    collectives that have no gradient for all_reduce.)
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(_BatchNorm):
    """A batch-norm layer whose training statistics cover every DDP process's batch."""

    def __init__(self, original: _BatchNorm) -> None:
        super().__init__(
            original.num_features, original.eps, original.momentum, original.affine, original.track_running_stats
        )
        self.original_class = type(original)
        self.weight, self.bias = original.weight, original.bias
        self.running_mean, self.running_var = original.running_mean, original.running_var
        self.num_batches_tracked = original.num_batches_tracked
        self.train(original.training)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        self.original_class._check_input_dim(self, input)  # type: ignore[arg-type]

    def _synchronised(self) -> bool:
        return self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self._synchronised():
            return super().forward(input)
        self._check_input_dim(input)
        channels, reduced = input.shape[1], [0, *range(2, input.dim())]
        values = input.float()  # statistics in float32, also under bf16 autocast
        count = torch.tensor([values.numel() / channels], dtype=torch.float32, device=input.device)
        totals = _SumOverProcesses.apply(torch.cat([values.sum(reduced), (values * values).sum(reduced), count]))
        total = totals[-1]
        mean = totals[:channels] / total
        variance = (totals[channels : 2 * channels] / total - mean * mean).clamp_min(0.0)
        shape = [1, channels] + [1] * (input.dim() - 2)
        output = (values - mean.view(shape)) * torch.rsqrt(variance.view(shape) + self.eps)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_statistics(mean.detach(), variance.detach() * total / (total - 1))
        return output

    @torch.no_grad()
    def _update_running_statistics(self, mean: torch.Tensor, unbiased_variance: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased_variance.to(self.running_var.dtype), factor)

    def restored(self) -> _BatchNorm:
        """The layer of the model's own class, with these parameters and statistics."""
        layer = self.original_class(self.num_features, self.eps, self.momentum, self.affine, self.track_running_stats)
        layer.weight, layer.bias = self.weight, self.bias
        layer.running_mean, layer.running_var = self.running_mean, self.running_var
        layer.num_batches_tracked = self.num_batches_tracked
        return layer.train(self.training)


def _replace(module: nn.Module, swap: type, convert: Callable[[nn.Module], nn.Module]) -> nn.Module:
    if isinstance(module, swap):
        return convert(module)
    for name, child in module.named_children():
        module.add_module(name, _replace(child, swap, convert))
    return module


class GlobalBatchNormSync(LayerSync):
    """Lightning's hook for `sync_batchnorm`: DDP strategies apply it to the model before wrapping it."""

    def apply(self, model: nn.Module) -> nn.Module:
        return _replace(
            model, _BatchNorm, lambda layer: layer if isinstance(layer, GlobalBatchNorm) else GlobalBatchNorm(layer)
        )

    def revert(self, model: nn.Module) -> nn.Module:
        return _replace(model, GlobalBatchNorm, GlobalBatchNorm.restored)
