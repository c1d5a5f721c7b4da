"""What only the record search tries: pieces that plug into mnistlib's one training loop.

None of this is taught in the lessons, so none of it lives in the library:

* :class:`RecalibrateBatchNorm` — a callback that re-estimates BatchNorm's running statistics on
  clean (un-augmented) training images after training and re-scores the validation split;
* :class:`TeacherTargets` and :func:`distillation_loss` — knowledge distillation (Hinton et al.,
  2015): frozen teachers label each training batch as it is drawn, and the loss mixes their
  softened predictions with the labels; :func:`report_teachers` sizes the teachers up;
* :class:`SeparableRecordNet` — the record net with depthwise-separable convs, registered as
  ``"record-separable"`` only when :func:`register_separable` is called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mnistlib.callbacks import Callback
from mnistlib.data import TensorLoader
from mnistlib.models import MNISTNet, register
from mnistlib.training import FitState, evaluate

__all__ = ["clean_loader", "RecalibrateBatchNorm", "TeacherTargets", "distillation_loss", "report_teachers",
           "SeparableRecordNet", "register_separable"]


# --------------------------------------------------------------------------- BatchNorm statistics


def clean_loader(loader: TensorLoader, batch_size: int = 1_000) -> TensorLoader:
    """The same training images, labels and normalisation, in order and without augmentation."""
    return TensorLoader(loader.images, loader.labels, batch_size, shuffle=False, augment="none",
                        mean=loader.mean, std=loader.std, device=loader.device)


class RecalibrateBatchNorm(Callback):
    """After training, re-estimate every BatchNorm's running mean and variance on ``loader`` (clean
    training images) and score the validation split again: ``before`` and ``after`` are paired figures.

    During training the running statistics follow augmented batches with momentum; evaluation images are
    not augmented. One pass of :func:`torch.optim.swa_utils.update_bn` replaces them with exact averages.
    The model keeps the re-estimated statistics. Skipped after Ctrl-C.
    """

    order = 85  # after EarlyStopping has put the best weights back

    def __init__(self, loader: Iterable) -> None:
        self.loader = loader
        self.before: float | None = None
        self.after: float | None = None

    def before_fit(self, state: FitState) -> None:
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in state.model.modules()):
            raise ValueError(f"{type(state.model).__name__} has no BatchNorm layer to recalibrate")

    @torch.no_grad()
    def after_fit(self, state: FitState) -> None:
        if state.history.interrupted or not len(state.history):
            return
        self.before = state.history.val_acc[-1]
        torch.optim.swa_utils.update_bn(((x.to(state.device), y) for x, y in self.loader), state.model)
        self.after = evaluate(state.model, state.data.val, state.device)[1]


# --------------------------------------------------------------------------- distillation


class TeacherTargets:
    """The training loader, with frozen teachers labelling each batch as it is drawn.

    ``soft`` holds the teachers' averaged probabilities at ``temperature`` for the batch just yielded
    (the same augmented images the student sees), for :func:`distillation_loss`. The teachers stay in
    eval mode and outside the student, so the optimizer never sees them.
    """

    def __init__(self, loader: Iterable, teachers: Sequence[nn.Module], temperature: float = 4.0) -> None:
        if not teachers:
            raise ValueError("distillation needs at least one teacher")
        self.loader, self.teachers, self.temperature = loader, [t.eval() for t in teachers], temperature
        self.soft: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    @property
    def epoch(self) -> int:  # mnistlib's loaders shuffle by epoch number; train() sets it when resuming
        return self.loader.epoch  # type: ignore[attr-defined]

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.loader.epoch = value  # type: ignore[attr-defined]

    @torch.no_grad()
    def label(self, x: torch.Tensor) -> torch.Tensor:
        """The teachers' averaged temperature-softened probabilities for the batch ``x``."""
        return torch.stack([F.softmax(t.to(x.device)(x) / self.temperature, dim=1) for t in self.teachers]).mean(0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            self.soft = self.label(x)
            yield x, y


def distillation_loss(targets: TeacherTargets, alpha: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(1 − α)·cross-entropy with the labels + α·T²·KL(teachers ‖ student at temperature T) (Hinton et al. 2015).

    The T² keeps the soft term's gradients on the scale of the hard term's whatever T is.
    """
    t = targets.temperature

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hard = F.cross_entropy(logits, labels)
        soft = F.kl_div(F.log_softmax(logits / t, dim=1), targets.soft, reduction="batchmean") * t * t
        return (1 - alpha) * hard + alpha * soft

    return loss


@torch.no_grad()
def report_teachers(teachers: Sequence[nn.Module], val: Iterable) -> str:
    """The teachers' vote (averaged probabilities) on validation, and how many images every one of them misses.

    An ensemble can only pass on what its members disagree about: images every teacher misreads
    are beyond what distillation from them can fix.
    """
    wrong, voted_right, seen = [], 0, 0
    for x, y in val:
        probs = torch.stack([F.softmax(t.eval()(x), dim=1) for t in teachers])  # [teacher, image, class]
        wrong.append(probs.argmax(dim=2) != y)
        voted_right += int((probs.mean(dim=0).argmax(dim=1) == y).sum())
        seen += len(y)
    wrong_by = torch.cat(wrong, dim=1)
    return (f"the {len(teachers)} teachers' averaged prediction: validation {voted_right / seen:.2%}; "
            f"validation errors per teacher {' / '.join(str(int(n)) for n in wrong_by.sum(dim=1))}, "
            f"{int(wrong_by.all(dim=0).sum())} of them made by every teacher")


# --------------------------------------------------------------------------- depthwise-separable layout


def _block(c_in: int, c_out: int, kernel: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU()]


class SeparableRecordNet(MNISTNet):
    """The record net with every conv after the first depthwise-separable: a 3×3 filter per channel,
    then a 1×1 conv that mixes the channels — about 9× fewer weights per conv, so wider nets fit the budget.

    ``widths`` and ``pool_after`` mean what they mean for :class:`mnistlib.models.RecordNet`.
    """

    def __init__(self, widths: Sequence[int] = (8, 16, 16, 24, 24, 24), pool_after: Sequence[int] = (0, 3)) -> None:
        super().__init__()
        widths, pool_after = tuple(int(w) for w in widths), tuple(int(p) for p in pool_after)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be positive filter counts, got {widths}")
        layers: list[nn.Module] = _block(1, widths[0], 3)
        for i, (c_in, c_out) in enumerate(zip(widths, widths[1:], strict=False), start=1):
            if i - 1 in pool_after:
                layers.append(nn.MaxPool2d(2))
            layers += _block(c_in, c_in, 3, groups=c_in) + _block(c_in, c_out, 1)
        if len(widths) - 1 in pool_after:
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 10))


def register_separable() -> str:
    """Put :class:`SeparableRecordNet` in mnistlib's model registry (so ``train`` and checkpoints can
    build it); returns its registry name."""
    register("record-separable", SeparableRecordNet)
    return "record-separable"
