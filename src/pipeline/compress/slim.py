"""Structured pruning: a narrower model of the same family that starts from the trained model's most important units.

Unstructured zeros leave every dense kernel as slow as before; removing whole channels, neurons,
recurrent hidden units, residual widths and attention head dimensions makes every matrix smaller,
and the result is an ordinary dense model. Why our own and not Torch-Pruning's dependency graph:
the narrow model here is the family's own class built from its own config section with smaller
widths (`narrower_section`), so it trains in the task's loop, rebuilds from a config (the int8
variants' loader needs that), and `load_state_dict(strict=True)` proves every sliced tensor has the
shape the narrow model expects. A model family without a width rule is skipped with that reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import prod

import torch
from torch import nn

from pipeline.compress.variants import VariantSkipped
from pipeline.models.cnn import CNN
from pipeline.models.mlp import MLP
from pipeline.models.rnn import RNN
from pipeline.models.transformer import Transformer

ModelSection = dict  # a config's `model` section as plain data: `_target_` and the backbone's arguments


def _kept(count: int, keep: float) -> int:
    return max(1, round(count * keep))


def _narrower_transformer(section: ModelSection, keep: float) -> dict:
    heads = section["num_heads"]  # the head count stays; each head gets narrower (d_model must stay a multiple)
    return {
        "d_model": heads * max(1, round(section["d_model"] * keep / heads)),
        "ff_dim": _kept(section["ff_dim"], keep),
    }


WIDTH_RULES: dict[str, Callable[[ModelSection, float], dict]] = {
    "pipeline.models.cnn.CNN": lambda section, keep: {
        "channels": [_kept(channels, keep) for channels in section["channels"]],
        "hidden": _kept(section["hidden"], keep) if section["hidden"] else None,
    },
    "pipeline.models.mlp.MLP": lambda section, keep: {"hidden": [_kept(width, keep) for width in section["hidden"]]},
    "pipeline.models.rnn.RNN": lambda section, keep: {"hidden_size": _kept(section["hidden_size"], keep)},
    "pipeline.models.transformer.Transformer": _narrower_transformer,
}


def narrower_section(section: ModelSection, keep: float, name: str) -> ModelSection:
    """The same model family with every width scaled by ``keep`` (0.25: a quarter of the channels, neurons...)."""
    rule = WIDTH_RULES.get(section.get("_target_", ""))
    if rule is None:
        raise VariantSkipped(
            f"{name}: no width rule for model {section.get('_target_')!r} (CNN, MLP, RNN, Transformer)"
        )
    return {**section, **rule(section, keep)}


@dataclass(frozen=True)
class Span:
    """Where one unit's entries lie along one axis of one tensor of the state dict.

    Unit ``k`` covers ``offset + r * period + k * block + j`` for ``r < repeats`` and ``j < block``: the
    LSTM's four gates are four repeats of its hidden units; a flattened conv channel is a block of H*W.
    """

    key: str
    axis: int
    offset: int = 0
    repeats: int = 1
    period: int = 0
    block: int = 1

    def indices(self, units: Sequence[int]) -> list[int]:
        return [
            self.offset + r * self.period + k * self.block + j
            for r in range(self.repeats)
            for k in units
            for j in range(self.block)
        ]


@dataclass(frozen=True)
class Units:
    """Channels, neurons or hidden units removed together: how many there are, how many stay, their entries."""

    count: int
    keep: int
    spans: tuple[Span, ...]


def _linear(key: str, bias: bool) -> list[Span]:
    return [Span(f"{key}.weight", 0), *([Span(f"{key}.bias", 0)] if bias else [])]


def _norm(key: str, module: nn.Module) -> list[Span]:
    names = ["weight", "bias"] + (
        ["running_mean", "running_var"] if isinstance(module, nn.modules.batchnorm._BatchNorm) else []
    )
    return [Span(f"{key}.{name}", 0) for name in names if getattr(module, name, None) is not None]


def _input_shapes(
    model: nn.Module, modules: list[nn.Module], image_shape: tuple[int, ...]
) -> dict[int, tuple[int, ...]]:
    """The input shape of each module for one image (hooks on a probe forward pass)."""
    shapes: dict[int, tuple[int, ...]] = {}

    def record(layer: nn.Module, args: tuple) -> None:  # a pre-hook that returned a value would replace the input
        shapes[id(layer)] = tuple(args[0].shape)

    hooks = [module.register_forward_pre_hook(record) for module in modules]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *image_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def _chain_units(
    teacher: nn.Module, student: nn.Module, layers: list[tuple[str, str]], image_shape: tuple[int, ...]
) -> list[Units]:
    """Units of a chain of layers (the CNN's blocks then its head, the MLP's layers): each conv / linear output
    feeds the next conv / linear, through norms (same units), activations, pooling and a flatten (a block per unit)."""
    teacher_layers = dict(teacher.named_modules())
    student_layers = dict(student.named_modules())
    shapes = _input_shapes(teacher, [teacher_layers[path] for path, _ in layers], image_shape)
    units: list[Units] = []
    spans: list[Span] | None = None  # the units flowing out of the last conv / linear (None: the image itself)
    count = keep = block = 0
    for path, key in layers:
        layer, narrow = teacher_layers[path], student_layers[path]
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            if isinstance(layer, nn.Conv2d) and layer.groups != 1:
                raise VariantSkipped(f"grouped convolution {path}: no channel rule")
            if spans is not None:
                units.append(Units(count, keep, (*spans, Span(f"{key}.weight", 1, block=block))))
            spans, block = _linear(key, layer.bias is not None), 1
            count, keep = layer.weight.shape[0], narrow.weight.shape[0]
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)) and spans is not None:
            spans += _norm(key, layer)
        elif isinstance(layer, nn.Flatten):
            block = prod(shapes[id(layer)][2:])  # a channel becomes H*W consecutive features
        elif any(True for _ in layer.parameters(recurse=False)):
            raise VariantSkipped(f"layer {path} ({type(layer).__name__}): no channel rule")
    return units  # the last layer's outputs are the classes: never removed


def _cnn_units(teacher: CNN, student: CNN, prefix: str, image_shape: tuple[int, ...]) -> list[Units]:
    layers = [(f"features.{name}", f"{prefix}features.{name}") for name, _ in teacher.features.named_children()]
    layers += [(f"head.{name}", f"{prefix}head.{name}") for name, _ in teacher.head.named_children()]
    return _chain_units(teacher, student, layers, image_shape)


def _mlp_units(teacher: MLP, student: MLP, prefix: str, image_shape: tuple[int, ...]) -> list[Units]:
    layers = [(f"layers.{name}", f"{prefix}layers.{name}") for name, _ in teacher.layers.named_children()]
    return _chain_units(teacher, student, layers, image_shape)


def _rnn_units(teacher: RNN, student: RNN, prefix: str, image_shape: tuple[int, ...]) -> list[Units]:
    """Per layer and direction, its hidden units: their rows in every gate, their recurrent columns, and
    the columns that read them (the next layer's input, or the head: forward then backward halves)."""
    rnn, hidden, keep = teacher.rnn, teacher.rnn.hidden_size, student.rnn.hidden_size
    gates = rnn.weight_ih_l0.shape[0] // hidden  # LSTM 4, GRU 3
    directions = ["", "_reverse"] if rnn.bidirectional else [""]
    units = []
    for layer in range(rnn.num_layers):
        for direction, suffix in enumerate(directions):
            own = f"{prefix}rnn.{{}}_l{layer}{suffix}"
            spans = [Span(own.format(name), 0, repeats=gates, period=hidden) for name in ("weight_ih", "weight_hh")]
            spans.append(Span(own.format("weight_hh"), 1))
            if rnn.bias:
                spans += [Span(own.format(name), 0, repeats=gates, period=hidden) for name in ("bias_ih", "bias_hh")]
            readers = (
                [f"{prefix}rnn.weight_ih_l{layer + 1}{after}" for after in directions]
                if layer + 1 < rnn.num_layers
                else [f"{prefix}head.weight"]
            )
            spans += [Span(reader, 1, offset=direction * hidden) for reader in readers]
            units.append(Units(hidden, keep, tuple(spans)))
    return units


def _transformer_units(
    teacher: Transformer, student: Transformer, prefix: str, image_shape: tuple[int, ...]
) -> list[Units]:
    """The residual width (every tensor that reads or writes it), and per layer each head's query/key
    dimensions (removed in pairs), each head's value dimensions, and the feed-forward neurons."""
    width, narrow_width = teacher.head.in_features, student.head.in_features
    residual = [*_linear(f"{prefix}embed", True), Span(f"{prefix}cls_token", 2), Span(f"{prefix}position", 2)]
    residual += [*_norm(f"{prefix}norm", teacher.norm), Span(f"{prefix}head.weight", 1)]
    units = []
    for index, (layer, narrow) in enumerate(zip(teacher.encoder.layers, student.encoder.layers, strict=True)):
        key = f"{prefix}encoder.layers.{index}"
        attention = f"{key}.self_attn"
        residual += [*_norm(f"{key}.norm1", layer.norm1), *_norm(f"{key}.norm2", layer.norm2)]
        residual += [Span(f"{attention}.in_proj_weight", 1), *_linear(f"{attention}.out_proj", True)]
        residual += [Span(f"{key}.linear1.weight", 1), *_linear(f"{key}.linear2", True)]
        head_dim, narrow_head_dim = layer.self_attn.head_dim, narrow.self_attn.head_dim
        for head in range(layer.self_attn.num_heads):
            rows = {part: part * width + head * head_dim for part in range(3)}  # query, key, value rows of this head
            query_key = [
                Span(f"{attention}.in_proj_{name}", 0, offset=rows[part])
                for part in (0, 1)
                for name in ("weight", "bias")
            ]
            value = [Span(f"{attention}.in_proj_{name}", 0, offset=rows[2]) for name in ("weight", "bias")]
            value.append(Span(f"{attention}.out_proj.weight", 1, offset=head * head_dim))
            units += [
                Units(head_dim, narrow_head_dim, tuple(query_key)),
                Units(head_dim, narrow_head_dim, tuple(value)),
            ]
        feed_forward = (*_linear(f"{key}.linear1", True), Span(f"{key}.linear2.weight", 1))
        units.append(Units(layer.linear1.out_features, narrow.linear1.out_features, feed_forward))
    return [Units(width, narrow_width, tuple(residual)), *units]


UnitRule = Callable[..., list[Units]]  # (trained backbone, narrow backbone, state-dict prefix, image shape)
UNIT_RULES: dict[type[nn.Module], UnitRule] = {
    CNN: _cnn_units,
    MLP: _mlp_units,
    RNN: _rnn_units,
    Transformer: _transformer_units,
}


def importance(units: Units, state: dict[str, torch.Tensor], parameters: set[str]) -> torch.Tensor:
    """Per unit, the squared L2 norm of every weight it owns or that reads it (running statistics do not count)."""
    scores = torch.zeros(units.count)
    for span in units.spans:
        if span.key not in parameters:
            continue
        tensor = state[span.key].detach().float()
        for unit in range(units.count):
            scores[unit] += tensor.index_select(span.axis, torch.tensor(span.indices([unit]))).pow(2).sum()
    return scores


def sliced_state(model: nn.Module, narrow: nn.Module, image_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """``model``'s state dict cut to ``narrow``'s shapes, keeping each group's most important units in order."""
    backbone, narrow_backbone = model[-1], narrow[-1]  # a Classifier: normalisation, then the backbone
    rule = UNIT_RULES.get(type(backbone))
    if rule is None or type(narrow_backbone) is not type(backbone):
        raise VariantSkipped(f"no structured-pruning rule for {type(backbone).__name__}")
    prefix = f"{len(model) - 1}."
    state = model.state_dict()
    parameters = {name for name, _ in model.named_parameters()}
    cuts: dict[tuple[str, int], list[tuple[int, list[int]]]] = {}
    for group in rule(backbone, narrow_backbone, prefix, image_shape):
        kept = importance(group, state, parameters).topk(group.keep).indices.sort().values.tolist()
        for span in group.spans:
            cuts.setdefault((span.key, span.axis), []).append((span.offset, span.indices(kept)))
    sliced = dict(state)
    for (key, axis), pieces in cuts.items():
        index = [position for _, positions in sorted(pieces, key=lambda piece: piece[0]) for position in positions]
        sliced[key] = sliced[key].index_select(axis, torch.tensor(index))
    return sliced


def slimmed(model: nn.Module, narrow: nn.Module, image_shape: tuple[int, ...]) -> nn.Module:
    """``narrow`` (built from the narrower section) holding ``model``'s most important units."""
    narrow.load_state_dict(sliced_state(model, narrow, image_shape))  # strict: every shape must match
    for module in narrow.modules():
        if isinstance(module, nn.RNNBase):
            module.flatten_parameters()
    return narrow
