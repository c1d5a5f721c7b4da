"""Lesson 03 · Training: exercises and quiz (plain data + checks).

The checks grade by behaviour against plain PyTorch written here: one gradient-descent step against
autograd, the learner's finite differences against ``backward()``, the learner's one-batch loop
step for step against a plain loop on a tiny net. The range-test rate is measured with
:class:`mnistlib.callbacks.LRFinder` itself.
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


def _descent_step(w: float = 3.0, lr: float = 0.1) -> float:
    """``w`` after one gradient-descent step on ``(w − 5)²``, the gradient from autograd."""
    weight = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    ((weight - 5) ** 2).backward()
    return float(weight.detach() - lr * weight.grad)


@checker("one gradient-descent step")
def check_descent_step(answer: object) -> str:
    if close(answer, _descent_step(), rel=1e-6):
        return "the gradient is negative, so the step goes up, towards the minimum at 5 — by 0.1 × 4."
    if close(answer, 2.6, rel=1e-6):  # w + lr · grad
        raise Wrong("mind the sign: step *against* the gradient, w − lr · grad; here the gradient is negative.")
    if close(answer, 3.2, rel=1e-6):
        raise Wrong("the derivative of (w − 5)² is 2 · (w − 5): the 2 comes down from the square.")
    if close(answer, 5.0, rel=1e-6):
        raise Wrong("one step does not jump to the minimum: it moves lr × gradient.")
    raise Wrong("work out dL/dw = 2 · (w − 5) at w = 3, then apply w ← w − lr · dL/dw once.")


def _finder_rate(i: int) -> float:
    """The rate LRFinder(1e-7, 10, 100) gives batch ``i``, measured on the callback itself."""
    from mnistlib.callbacks import LRFinder

    return LRFinder(start_lr=1e-7, end_lr=10.0, num_it=100).rate(i)


@checker("the range test's learning rate")
def check_range_rate(answer: object) -> str:
    if close(answer, _finder_rate(50), rel=1e-3):
        return "halfway in batches is halfway on a log axis: the geometric mean of the two ends."
    if close(answer, (1e-7 + 10) / 2, rel=1e-2):
        raise Wrong("the rate grows by multiplying, not adding: halfway in batches is halfway on a log axis.")
    if close(answer, 1e-7 * (10 / 1e-7) ** (50 / 99), rel=1e-3):
        raise Wrong("batch 100 would run at end_lr, so the exponent is i / num_it.")
    raise Wrong("every batch multiplies the rate by (end_lr / start_lr) ** (1 / num_it); do that 50 times.")


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


def _curved(w: torch.Tensor) -> torch.Tensor:
    return (w**3).sum() + torch.logsumexp(3 * w.flatten(), 0) + w[0, 0] * w[1, 2]


def _check_one_gradient(fn: object, f: object, w: torch.Tensor) -> None:
    kept = w.clone()
    got = fn(f, w, 1e-6)
    if not torch.equal(w, kept):
        raise Wrong("put each entry back after nudging it: w changed.")
    if not isinstance(got, torch.Tensor) or got.shape != w.shape:
        raise Wrong("return a tensor shaped like w, one derivative per entry.")
    want = w.clone().requires_grad_()
    f(want).backward()
    right, got = want.grad, got.to(torch.float64)
    if torch.allclose(got, right, rtol=1e-6, atol=1e-7):
        return
    if torch.allclose(got, 2 * right, rtol=1e-6, atol=1e-6):
        raise Wrong("f(w + h) and f(w − h) lie 2h apart: divide their difference by 2h.")
    if torch.allclose(got, right, rtol=1e-3, atol=1e-4):
        raise Wrong("close but not exact: use the central difference (f(w + h) − f(w − h)) / 2h; "
                    "the one-sided (f(w + h) − f(w)) / h is off by about h · f''/2.")
    raise Wrong("for each entry: nudge it up by h, evaluate f, nudge it down by h, evaluate f, put it back.")


@checker("a gradient by finite differences")
def check_numeric_grad(answer: object) -> str:
    fn = need_callable(answer)
    g = torch.Generator().manual_seed(0)
    for f, w in ((_curved, torch.randn(2, 3, generator=g, dtype=torch.float64)),
                 (lambda v: (v.sin() * v).sum(), torch.randn(5, generator=g, dtype=torch.float64).view(5, 1))):
        _check_one_gradient(fn, f, w)
    return "it agrees with backward() to 7 digits — that is what gradcheck does for every input at once."


def _overfit_problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny net and 16 examples of 3 classes: easy to memorise."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model, torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)


def _reference_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, zero: bool = True) -> list[float]:
    model = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(steps):
        if zero:
            opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


OVERFIT_STEPS = 150


@checker("overfit one batch")
def check_overfit(answer: object) -> str:
    fn = need_callable(answer)
    model, x, y = _overfit_problem()
    right = _reference_losses(model, x, y, OVERFIT_STEPS)
    mine = copy.deepcopy(model)
    got = fn(mine, x, y, torch.optim.Adam(mine.parameters(), lr=0.05), OVERFIT_STEPS)
    if not isinstance(got, (list, tuple)) or len(got) != OVERFIT_STEPS:
        raise Wrong(f"return a list of all the losses, one per step ({OVERFIT_STEPS} here).")
    if any(isinstance(v, torch.Tensor) for v in got):
        raise Wrong("return plain numbers (`loss.item()`): a tensor keeps each step's whole graph alive.")
    if max(got) - min(got) < 1e-9:
        raise Wrong("the loss never changes: call `optimizer.step()` after `loss.backward()`.")
    if not close(got[0], right[0], rel=1e-4, abs_=1e-6):
        raise Wrong("record each step's loss, computed on the batch before the weights move.")
    if not all(close(a, b, rel=1e-3, abs_=1e-5) for a, b in zip(got, right, strict=True)):
        accumulated = _reference_losses(model, x, y, OVERFIT_STEPS, zero=False)
        if all(close(a, b, rel=1e-3, abs_=1e-5) for a, b in zip(got, accumulated, strict=True)):
            raise Wrong("gradients add up across steps: clear them with `optimizer.zero_grad()` every step.")
        raise Wrong("every step: zero_grad, forward, cross-entropy, backward, step — in that order.")
    return f"the loss fell from {got[0]:.2f} to {got[-1]:.4f}: this loop can learn."


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
        key="descent_step",
        title="One gradient-descent step by hand",
        level=1,
        prompt_md=(
            "A model with one weight has the loss `L(w) = (w − 5)²`. Starting at `w = 3.0` with the learning rate "
            "`lr = 0.1`, what is `w` after **one** step `w ← w − lr · dL/dw`? Work it out on paper."
        ),
        starter="w_after = ...  # a number",
        solution="w, lr = 3.0, 0.1\ngrad = 2 * (w - 5)  # dL/dw = 2·(w − 5) = −4 at w = 3\nw_after = w - lr * grad\nw_after",
        wrong=(
            WrongAnswer("w_after = 3.0 + 0.1 * 2 * (3.0 - 5)", "mind the sign"),
            WrongAnswer("w_after = 3.0 - 0.1 * (3.0 - 5)", "2 · (w − 5)"),
        ),
        answer="w_after",
        check=check_descent_step,
    ),
    Exercise(
        key="range_rate",
        title="The range test's learning rate",
        level=2,
        prompt_md=(
            "`LRFinder(start_lr=1e-7, end_lr=10, num_it=100)` multiplies the learning rate by the same factor after "
            "every batch, so that batch 100 would run at `end_lr`. Which rate does batch **50** use (batches counted "
            "from 0)? Compute it with a line of Python."
        ),
        starter="rate_50 = ...  # a number",
        solution=(
            "factor = (10 / 1e-7) ** (1 / 100)  # the same factor every batch\n"
            "rate_50 = 1e-7 * factor**50\nrate_50"
        ),
        wrong=(
            WrongAnswer("rate_50 = (1e-7 + 10) / 2", "multiplying, not adding"),
            WrongAnswer("rate_50 = 1e-7 * (10 / 1e-7) ** (50 / 99)", "i / num_it"),
        ),
        answer="rate_50",
        check=check_range_rate,
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
        key="numeric_grad",
        title="A gradient by finite differences",
        level=3,
        prompt_md=(
            "Write `numeric_grad(f, w, h)`: `f` takes a float64 tensor `w` and returns the loss (a one-number "
            "tensor). Return a tensor shaped like `w` whose every entry is the central difference "
            "`(f(w + h) − f(w − h)) / 2h`, nudging that one entry of `w` by `h` and putting it back. The check "
            "compares it with `backward()` on two curved functions."
        ),
        starter=(
            "def numeric_grad(f, w, h=1e-6):\n"
            '    """The derivative of f for every entry of w, by central finite differences."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import torch\n\n\n"
            "def numeric_grad(f, w, h=1e-6):\n"
            '    """The derivative of f for every entry of w, by central finite differences."""\n'
            "    grad = torch.zeros_like(w)\n"
            "    flat, flat_grad = w.view(-1), grad.view(-1)  # the same numbers, indexed by one counter\n"
            "    for i in range(flat.numel()):\n"
            "        kept = flat[i].item()\n"
            "        flat[i] = kept + h\n"
            "        up = float(f(w))\n"
            "        flat[i] = kept - h\n"
            "        down = float(f(w))\n"
            "        flat[i] = kept  # put it back\n"
            "        flat_grad[i] = (up - down) / (2 * h)\n"
            "    return grad"
        ),
        wrong=(
            WrongAnswer(
                "import torch\n\n\ndef numeric_grad(f, w, h=1e-6):\n"
                "    grad, base = torch.zeros_like(w), float(f(w))\n"
                "    for i in range(w.numel()):\n"
                "        kept = w.view(-1)[i].item()\n"
                "        w.view(-1)[i] = kept + h\n"
                "        grad.view(-1)[i] = (float(f(w)) - base) / h\n"
                "        w.view(-1)[i] = kept\n"
                "    return grad",
                "central difference",
            ),
            WrongAnswer(
                "import torch\n\n\ndef numeric_grad(f, w, h=1e-6):\n"
                "    grad = torch.zeros_like(w)\n"
                "    for i in range(w.numel()):\n"
                "        kept = w.view(-1)[i].item()\n"
                "        w.view(-1)[i] = kept + h\n"
                "        up = float(f(w))\n"
                "        w.view(-1)[i] = kept - h\n"
                "        down = float(f(w))\n"
                "        w.view(-1)[i] = kept\n"
                "        grad.view(-1)[i] = (up - down) / h\n"
                "    return grad",
                "divide their difference by 2h",
            ),
            WrongAnswer(
                "import torch\n\n\ndef numeric_grad(f, w, h=1e-6):\n"
                "    grad = torch.zeros_like(w)\n"
                "    for i in range(w.numel()):\n"
                "        kept = w.view(-1)[i].item()\n"
                "        w.view(-1)[i] = kept + h\n"
                "        up = float(f(w))\n"
                "        w.view(-1)[i] = kept - h\n"
                "        grad.view(-1)[i] = (up - float(f(w))) / (2 * h)\n"
                "    return grad",
                "put each entry back",
            ),
        ),
        answer="numeric_grad",
        check=check_numeric_grad,
    ),
    Exercise(
        key="overfit",
        title="Overfit one batch",
        level=3,
        prompt_md=(
            "Write `overfit(model, x, y, optimizer, steps)`: train on the one batch `(x, y)` for `steps` steps — "
            "each step zero the gradients, compute the cross-entropy loss of `model(x)`, backpropagate, let the "
            "optimizer step — and return the list of the `steps` losses as plain numbers. The check runs it on a "
            "tiny net and 16 examples and compares every loss with a correct loop's."
        ),
        starter=(
            "def overfit(model, x, y, optimizer, steps):\n"
            '    """Train on one batch for `steps` steps; return each step\'s loss as a float."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import torch\n\n\n"
            "def overfit(model, x, y, optimizer, steps):\n"
            '    """Train on one batch for `steps` steps; return each step\'s loss as a float."""\n'
            "    losses = []\n"
            "    for _ in range(steps):\n"
            "        optimizer.zero_grad()  # gradients from the last step would otherwise add up\n"
            "        loss = torch.nn.functional.cross_entropy(model(x), y)\n"
            "        loss.backward()\n"
            "        optimizer.step()\n"
            "        losses.append(loss.item())\n"
            "    return losses"
        ),
        wrong=(
            WrongAnswer(
                "import torch.nn.functional as F\n\n\ndef overfit(model, x, y, optimizer, steps):\n"
                "    losses = []\n    for _ in range(steps):\n        loss = F.cross_entropy(model(x), y)\n"
                "        loss.backward()\n        optimizer.step()\n        losses.append(loss.item())\n"
                "    return losses",
                "zero_grad",
            ),
            WrongAnswer(
                "import torch.nn.functional as F\n\n\ndef overfit(model, x, y, optimizer, steps):\n"
                "    losses = []\n    for _ in range(steps):\n        optimizer.zero_grad()\n"
                "        loss = F.cross_entropy(model(x), y)\n        loss.backward()\n        losses.append(loss.item())\n"
                "    return losses",
                "optimizer.step()",
            ),
            WrongAnswer(
                "import torch.nn.functional as F\n\n\ndef overfit(model, x, y, optimizer, steps):\n"
                "    losses = []\n    for _ in range(steps):\n        optimizer.zero_grad()\n"
                "        loss = F.cross_entropy(model(x), y)\n        loss.backward()\n        optimizer.step()\n"
                "        losses.append(loss)\n    return losses",
                "plain numbers",
            ),
        ),
        answer="overfit",
        check=check_overfit,
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
        "You train on one batch of 32 images for 300 steps and the loss stays near 2.3. What do you conclude?",
        (
            "Something is broken: a working model memorises 32 images easily",
            "The model needs more training data",
            "It needs more epochs on the full training set",
            "32 images are too few to learn anything from",
        ),
        0,
        (
            "Check the loss function, the labels, the loop and the learning rate before anything else.",
            "More data makes memorising harder, not easier; 32 images should be memorised quickly.",
            "If it cannot fit 32 images, more epochs on 55,000 will not help.",
            "Too few to generalise from, but plenty to memorise: that is the point of the check.",
        ),
    ),
    Q(
        "In a range test the loss falls from a rate of 1e-4 on, is lowest at 2e-2 and shoots up beyond. Which rate "
        "do you train with?",
        (
            "1e-4, where the loss starts to fall",
            "About 2e-3: a tenth of the rate at the lowest loss, where the loss still falls steeply",
            "2e-2, where the loss is lowest",
            "0.1, to train as fast as possible",
        ),
        1,
        (
            "There the steps have only just become big enough to matter: training would crawl.",
            "Well inside the falling stretch, safely below where the loss turns up.",
            "At the lowest point the loss is about to turn up; a whole run there sits on the edge of diverging.",
            "Past the minimum the steps overshoot and the loss climbs.",
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
)


MATERIAL = LessonMaterial(
    number=3,
    title="Training: how a network learns",
    exercises=EXERCISES,
    quiz=QUIZ,
)

#: A fresh quiz widget for this lesson (the notebook cell calls it).
quiz = MATERIAL.make_quiz
