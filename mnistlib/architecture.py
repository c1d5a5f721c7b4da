"""Shapes, sizes and costs of the lesson networks, measured from the models themselves.

Everything here pushes one blank image through a model with forward hooks (which are always
removed again) and does the layer arithmetic on what the hooks saw, so no number is typed in:

* :func:`conv_output_size` — the shape rule ``out = (in − k + 2p) / s + 1`` (rounded down);
* :func:`trace_layers` / :func:`layer_table` — every layer a forward pass calls, with its output
  shape, parameters, multiply-adds and receptive field;
* :func:`model_stats` / :func:`comparison_table` — one row per registry model;
* :func:`summary_text` / :func:`print_summary` — torchsummary's table, without its two traps
  (it defaults to ``device="cuda"`` and consumes the random number generator);
* :func:`explain_shape_error` — turns PyTorch's shape errors into a plain sentence.

Hooks only see *modules*: a pooling, ReLU or flatten written as a function call (``F.relu``,
``x.view``) is invisible to them and to torchsummary — see
:class:`mnistlib.models.ClassicCNNFunctional`.

Multiply-adds (MACs) count the multiplications of ``nn.Conv2d`` and ``nn.Linear`` layers for one
image (each output value costs ``in_channels/groups × kh × kw`` of them for a convolution,
``in_features`` for a linear layer). Bias additions, BatchNorm, pooling and activations are not
counted: they are one cheap operation per value, next to the hundreds of a convolution.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .devices import eval_mode, model_device
from .models import count_parameters, get_model, list_models
from .tables import format_table

__all__ = [
    "DEFAULT_INPUT",
    "conv_output_size",
    "format_shape",
    "layer_macs",
    "LayerInfo",
    "trace_layers",
    "forward_hooks",
    "layer_table",
    "flattened_size",
    "ModelStats",
    "model_stats",
    "compare_models",
    "comparison_table",
    "summary_text",
    "print_summary",
    "summary_layer_types",
    "explain_shape_error",
]

Shape = tuple[int, ...]

DEFAULT_INPUT: Shape = (1, 28, 28)
"""One MNIST image: channels, height, width."""

_WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
_ADAPTIVE = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)  # global pooling: one output sees its whole input


# --------------------------------------------------------------------------------------------
# Shape arithmetic


def _first(v: int | Sequence[int]) -> int:
    """The first entry of a kernel/stride/padding argument (the lesson layers are square)."""
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def conv_output_size(size: int, kernel: int, padding: int = 0, stride: int = 1, dilation: int = 1) -> int:
    """Side of a conv/pool output: ``(size − dilation·(kernel − 1) − 1 + 2·padding) // stride + 1``.

    With ``dilation=1`` this is the lesson's rule ``(in − k + 2p) / s + 1``, rounded down.
    """
    if min(size, kernel, stride, dilation) < 1 or padding < 0:
        raise ValueError(f"sizes must be positive: size={size}, kernel={kernel}, stride={stride}, padding={padding}")
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        raise ValueError(f"a {kernel}×{kernel} window does not fit a {size}×{size} input with padding {padding}")
    return (size + 2 * padding - span) // stride + 1


def format_shape(shape: Iterable[int]) -> str:
    """``(20, 4, 4)`` → ``"20×4×4"``."""
    return "×".join(str(int(d)) for d in shape)


def layer_macs(module: nn.Module, output_shape: Sequence[int]) -> int:
    """Multiply-adds of one ``Conv2d`` or ``Linear`` call for one image (0 for other layers).

    ``output_shape`` is the layer's output for one image, without the batch dimension.
    """
    out_numel = math.prod(output_shape)
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out_numel * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return out_numel * module.in_features
    return 0


# --------------------------------------------------------------------------------------------
# Tracing a forward pass


@dataclass(frozen=True)
class LayerInfo:
    """One layer call seen by a forward hook, with its measured shape and computed costs."""

    name: str  # dotted path from named_modules(), e.g. "features.0"
    kind: str  # class name, e.g. "Conv2d"
    input_shape: Shape  # per image, without the batch dimension
    output_shape: Shape
    params: int
    macs: int
    kernel: int | None  # window side of a conv/pool, else None
    receptive_field: int | None  # side, in input pixels, one output value can see (None once flattened)
    jump: int | None  # input pixels between neighbouring output values (None once flattened)


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules with no children (the model itself when it has none), named by dotted path."""
    leaves = [(name, m) for name, m in model.named_modules() if name and not list(m.children())]
    return leaves or [(type(model).__name__, model)]


def _blank(model: nn.Module, input_size: Sequence[int]) -> torch.Tensor:
    """A batch of one all-zero image on the model's device."""
    return torch.zeros(1, *input_size, device=model_device(model))


@contextlib.contextmanager
def forward_hooks(modules: Mapping[str, nn.Module], after: Callable[[str, nn.Module, tuple, Any], None],
                  before: Callable[[str, nn.Module, tuple], None] | None = None) -> Iterator[None]:
    """Within the block, each forward call of a named module calls ``before(name, module, inputs)`` (if
    given) and ``after(name, module, inputs, output)``.

    The hooks are removed when the block ends, even when the forward pass fails, so the model is
    left exactly as it was.
    """
    handles = []
    try:
        for name, m in modules.items():
            if before is not None:
                handles.append(m.register_forward_pre_hook(lambda mod, inp, name=name: before(name, mod, inp)))
            handles.append(m.register_forward_hook(lambda mod, inp, out, name=name: after(name, mod, inp, out)))
        yield
    finally:
        for h in handles:
            h.remove()


def trace_layers(model: nn.Module, input_size: Sequence[int] = DEFAULT_INPUT) -> list[LayerInfo]:
    """Run one blank image through ``model`` (eval mode, no gradients) and describe every layer
    call in the order the forward pass makes them.

    The receptive field walks those calls: each conv or pool widens it by
    ``(kernel − 1) × dilation × jump`` and multiplies the jump by its stride; padding does not
    change it. After flattening a value sees the whole image, so the field is ``None`` there.
    """
    calls: list[tuple[str, nn.Module, Shape, Shape]] = []

    def record(name: str, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        calls.append((name, module, tuple(inputs[0].shape[1:]), tuple(output.shape[1:])))

    with forward_hooks(dict(_leaves(model)), record), eval_mode(model), torch.no_grad():
        model(_blank(model, input_size))

    rows: list[LayerInfo] = []
    rf: int | None = 1
    jump: int | None = 1
    for name, module, in_shape, out_shape in calls:
        kernel = None
        if isinstance(module, _ADAPTIVE) and len(out_shape) == 3 and rf is not None and jump is not None:
            kernel = -(-in_shape[-1] // out_shape[-1])  # each output averages a window this wide
            rf += (kernel - 1) * jump
            jump *= in_shape[-1] // out_shape[-1]
        elif isinstance(module, _WINDOWED):
            kernel = _first(module.kernel_size)
            stride = _first(module.stride if module.stride is not None else module.kernel_size)
            dilation = _first(getattr(module, "dilation", 1))
            if rf is not None and jump is not None:
                rf += (kernel - 1) * dilation * jump
                jump *= stride
        if len(out_shape) != 3:
            rf = jump = None
        rows.append(
            LayerInfo(
                name=name,
                kind=type(module).__name__,
                input_shape=in_shape,
                output_shape=out_shape,
                params=sum(p.numel() for p in module.parameters()),
                macs=layer_macs(module, out_shape),
                kernel=kernel,
                receptive_field=rf,
                jump=jump,
            )
        )
    return rows


def flattened_size(module: nn.Module, input_size: Sequence[int] = DEFAULT_INPUT) -> int:
    """How many numbers per image ``module`` (e.g. a model's ``features``) outputs for one image."""
    with eval_mode(module), torch.no_grad():
        return int(module(_blank(module, input_size))[0].numel())


def layer_table(model: nn.Module, input_size: Sequence[int] = DEFAULT_INPUT) -> str:
    """A plain-text table of every layer call: name, type, output shape, parameters, MACs, field."""
    rows = [("layer", "type", "output", "params", "MACs", "sees")]
    rows.append(("input", "", format_shape(input_size), "", "", "1×1"))
    for info in trace_layers(model, input_size):
        rf = info.receptive_field
        rf = None if rf is not None and rf >= input_size[-1] else rf  # the whole image (or more, with padding)
        rows.append(
            (
                info.name,
                info.kind,
                format_shape(info.output_shape),
                f"{info.params:,}",
                f"{info.macs:,}",
                f"{rf}×{rf}" if rf is not None else "all",
            )
        )
    return format_table(rows, align="lllrrr")


# --------------------------------------------------------------------------------------------
# One row per model


@dataclass(frozen=True)
class ModelStats:
    """Size and cost of one model, all measured: parameters, MACs, receptive fields, block shapes."""

    name: str
    params: int
    macs: int
    rf_last_conv: int | None  # what one value of the last conv layer's output sees
    rf_features: int | None  # what one value of the last feature map (the flatten input) sees
    blocks: list[Shape] = field(default_factory=list)  # output shape of each block, then the logits
    layers: list[LayerInfo] = field(default_factory=list, repr=False)


def _block_outputs(layers: Sequence[LayerInfo]) -> list[Shape]:
    """Output of each block: a block starts at every conv wider than 1×1 (a 1×1 conv, activation,
    norm, pool or dropout belongs to the block it follows); the model's output closes the list."""
    blocks: list[Shape] = []
    current: Shape | None = None
    for info in layers:
        if len(info.output_shape) != 3:
            continue
        if info.kind == "Conv2d" and (info.kernel or 1) > 1 and current is not None:
            blocks.append(current)
        current = info.output_shape
    if current is not None:
        blocks.append(current)
    if layers:
        blocks.append(layers[-1].output_shape)
    return blocks


def model_stats(model: nn.Module, name: str | None = None, input_size: Sequence[int] = DEFAULT_INPUT) -> ModelStats:
    """Measure one model: forward hooks for shapes, layer arithmetic for MACs and receptive fields."""
    layers = trace_layers(model, input_size)
    convs = [info for info in layers if info.kind == "Conv2d"]
    maps = [info for info in layers if len(info.output_shape) == 3]
    return ModelStats(
        name=name or getattr(model, "registry_name", type(model).__name__),
        params=count_parameters(model),
        macs=sum(info.macs for info in layers),
        rf_last_conv=convs[-1].receptive_field if convs else None,
        rf_features=maps[-1].receptive_field if maps else None,
        blocks=_block_outputs(layers),
        layers=layers,
    )


def compare_models(
    names: Iterable[str] | None = None,
    options: Mapping[str, Mapping[str, object]] | None = None,
    input_size: Sequence[int] = DEFAULT_INPUT,
) -> list[ModelStats]:
    """:func:`model_stats` for registry models (all of them by default); ``options`` per name."""
    options = options or {}
    return [
        model_stats(get_model(n, **dict(options.get(n, {}))), n, input_size)
        for n in (list_models() if names is None else names)
    ]


def comparison_table(
    names: Iterable[str] | None = None,
    options: Mapping[str, Mapping[str, object]] | None = None,
    input_size: Sequence[int] = DEFAULT_INPUT,
) -> str:
    """Plain-text table of :func:`compare_models`: params, MACs/image, receptive fields, blocks."""
    rows = [("model", "params", "MACs/image", "RF last conv", "RF features", "block outputs")]
    for s in compare_models(names, options, input_size):
        rows.append(
            (
                s.name,
                f"{s.params:,}",
                f"{s.macs:,}",
                f"{s.rf_last_conv}×{s.rf_last_conv}" if s.rf_last_conv else "-",
                f"{s.rf_features}×{s.rf_features}" if s.rf_features else "-",
                " → ".join(format_shape(b) for b in s.blocks),
            )
        )
    return format_table(rows, align="lrrrrl")


# --------------------------------------------------------------------------------------------
# torchsummary, without its traps


def summary_text(model: nn.Module, input_size: Sequence[int] = DEFAULT_INPUT) -> str:
    """torchsummary's table as text, run on a CPU copy of ``model`` with the random state kept.

    torchsummary defaults to ``device="cuda"`` and feeds ``torch.rand`` input (which consumes the
    global generator and, in train mode, updates BatchNorm statistics): here it gets
    ``device="cpu"``, a copy of the model and a forked generator, so nothing around it changes.
    """
    from torchsummary import summary  # imported here: only this function needs it

    clone = copy.deepcopy(model).to("cpu")
    out = io.StringIO()
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(out):
        summary(clone, tuple(input_size), device="cpu")
    return out.getvalue()


def print_summary(model: nn.Module, input_size: Sequence[int] = DEFAULT_INPUT) -> None:
    """Print :func:`summary_text`."""
    print(summary_text(model, input_size), end="")


def summary_layer_types(text: str) -> list[str]:
    """The layer types listed in a torchsummary table, in order (``"Conv2d-1"`` → ``"Conv2d"``)."""
    return re.findall(r"^\s*([A-Za-z_]\w*)-\d+\s", text, flags=re.MULTILINE)


# --------------------------------------------------------------------------------------------
# Shape errors in plain words


def _describe(module: nn.Module) -> str:
    """A short, readable form of a layer: ``Linear(320 → 50)``, ``Conv2d(10 → 20, 5×5)``."""
    if isinstance(module, nn.Linear):
        return f"Linear({module.in_features} → {module.out_features})"
    if isinstance(module, nn.Conv2d):
        k = _first(module.kernel_size)
        return f"Conv2d({module.in_channels} → {module.out_channels}, {k}×{k})"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return f"{type(module).__name__}({module.num_features})"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k = _first(module.kernel_size)
        return f"{type(module).__name__}({k}×{k})"
    return type(module).__name__


def explain_shape_error(model: nn.Module, input_size: Sequence[int] = DEFAULT_INPUT) -> str:
    """Run one blank image through ``model``; describe a shape error in a plain sentence.

    Names the layer that failed, what it expects and what it got, and how to fix it. Returns a
    "No shape error" sentence with the output shape when the forward pass works.
    """
    entered: list[tuple[str, nn.Module, Shape]] = []
    outputs: list[Shape] = []

    def pre(name: str, module: nn.Module, inputs: tuple) -> None:
        entered.append((name, module, tuple(inputs[0].shape[1:])))

    def post(_name: str, _module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        outputs.append(tuple(output.shape[1:]))

    try:
        with forward_hooks(dict(_leaves(model)), post, pre), eval_mode(model), torch.no_grad():
            out = model(_blank(model, input_size))
    except RuntimeError as exc:
        return _explain(entered, outputs, len(outputs), exc)
    return (
        f"No shape error: one {format_shape(input_size)} image goes through and comes out as "
        f"{format_shape(out.shape[1:])} values."
    )


def _explain(entered: list[tuple[str, nn.Module, Shape]], outputs: list[Shape], finished: int, exc: Exception) -> str:
    """The plain sentence for :func:`explain_shape_error`, from what the hooks saw."""
    said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not entered:
        return f"The forward pass failed before any layer ran: {said}"
    if finished == len(entered):  # every layer entered also finished: a function call failed
        last = entered[-1][0]
        return (
            f"The forward pass failed after layer {last}, in a step that is not a layer module "
            f"(a function call such as x.view or F.max_pool2d): {said}"
        )
    name, module, got = entered[-1]
    maps = [s for s in outputs if len(s) == 3]
    if isinstance(module, nn.Linear) and got and got[-1] != module.in_features:
        n, want = got[-1], module.in_features
        sentence = (
            f"Layer {name}, {_describe(module)}, expects {want} numbers per image, but the layers "
            f"before it give it {n}"
        )
        if maps and math.prod(maps[-1]) == n:
            c, h, w = maps[-1]
            sentence += f": the last feature maps are {c}×{h}×{w}, and {c} × {h} × {w} = {n} once flattened"
        return (
            f"{sentence}. Fix: make it nn.Linear({n}, {module.out_features}), or change the layers "
            f"before it back so that they produce {want} numbers."
        )
    if isinstance(module, nn.Conv2d) and got and got[0] != module.in_channels:
        k = _first(module.kernel_size)
        return (
            f"Layer {name}, {_describe(module)}, expects {module.in_channels} input channels, but "
            f"the layer before it gives it {got[0]} (its input is {format_shape(got)}). Fix: make it "
            f"nn.Conv2d({got[0]}, {module.out_channels}, kernel_size={k}), or give the layer before "
            f"it {module.in_channels} output channels."
        )
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and got and got[0] != module.num_features:
        return (
            f"Layer {name}, {_describe(module)}, normalises {module.num_features} channels, but it "
            f"gets {got[0]} (its input is {format_shape(got)}). Fix: make it "
            f"nn.{type(module).__name__}({got[0]}), the channel count of the conv before it."
        )
    if isinstance(module, _WINDOWED) and len(got) == 3:
        k = _first(module.kernel_size)
        pad = _first(getattr(module, "padding", 0))
        dil = _first(getattr(module, "dilation", 1))
        if min(got[1:]) + 2 * pad < dil * (k - 1) + 1:
            return (
                f"Layer {name}, {_describe(module)}, slides a {k}×{k} window, but its input is only "
                f"{got[1]}×{got[2]} pixels (padding {pad}): the feature maps shrank too much before it. "
                f"Fix: add padding, use a smaller kernel, or remove a pooling layer before it."
            )
    return f"Layer {name}, {_describe(module)}, could not handle its input of shape {format_shape(got)}: {said}"
