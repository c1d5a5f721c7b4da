"""Lesson 01 · The data: exercises and quiz (plain data + checks)."""

from __future__ import annotations

import math

import torch

from mnistlib.course.quiz import Question as Q

from .core import Exercise, LessonMaterial, Wrong, WrongAnswer, checker, close, need_callable, need_int

TRAIN, VAL, BATCH = 60_000, 5_000, 128
MEAN, STD = 0.1306, 0.3081  # the training split's constants, as the lesson prints them


@checker("batches per epoch")
def check_batches_per_epoch(answer: object) -> str:
    n = need_int(answer)
    right = math.ceil((TRAIN - VAL) / BATCH)
    if n == right:
        return "every training image is seen once per epoch, the last batch is a little smaller."
    if n == (TRAIN - VAL) // BATCH:
        raise Wrong("close: the images left over at the end still form one last, smaller batch.")
    if n in (math.ceil(TRAIN / BATCH), TRAIN // BATCH):
        raise Wrong("the validation images are held out: only the rest of the training set is batched.")
    raise Wrong("divide the number of images the model trains on by the batch size, and round the right way.")


@checker("a blank pixel after normalisation")
def check_blank_pixel(answer: object) -> str:
    right = (0.0 - MEAN) / STD
    if close(answer, right, rel=2e-3):
        return "blank paper sits a little below zero, ink well above it."
    if close(answer, -right, rel=2e-3):
        raise Wrong("check the sign: 0 is below the mean, so it must become negative.")
    if close(answer, -MEAN, rel=2e-3):
        raise Wrong("you subtracted the mean; now divide by the standard deviation too.")
    raise Wrong("apply (x − mean) / std to x = 0 with the lesson's two constants.")


def _images(seed: int = 0) -> torch.Tensor:
    """Synthetic uint8 'digits': mostly blank, some ink (never the real data)."""
    g = torch.Generator().manual_seed(seed)
    ink = torch.randint(0, 256, (40, 28, 28), generator=g, dtype=torch.int64)
    blank = torch.rand(40, 28, 28, generator=g) < 0.8
    return torch.where(blank, 0, ink).to(torch.uint8)


@checker("pixel mean and standard deviation")
def check_pixel_stats(answer: object) -> str:
    fn = need_callable(answer)
    images = _images()
    x = images.double() / 255
    mean, std = float(x.mean()), float(x.std())
    got = fn(images.clone())
    try:
        got_mean, got_std = (float(v) for v in got)
    except (TypeError, ValueError):
        raise Wrong("return two numbers: (mean, std).") from None
    if got_mean > 1.5:
        raise Wrong("the grey levels go up to 255: scale them to 0–1 first (divide by 255).")
    if not close(got_mean, mean, rel=1e-3):
        raise Wrong("the mean is off: average over every pixel of every image, as floats.")
    if close(got_std, math.sqrt(std), rel=1e-3) or close(got_std, std**2, rel=1e-3):
        raise Wrong("that is not the standard deviation: it is the square root of the variance.")
    if not close(got_std, std, rel=1e-3):
        raise Wrong("the standard deviation is off: take it over all pixels at once, not per image.")
    return "the same two numbers the lesson computes from the grey-level counts."


@checker("a seeded train/validation split")
def check_split(answer: object) -> str:
    fn = need_callable(answer)
    n, k = 1_000, 100
    train, val = (torch.as_tensor(t).flatten().long() for t in fn(n, k, 0))
    if len(val) != k or len(train) != n - k:
        raise Wrong(f"with n = {n} and val_size = {k} the halves should hold {n - k} and {k} indices.")
    if len(set(train.tolist()) & set(val.tolist())):
        raise Wrong("an index is in both halves: validation images must never be trained on.")
    if sorted(train.tolist() + val.tolist()) != list(range(n)):
        raise Wrong("together the halves must cover every index 0 … n − 1 exactly once.")
    again = torch.as_tensor(fn(n, k, 0)[1]).flatten().long()
    if sorted(again.tolist()) != sorted(val.tolist()):
        raise Wrong("the same seed must give the same split: use a torch.Generator seeded with `seed`.")
    other = torch.as_tensor(fn(n, k, 1)[1]).flatten().long()
    first_or_last = sorted(val.tolist()) in (list(range(k)), list(range(n - k, n)))
    if sorted(other.tolist()) == sorted(val.tolist()) or first_or_last:
        raise Wrong("the split must be random (shuffle with the seed): the first or last images may not be typical.")
    return "disjoint, complete, random and repeatable."


@checker("class balance")
def check_balance_ratio(answer: object) -> str:
    fn = need_callable(answer)
    labels = torch.tensor([0] * 50 + [1] * 80 + [2] * 40 + [3] * 60 + [4] * 64 + list(range(5, 10)) * 55)
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    counts = torch.bincount(labels, minlength=10)
    right = float(counts.min() / counts.max())
    got = fn(labels.clone())
    if close(got, right):
        return "a ratio near 1 means plain accuracy is a fair score."
    if close(got, 0.0) or close(got, float(labels.min()) / max(float(labels.max()), 1)):
        raise Wrong("that compares digit values, not how often each digit occurs: count them first (torch.bincount).")
    raise Wrong("count the images of each digit, then divide the smallest count by the largest.")


EXERCISES = (
    Exercise(
        key="batches_per_epoch",
        title="Batches per epoch",
        level=1,
        prompt_md=(
            "With the lesson's defaults — 60,000 training images, `VAL_SIZE = 5_000` held out, "
            "`BATCH_SIZE = 128`, and the last, smaller batch kept — how many batches make one epoch? "
            "Work it out by hand, then check."
        ),
        starter="batches_per_epoch = ...  # a whole number",
        solution="import math\n\nbatches_per_epoch = math.ceil((60_000 - 5_000) / 128)\nbatches_per_epoch",
        wrong=(
            WrongAnswer("batches_per_epoch = 55_000 // 128", "last, smaller batch"),
            WrongAnswer("batches_per_epoch = 469", "validation images are held out"),
        ),
        answer="batches_per_epoch",
        check=check_batches_per_epoch,
    ),
    Exercise(
        key="blank_pixel",
        title="A blank pixel after normalisation",
        level=1,
        prompt_md=(
            "Normalisation maps a pixel `x` in 0–1 to `(x − mean) / std` with the lesson's constants, mean 0.1306 and std 0.3081. "
            "What does blank paper (`x = 0`) become? Predict the sign before you compute."
        ),
        starter="blank_after = ...  # a number",
        solution="blank_after = (0 - 0.1306) / 0.3081\nblank_after",
        wrong=(
            WrongAnswer("blank_after = 0.1306 / 0.3081", "sign"),
            WrongAnswer("blank_after = -0.1306", "divide by the standard deviation"),
        ),
        answer="blank_after",
        check=check_blank_pixel,
    ),
    Exercise(
        key="pixel_stats",
        title="Pixel mean and standard deviation",
        level=2,
        prompt_md=(
            "Write `pixel_stats(images)`: given a `uint8` tensor `[N, 28, 28]`, return the mean and the "
            "standard deviation of all its pixels, scaled to 0–1, as two floats. The check runs it on "
            "made-up images (so you cannot copy the lesson's numbers)."
        ),
        starter=(
            "def pixel_stats(images):\n"
            '    """(mean, std) of all pixels of a uint8 tensor [N, 28, 28], scaled to 0–1."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "def pixel_stats(images):\n"
            '    """(mean, std) of all pixels of a uint8 tensor [N, 28, 28], scaled to 0–1."""\n'
            "    x = images.double() / 255\n"
            "    return float(x.mean()), float(x.std())"
        ),
        wrong=(
            WrongAnswer(
                "def pixel_stats(images):\n    x = images.double()\n    return float(x.mean()), float(x.std())",
                "divide by 255",
            ),
            WrongAnswer(
                "def pixel_stats(images):\n    x = images.double() / 255\n    return float(x.mean()), float(x.var())",
                "square root",
            ),
        ),
        answer="pixel_stats",
        check=check_pixel_stats,
    ),
    Exercise(
        key="balance_ratio",
        title="Class balance in one number",
        level=2,
        prompt_md=(
            "Write `balance_ratio(labels)`: the number of images of the rarest digit divided by the number "
            "of the most common one (1.0 = perfectly balanced). Run it on the training labels afterwards: "
            "does it match the lesson's 0.80?"
        ),
        starter=(
            "def balance_ratio(labels):\n"
            '    """Count of the rarest class / count of the most common class."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import torch\n\n\n"
            "def balance_ratio(labels):\n"
            '    """Count of the rarest class / count of the most common class."""\n'
            "    counts = torch.bincount(labels, minlength=10)\n"
            "    return float(counts.min() / counts.max())"
        ),
        wrong=(
            WrongAnswer(
                "def balance_ratio(labels):\n    return float(labels.min()) / float(labels.max())",
                "count them first",
            ),
        ),
        answer="balance_ratio",
        check=check_balance_ratio,
    ),
    Exercise(
        key="split",
        title="A seeded train/validation split",
        level=3,
        prompt_md=(
            "Write `split(n, val_size, seed)` returning two index tensors `(train, val)`: disjoint, "
            "together covering `0 … n − 1`, chosen at random but the same for the same seed. "
            "(`mnistlib.data.split_indices` is the lesson's version; write your own.)"
        ),
        starter=(
            "import torch\n\n\n"
            "def split(n, val_size, seed):\n"
            '    """(train_indices, val_indices): a random, seeded, disjoint split of range(n)."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import torch\n\n\n"
            "def split(n, val_size, seed):\n"
            '    """(train_indices, val_indices): a random, seeded, disjoint split of range(n)."""\n'
            "    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))\n"
            "    return order[val_size:], order[:val_size]"
        ),
        wrong=(
            WrongAnswer(
                "import torch\n\ndef split(n, val_size, seed):\n"
                "    return torch.arange(val_size, n), torch.arange(val_size)",
                "random",
            ),
            WrongAnswer(
                "import torch\n\ndef split(n, val_size, seed):\n"
                "    return torch.randperm(n)[val_size:], torch.randperm(n)[:val_size]",
                "in both halves",
            ),
        ),
        answer="split",
        check=check_split,
    ),
)

QUIZ = (
    Q(
        "Why are 5,000 training images held out as a validation set?",
        (
            "To make choices (epochs, learning rate, checkpoint) without looking at the test set",
            "Because the model cannot fit all 60,000 images in memory",
            "To have more test images",
            "Because those images are harder",
        ),
        0,
        (
            "Every choice made by looking at a set fits the model a little to it; the test set must stay unseen.",
            "Memory is not the reason: all 60,000 images take 44.9 MiB, as the lesson printed.",
            "Validation images come from the training set and are used for choices, not for the final report.",
            "The split is random: validation images are as easy or hard as the rest.",
        ),
    ),
    Q(
        "Where do the normalisation constants (mean, std) come from?",
        (
            "Typed in from a tutorial",
            "From the training images only",
            "From the training and the test images",
            "From each batch as it arrives",
        ),
        1,
        (
            "The source projects typed them in; the lesson computes them, so they stay right for other data.",
            "Only the images we learn from: the test set must not influence the model in any way.",
            "Using test images would leak information about the test set into the model.",
            "That is what BatchNorm does inside a network; input normalisation uses fixed constants.",
        ),
    ),
    Q(
        "Why does the in-memory `TensorLoader` prepare an epoch much faster than `Dataset` + `DataLoader`?",
        (
            "It uses a GPU",
            "It skips augmentation",
            "It works on whole batches with a few tensor operations instead of one PIL image at a time",
            "It loads fewer images",
        ),
        2,
        (
            "It is faster on the CPU too; no GPU is needed.",
            "It augments too, with one random warp per image computed for the whole batch.",
            "The classic path pays Python, PIL and conversion costs per image; a batch is one slice here.",
            "It loads exactly the same images.",
        ),
    ),
    Q(
        "Which augmentation would teach the model something wrong about digits?",
        ("A rotation of ±5°", "A shift of 2 pixels", "A horizontal flip", "A zoom of ±10 %"),
        2,
        (
            "A slightly turned digit keeps its label.",
            "A digit slightly off centre keeps its label.",
            "A mirrored 2, 3, 4, 5, 7 or 9 is not that digit any more (and a mirrored 6 is not a 6).",
            "A slightly bigger or smaller digit keeps its label.",
        ),
    ),
    Q(
        "The rarest digit has 0.80 of the images of the most common one. What follows?",
        (
            "Plain accuracy is a fair summary on MNIST",
            "The model will never learn the rarest digit",
            "We must drop images until all classes are equal",
            "Accuracy must be replaced by the loss",
        ),
        0,
        (
            "With classes this close to balanced, accuracy does not hide a neglected class.",
            "Thousands of examples per class are plenty to learn each digit.",
            "Rebalancing helps with strongly skewed data, not here.",
            "The loss is for training; accuracy stays the score to report here.",
        ),
    ),
    Q(
        "Why does the same seed give the same validation split on every run?",
        (
            "The split is the first 5,000 images",
            "A seeded generator draws the same random permutation every time",
            "MNIST stores the split in its files",
            "PyTorch caches it on disk",
        ),
        1,
        (
            "The first images might be unusual; the split is random, but repeatable.",
            "So validation scores from different days can be compared.",
            "MNIST ships only a training and a test set.",
            "Nothing is cached: the permutation is recomputed from the seed.",
        ),
    ),
)


MATERIAL = LessonMaterial(
    number=1,
    title="The data: MNIST, its numbers, and augmentation",
    exercises=EXERCISES,
    quiz=QUIZ,
)

#: A fresh quiz widget for this lesson (the notebook cell calls it).
quiz = MATERIAL.make_quiz
