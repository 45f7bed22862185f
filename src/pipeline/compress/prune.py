"""Global magnitude (L1) pruning, optional fine-tuning with the masks in place, then made permanent.

Unstructured zeros do not make dense kernels faster (docs/dependencies.md: sparse matmul was slower
even at 95% zeros): pruning buys size once the saved weights are compressed (gzip).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune

from pipeline.compress.finetune import Training, fine_tune
from pipeline.data.splits import Split


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every weight matrix or kernel: conv, linear, recurrent and attention projections (not norms, not biases).

    An attention layer's output projection is read directly by its parent, whose forward
    never calls it: the pruning hook that re-applies the mask would never run, so it is left dense.
    """
    found = []
    skip = {id(module.out_proj) for module in model.modules() if isinstance(module, nn.MultiheadAttention)}
    for module in model.modules():
        if id(module) in skip:
            continue
        for name, parameter in module.named_parameters(recurse=False):
            if parameter.dim() >= 2 and "weight" in name and not isinstance(module, nn.Embedding):
                found.append((module, name))
    return found


def prune_global(model: nn.Module, sparsity: float, train: Split, training: Training) -> nn.Module:
    """A copy of ``model`` with the smallest ``sparsity`` fraction of all weights set to zero for good."""
    channels_last = any(
        weight.dim() == 4 and not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last)
        for weight in model.parameters()
    )
    pruned = copy.deepcopy(model).to(memory_format=torch.contiguous_format)  # pruning flattens every weight
    weights = prunable_weights(pruned)
    prune.global_unstructured(weights, pruning_method=prune.L1Unstructured, amount=sparsity)
    fine_tune(pruned, train, training)  # the masks' hooks keep the removed weights at zero
    for module, name in weights:
        prune.remove(module, name)  # fold the mask in: otherwise the saved file holds weights and masks
    for module in pruned.modules():
        if isinstance(module, nn.RNNBase):
            module.flatten_parameters()  # pruning re-assigned the weights: one contiguous block again
    if channels_last:
        pruned.to(memory_format=torch.channels_last)
    return pruned.eval()


def sparsity_of(model: nn.Module) -> float:
    weights = [getattr(module, name) for module, name in prunable_weights(model)]
    total = sum(weight.numel() for weight in weights)
    return sum(int((weight == 0).sum()) for weight in weights) / total
