"""The training recipes of the five projects this series grew from, as data.

Each recipe names a registry model and the hyperparameters its write-up used, next to the
accuracy (and parameter count) the write-up claims, so lessons can measure and compare.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Recipe:
    """A model plus the hyperparameters to train it, and what its source claims."""

    name: str
    title: str
    model: str
    model_options: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    scheduler: str = "none"
    scheduler_options: dict = field(default_factory=dict)
    augment: str = "none"
    target_accuracy: float | None = None
    claimed_accuracy: str = ""
    claimed_parameters: str = ""
    notes: str = ""

    def fit_kwargs(self) -> dict:
        """The keyword arguments for :func:`mnistlib.training.fit`."""
        d = asdict(self)
        keys = ("epochs", "batch_size", "lr", "optimizer", "scheduler", "scheduler_options",
                "augment", "target_accuracy")
        return {k: d[k] for k in keys}


SEED_RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            name="digit-recognizer",
            title="the DigitRecognizerCNN recipe",
            model="digit-recognizer",
            epochs=10, batch_size=128, lr=3e-4, augment="rotate5",
            claimed_accuracy="none stated",
        ),
        Recipe(
            name="classic",
            title="the classic PyTorch-example CNN",
            model="classic",
            epochs=10, batch_size=100, lr=1e-3,
            claimed_accuracy=">98%",
        ),
        Recipe(
            name="two-conv",
            title="the two-conv script project",
            model="two-conv",
            epochs=5, batch_size=64, lr=1e-3,
            claimed_accuracy="~98-99%",
        ),
        Recipe(
            name="one-by-one",
            title="the 1×1-convolution net",
            model="one-by-one",
            epochs=5, batch_size=64, lr=2e-3, scheduler="step",
            scheduler_options={"step_size": 15, "gamma": 0.1},
            augment="crop-rotate15",
            claimed_accuracy="98.16% (scored on the 60,000 training images, not the test set)",
            claimed_parameters="24,210",
            notes="StepLR decays every 15 epochs: with 5 epochs it never fires.",
        ),
        Recipe(
            name="batchnorm",
            title="the BatchNorm net",
            model="batchnorm",
            model_options={"hidden": 64},
            epochs=10, batch_size=128, lr=1e-3, scheduler="plateau",
            target_accuracy=0.95,
            claimed_accuracy="95%+ (stops there), ~98% by epoch 5 with fc 128",
            claimed_parameters="~25K",
        ),
    ]
}


def get_recipe(name: str) -> Recipe:
    """A recipe by name; unknown names list the known ones."""
    try:
        return SEED_RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown recipe {name!r}; known: {', '.join(SEED_RECIPES)}") from None
