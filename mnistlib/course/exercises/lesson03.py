"""Lesson 03 · Training: exercises, quiz, recap and reading (plain data + checks).

The training-step check grades the learner's function by behaviour on a tiny model and batch
(the loss it returns, the weights after one and two steps) against a plain PyTorch step written
here, not against mnistlib's training code.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from mnistlib.course.quiz import Question as Q

from .core import Exercise, LessonMaterial, Wrong, WrongAnswer, checker, close, need_callable


@checker("the loss of an untrained net")
def check_initial_loss(answer: object) -> str:
    if close(answer, math.log(10), rel=5e-3):
        return "a first-batch loss far above this means something is wrong before training starts."
    if close(answer, 0.1, rel=1e-2):
        raise Wrong("that is the probability of the right digit; the loss is −log of that probability.")
    if close(answer, 1.0, rel=1e-2):
        raise Wrong("cross-entropy uses the natural logarithm (ln), not log10.")
    raise Wrong("an untrained net gives each of the 10 digits about the same probability; take −ln of it.")


def _steplr_rate(epoch: int, lr: float = 1.0, gamma: float = 0.7) -> float:
    """The learning rate during ``epoch`` (counted from 1) under StepLR(step_size=1), measured."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=gamma)
    for _ in range(epoch - 1):
        opt.step()
        sched.step()
    return opt.param_groups[0]["lr"]


@checker("StepLR by hand")
def check_steplr(answer: object) -> str:
    right = _steplr_rate(4)
    if close(answer, right, rel=1e-3):
        return "the rate shrinks geometrically: lr × gamma^(epoch − 1)."
    if close(answer, _steplr_rate(5), rel=1e-3):
        raise Wrong("one step too far: the first epoch runs at the starting rate, the scheduler steps after each epoch.")
    if close(answer, 1.0 - 3 * 0.3, rel=1e-3):
        raise Wrong("StepLR multiplies by gamma each time; it does not subtract.")
    raise Wrong("start at lr = 1.0 and multiply by gamma = 0.7 once at the end of each finished epoch.")


@checker("cross-entropy of one example")
def check_cross_entropy(answer: object) -> str:
    fn = need_callable(answer)
    g = torch.Generator().manual_seed(0)
    cases = [(torch.randn(10, generator=g) * 3, 3), (torch.randn(10, generator=g), 0),
             (torch.tensor([1000.0, 0, 0, 0, 0, 0, 0, 0, 0, -1000.0]), 9)]
    for logits, label in cases:
        right = float(F.cross_entropy(logits[None].double(), torch.tensor([label])))
        got = fn(logits.clone(), label)
        if isinstance(got, torch.Tensor):
            got = float(got)
        if not isinstance(got, (int, float)) or not math.isfinite(got):
            raise Wrong("with a logit of 1000, e^1000 overflows: subtract the largest logit before exponentiating.")
        if close(got, -right, rel=1e-4):
            raise Wrong("mind the sign: the loss is −log p, which is never negative.")
        if not close(got, right, rel=1e-4, abs_=1e-4):
            raise Wrong("softmax the ten logits into probabilities, then take −log of the right digit's one.")
    return "it matches F.cross_entropy, even for huge logits."


def _tiny_problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model, torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)


def _weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _reference_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
                     zero: bool = True) -> tuple[list[float], list[torch.Tensor]]:
    model = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses, weights = [], []
    for _ in range(steps):
        if zero:
            opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        weights.append(_weights(model))
    return losses, weights


@checker("the training step")
def check_training_step(answer: object) -> str:
    fn = need_callable(answer)
    model, x, y = _tiny_problem()
    losses, weights = _reference_steps(model, x, y, 2)
    mine = copy.deepcopy(model)
    opt = torch.optim.SGD(mine.parameters(), lr=0.1)
    before = _weights(mine)
    got = fn(mine, x, y, opt, nn.CrossEntropyLoss())
    if isinstance(got, torch.Tensor):
        raise Wrong("return a plain number (`loss.item()`): a tensor keeps the whole batch's graph alive.")
    if not isinstance(got, (int, float)) or not close(got, losses[0], rel=1e-4):
        raise Wrong("return the batch's loss, computed on the model's output before the weights move.")
    if torch.equal(_weights(mine), before):
        raise Wrong("the weights did not change: call `optimizer.step()` after `loss.backward()`.")
    fn(mine, x, y, opt, nn.CrossEntropyLoss())
    if not torch.allclose(_weights(mine), weights[1], atol=1e-6):
        _, accumulated = _reference_steps(model, x, y, 2, zero=False)
        if torch.allclose(_weights(mine), accumulated[1], atol=1e-6):
            raise Wrong("gradients add up across calls: clear them with `optimizer.zero_grad()` every step.")
        raise Wrong("after two steps the weights differ from a plain step: zero_grad, forward, loss, backward, step.")
    return "that is the heart of every training loop in this series."


@checker("patience-based early stopping")
def check_should_stop(answer: object) -> str:
    fn = need_callable(answer)
    cases = [
        ([1.0, 0.8, 0.85, 0.9], 2, True),
        ([1.0, 0.8, 0.85], 2, False),
        ([1.0, 0.8, 0.85, 0.79], 2, False),
        ([0.5, 0.6, 0.55, 0.52], 3, True),
        ([0.5, 0.6, 0.4, 0.45], 3, False),
        ([0.9, 0.7, 0.7, 0.7], 2, True),
        ([0.9], 1, False),
    ]
    for losses, patience, right in cases:
        got = fn(list(losses), patience)
        if bool(got) != right:
            if losses == [1.0, 0.8, 0.85] and got:
                raise Wrong("one worse epoch is not enough: wait `patience` epochs without a new best.")
            if losses == [0.5, 0.6, 0.55, 0.52] and not got:
                raise Wrong("compare with the best loss so far, not with the previous epoch.")
            if losses == [0.9, 0.7, 0.7, 0.7] and not got:
                raise Wrong("an equal loss is not an improvement: count it as an epoch without progress.")
            raise Wrong(f"for losses {losses} and patience {patience} the answer should be {right}.")
    return "keep the weights of the best epoch too — stopping late only costs time then."


EXERCISES = (
    Exercise(
        key="initial_loss",
        title="The loss of an untrained net",
        level=1,
        prompt_md=(
            "Before any training, a network gives roughly the same probability to each of the ten digits. What "
            "cross-entropy loss do you expect on the first batch? Predict it, then compare with the loss the lesson prints."
        ),
        starter="first_loss = ...  # a number",
        solution="import math\n\nfirst_loss = -math.log(1 / 10)\nfirst_loss",
        wrong=(WrongAnswer("first_loss = 0.1", "−log"), WrongAnswer("first_loss = 1.0", "natural logarithm")),
        answer="first_loss",
        check=check_initial_loss,
    ),
    Exercise(
        key="steplr",
        title="StepLR by hand",
        level=1,
        prompt_md=(
            "The 1×1-convolution net trained with `StepLR(step_size=1, gamma=0.7)`. Starting at `lr = 1.0` and "
            "calling `scheduler.step()` at the end of every epoch, what learning rate does the optimizer use "
            "during the **4th** epoch?"
        ),
        starter="lr_epoch4 = ...  # a number",
        solution="lr_epoch4 = 1.0 * 0.7 ** 3  # three epochs have ended before the 4th starts\nlr_epoch4",
        wrong=(WrongAnswer("lr_epoch4 = 0.7 ** 4", "one step too far"), WrongAnswer("lr_epoch4 = 1.0 - 3 * 0.3", "multiplies")),
        answer="lr_epoch4",
        check=check_steplr,
    ),
    Exercise(
        key="cross_entropy",
        title="Cross-entropy of one example",
        level=3,
        prompt_md=(
            "Write `cross_entropy(logits, label)` for **one** image: `logits` is a tensor of 10 raw scores, `label` "
            "the right digit. Return `−log softmax(logits)[label]` as a float, using only `exp`, `log`, `max` and "
            "`sum` (no `torch.nn.functional`). It must work for logits as large as 1000."
        ),
        starter=(
            "def cross_entropy(logits, label):\n"
            '    """−log of the softmax probability of `label`, for one example."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "def cross_entropy(logits, label):\n"
            '    """−log of the softmax probability of `label`, for one example."""\n'
            "    z = logits - logits.max()  # the same softmax, but exp() cannot overflow\n"
            "    log_prob = z[label] - z.exp().sum().log()\n"
            "    return float(-log_prob)"
        ),
        wrong=(
            WrongAnswer(
                "def cross_entropy(logits, label):\n"
                "    p = logits.exp() / logits.exp().sum()\n"
                "    return float(-p[label].log())",
                "subtract the largest logit",
            ),
            WrongAnswer(
                "def cross_entropy(logits, label):\n"
                "    z = logits - logits.max()\n"
                "    return float(z[label] - z.exp().sum().log())",
                "sign",
            ),
        ),
        answer="cross_entropy",
        check=check_cross_entropy,
    ),
    Exercise(
        key="training_step",
        title="The training step",
        level=3,
        prompt_md=(
            "Write `training_step(model, x, y, optimizer, loss_fn)`: one update on one batch. Return the batch's "
            "loss as a plain number. The check runs it twice on a tiny model and compares the weights with a "
            "correct step."
        ),
        starter=(
            "def training_step(model, x, y, optimizer, loss_fn):\n"
            '    """One optimisation step on the batch (x, y); returns the loss as a float."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "def training_step(model, x, y, optimizer, loss_fn):\n"
            '    """One optimisation step on the batch (x, y); returns the loss as a float."""\n'
            "    optimizer.zero_grad()  # gradients from the last step would otherwise add up\n"
            "    loss = loss_fn(model(x), y)\n"
            "    loss.backward()\n"
            "    optimizer.step()\n"
            "    return loss.item()"
        ),
        wrong=(
            WrongAnswer(
                "def training_step(model, x, y, optimizer, loss_fn):\n"
                "    loss = loss_fn(model(x), y)\n    loss.backward()\n    optimizer.step()\n    return loss.item()",
                "zero_grad",
            ),
            WrongAnswer(
                "def training_step(model, x, y, optimizer, loss_fn):\n"
                "    optimizer.zero_grad()\n    loss = loss_fn(model(x), y)\n    loss.backward()\n    return loss.item()",
                "optimizer.step()",
            ),
            WrongAnswer(
                "def training_step(model, x, y, optimizer, loss_fn):\n"
                "    optimizer.zero_grad()\n    loss = loss_fn(model(x), y)\n    loss.backward()\n"
                "    optimizer.step()\n    return loss",
                "plain number",
            ),
        ),
        answer="training_step",
        check=check_training_step,
    ),
    Exercise(
        key="should_stop",
        title="Early stopping with patience",
        level=3,
        prompt_md=(
            "Write `should_stop(val_losses, patience)`: `val_losses` holds one validation loss per finished epoch. "
            "Return True when the best (lowest) loss so far is `patience` or more epochs old — no strictly lower "
            "loss since. Then ask yourself: which weights should training keep when it stops?"
        ),
        starter=(
            "def should_stop(val_losses, patience):\n"
            '    """True when no epoch in the last `patience` beat the best validation loss before them."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "def should_stop(val_losses, patience):\n"
            '    """True when no epoch in the last `patience` beat the best validation loss before them."""\n'
            "    best_epoch = min(range(len(val_losses)), key=lambda i: (val_losses[i], i))\n"
            "    return len(val_losses) - 1 - best_epoch >= patience"
        ),
        wrong=(
            WrongAnswer(
                "def should_stop(val_losses, patience):\n"
                "    return len(val_losses) > 1 and val_losses[-1] > val_losses[-2]",
                "wait `patience` epochs",
            ),
            WrongAnswer(
                "def should_stop(val_losses, patience):\n"
                "    if len(val_losses) <= patience:\n"
                "        return False\n"
                "    return all(val_losses[-i] >= val_losses[-i - 1] for i in range(1, patience + 1))",
                "best loss so far",
            ),
        ),
        answer="should_stop",
        check=check_should_stop,
    ),
)

QUIZ = (
    Q(
        "What does `optimizer.zero_grad()` prevent?",
        (
            "The weights becoming zero",
            "Gradients of earlier batches adding up with the current one",
            "The loss becoming negative",
            "Overfitting",
        ),
        1,
        (
            "It clears the gradients, not the weights.",
            "`backward()` adds to `.grad`; without clearing, each step would use the sum of all past gradients.",
            "Cross-entropy is never negative anyway.",
            "It is bookkeeping, not regularisation.",
        ),
    ),
    Q(
        "What does `model.train()` / `model.eval()` switch?",
        (
            "Whether gradients are computed",
            "How Dropout and BatchNorm behave",
            "Which device the model runs on",
            "Whether the weights are saved",
        ),
        1,
        (
            "That is `torch.no_grad()`; eval mode alone still builds the graph.",
            "Dropout drops values only in training; BatchNorm uses batch statistics in training, running averages in eval.",
            "Devices are set with `.to(device)`.",
            "Saving is a separate step (`torch.save`).",
        ),
    ),
    Q(
        "The training loss falls every epoch while the validation loss starts rising. What is happening?",
        (
            "The learning rate is too small",
            "The model starts fitting the training images' particulars (overfitting)",
            "The validation set is broken",
            "Nothing: this is what convergence looks like",
        ),
        1,
        (
            "A small rate slows both curves down; it does not make them part.",
            "Time to stop and keep the weights of the best validation epoch.",
            "A rising validation loss is normal once a model overfits.",
            "At convergence both curves flatten; they do not part ways.",
        ),
    ),
    Q(
        "Which checkpoint should a run keep?",
        (
            "The last epoch's",
            "The one with the best validation score",
            "The one with the best test accuracy",
            "The one with the lowest training loss",
        ),
        1,
        (
            "The last epoch may already be past the best one.",
            "Validation is there for exactly this choice.",
            "Choosing on the test set makes its score an optimistic, not an honest, estimate.",
            "The lowest training loss is often an overfitted model.",
        ),
    ),
    Q(
        "Early stopping with patience 3 stops when…",
        (
            "validation accuracy reaches 99 %",
            "the validation loss has not improved on its best for 3 epochs",
            "the training loss rises 3 times",
            "3 epochs have run",
        ),
        1,
        (
            "That is target-accuracy stopping, a different rule.",
            "Then the weights of the best epoch are restored.",
            "The training loss says little about new images.",
            "That is a fixed epoch budget.",
        ),
    ),
    Q(
        "You raise the learning rate 100× and the loss becomes `nan` within a few steps. Why?",
        (
            "The steps overshoot, the weights blow up and the numbers overflow",
            "The batch is too small",
            "The model has too few parameters",
            "nan means the model is certain",
        ),
        0,
        (
            "Each step jumps past the valley further than the last; a schedule or a smaller rate fixes it.",
            "Small batches make noisy steps, not overflowing ones.",
            "Size does not make the loss nan.",
            "A certain, right model has loss near 0, not nan.",
        ),
    ),
)


MATERIAL = LessonMaterial(
    number=3,
    title="Training: the loop, the knobs, and the files it leaves behind",
    exercises=EXERCISES,
    quiz=QUIZ,
)

#: A fresh quiz widget for this lesson (the notebook cell calls it).
quiz = MATERIAL.make_quiz
