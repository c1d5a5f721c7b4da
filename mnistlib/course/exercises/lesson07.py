"""Lesson 07 · Inside the network: exercises and quiz (plain data + checks).

Receptive fields are graded with :func:`mnistlib.explain.receptive_field`, the saliency exercises
with :func:`mnistlib.explain.occlusion_map` and :func:`mnistlib.explain.gradient_x_input`, on an
untrained, seeded model and a synthetic image.
"""

from __future__ import annotations

import torch
from torch import nn

from mnistlib import explain
from mnistlib.course.quiz import Question as Q
from mnistlib.devices import eval_mode
from mnistlib.models import get_model

from .core import Exercise, LessonMaterial, Wrong, WrongAnswer, checker, close, need_callable, need_int


@checker("what the classic net's second conv sees")
def check_rf_classic(answer: object) -> str:
    n = need_int(answer)
    model = get_model("classic")
    right = explain.receptive_field(model, explain.conv_layers(model)[1])
    if n == right:
        return "half the digit: enough for a loop or a crossing, not for a whole 8."
    if n == 9:
        raise Wrong("the pool between the convs matters: it makes neighbouring inputs of conv 2 two pixels apart.")
    if n == 8:
        raise Wrong("8 × 8 is the size of its feature maps, not what one unit of them sees.")
    raise Wrong("walk conv 5 → pool 2 → conv 5 with: field += (k − 1) × jump, jump ×= stride.")


@checker("what global average pooling sees")
def check_gap_rf(answer: object) -> str:
    n = need_int(answer)
    if n == 28:
        return "every unit of the last map feeds the average, so the value depends on the whole image."
    if n < 28:
        raise Wrong("the pooling averages over every position of the last map, and together those see everything.")
    raise Wrong("a field can grow past the image only on paper; the image is 28 × 28.")


@checker("the width of the learned feature space")
def check_feature_width(answer: object) -> str:
    n = need_int(answer)
    model = get_model("classic")
    right = explain.get_layer(model, explain.penultimate_layer(model)).in_features
    if n == right:
        return "each test image becomes that many numbers; PCA draws them in 2-D."
    if n == 320:
        raise Wrong("that is the first Linear layer's input; feature_space reads the input of the *last* Linear layer.")
    if n == 10:
        raise Wrong("those are the logits, the last layer's output; the feature space is its input.")
    raise Wrong("look at the classifier: what goes into its last nn.Linear?")


def _problem() -> tuple[nn.Module, torch.Tensor, int]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = get_model("classic")
        x = torch.randn(1, 1, 28, 28)
    return model, x, 3


@checker("occlusion for one patch")
def check_occlusion_drop(answer: object) -> str:
    fn = need_callable(answer)
    model, x, target = _problem()
    fill = float(x.min())
    ref = explain.occlusion_map(model, x, target, background=fill, patch=7, stride=7)
    for top, left in ((7, 14), (0, 0), (21, 7)):
        model.train()  # the check hands over a model in training mode, as a learner might
        got = fn(model, x.clone(), target, top, left, 7, fill)
        got2 = fn(model.train(), x.clone(), target, top, left, 7, fill)
        if not close(got, float(got2), rel=1e-6, abs_=1e-9):
            raise Wrong("the answer changes from call to call: dropout is active. Evaluate in eval mode.")
        right = float(ref[top, left])
        if close(got, right, rel=1e-4, abs_=1e-7):
            continue
        if close(got, -right, rel=1e-4, abs_=1e-7):
            raise Wrong("mind the sign: positive must mean that hiding the patch lowers the probability.")
        raise Wrong("compare the target's *probability* (softmax) with and without the patch filled with `fill`.")
    return "the same numbers explain.occlusion_map averages into its map."


@checker("gradient × input")
def check_grad_x_input(answer: object) -> str:
    fn = need_callable(answer)
    model, x, target = _problem()
    background = float(x.min())
    right = explain.gradient_x_input(model, x, target, background=background)
    got = torch.as_tensor(fn(model, x.clone(), target, background)).detach().float().reshape(-1)
    if got.numel() != 28 * 28:
        raise Wrong("return one value per pixel: a 28 × 28 map.")
    got = got.reshape(28, 28)
    if torch.allclose(got, right, rtol=1e-4, atol=1e-6):
        return "one backward pass for a whole map; now remember the sanity checks."
    with eval_mode(model), torch.enable_grad():
        xi = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(xi)[0, target], xi)
    if torch.allclose(got, grad[0, 0], rtol=1e-4, atol=1e-6):
        raise Wrong("that is the plain gradient: multiply it by how far each pixel is from the background.")
    if torch.allclose(got, (grad * x)[0, 0], rtol=1e-4, atol=1e-6):
        raise Wrong("measure each pixel from the blank background (x − background), not from 0.")
    raise Wrong("take the gradient of the target's logit with respect to the image, in eval mode, times (x − background).")


EXERCISES = (
    Exercise(
        key="rf_classic",
        title="What the second conv sees",
        level=1,
        prompt_md=(
            "The classic net: 5 × 5 conv, 2 × 2 max-pool, 5 × 5 conv. What is the side of the square of input "
            "pixels one unit of the **second** conv sees? Work it out, then compare with the table in the lesson."
        ),
        starter="rf_conv2 = ...  # a whole number of pixels",
        solution="field, jump = 1, 1\nfor kernel, stride in [(5, 1), (2, 2), (5, 1)]:\n    field += (kernel - 1) * jump\n    jump *= stride\nrf_conv2 = field\nrf_conv2",
        wrong=(WrongAnswer("rf_conv2 = 9", "pool between"), WrongAnswer("rf_conv2 = 8", "size of its feature maps")),
        answer="rf_conv2",
        check=check_rf_classic,
    ),
    Exercise(
        key="gap_rf",
        title="What global average pooling sees",
        level=1,
        prompt_md=(
            "A network ends its convolutions with global average pooling (one number per channel). How many input "
            "pixels, as the side of a square, can one of those numbers depend on for a 28 × 28 image?"
        ),
        starter="gap_field = ...  # a whole number of pixels",
        solution="gap_field = 28  # the average covers every position, and together they see the whole image\ngap_field",
        wrong=(WrongAnswer("gap_field = 14", "averages over every position"),),
        answer="gap_field",
        check=check_gap_rf,
    ),
    Exercise(
        key="feature_width",
        title="The width of the feature space",
        level=1,
        prompt_md=(
            "`explain.feature_space` projects the input of a model's **last** `nn.Linear` layer. For the classic net "
            "(flatten 320 → Linear 50 → ReLU → Dropout → Linear 10), how many numbers per image is that?"
        ),
        starter="feature_width = ...  # a whole number",
        solution=(
            "from mnistlib import explain\nfrom mnistlib.models import get_model\n\n"
            "classic = get_model('classic')\n"
            "feature_width = explain.get_layer(classic, explain.penultimate_layer(classic)).in_features\n"
            "feature_width"
        ),
        wrong=(WrongAnswer("feature_width = 320", "*last* Linear"), WrongAnswer("feature_width = 10", "logits")),
        answer="feature_width",
        check=check_feature_width,
    ),
    Exercise(
        key="occlusion_drop",
        title="Occlusion for one patch",
        level=3,
        prompt_md=(
            "Write `occlusion_drop(model, x, target, top, left, patch, fill)`: `x` is one normalised image "
            "`[1, 1, 28, 28]`. Return how much the probability of class `target` **drops** when the square "
            "`patch × patch` at (`top`, `left`) is filled with `fill`. `explain.occlusion_map` does this for every "
            "position; the check compares with it."
        ),
        starter=(
            "import torch\n\n\n"
            "def occlusion_drop(model, x, target, top, left, patch, fill):\n"
            '    """p(target | x) − p(target | x with one patch filled)."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import torch\n\n\n"
            "def occlusion_drop(model, x, target, top, left, patch, fill):\n"
            '    """p(target | x) − p(target | x with one patch filled)."""\n'
            "    hidden = x.clone()\n"
            "    hidden[..., top : top + patch, left : left + patch] = fill\n"
            "    model.eval()  # no dropout: the same image must give the same answer\n"
            "    with torch.no_grad():\n"
            "        p = model(torch.cat([x, hidden])).softmax(dim=1)[:, target]\n"
            "    return float(p[0] - p[1])"
        ),
        wrong=(
            WrongAnswer(
                "import torch\n\ndef occlusion_drop(model, x, target, top, left, patch, fill):\n"
                "    hidden = x.clone()\n    hidden[..., top:top + patch, left:left + patch] = fill\n"
                "    model.eval()\n    with torch.no_grad():\n        z = model(torch.cat([x, hidden]))[:, target]\n"
                "    return float(z[0] - z[1])",
                "*probability*",
            ),
            WrongAnswer(
                "import torch\n\ndef occlusion_drop(model, x, target, top, left, patch, fill):\n"
                "    hidden = x.clone()\n    hidden[..., top:top + patch, left:left + patch] = fill\n"
                "    model.eval()\n    with torch.no_grad():\n        p = model(torch.cat([x, hidden])).softmax(1)[:, target]\n"
                "    return float(p[1] - p[0])",
                "sign",
            ),
            WrongAnswer(
                "import torch\n\ndef occlusion_drop(model, x, target, top, left, patch, fill):\n"
                "    hidden = x.clone()\n    hidden[..., top:top + patch, left:left + patch] = fill\n"
                "    with torch.no_grad():\n        p = model(torch.cat([x, hidden])).softmax(1)[:, target]\n"
                "    return float(p[0] - p[1])",
                "eval mode",
            ),
        ),
        answer="occlusion_drop",
        check=check_occlusion_drop,
    ),
    Exercise(
        key="grad_x_input",
        title="Gradient × input",
        level=3,
        prompt_md=(
            "Write `grad_times_input(model, x, target, background)`: the gradient of the `target` logit with respect "
            "to the image (model in eval mode), times `(x − background)`, as a 28 × 28 map. Afterwards, read "
            "Adebayo et al. (2018) below: what would this map look like for a model with random weights?"
        ),
        starter=(
            "import torch\n\n\n"
            "def grad_times_input(model, x, target, background):\n"
            '    """d logit[target] / d x, times (x − background), as a [28, 28] map."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import torch\n\n\n"
            "def grad_times_input(model, x, target, background):\n"
            '    """d logit[target] / d x, times (x − background), as a [28, 28] map."""\n'
            "    model.eval()\n"
            "    x = x.clone().requires_grad_(True)\n"
            "    score = model(x)[0, target]\n"
            "    (grad,) = torch.autograd.grad(score, x)\n"
            "    return (grad * (x.detach() - background))[0, 0]"
        ),
        wrong=(
            WrongAnswer(
                "import torch\n\ndef grad_times_input(model, x, target, background):\n"
                "    model.eval()\n    x = x.clone().requires_grad_(True)\n"
                "    (grad,) = torch.autograd.grad(model(x)[0, target], x)\n    return grad[0, 0]",
                "plain gradient",
            ),
            WrongAnswer(
                "import torch\n\ndef grad_times_input(model, x, target, background):\n"
                "    model.eval()\n    x = x.clone().requires_grad_(True)\n"
                "    (grad,) = torch.autograd.grad(model(x)[0, target], x)\n    return (grad * x.detach())[0, 0]",
                "blank background",
            ),
        ),
        answer="grad_times_input",
        check=check_grad_x_input,
    ),
)

QUIZ = (
    Q(
        "A first-layer kernel has a red (positive) band next to a blue (negative) band. What does it answer to?",
        ("A blank region", "An edge in that direction", "The whole digit", "Noise only"),
        1,
        (
            "On a blank region positive and negative weights cancel.",
            "Bright on one side, dark on the other: an edge across the bands.",
            "A 5 × 5 kernel sees only a 5 × 5 patch.",
            "Trained kernels are structured, as the picture shows.",
        ),
    ),
    Q(
        "Why are the second conv layer's feature maps smaller than the first's?",
        (
            "They have fewer channels",
            "Pooling halved the maps, and an unpadded 5 × 5 conv trims 4 more pixels",
            "The model crops the digit",
            "They are not smaller",
        ),
        1,
        (
            "They have more channels (20 against 10).",
            "24 → 12 by pooling, 12 → 8 by the conv: lesson 02's rule.",
            "Nothing is cropped; shapes follow from the layers.",
            "8 × 8 against 24 × 24.",
        ),
    ),
    Q(
        "Occlusion against gradient × input: which needs one forward pass per patch position?",
        ("Occlusion", "Gradient × input", "Both", "Neither"),
        0,
        (
            "It asks the model again for every hidden square, treating the model as a black box.",
            "One forward and one backward pass give its whole map.",
            "Only occlusion repeats the forward pass.",
            "Occlusion does.",
        ),
    ),
    Q(
        "A saliency map looks like a clean outline of the digit. Does that prove the model relies on those pixels?",
        (
            "Yes",
            "No: some methods draw edges even for a model with random weights; compare with a randomised model (Adebayo et al., 2018)",
            "Yes, if the prediction is right",
            "No, saliency maps are always random",
        ),
        1,
        (
            "A pretty map is not evidence by itself.",
            "A method that gives the same picture for a trained and a random model explains the image, not the model.",
            "A right prediction says nothing about the map's faithfulness.",
            "They are not random; they may just not depend on the model.",
        ),
    ),
    Q(
        "Digits of one class form a tight cloud in the PCA picture of the feature space. What does that suggest?",
        (
            "The network maps different-looking images of that digit to nearby features, easy for the last layer to separate",
            "PCA failed",
            "The class has few images",
            "The model overfits that class",
        ),
        0,
        (
            "That is what lets a single Linear layer draw straight boundaries.",
            "PCA only projects; clouds are real structure.",
            "All classes have about the same number of images.",
            "Tight clusters on held-out images are a good sign, not overfitting.",
        ),
    ),
    Q(
        "The maps shown are raw conv outputs, before BatchNorm and ReLU. How should you read a strongly negative value?",
        (
            "As a strong match",
            "As the opposite pattern; after BatchNorm and ReLU it may still end up zero or positive, so read it with care",
            "As an error",
            "As the digit's background",
        ),
        1,
        (
            "Red (positive) is the kernel's pattern; negative is its opposite.",
            "BatchNorm shifts and scales each channel before the ReLU decides what passes.",
            "Negative values are normal.",
            "The background of the image is not what the sign encodes.",
        ),
    ),
)


MATERIAL = LessonMaterial(
    number=7,
    title="Inside the network",
    exercises=EXERCISES,
    quiz=QUIZ,
)

#: A fresh quiz widget for this lesson (the notebook cell calls it).
quiz = MATERIAL.make_quiz
