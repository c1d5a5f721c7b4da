"""The networks of the series, one class per architecture, in a registry.

Every model maps a normalised batch ``[N, 1, 28, 28]`` to ``[N, 10]`` raw logits (use it with
``nn.CrossEntropyLoss``). Each is split into ``features`` (the convolutional part) and
``classifier`` (flatten + fully connected layers); every layer is a module, never a functional
call, so torchsummary and forward hooks see all of them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "MNISTNet",
    "DigitRecognizerCNN",
    "ClassicCNN",
    "TwoConvCNN",
    "OneByOneNet",
    "BatchNormNet",
    "get_model",
    "list_models",
    "describe_models",
    "count_parameters",
    "register",
]


class MNISTNet(nn.Module):
    """Base class: ``features`` then ``classifier``; the forward pass is just the two in turn."""

    features: nn.Sequential
    classifier: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DigitRecognizerCNN(MNISTNet):
    """The DigitRecognizerCNN recipe: two 5×5 convs (10, 20 filters), Dropout2d(0.5), FC 320→50→10."""

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
    """The classic PyTorch-example CNN: like DigitRecognizerCNN, Dropout2d inside conv 2, dropout 0.5."""

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
    """The two-conv script project's net. Its write-up gives no sizes: the common 32/64-filter
    layout (3×3, padding 1, pool after each), FC 3136→128 and dropout 0.25/0.5 are our choice."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
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
    """The 1×1-convolution net: four 3×3 blocks, 1×1 convs to squeeze or refine channels,
    one Linear 1568→10 — 24,210 parameters. (Its write-up ends in LogSoftmax; we return logits.)"""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 28 → 14
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14 → 7
            nn.Conv2d(16, 8, kernel_size=1),  # squeeze channels
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, kernel_size=1),  # refine
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=1),  # refine
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


class BatchNormNet(MNISTNet):
    """The BatchNorm net: conv 16 and 32 (3×3, padding 1) each with BatchNorm, ReLU and max-pool,
    FC 1568→``hidden`` (64, or 128), Dropout(0.25), FC→10."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        if hidden <= 0:
            raise ValueError(f"hidden must be a positive number of units, got {hidden}")
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


_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add a model factory to the registry under ``name``."""
    _REGISTRY[name] = factory


register("digit-recognizer", DigitRecognizerCNN)
register("classic", ClassicCNN)
register("two-conv", TwoConvCNN)
register("one-by-one", OneByOneNet)
register("batchnorm", BatchNormNet)


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`, in registry order."""
    return list(_REGISTRY)


def get_model(name: str, **options: object) -> nn.Module:
    """Build a fresh, randomly initialised registry model; unknown names list the known ones."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(repr(n) for n in _REGISTRY)
        raise KeyError(f"unknown model {name!r}; known models: {known}") from None
    try:
        model = factory(**options)
    except TypeError as exc:
        raise TypeError(f"model {name!r} does not take options {sorted(options)}: {exc}") from None
    # Remembered so a checkpoint can rebuild the same model later.
    model.registry_name = name
    model.registry_options = dict(options)
    return model


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
