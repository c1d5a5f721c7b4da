"""Lesson 08 · Your own handwriting: exercises and quiz (plain data + checks).

Collect digits of your own, hold some out, fine-tune a trained model on them, and check that it
did not forget MNIST (on the validation split).
"""

from __future__ import annotations

import inspect
import math

from mnistlib.course.quiz import Question as Q
from mnistlib.handwriting.finetune import mixed_data
from mnistlib.models import count_parameters, get_model

from .core import Exercise, LessonMaterial, Wrong, WrongAnswer, checker, need_callable, need_int


def _mix_defaults() -> tuple[int, int, int]:
    """(repeat, mnist_per_own, batch_size): how fine_tune mixes its batches by default (read from the code)."""
    params = inspect.signature(mixed_data).parameters
    return params["repeat"].default, params["mnist_per_own"].default, params["batch_size"].default


@checker("fine-tuning steps per epoch")
def check_finetune_steps(answer: object) -> str:
    n = need_int(answer)
    repeat, per_own, batch = _mix_defaults()
    mine = 80 - 20
    if n == math.ceil((repeat + per_own) * mine / batch):
        return "most of every batch is MNIST: that is what keeps the model from forgetting it."
    if n == math.ceil((repeat + per_own) * 80 / batch):
        raise Wrong("the held-out session is not trained on: count only the training digits.")
    if n == (repeat + per_own) * mine // batch:
        raise Wrong("the last, smaller batch is a step too.")
    if n in (math.ceil(mine / batch), math.ceil(repeat * mine / batch), math.ceil(mine / 16)):
        raise Wrong("every epoch also holds MNIST training images: mnist_per_own of them for each digit of yours.")
    if n == math.ceil((1 + per_own) * mine / batch):
        raise Wrong("each of your digits appears `repeat` times in an epoch, not once.")
    raise Wrong("count the images of one epoch — your training digits, each `repeat` times, plus `mnist_per_own` MNIST "
                "images per digit of yours — and divide by the batch size, rounding up.")


@checker("what fine-tuning does to MNIST accuracy")
def check_forgetting(answer: object) -> str:
    word = str(answer).strip().lower()
    if word in {"down", "drops", "lower", "falls", "decreases", "goes down"}:
        return "'catastrophic forgetting': mix MNIST images into the batches, or train briefly with a small rate."
    if word in {"up", "higher", "rises", "increases", "same", "stays", "unchanged"}:
        raise Wrong("the model adapts to what it sees; what it no longer sees, it slowly stops fitting.")
    raise Wrong("answer with one word: up, same or down.")


@checker("a split by drawing session")
def check_session_split(answer: object) -> str:
    fn = need_callable(answer)
    sessions = ["mon", "mon", "tue", "tue", "wed", "wed", "mon", "thu", "wed", "tue"]
    train, val = (sorted(int(i) for i in part) for part in fn(list(sessions), {"wed", "thu"}))
    if sorted(train + val) != list(range(len(sessions))) or set(train) & set(val):
        raise Wrong("every image must be in exactly one of the two halves.")
    if {sessions[i] for i in train} & {sessions[i] for i in val}:
        raise Wrong("one session is in both halves: near-identical digits from one sitting would leak into validation.")
    if {sessions[i] for i in val} != {"wed", "thu"}:
        raise Wrong("validation should be exactly the images from the sessions in `val_sessions`.")
    return "held-out sessions measure how the model does on a new day's handwriting."


@checker("freezing the feature extractor")
def check_freeze_features(answer: object) -> str:
    fn = need_callable(answer)
    model = get_model("classic")
    got = fn(model)
    features_frozen = all(not p.requires_grad for p in model.features.parameters())
    classifier_trains = all(p.requires_grad for p in model.classifier.parameters())
    if features_frozen and not classifier_trains:
        raise Wrong("the classifier must still learn: freeze only `model.features`.")
    if not features_frozen:
        if not model.features.training:
            raise Wrong("`eval()` switches dropout and BatchNorm; it does not stop weights from learning (requires_grad).")
        raise Wrong("set `requires_grad = False` on every parameter of `model.features`.")
    if need_int(got, "the number of trainable parameters") != count_parameters(model, trainable_only=True):
        raise Wrong("return how many parameters can still learn (those with requires_grad).")
    return "only the classifier adapts; pass just its parameters (or all, the frozen ones get no gradient) to the optimizer."


EXERCISES = (
    Exercise(
        key="finetune_steps",
        title="Steps per epoch of fine-tuning",
        level=1,
        prompt_md=(
            "You drew 80 digits in four sessions of 20 and hold out one whole session. `fine_tune` (its source is "
            "printed in section 4) trains on your training digits mixed with MNIST: with its defaults each digit of "
            "yours appears `repeat=4` times per epoch, joined by `mnist_per_own=10` MNIST training images per digit "
            "of yours, in batches of `batch_size=64` (`mixed_data` builds them). How many optimizer steps does one "
            "epoch take?"
        ),
        starter="finetune_steps = ...  # a whole number",
        solution=(
            "import math\n\n"
            "mine = 80 - 20  # one session of 20 held out\n"
            "finetune_steps = math.ceil((4 * mine + 10 * mine) / 64)\n"
            "finetune_steps"
        ),
        wrong=(
            WrongAnswer("finetune_steps = 1", "MNIST training images"),
            WrongAnswer("finetune_steps = 18", "held-out session"),
            WrongAnswer("finetune_steps = 13", "last, smaller batch"),
            WrongAnswer("finetune_steps = 11", "`repeat` times"),
        ),
        answer="finetune_steps",
        check=check_finetune_steps,
    ),
    Exercise(
        key="forgetting",
        title="Predict: what happens to MNIST?",
        level=1,
        prompt_md=(
            "You fine-tune the whole network for 30 epochs on your 60 training digits only, at the learning rate "
            "it was trained with. Its accuracy on *your* held-out digits rises. What happens to its accuracy on the "
            "MNIST **validation** split: `\"up\"`, `\"same\"` or `\"down\"`? Predict, then measure it in the lesson."
        ),
        starter='mnist_after = ...  # "up", "same" or "down"',
        solution='mnist_after = "down"\nmnist_after',
        wrong=(WrongAnswer('mnist_after = "up"', "adapts to what it sees"),),
        answer="mnist_after",
        check=check_forgetting,
    ),
    Exercise(
        key="session_split",
        title="Hold out whole drawing sessions",
        level=2,
        prompt_md=(
            "Digits drawn in one sitting look alike. Write `hold_out_sessions(sessions, val_sessions)`: "
            "`sessions[i]` names the session image `i` was drawn in; return `(train_indices, val_indices)` with "
            "every image of a session in `val_sessions` in validation and all others in training. (The lesson's "
            "`split_by_session` also *chooses* which sessions to hold out.)"
        ),
        starter=(
            "def hold_out_sessions(sessions, val_sessions):\n"
            '    """(train_indices, val_indices): whole sessions go to validation."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "def hold_out_sessions(sessions, val_sessions):\n"
            '    """(train_indices, val_indices): whole sessions go to validation."""\n'
            "    val = [i for i, s in enumerate(sessions) if s in val_sessions]\n"
            "    train = [i for i, s in enumerate(sessions) if s not in val_sessions]\n"
            "    return train, val"
        ),
        wrong=(
            WrongAnswer(
                "def hold_out_sessions(sessions, val_sessions):\n"
                "    n = len(sessions)\n    return list(range(0, n, 2)), list(range(1, n, 2))",
                "both halves",
            ),
        ),
        answer="hold_out_sessions",
        check=check_session_split,
    ),
    Exercise(
        key="freeze_features",
        title="Freeze the feature extractor",
        level=3,
        prompt_md=(
            "With 60 images, retraining every weight invites overfitting. Write `freeze_features(model)`: stop every "
            "parameter of `model.features` from learning, leave `model.classifier` trainable, and return the number "
            "of parameters that can still learn."
        ),
        starter=(
            "def freeze_features(model):\n"
            '    """Freeze model.features; return how many parameters still learn."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "def freeze_features(model):\n"
            '    """Freeze model.features; return how many parameters still learn."""\n'
            "    for p in model.features.parameters():\n"
            "        p.requires_grad_(False)\n"
            "    return sum(p.numel() for p in model.parameters() if p.requires_grad)"
        ),
        wrong=(
            WrongAnswer(
                "def freeze_features(model):\n    for p in model.parameters():\n        p.requires_grad_(False)\n    return 0",
                "classifier must still learn",
            ),
            WrongAnswer(
                "def freeze_features(model):\n    model.features.eval()\n"
                "    return sum(p.numel() for p in model.classifier.parameters())",
                "`eval()` switches",
            ),
        ),
        answer="freeze_features",
        check=check_freeze_features,
    ),
)

QUIZ = (
    Q(
        "Why draw your digits in several sessions rather than all at once?",
        (
            "To rest your hand",
            "So you can hold out whole sessions and measure on handwriting from another day",
            "Because the pad forgets digits",
            "It makes no difference",
        ),
        1,
        (
            "That too, but it is not the reason.",
            "Digits from one sitting look alike; a random split would flatter the model.",
            "The digits are saved as files.",
            "It decides whether your validation score means anything.",
        ),
    ),
    Q(
        "Fine-tuning a trained model on a few dozen digits: which learning rate, compared with training from scratch?",
        ("10× larger", "The same", "Smaller: a fraction of the rate it was trained with", "Zero"),
        2,
        (
            "Large steps would wreck what the network already knows.",
            "It can work, but tends to overwrite too much.",
            "Small steps adapt the weights without forgetting (this lesson's FINE_TUNE_LR is 5e-4).",
            "Then nothing would change.",
        ),
    ),
    Q(
        "What is 'catastrophic forgetting'?",
        (
            "The checkpoint file gets deleted",
            "Training on new data only makes the model worse at the old data",
            "The model forgets the learning rate",
            "The optimizer's state is lost",
        ),
        1,
        (
            "Files are not the problem.",
            "Mix old examples into the batches, freeze layers or train briefly to limit it.",
            "Hyperparameters are not learned.",
            "That only affects resuming.",
        ),
    ),
    Q(
        "Why freeze the convolutional features when you have very few images?",
        (
            "It makes prediction faster",
            "Fewer weights learn, so the model cannot overfit the handful of examples as easily",
            "Frozen layers are more accurate",
            "PyTorch requires it",
        ),
        1,
        (
            "Prediction costs the same.",
            "The features learned on 55,000 digits stay; only the classifier adapts.",
            "Frozen layers are just not updated.",
            "It is a choice, not a requirement.",
        ),
    ),
    Q(
        "How do you know fine-tuning helped?",
        (
            "The training loss went down",
            "Accuracy on your held-out digits rose, and MNIST validation accuracy did not fall much",
            "The model is bigger",
            "Test-set accuracy went up after trying many settings",
        ),
        1,
        (
            "On 60 images the training loss always goes down.",
            "Measure both what you wanted and what you might lose.",
            "Its size did not change.",
            "Trying settings against the test set turns it into a validation set.",
        ),
    ),
)


MATERIAL = LessonMaterial(
    number=8,
    title="Your own handwriting",
    exercises=EXERCISES,
    quiz=QUIZ,
)

#: A fresh quiz widget for this lesson (the notebook cell calls it).
quiz = MATERIAL.make_quiz
