"""Lesson 04 · Evaluation: exercises and quiz (plain data + checks).

Every check grades on small synthetic predictions and matrices; the measuring part of the
augmentation exercise runs on the validation split, never on the test set.
"""

from __future__ import annotations

import math

import torch

from mnistlib.course.quiz import Question as Q

from .core import Exercise, LessonMaterial, Wrong, WrongAnswer, checker, close, need_callable


def _reference_confusion(preds: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    return torch.bincount(labels * k + preds, minlength=k * k).reshape(k, k)


def _synthetic(seed: int = 0, n: int = 400, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    noise = torch.randint(0, k, (n,), generator=g)
    preds = torch.where(torch.rand(n, generator=g) < 0.7, labels, noise)
    return preds, labels


@checker("standard error of an accuracy")
def check_accuracy_se(answer: object) -> str:
    p, n = 0.985, 10_000
    right = math.sqrt(p * (1 - p) / n)
    if close(answer, right, rel=1e-2):
        return "about 0.12 percentage point, so two models 0.1 point apart on 10,000 images are hardly distinguishable."
    if close(answer, right * 100, rel=1e-2):
        raise Wrong("give it as a fraction, like the accuracy 0.985, not in percent.")
    if close(answer, p * (1 - p) / n, rel=1e-2):
        raise Wrong("that is the variance; the standard error is its square root.")
    raise Wrong("each image is a coin flip that lands right with probability p: use sqrt(p(1 − p)/n).")


@checker("accuracy per digit from the confusion matrix")
def check_per_class(answer: object) -> str:
    fn = need_callable(answer)
    preds, labels = _synthetic(1)
    cm = _reference_confusion(preds, labels, 10)
    right = cm.diag().double() / cm.sum(dim=1).double()
    got = torch.as_tensor(fn(cm.clone()), dtype=torch.float64).flatten()
    if got.shape != right.shape:
        raise Wrong("return one number per digit (10 of them).")
    if torch.allclose(got, right, atol=1e-6):
        return "the diagonal over the row sums: how often each true digit is read right."
    if torch.allclose(got, cm.diag().double() / cm.sum(dim=0).double(), atol=1e-6):
        raise Wrong("that divides by how often each digit was *predicted* (a column): divide by the true counts, the rows.")
    raise Wrong("right answers of each digit sit on the diagonal; divide by how many images of that digit there are.")


@checker("the confusion matrix")
def check_confusion(answer: object) -> str:
    fn = need_callable(answer)
    preds, labels = _synthetic(2)
    right = _reference_confusion(preds, labels, 10)
    got = torch.as_tensor(fn(preds.clone(), labels.clone(), 10)).long()
    if got.shape != right.shape:
        raise Wrong("return a 10 × 10 matrix of counts.")
    if torch.equal(got, right):
        return "row = true digit, column = predicted digit; the diagonal counts the right answers."
    if torch.equal(got, right.T):
        raise Wrong("rows are the true digit and columns the predicted one; yours is the other way round.")
    if int(got.sum()) != len(labels):
        raise Wrong("every image adds exactly 1 to one cell: the matrix must sum to the number of images.")
    raise Wrong("add 1 at [true label, predicted label] for every image.")


def _matrices() -> tuple[torch.Tensor, torch.Tensor]:
    before = torch.eye(10, dtype=torch.long) * 480
    before[7, 1], before[4, 9], before[3, 5], before[2, 7] = 6, 5, 4, 20
    after = before.clone()
    after[7, 1], after[4, 9], after[3, 5], after[2, 7] = 15, 13, 8, 21
    after[1, 1], after[6, 6] = 470, 500
    return before, after


@checker("which confusions grew")
def check_grown_cells(answer: object) -> str:
    fn = need_callable(answer)
    before, after = _matrices()
    got = [tuple(int(v) for v in cell) for cell in fn(before.clone(), after.clone(), 3)]
    right = [(7, 1), (4, 9), (3, 5)]
    if got == right:
        return "now run the measurement on validation and compare it with your prediction."
    if any(t == p for t, p in got):
        raise Wrong("diagonal cells count right answers; look at the mistakes (off the diagonal) only.")
    if got and got[0] == (2, 7):
        raise Wrong("rank the cells by how much they *grew* (after − before), not by their size.")
    if sorted(got) == sorted(right):
        raise Wrong("list the cells in order, the largest increase first.")
    raise Wrong("subtract the matrices, ignore the diagonal, and return the k cells with the largest increase.")


@checker("the most confident mistakes")
def check_confident_mistakes(answer: object) -> str:
    fn = need_callable(answer)
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95], [0.3, 0.7], [0.99, 0.01]])
    labels = torch.tensor([1, 1, 1, 0, 0, 0])  # wrong: 0 (0.9), 2 (0.6), 3 (0.95), 4 (0.7)
    got = [int(i) for i in fn(probs.clone(), labels.clone(), 3)]
    if got == [3, 0, 4]:
        return "these are the images to look at first: ambiguous shapes, odd strokes, a few wrong labels."
    if 5 in got or 1 in got:
        raise Wrong("keep only the images the model got wrong.")
    if got == [2, 4, 0]:
        raise Wrong("most confident first: sort by the predicted class's probability, descending.")
    raise Wrong("among the wrong predictions, sort by the probability of the predicted digit, highest first.")


EXERCISES = (
    Exercise(
        key="accuracy_se",
        title="How exact is a test accuracy?",
        level=1,
        prompt_md=(
            "A model reads 98.5 % of 10,000 test images right. Treat each image as an independent yes/no trial: "
            "what is the **standard error** of that accuracy, as a fraction? Is a 0.1 percentage point difference between two "
            "models worth a headline?"
        ),
        starter="accuracy_se = ...  # a fraction, like 0.985",
        solution="import math\n\naccuracy_se = math.sqrt(0.985 * (1 - 0.985) / 10_000)\naccuracy_se",
        wrong=(
            WrongAnswer("accuracy_se = 0.985 * 0.015 / 10_000", "square root"),
            WrongAnswer("import math\naccuracy_se = 100 * math.sqrt(0.985 * 0.015 / 10_000)", "fraction"),
        ),
        answer="accuracy_se",
        check=check_accuracy_se,
    ),
    Exercise(
        key="per_class",
        title="Accuracy per digit",
        level=2,
        prompt_md=(
            "Write `per_class_accuracy(cm)`: from a 10 × 10 confusion matrix (row = true digit, column = "
            "predicted), return the fraction of each true digit that was read right."
        ),
        starter=(
            "def per_class_accuracy(cm):\n"
            '    """Fraction of each true digit read right, from a confusion matrix [true, predicted]."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "def per_class_accuracy(cm):\n"
            '    """Fraction of each true digit read right, from a confusion matrix [true, predicted]."""\n'
            "    return cm.diag().double() / cm.sum(dim=1).double()"
        ),
        wrong=(
            WrongAnswer(
                "def per_class_accuracy(cm):\n    return cm.diag().double() / cm.sum(dim=0).double()",
                "predicted",
            ),
        ),
        answer="per_class_accuracy",
        check=check_per_class,
    ),
    Exercise(
        key="confusion",
        title="The confusion matrix",
        level=3,
        prompt_md=(
            "Write `confusion(preds, labels, k)`: a `k × k` tensor of counts where entry `[t, p]` is how many "
            "images of true digit `t` were predicted as `p`. (One line with `torch.bincount` is enough; a loop is fine too.)"
        ),
        starter=(
            "def confusion(preds, labels, k):\n"
            '    """k × k counts: [true digit, predicted digit]."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import torch\n\n\n"
            "def confusion(preds, labels, k):\n"
            '    """k × k counts: [true digit, predicted digit]."""\n'
            "    return torch.bincount(labels * k + preds, minlength=k * k).reshape(k, k)"
        ),
        wrong=(
            WrongAnswer(
                "import torch\n\ndef confusion(preds, labels, k):\n"
                "    return torch.bincount(preds * k + labels, minlength=k * k).reshape(k, k)",
                "other way round",
            ),
        ),
        answer="confusion",
        check=check_confusion,
    ),
    Exercise(
        key="grown_cells",
        title="Predict, then measure: which confusions grow without augmentation?",
        level=3,
        prompt_md=(
            "**Predict first.** The BatchNorm net trained here without augmentation; suppose a model trained *with* "
            "small rotations and shifts (`rotate10-shift2`) is retrained *without* them. Which mistakes do you expect "
            "to become more frequent — write down three (true digit, predicted digit) pairs and why.\n\n"
            "**Then write** `grown_cells(cm_before, cm_after, k)`: the `k` off-diagonal cells whose counts grew the "
            "most, largest increase first, as `(true, predicted)` pairs.\n\n"
            "**Then measure** (optional, a few minutes): train the lesson-03 model twice with the same seed, "
            "`AUGMENT = \"rotate10-shift2\"` and `AUGMENT = \"none\"`, build both confusion matrices on the "
            "**validation** split, and call `grown_cells(cm_with, cm_without, 3)`. Was your prediction right? "
            "(The test set stays out of it: this is a choice about training.)"
        ),
        starter=(
            "my_prediction = []  # e.g. [(7, 1), ...]: your three guesses, before measuring\n\n\n"
            "def grown_cells(cm_before, cm_after, k):\n"
            '    """The k off-diagonal (true, predicted) cells that grew most from cm_before to cm_after."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import torch\n\n\n"
            "def grown_cells(cm_before, cm_after, k):\n"
            '    """The k off-diagonal (true, predicted) cells that grew most from cm_before to cm_after."""\n'
            "    growth = (cm_after - cm_before).double()\n"
            "    growth.fill_diagonal_(-float('inf'))  # right answers are not confusions\n"
            "    top = growth.flatten().topk(k).indices\n"
            "    n = cm_before.shape[1]\n"
            "    return [(int(i) // n, int(i) % n) for i in top]"
        ),
        wrong=(
            WrongAnswer(
                "def grown_cells(cm_before, cm_after, k):\n"
                "    top = (cm_after - cm_before).flatten().abs().topk(k).indices\n"
                "    return [(int(i) // 10, int(i) % 10) for i in top]",
                "diagonal",
            ),
            WrongAnswer(
                "def grown_cells(cm_before, cm_after, k):\n"
                "    m = cm_after.double().clone()\n    m.fill_diagonal_(-1)\n"
                "    top = m.flatten().topk(k).indices\n"
                "    return [(int(i) // 10, int(i) % 10) for i in top]",
                "grew",
            ),
        ),
        answer="grown_cells",
        check=check_grown_cells,
    ),
    Exercise(
        key="confident_mistakes",
        title="The most confident mistakes",
        level=3,
        prompt_md=(
            "Write `confident_mistakes(probs, labels, k)`: `probs` is `[N, classes]` (softmax outputs). Return the "
            "indices of the `k` wrongly predicted images whose predicted digit had the highest probability, most "
            "confident first. These are the images worth looking at."
        ),
        starter=(
            "def confident_mistakes(probs, labels, k):\n"
            '    """Indices of the k wrong predictions with the highest confidence, most confident first."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "def confident_mistakes(probs, labels, k):\n"
            '    """Indices of the k wrong predictions with the highest confidence, most confident first."""\n'
            "    confidence, predicted = probs.max(dim=1)\n"
            "    wrong = (predicted != labels).nonzero().flatten()\n"
            "    order = confidence[wrong].argsort(descending=True)\n"
            "    return wrong[order[:k]].tolist()"
        ),
        wrong=(
            WrongAnswer(
                "def confident_mistakes(probs, labels, k):\n"
                "    return probs.max(dim=1).values.argsort(descending=True)[:k].tolist()",
                "got wrong",
            ),
            WrongAnswer(
                "def confident_mistakes(probs, labels, k):\n"
                "    confidence, predicted = probs.max(dim=1)\n"
                "    wrong = (predicted != labels).nonzero().flatten()\n"
                "    return wrong[confidence[wrong].argsort()[:k]].tolist()",
                "most confident first",
            ),
        ),
        answer="confident_mistakes",
        check=check_confident_mistakes,
    ),
)

QUIZ = (
    Q(
        "Why is the test set read only once, at the very end?",
        (
            "It is slow to load",
            "Every decision made by looking at it fits the model to it, and its score stops measuring new digits",
            "PyTorch locks it after one pass",
            "Its labels are less reliable",
        ),
        1,
        (
            "Loading takes a second.",
            "Choices belong to the validation split; the test score is the final, honest report.",
            "Nothing locks it; it is a discipline (mnistlib's SealedLoader only helps).",
            "Its labels are as good as the training labels.",
        ),
    ),
    Q(
        "In the confusion matrix (row = true, column = predicted), a large count at row 4, column 9 means…",
        (
            "many 9s are read as 4s",
            "many 4s are read as 9s",
            "4 and 9 are both read well",
            "the model predicts 4 and 9 equally often",
        ),
        1,
        (
            "That would be row 9, column 4.",
            "True 4, predicted 9: a 4 whose top is closed looks like a 9.",
            "Right answers sit on the diagonal, not at [4, 9].",
            "Prediction frequencies are column sums.",
        ),
    ),
    Q(
        "A write-up reports 98.16 % accuracy. What should you ask first?",
        (
            "Which images it was measured on",
            "How many GPUs were used",
            "Which font the digits were in",
            "Nothing: a number is a number",
        ),
        0,
        (
            "The 1×1-convolution net's 98.16 % was scored on its 60,000 training images, not the test set.",
            "Hardware changes the time, not the accuracy.",
            "MNIST digits are handwritten.",
            "The lesson's table shows how much the answer to 'on what?' matters.",
        ),
    ),
    Q(
        "Two models score 98.70 % and 98.60 % on 10,000 test images. What can you conclude?",
        (
            "The first is clearly better",
            "Little: the difference is below one standard error (about 0.12 percentage point)",
            "The second is overfitted",
            "They make the same mistakes",
        ),
        1,
        (
            "10 images out of 10,000 is within the noise.",
            "Compare several seeds, or validation runs, before declaring a winner.",
            "Nothing here says anything about overfitting.",
            "Equal scores can come from very different mistakes.",
        ),
    ),
    Q(
        "What do the most confident mistakes usually show?",
        (
            "Bugs in the training loop",
            "Ambiguous or oddly written digits, and a few wrong labels",
            "That the model is random",
            "That the test set is too small",
        ),
        1,
        (
            "A bug would show as low accuracy everywhere.",
            "Many are digits a person would hesitate over too.",
            "A random model is not confident.",
            "They say what is hard, not how many images there are.",
        ),
    ),
    Q(
        "Per-digit accuracy is similar for all ten digits. Does that prove the model is fair to all writers?",
        (
            "Yes",
            "No: digits are not groups of people; accuracy per writer group would need writer information",
            "Yes, if the test set is large",
            "No, because per-digit accuracy is meaningless",
        ),
        1,
        (
            "Classes are digits; fairness is about people.",
            "MNIST has no writer attributes; per-class accuracy says nothing about who wrote them.",
            "Size does not turn digits into writer groups.",
            "It is meaningful — for which digits fail, not for whom.",
        ),
    ),
)


MATERIAL = LessonMaterial(
    number=4,
    title="Evaluation: how good is the model, and where does it fail?",
    exercises=EXERCISES,
    quiz=QUIZ,
)

#: A fresh quiz widget for this lesson (the notebook cell calls it).
quiz = MATERIAL.make_quiz
