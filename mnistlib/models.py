"""The networks of the series, one class per architecture, in a registry.

Every model maps a normalised batch ``[N, 1, 28, 28]`` to ``[N, 10]`` raw logits (use it with
``nn.CrossEntropyLoss``). Each is split into ``features`` (the convolutional part) and
``classifier`` (flatten + fully connected layers); every layer is a module, never a functional
call, so torchsummary and forward hooks see all of them. (:class:`ClassicCNNFunctional`, outside
the registry, is the classic net written the functional way, to show what the tables then miss.)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MNISTNet",
    "DigitRecognizerCNN",
    "ClassicCNN",
    "TwoConvCNN",
    "OneByOneNet",
    "BatchNormNet",
    "ClassicBN",
    "RecordNet",
    "ClassicCNNFunctional",
    "UnknownModelError",
    "get_model",
    "list_models",
    "model_options",
    "describe_models",
    "count_parameters",
    "parameters_of",
    "register",
]


def _check_hidden(hidden: int) -> None:
    """Reject a hidden-layer size that is not a positive whole number."""
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden <= 0:
        raise ValueError(f"hidden must be a positive whole number of units, got {hidden!r}")


class MNISTNet(nn.Module):
    """Base class: ``features`` then ``classifier``; the forward pass is just the two in turn."""

    features: nn.Sequential
    classifier: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DigitRecognizerCNN(MNISTNet):
    """The DigitRecognizerCNN recipe: 5×5 convs 1→10→20 (pool, ReLU), Dropout2d 0.5, FC 320→50→10.

    Dropout2d(0.5) drops whole feature maps after the second block; Dropout(0.3) before the last layer.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 10, kernel_size=5),  # 28 → 24
            nn.MaxPool2d(2),  # 24 → 12
            nn.ReLU(),
            nn.Conv2d(10, 20, kernel_size=5),  # 12 → 8
            nn.MaxPool2d(2),  # 8 → 4
            nn.ReLU(),
            nn.Dropout2d(0.5),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # 20·4·4 = 320
            nn.Linear(320, 50),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(50, 10),
        )


class ClassicCNN(MNISTNet):
    """The classic PyTorch-example CNN: 5×5 convs 1→10→20, Dropout2d in block 2, FC 320→50→10.

    Dropout2d(0.5) sits between the second conv and its pool, Dropout(0.5) before the last layer;
    21,840 parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 10, kernel_size=5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(10, 20, kernel_size=5),
            nn.Dropout2d(0.5),
            nn.MaxPool2d(2),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(320, 50),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(50, 10),
        )


class TwoConvCNN(MNISTNet):
    """The two-conv script project: 3×3 convs 1→32→64 (ReLU, pool), FC 3136→hidden→10, dropout.

    Its write-up names only the layer kinds (two convs with pooling, FC layers, dropout); the sizes
    are our choice, the common 32/64-filter layout: padding 1, Dropout 0.25 and 0.5, hidden 128.
    """

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        _check_hidden(hidden)
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 28 → 14
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14 → 7
            nn.Dropout(0.25),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # 64·7·7 = 3136
            nn.Linear(64 * 7 * 7, hidden),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden, 10),
        )


class OneByOneNet(MNISTNet):
    """The 1×1-convolution net: four 3×3 conv blocks with 1×1 convs between them, FC 1568→10.

    24,210 parameters, as its write-up's torchsummary table says. Its write-up calls the 1×1 convs
    "squeeze" and "refine" layers, but no ReLU follows them: each is a linear map that folds into the
    next convolution (exactly away from the zero-padded border) or into the Linear layer. They add
    nothing a single layer could not compute; the 16 → 8 one even restricts the 3×3 conv after it to
    filters of rank ≤ 8 (lesson 02 measures both). The write-up ends in LogSoftmax; we return the
    logits (``CrossEntropyLoss`` = LogSoftmax + ``NLLLoss``, so training is the same).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 28 → 14
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14 → 7
            nn.Conv2d(16, 8, kernel_size=1),  # fewer channels, no ReLU after: a linear bottleneck before the 3×3
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=1),  # the write-up's "refine": linear too
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=1),  # linear: folds into the Linear layer
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


class BatchNormNet(MNISTNet):
    """The BatchNorm net: 3×3 convs 1→16→32 with BatchNorm, ReLU, pool; FC 1568→hidden→10.

    ``hidden`` is 64 (or 128, its write-up's other setting); Dropout(0.25) before the last layer.
    Its write-up claims "~25K parameters": with hidden 64 it has 105,962.
    """

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        _check_hidden(hidden)
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 28 → 14
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14 → 7
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # 32·7·7 = 1568
            nn.Linear(32 * 7 * 7, hidden),
            nn.ReLU(),
            nn.Dropout(0.25),
            nn.Linear(hidden, 10),
        )


def _pooled_size(size: int, kernel: int, padding: int = 0) -> int:
    """Side of a feature map after a conv (stride 1) and a 2×2 max-pool."""
    return (size - kernel + 2 * padding + 1) // 2


class ClassicBN(MNISTNet):
    """The classic CNN with BatchNorm: conv 5×5 → pool → BN → ReLU twice, FC → hidden → 10, no dropout.

    ``c1``, ``c2``: filters of the two convs (10 and 20 as in the classic net); ``kernel2``: size
    of the second conv (5 as in the classic net); ``hidden``: units of the first fully connected
    layer; ``first_bn=False`` keeps BatchNorm after the second conv only (the first conv then has
    its bias back) — on a CPU the first BatchNorm costs about a third of each training step;
    ``batchnorm=False`` drops both (lesson 06 trains it at the same learning rate to show what
    BatchNorm buys). Convs followed by BatchNorm have no bias: the BatchNorm adds its own.
    """

    def __init__(self, c1: int = 10, c2: int = 20, hidden: int = 50, kernel2: int = 5, first_bn: bool = True,
                 batchnorm: bool = True) -> None:
        super().__init__()
        for name, value in (("c1", c1), ("c2", c2), ("hidden", hidden), ("kernel2", kernel2)):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        side = _pooled_size(_pooled_size(28, 5), kernel2)
        if side < 1:
            raise ValueError(f"kernel2={kernel2} is too large for 12×12 maps")
        first_bn = first_bn and batchnorm
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=5, bias=not first_bn),  # 28 → 24
            nn.MaxPool2d(2),  # 24 → 12
            *([nn.BatchNorm2d(c1)] if first_bn else []),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=kernel2, bias=not batchnorm),  # 12 → 8 (k5) or 10 (k3)
            nn.MaxPool2d(2),  # 8 → 4 (k5) or 10 → 5 (k3)
            *([nn.BatchNorm2d(c2)] if batchnorm else []),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * side * side, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )


class RecordNet(MNISTNet):
    """A small record net: 3×3 conv–BN–ReLU blocks, two max-pools, global average pooling, one Linear.

    ``widths``: filters of each 3×3 conv (padding 1, so a conv keeps the map size); a 2×2
    max-pool follows the convs whose index is in ``pool_after``. The default — 8 filters at
    28×28; 16, 16 and 24 at 14×14; 24 and 24 at 7×7 — has 17,826 parameters and runs only one
    conv at full resolution, where a conv costs 4× more. The classifier averages each final map
    to one number (global average pooling) and maps those to 10 logits: no big fully connected layer.
    ``head="fc"`` flattens the final maps into one Linear layer instead (lesson 06 compares the two).
    """

    def __init__(self, widths: tuple[int, ...] | list[int] = (8, 16, 16, 24, 24, 24),
                 pool_after: tuple[int, ...] | list[int] = (0, 3), head: str = "gap") -> None:
        super().__init__()
        widths, pool_after = tuple(int(w) for w in widths), tuple(int(p) for p in pool_after)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be positive filter counts, got {widths}")
        layers: list[nn.Module] = []
        channels = 1
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU()]
            if i in pool_after:
                layers.append(nn.MaxPool2d(2))
            channels = width
        if head not in ("gap", "fc"):
            raise ValueError(f"head must be 'gap' (global average pooling) or 'fc' (flatten + Linear), got {head!r}")
        self.features = nn.Sequential(*layers)
        side = 28 // 2 ** len([p for p in pool_after if p < len(widths)])
        self.classifier = (nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))
                           if head == "gap" else nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, 10)))


class ClassicCNNFunctional(nn.Module):
    """The classic PyTorch-example CNN as originally written, pools/ReLUs/flatten as function calls.

    Same layers and the same 21,840 parameters as :class:`ClassicCNN`, but torchsummary and
    forward hooks only see sub-modules, so its shape table misses the pooling, ReLU and flatten
    steps (and the second dropout). Not in the registry: it is here to show that.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return self.fc2(x)


class UnknownModelError(KeyError, ValueError):
    """A model name that is not in the registry; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add a model factory to the registry under ``name``."""
    _REGISTRY[name] = factory


register("digit-recognizer", DigitRecognizerCNN)
register("classic", ClassicCNN)
register("two-conv", TwoConvCNN)
register("one-by-one", OneByOneNet)
register("batchnorm", BatchNormNet)
register("classic-bn", ClassicBN)
register("record", RecordNet)


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`, in registry order."""
    return list(_REGISTRY)


def model_options(name: str) -> dict[str, object]:
    """The options a registry model accepts, with their defaults (``{}`` for none)."""
    factory = _factory(name)
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C factory: no signature to read
        return {}
    return {
        p.name: p.default
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _factory(name: str) -> Callable[..., nn.Module]:
    """The registered factory for ``name``; :class:`UnknownModelError` lists the known names."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        known = ", ".join(repr(n) for n in _REGISTRY)
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}") from None


def _accepts_any_keyword(factory: Callable[..., nn.Module]) -> bool:
    """True when the factory takes ``**kwargs`` (then option names cannot be checked up front)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD for p in params)


def get_model(name: str, **options: object) -> nn.Module:
    """Build a fresh, randomly initialised registry model; unknown names list the known ones.

    An option the model does not take raises ``TypeError`` naming the options it does take; a
    bad value (``hidden=0``) raises ``ValueError`` from the model itself.
    """
    factory = _factory(name)
    if not _accepts_any_keyword(factory):
        accepted = model_options(name)
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            takes = ", ".join(f"{k}={v!r}" for k, v in accepted.items()) or "no options"
            raise TypeError(f"model {name!r} does not take option(s) {', '.join(unknown)}; it takes: {takes}")
    model = factory(**options)
    # Remembered so a checkpoint can rebuild the same model later.
    model.registry_name = name
    model.registry_options = dict(options)
    return model


def parameters_of(name: str, **options: object) -> int:
    """How many parameters ``get_model(name, **options)`` would have, counted without allocating them
    (the model is built on PyTorch's ``meta`` device) — to refuse a model too large before building it."""
    with torch.device("meta"):
        return count_parameters(get_model(name, **options))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all of them, or only those that require gradients)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def describe_models() -> dict[str, str]:
    """Registry name → the first line of the class docstring, for tables and ``--help``."""
    out = {}
    for name, factory in _REGISTRY.items():
        doc = (factory.__doc__ or "").strip().splitlines()
        out[name] = doc[0] if doc else name
    return out
