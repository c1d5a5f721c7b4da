"""Lesson 06 · Faster and better: exercises and quiz (plain data + checks)."""

from __future__ import annotations

import math
import statistics

import torch
import torch.nn.functional as F
from torch import nn

from mnistlib.course.quiz import Question as Q
from mnistlib.models import count_parameters

from .core import Exercise, LessonMaterial, Wrong, WrongAnswer, checker, close, need_callable, need_int


@checker("optimizer steps per epoch")
def check_steps_per_epoch(answer: object) -> str:
    n = need_int(answer)
    if n == math.ceil(55_000 / 256):
        return "half as many weight updates per epoch: even where an epoch runs faster, it teaches in fewer steps."
    if n == math.ceil(55_000 / 128):
        raise Wrong("that is for batch 128: a bigger batch means fewer steps per epoch.")
    if n == 55_000 // 256:
        raise Wrong("nearly: the last, smaller batch is a step too.")
    raise Wrong("one step per batch: divide the training images by the batch size, rounding up.")


def _heads() -> tuple[int, int]:
    flat = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    return count_parameters(flat), count_parameters(gap)


def _pair(answer: object) -> tuple[int, int]:
    try:
        a, b = answer  # type: ignore[misc]
    except (TypeError, ValueError):
        raise Wrong("give two whole numbers as a pair: (first, second).") from None
    return need_int(a), need_int(b)


@checker("a fully connected head against global average pooling")
def check_gap_head(answer: object) -> str:
    fc, gap = _pair(answer)
    if (fc, gap) == _heads():
        return ("pooling each map to one number leaves the last layer 48× smaller; it also forgets where in the "
                "7 × 7 map each feature was found, so the convolutions must do more of the work.")
    if (fc, gap) == (32 * 7 * 7 * 10, 32 * 10):
        raise Wrong("each of the 10 outputs has a bias too.")
    if gap == 32 * 7 * 7 * 10 + 10 or gap == 1568 + 10:
        raise Wrong("global average pooling averages each 7 × 7 map to one number first.")
    raise Wrong("a Linear layer has in × out weights plus out biases; count the inputs each head gives it.")


@checker("two 3×3 convs against one 5×5")
def check_stacked_3x3(answer: object) -> str:
    two, one = _pair(answer)
    c = 32
    right = (2 * nn.Conv2d(c, c, 3, bias=False).weight.numel(), nn.Conv2d(c, c, 5, bias=False).weight.numel())
    if (two, one) == right:
        return "the same 5 × 5 receptive field for 28 % fewer weights, and a ReLU in between."
    if (two, one) == (2 * 9 * c, 25 * c):
        raise Wrong("each filter spans all 32 input channels: weights = out × in × k × k.")
    if (two, one) == (right[0] // 2, right[1]):
        raise Wrong("there are two 3 × 3 convs in the stack.")
    raise Wrong("count out_channels × in_channels × k × k for each conv (no biases).")


@checker("time to a target accuracy")
def check_time_to_target(answer: object) -> str:
    fn = need_callable(answer)
    acc = [0.95, 0.982, 0.991, 0.989, 0.993]
    secs = [3.0, 2.5, 2.5, 2.4, 2.6]
    got = fn(list(acc), list(secs), 0.99)
    if got is None or not close(got, 8.0, rel=1e-6):
        if close(got, 2.5, rel=1e-6):
            raise Wrong("count the training time of every epoch up to that one, not just its own.")
        if close(got, sum(secs), rel=1e-6):
            raise Wrong("stop the clock at the first epoch that reaches the target, not at the end.")
        raise Wrong("find the first epoch whose validation accuracy reaches the target; add up the seconds until then.")
    if fn([0.9, 0.95], [1.0, 1.0], 0.99) is not None:
        raise Wrong("when no epoch reaches the target, return None: the run did not get there.")
    return "measured on validation, so the test set stays out of the choice."


@checker("summarising several seeds")
def check_summarise(answer: object) -> str:
    fn = need_callable(answer)
    accs = [0.9912, 0.9905, 0.9921, 0.9898, 0.9917]
    got = fn(list(accs))
    try:
        mean, std, low = (float(v) for v in got)
    except (TypeError, ValueError):
        raise Wrong("return three numbers: (mean, std, min).") from None
    if not close(mean, statistics.mean(accs), rel=1e-9):
        raise Wrong("the mean is off: add the accuracies and divide by how many there are.")
    if close(std, statistics.pstdev(accs), rel=1e-6):
        raise Wrong("from a handful of seeds, estimate the spread with the sample standard deviation (divide by n − 1).")
    if not close(std, statistics.stdev(accs), rel=1e-6):
        raise Wrong("the standard deviation is off: square root of the average squared distance from the mean (n − 1).")
    if not close(low, min(accs), rel=1e-12):
        raise Wrong("the third number is the worst seed's accuracy.")
    return "report all three: the mean says what to expect, the spread and the minimum how much luck was involved."


def _bn_inputs() -> tuple[torch.Tensor, ...]:
    """A batch [16, 5] with a different mean and spread per feature, γ, β and running statistics (one tiny)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 5, generator=g) * torch.arange(1.0, 6.0) + 3 * torch.arange(5.0)
    gamma, beta = torch.linspace(0.5, 2.0, 5), torch.linspace(-1.0, 1.0, 5)
    running_mean, running_var = torch.linspace(-1.0, 10.0, 5), torch.tensor([1e-4, 0.5, 1.0, 2.0, 3.0])
    return x, gamma, beta, running_mean, running_var


def _bn_call(fn: object, training: bool) -> torch.Tensor:
    x, gamma, beta, mean, var = _bn_inputs()
    out = fn(x, gamma, beta, mean, var, training)  # type: ignore[operator]
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise Wrong("return one tensor of the same shape as x: the normalised, scaled and shifted batch.")
    return out.detach().float()


def _bn_why_train(got: torch.Tensor) -> str:
    x, gamma, beta, mean, var = _bn_inputs()

    def same(ref: torch.Tensor) -> bool:
        return torch.allclose(got, ref, atol=1e-4)

    if same(gamma * (x - mean) / torch.sqrt(var + 1e-5) + beta):
        return "BatchNorm normalises with the statistics of the batch itself, not the running ones."
    if same(gamma * (x - x.mean(0)) / torch.sqrt(x.var(0) + 1e-5) + beta):
        return "normalise with the biased variance (divide by N: unbiased=False), as BatchNorm does."
    if same(gamma * (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-5) + beta):
        return "one mean and one variance per feature: average over the batch dimension (dim=0) only."
    if same((x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)):
        return "after normalising, apply the learned scale γ and shift β."
    return "subtract each feature's batch mean, divide by sqrt(variance + eps), then scale by γ and shift by β."


@checker("BatchNorm for a fully connected layer, both modes")
def check_batchnorm_1d(answer: object) -> str:
    fn = need_callable(answer)
    x, gamma, beta, mean, var = _bn_inputs()
    got = _bn_call(fn, True)
    if not torch.allclose(got, F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5), atol=1e-4):
        raise Wrong(f"training mode: {_bn_why_train(got)}")
    got = _bn_call(fn, False)
    if not torch.allclose(got, F.batch_norm(x, mean, var, gamma, beta, training=False, eps=1e-5), atol=1e-4):
        if torch.allclose(got, F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5), atol=1e-4):
            raise Wrong("eval mode: use the running statistics, so an image's answer does not depend on its batch.")
        if torch.allclose(got, gamma * (x - mean) / torch.sqrt(var) + beta, atol=1e-4):
            raise Wrong("eval mode: add eps to the running variance before the square root.")
        raise Wrong("eval mode: (x − running mean) / sqrt(running variance + eps), then scale by γ and shift by β.")
    return "the same numbers as nn.BatchNorm1d, in training and in eval mode."


EXERCISES = (
    Exercise(
        key="steps_per_epoch",
        title="Bigger batches, fewer steps",
        level=1,
        prompt_md=(
            "Whether batches of 256 instead of 128 make an epoch faster depends on the machine (the lesson measured "
            "it); what they always change is the number of optimizer steps. How many steps does one epoch over the "
            "55,000 training images take with batch 256 (last batch kept)?"
        ),
        starter="steps = ...  # a whole number",
        solution="import math\n\nsteps = math.ceil(55_000 / 256)\nsteps",
        wrong=(WrongAnswer("steps = 430", "bigger batch"), WrongAnswer("steps = 55_000 // 256", "last, smaller batch")),
        answer="steps",
        check=check_steps_per_epoch,
    ),
    Exercise(
        key="gap_head",
        title="A fully connected head against global average pooling",
        level=2,
        prompt_md=(
            "The last conv gives 32 maps of 7 × 7. Head (a): `Flatten` + `Linear(32*7*7, 10)`. Head (b): "
            "`AdaptiveAvgPool2d(1)` (global average pooling) + `Flatten` + `Linear(32, 10)`. How many parameters "
            "does each have? Then: what does head (b) throw away that head (a) keeps?"
        ),
        starter="head_params = ...  # (fully connected head, global-average-pooling head)",
        solution="head_params = (32 * 7 * 7 * 10 + 10, 32 * 10 + 10)\nhead_params",
        wrong=(WrongAnswer("head_params = (15680, 320)", "bias"), WrongAnswer("head_params = (15690, 15690)", "averages each")),
        answer="head_params",
        check=check_gap_head,
    ),
    Exercise(
        key="stacked_3x3",
        title="Two 3×3 convs against one 5×5",
        level=2,
        prompt_md=(
            "Two stacked 3 × 3 convs see a 5 × 5 patch, like one 5 × 5 conv. With 32 channels in and out, how many "
            "weights (no biases) do the two 3 × 3 convs have together, and the one 5 × 5 conv?"
        ),
        starter="weights = ...  # (two 3×3 convs, one 5×5 conv)",
        solution="c = 32\nweights = (2 * c * c * 3 * 3, c * c * 5 * 5)\nweights",
        wrong=(WrongAnswer("weights = (2 * 9 * 32, 25 * 32)", "all 32 input channels"), WrongAnswer("weights = (9216, 25600)", "two 3 × 3 convs")),
        answer="weights",
        check=check_stacked_3x3,
    ),
    Exercise(
        key="time_to_target",
        title="Time to a target accuracy, honestly",
        level=3,
        prompt_md=(
            "Write `time_to_target(val_acc, epoch_seconds, target)`: given the validation accuracy after each epoch "
            "and each epoch's training seconds, return the training time until the **first** epoch that reaches "
            "`target`, or None if none does. Why validation, and not the test set?"
        ),
        starter=(
            "def time_to_target(val_acc, epoch_seconds, target):\n"
            '    """Training seconds until the first epoch with val_acc >= target (None if never)."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "def time_to_target(val_acc, epoch_seconds, target):\n"
            '    """Training seconds until the first epoch with val_acc >= target (None if never)."""\n'
            "    elapsed = 0.0\n"
            "    for acc, seconds in zip(val_acc, epoch_seconds, strict=True):\n"
            "        elapsed += seconds\n"
            "        if acc >= target:\n"
            "            return elapsed\n"
            "    return None"
        ),
        wrong=(
            WrongAnswer(
                "def time_to_target(val_acc, epoch_seconds, target):\n"
                "    for acc, seconds in zip(val_acc, epoch_seconds, strict=True):\n"
                "        if acc >= target:\n            return seconds\n    return None",
                "every epoch up to that one",
            ),
            WrongAnswer(
                "def time_to_target(val_acc, epoch_seconds, target):\n"
                "    return sum(epoch_seconds) if max(val_acc) >= target else None",
                "first epoch",
            ),
        ),
        answer="time_to_target",
        check=check_time_to_target,
    ),
    Exercise(
        key="summarise",
        title="Summarising several seeds",
        level=3,
        prompt_md=(
            "One run is one draw. Write `summarise(accuracies)` returning `(mean, std, min)` over several seeds' "
            "accuracies, with the sample standard deviation."
        ),
        starter=(
            "def summarise(accuracies):\n"
            '    """(mean, sample standard deviation, minimum) of a few runs\' accuracies."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import statistics\n\n\n"
            "def summarise(accuracies):\n"
            '    """(mean, sample standard deviation, minimum) of a few runs\' accuracies."""\n'
            "    return statistics.mean(accuracies), statistics.stdev(accuracies), min(accuracies)"
        ),
        wrong=(
            WrongAnswer(
                "import statistics\n\ndef summarise(accuracies):\n"
                "    return statistics.mean(accuracies), statistics.pstdev(accuracies), min(accuracies)",
                "n − 1",
            ),
        ),
        answer="summarise",
        check=check_summarise,
    ),
    Exercise(
        key="batchnorm_1d",
        title="BatchNorm for a fully connected layer, both modes",
        level=3,
        prompt_md=(
            "`nn.BatchNorm1d` does for the output of a `Linear` layer, shape `[N, features]`, what `BatchNorm2d` "
            "does for a convolution's: each feature is normalised over the batch (there are no positions). Write "
            "`batchnorm_1d(x, gamma, beta, running_mean, running_var, training, eps=1e-5)`: what the layer "
            "outputs — from the batch's own statistics when `training` is True, from the running ones when it is "
            "False (updating the running statistics is not asked). The check compares it with PyTorch in both modes."
        ),
        starter=(
            "import torch\n\n\n"
            "def batchnorm_1d(x, gamma, beta, running_mean, running_var, training, eps=1e-5):\n"
            '    """BatchNorm of x [N, features]: batch statistics in training mode, running ones in eval mode."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import torch\n\n\n"
            "def batchnorm_1d(x, gamma, beta, running_mean, running_var, training, eps=1e-5):\n"
            '    """BatchNorm of x [N, features]: batch statistics in training mode, running ones in eval mode."""\n'
            "    if training:\n"
            "        mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)  # per feature, over the batch\n"
            "    else:\n"
            "        mean, var = running_mean, running_var\n"
            "    return gamma * (x - mean) / torch.sqrt(var + eps) + beta"
        ),
        wrong=(
            WrongAnswer(
                "def batchnorm_1d(x, gamma, beta, running_mean, running_var, training, eps=1e-5):\n"
                "    mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)\n"
                "    return gamma * (x - mean) / (var + eps) ** 0.5 + beta",
                "running statistics",
            ),
            WrongAnswer(
                "def batchnorm_1d(x, gamma, beta, running_mean, running_var, training, eps=1e-5):\n"
                "    mean, var = (x.mean(dim=0), x.var(dim=0)) if training else (running_mean, running_var)\n"
                "    return gamma * (x - mean) / (var + eps) ** 0.5 + beta",
                "biased variance",
            ),
            WrongAnswer(
                "def batchnorm_1d(x, gamma, beta, running_mean, running_var, training, eps=1e-5):\n"
                "    mean, var = (x.mean(), x.var(unbiased=False)) if training else (running_mean, running_var)\n"
                "    return gamma * (x - mean) / (var + eps) ** 0.5 + beta",
                "per feature",
            ),
            WrongAnswer(
                "def batchnorm_1d(x, gamma, beta, running_mean, running_var, training, eps=1e-5):\n"
                "    mean, var = (x.mean(dim=0), x.var(dim=0, unbiased=False)) if training else (running_mean, running_var)\n"
                "    return gamma * (x - mean) / var ** 0.5 + beta",
                "add eps",
            ),
        ),
        answer="batchnorm_1d",
        check=check_batchnorm_1d,
    ),
)

QUIZ = (
    Q(
        "Training is slow. What should you measure first?",
        (
            "How fast the data pipeline alone delivers batches",
            "The number of parameters",
            "The learning rate",
            "The GPU's temperature",
        ),
        0,
        (
            "With a small network the data path can cost more than the network itself.",
            "Parameters say little about where the time goes.",
            "The learning rate changes how many epochs you need, not how long one takes.",
            "Measure the pipeline before the hardware.",
        ),
    ),
    Q(
        "Why can BatchNorm let a network train with a much higher learning rate?",
        (
            "It removes the need for a loss",
            "It keeps each layer's inputs at a steady scale, so large steps do not blow the activations up",
            "It adds more parameters",
            "It makes the batch bigger",
        ),
        1,
        (
            "There is still a loss to minimise.",
            "That is why the fast recipe pairs BatchNorm with a high peak rate.",
            "Two numbers per channel are not what helps.",
            "The batch size is unchanged.",
        ),
    ),
    Q(
        "A network with BatchNorm gives the same image different answers depending on the other images in its "
        "batch. What was forgotten?",
        (
            "To shuffle the batches",
            "To switch to eval mode (`model.eval()`), so BatchNorm uses its running statistics",
            "To add more BatchNorm layers",
            "To normalise the input images",
        ),
        1,
        (
            "Shuffling changes which images meet; the dependence is the problem.",
            "In training mode each channel is normalised with the batch's own mean and variance; eval mode uses the "
            "averages kept during training, so each image is read on its own.",
            "More layers would add more of the same dependence.",
            "The input is normalised with fixed constants; BatchNorm's statistics come from the batch.",
        ),
    ),
    Q(
        "What does a one-cycle schedule do?",
        (
            "Trains for one epoch",
            "Raises the learning rate to a peak, then lowers it far below the start",
            "Keeps the rate constant",
            "Resets the weights once",
        ),
        1,
        (
            "It spans the whole run, however many epochs.",
            "Warm-up, fast progress at the peak, then a long settling descent.",
            "That is a constant schedule.",
            "Weights are never reset.",
        ),
    ),
    Q(
        "A global-average-pooling head has far fewer parameters than a fully connected head. What is the cost?",
        (
            "None at all",
            "Each map becomes one number, so where a feature was found is lost; the convs must do more of the work",
            "It cannot be trained with Adam",
            "It only works on GPUs",
        ),
        1,
        (
            "Every design choice trades something; measure it.",
            "Which is why the record net spends its parameters on convolutions.",
            "Any optimizer trains it.",
            "It runs anywhere.",
        ),
    ),
    Q(
        "Channels-last made one network faster on one CPU. What follows for yours?",
        (
            "It will be faster too",
            "Nothing until you measure it on your machine",
            "It will be slower",
            "It changes the accuracy",
        ),
        1,
        (
            "Memory layouts help or hurt depending on the kernels and the hardware.",
            "Measure, don't trust: a one-line change, a one-minute timing.",
            "It may be; it may not.",
            "A memory layout does not change the maths.",
        ),
    ),
    Q(
        "A benchmark scores the test set after every epoch and reports the best. What is wrong?",
        (
            "Nothing",
            "Choosing the epoch on the test set makes the reported number optimistic",
            "It is too slow",
            "The test set is too small",
        ),
        1,
        (
            "The best of many test scores is a choice made on the test set.",
            "Fix the schedule on validation, then report the final test accuracy once, over several seeds.",
            "Speed is not the problem; honesty is.",
            "Its size is fine; how it is used is not.",
        ),
    ),
)


MATERIAL = LessonMaterial(
    number=6,
    title="Faster and better",
    exercises=EXERCISES,
    quiz=QUIZ,
)

#: A fresh quiz widget for this lesson (the notebook cell calls it).
quiz = MATERIAL.make_quiz
