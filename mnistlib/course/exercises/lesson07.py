"""Lesson 07 · Inside the network: exercises and quiz (plain data + checks).

Receptive fields are graded with :func:`mnistlib.explain.receptive_field`, the saliency exercises
with :func:`mnistlib.explain.occlusion_map` and :func:`mnistlib.explain.gradient_x_input`, on an
untrained, seeded model and a synthetic image; dead units on synthetic activations.
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
        return "each image becomes that many numbers; PCA draws them in 2-D."
    if n == 320:
        raise Wrong("that is the first Linear layer's input; feature_space reads the input of the *last* Linear layer.")
    if n == 10:
        raise Wrong("those are the logits, the last layer's output; the feature space is its input.")
    raise Wrong("look at the classifier: what goes into its last nn.Linear?")


def _dead_problems() -> tuple[tuple[torch.Tensor, float], ...]:
    """Synthetic ReLU outputs with known dead units: a conv layer's [N, C, H, W] and a Linear's [N, F]."""
    g = torch.Generator().manual_seed(0)
    conv = torch.relu(torch.randn(32, 8, 6, 6, generator=g))
    conv[:, [1, 5]] = 0  # dead: zero for every image and position
    conv[1:, 3] = 0  # alive: only the first image makes it answer
    conv[0, 6] = 0  # alive: silent on the first image only
    flat = torch.relu(torch.randn(32, 10, generator=g))
    flat[:, [0, 4, 7]] = 0
    return (conv, 2 / 8), (flat, 3 / 10)


@checker("the share of dead units")
def check_dead_share(answer: object) -> str:
    fn = need_callable(answer)
    for acts, right in _dead_problems():
        got = fn(acts.clone())
        if close(got, right, rel=1e-6):
            continue
        if close(got, float((acts == 0).float().mean()), rel=1e-6):
            raise Wrong("that is the share of zero *values*; a unit is dead only when it is zero for every image "
                        "and every position.")
        per_image = (acts.flatten(2) if acts.dim() > 2 else acts.unsqueeze(2)).amax(dim=2) == 0
        if close(got, float(per_image.float().mean()), rel=1e-6) or close(got, float(per_image[0].float().mean()),
                                                                           rel=1e-6):
            raise Wrong("a unit silent on one image may answer another: it is dead only if it is zero for the "
                        "whole batch.")
        raise Wrong("for each unit (dimension 1: a channel, or a feature of a Linear layer), is every value it gave "
                    "in the batch zero? Return the share of units for which that holds.")
    return "a dead unit passes no gradient back through its ReLU, so nothing brings it back."


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
            "pixels one unit of the **second** conv sees? Work it out, then compare with "
            "`print(layer_table(get_model(\"classic\")))` (the lesson's own table is for the model it loaded)."
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
        key="dead_share",
        title="Dead units",
        level=2,
        prompt_md=(
            "A unit — one channel of a conv layer's output, or one feature of a Linear layer's — is **dead** on a "
            "batch when it gives 0 for every image and every position. Write `dead_share(acts)`: `acts` is a ReLU's "
            "output for one batch, `[N, C, H, W]` or `[N, F]`; return the share of its units that are dead. Then "
            "measure the runs of section 5, for example "
            "`dead_share(explain.capture(models[name], x_val[:500], layer)[layer])` for each `name` in `models` "
            "and each `layer` in `runs[name].layers`."
        ),
        starter=(
            "def dead_share(acts):\n"
            '    """Share of units (dimension 1) that give 0 for every image and every position."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "def dead_share(acts):\n"
            '    """Share of units (dimension 1) that give 0 for every image and every position."""\n'
            "    per_unit = acts.transpose(0, 1).flatten(1)  # one row per unit: every value it gave in the batch\n"
            "    return float((per_unit == 0).all(dim=1).float().mean())"
        ),
        wrong=(
            WrongAnswer("def dead_share(acts):\n    return float((acts == 0).float().mean())", "zero *values*"),
            WrongAnswer(
                "def dead_share(acts):\n    return float((acts.flatten(2).amax(2) == 0).float().mean())",
                "whole batch",
            ),
        ),
        answer="dead_share",
        check=check_dead_share,
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
            "to the image (model in eval mode), times `(x − background)`, as a 28 × 28 map. Afterwards, look again at "
            "the random-weights check of section 3: why does this map keep the digit's shape for a network that "
            "learned nothing?"
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
            "A first-layer kernel sees only a patch the size of the kernel.",
            "Trained kernels are structured, as the picture shows.",
        ),
    ),
    Q(
        "Why are the second conv layer's feature maps smaller than the first's?",
        (
            "They have fewer channels",
            "The max-pool between the two convs halves each side (an unpadded conv would trim a border as well)",
            "The model crops the digit",
            "They are not smaller",
        ),
        1,
        (
            "Channels are the other dimension: the second conv has more of them, as the shape table shows.",
            "Lesson 02's rule: the shape table above shows each step, pool and conv.",
            "Nothing is cropped; shapes follow from the layers.",
            "Compare the shapes the table prints for the two conv layers.",
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
        "The lesson shows each feature map after the BatchNorm and ReLU that follow the conv. What does a black "
        "(zero) unit there mean?",
        (
            "The kernel's pattern is strongly there",
            "After BatchNorm shifted and scaled the channel, the conv's answer there was zero or below, so the ReLU "
            "passed nothing on: the pattern is absent there",
            "The hook failed at that position",
            "The image is blank there",
        ),
        1,
        (
            "A strong match is bright; black is the ReLU's zero.",
            "A raw conv output can be negative (the opposite pattern); after the ReLU every such value reads as 0.",
            "Hooks copy whole outputs; zeros are real values.",
            "Not necessarily: BatchNorm's shift can zero out a channel on ink too, and light one up on blank paper.",
        ),
    ),
    Q(
        "While a network trains, the share of zeros after one of its ReLUs climbs to 100 % and stays there, and "
        "validation accuracy sits near 10 %. What happened?",
        (
            "The network has converged",
            "That layer's units died: each gets a negative sum for every image, outputs 0 and so gets no gradient; a "
            "learning rate far too high is a common cause",
            "The ReLU layer is broken",
            "Nothing: a ReLU saves memory by writing zeros",
        ),
        1,
        (
            "Ten classes and 10 % accuracy: the network is guessing.",
            "Nothing after a dead layer receives a signal; a lower rate, or BatchNorm before the ReLU, keeps units alive.",
            "It does exactly what it should with negative inputs.",
            "Zeros that never change mean the layer passes nothing on.",
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
