"""Lesson 02 · Architecture: exercises and quiz (plain data + checks)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mnistlib.architecture import conv_output_size, trace_layers
from mnistlib.course.quiz import Question as Q
from mnistlib.models import count_parameters

from .core import Exercise, LessonMaterial, Wrong, WrongAnswer, checker, need_callable, need_int


def _classic_side() -> int:
    side = 28
    for kernel, stride in ((5, 1), (2, 2), (5, 1), (2, 2)):  # conv, pool, conv, pool
        side = conv_output_size(side, kernel, stride=stride)
    return side


@checker("the classic net's last feature maps")
def check_conv_shape(answer: object) -> str:
    n = need_int(answer)
    if n == _classic_side():
        return "and 20 maps of that size give the 320 numbers the first Linear layer expects."
    if n == conv_output_size(conv_output_size(conv_output_size(28, 5), 2, stride=2), 5):
        raise Wrong("you stopped before the second pooling layer, which halves the side once more.")
    if n in (7, 14):
        raise Wrong("a 5×5 conv without padding shrinks the side: apply (in − k + 2p)/s + 1 at every layer.")
    raise Wrong("walk the four layers in turn with out = (in − k + 2p)/s + 1 (a 2×2 pool has k = s = 2).")


@checker("padding that keeps the size")
def check_padding_same(answer: object) -> str:
    n = need_int(answer)
    if conv_output_size(28, 5, padding=n) == 28 and n >= 0:
        return "in general a k×k conv with stride 1 keeps the size with padding (k − 1)/2."
    if n == 4:
        raise Wrong("padding is added on both sides, so each side needs only part of what the kernel removes.")
    raise Wrong("a 5×5 kernel removes k − 1 = 4 pixels from the side; padding p adds 2p back.")


@checker("parameters of one conv layer")
def check_conv_params(answer: object) -> str:
    n = need_int(answer)
    conv = nn.Conv2d(10, 20, kernel_size=5)
    right = count_parameters(conv)
    if n == right:
        return "each of the 20 filters has 10 × 5 × 5 weights and one bias."
    if n == conv.weight.numel():
        raise Wrong("almost: each filter also has one bias.")
    if n in (20 * 25 + 20, 20 * 25):
        raise Wrong("each filter spans all 10 input channels, not just one.")
    raise Wrong("count the weights of one filter (in_channels × k × k), add its bias, times the number of filters.")


def _reference_rf(layers: Sequence[tuple[int, int]]) -> int:
    convs = [nn.Conv2d(1, 1, kernel_size=k, stride=s) for k, s in layers]
    return trace_layers(nn.Sequential(*convs), (1, 128, 128))[-1].receptive_field


STACKS = ([(3, 1), (3, 1), (3, 1)], [(5, 1), (2, 2), (5, 1), (2, 2)], [(3, 2), (3, 2), (3, 1)], [(7, 1)])


@checker("receptive field of a stack")
def check_receptive_field(answer: object) -> str:
    fn = need_callable(answer)
    for stack in STACKS:
        got, right = fn(list(stack)), _reference_rf(stack)
        if got != right:
            naive = 1 + sum(k - 1 for k, _ in stack)
            if got == naive and naive != right:
                raise Wrong(
                    f"for {stack}: after a stride-2 layer neighbouring units are 2 input pixels apart, "
                    "so later kernels widen the field by (k − 1) × jump, and the jump multiplies by each stride."
                )
            raise Wrong(f"for {stack} the field is not {got}: start at 1 with jump 1 and walk the layers in order.")
    return "the same rule as mnistlib.architecture.trace_layers."


def _two_ints(answer: object) -> tuple[int, int]:
    """``answer`` as a pair of whole numbers, or :class:`Wrong`."""
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise Wrong("give two numbers in brackets: (the Linear layer's parameters, the conv layer's).")
    return need_int(answer[0]), need_int(answer[1])


@checker("weight sharing in two numbers")
def check_weight_sharing(answer: object) -> str:
    linear, conv = _two_ints(answer)
    right = (count_parameters(nn.Linear(28 * 28, 32)), count_parameters(nn.Conv2d(1, 32, kernel_size=3)))
    if (linear, conv) == right:
        return ("the conv layer's few weights are used at every one of its 26 × 26 positions; each of the Linear "
                "layer's is used once, for one pixel.")
    if (conv, linear) == right:
        raise Wrong("the right numbers in the wrong order: the Linear layer first, then the conv.")
    if (linear, conv) == (28 * 28 * 32, 32 * 3 * 3):
        raise Wrong("close: each of the 32 outputs (Linear units or conv filters) also has one bias.")
    if linear == right[0]:
        raise Wrong("the Linear layer is right; a conv filter has k × k weights per input channel, whatever the "
                    "image size.")
    if conv == right[1]:
        raise Wrong("the conv is right; the Linear layer has one weight per input pixel for each of its 32 units.")
    raise Wrong("Linear: in × out weights + out biases. Conv2d: out × (in × k × k) weights + out biases.")


def _reference_conv(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    return F.conv2d(x[None, None], w[None, None], stride=stride)[0, 0]


#: (image height, width, kernel, stride): non-square images catch swapped axes, strides 1–3 the size rule.
CONV_CASES = ((8, 8, 3, 1), (9, 7, 3, 2), (12, 10, 5, 3), (28, 28, 5, 2))


@checker("a strided convolution by hand")
def check_conv_stride(answer: object) -> str:
    fn = need_callable(answer)
    gen = torch.Generator().manual_seed(2)
    for height, width, k, stride in CONV_CASES:
        x, w = torch.randn(height, width, generator=gen), torch.randn(k, k, generator=gen)
        right = _reference_conv(x, w, stride)
        got = torch.as_tensor(fn(x.clone(), w.clone(), stride)).float()
        case = f"a {height}×{width} image, a {k}×{k} filter and stride {stride}"
        if got.shape != right.shape:
            if got.shape == _reference_conv(x, w, 1).shape and stride > 1:
                raise Wrong(f"for {case} the map has the size of stride 1: move the window `stride` pixels "
                            "at a time, so fewer positions fit.")
            raise Wrong(f"for {case} the map should be {tuple(right.shape)}, not {tuple(got.shape)}: "
                        "(in − k) / s + 1 positions along each axis, rounded down.")
        if torch.allclose(got, _reference_conv(x, w.flip(0, 1), stride), atol=1e-4) and not torch.allclose(
                got, right, atol=1e-4):
            raise Wrong("you flipped the filter (the textbook convolution); PyTorch's Conv2d does not flip it: "
                        "out[i, j] sums w[u, v] · x[i·s + u, j·s + v].")
        if not torch.allclose(got, right, atol=1e-4):
            raise Wrong(f"for {case} some values differ from F.conv2d: the window for output (i, j) starts at "
                        "row i·s, column j·s.")
    return "the same as F.conv2d with stride=s: a stride just skips positions."


EXERCISES = (
    Exercise(
        key="conv_shape",
        title="The classic net's last feature maps, by hand",
        level=1,
        prompt_md=(
            "The classic PyTorch-example CNN applies, to a 28×28 image: a 5×5 conv (no padding), a 2×2 max-pool, "
            "a 5×5 conv (no padding), a 2×2 max-pool. What is the side of its last feature maps? "
            "Use `out = (in − k + 2p) / s + 1`, without running the model."
        ),
        starter="last_side = ...  # a whole number: the maps are last_side × last_side",
        solution=(
            "side = 28\n"
            "side = (side - 5) // 1 + 1  # conv 5×5: 24\n"
            "side = (side - 2) // 2 + 1  # pool 2×2: 12\n"
            "side = (side - 5) // 1 + 1  # conv 5×5: 8\n"
            "side = (side - 2) // 2 + 1  # pool 2×2: 4\n"
            "last_side = side\n"
            "last_side"
        ),
        wrong=(
            WrongAnswer("last_side = 8", "second pooling layer"),
            WrongAnswer("last_side = 7", "shrinks the side"),
        ),
        answer="last_side",
        check=check_conv_shape,
    ),
    Exercise(
        key="padding_same",
        title="Padding that keeps the size",
        level=1,
        prompt_md=(
            "Which `padding` makes `nn.Conv2d(1, 8, kernel_size=5, padding=?)` keep a 28×28 input at 28×28 "
            "(stride 1)? Predict, then check — and try it on a tensor if you like."
        ),
        starter="padding = ...  # a whole number",
        solution="padding = (5 - 1) // 2\npadding",
        wrong=(WrongAnswer("padding = 4", "both sides"), WrongAnswer("padding = 1", "removes k − 1")),
        answer="padding",
        check=check_padding_same,
    ),
    Exercise(
        key="weight_sharing",
        title="Weight sharing in two numbers",
        level=1,
        prompt_md=(
            "Both layers below look at a whole 28×28 image and make 32 outputs: `nn.Linear(784, 32)` (the small "
            "MLP's first layer, on the flattened pixels) and `nn.Conv2d(1, 32, kernel_size=3)` (32 filters of "
            "3×3). How many parameters does each have? Count by hand, then give both, the Linear layer's first."
        ),
        starter="weight_counts = ...  # (Linear parameters, Conv2d parameters): two whole numbers",
        solution=(
            "linear_count = 784 * 32 + 32  # one weight per pixel for each unit, and a bias each\n"
            "conv_count = 32 * (1 * 3 * 3) + 32  # one 3×3 filter per output channel, and a bias each\n"
            "weight_counts = (linear_count, conv_count)\n"
            "weight_counts"
        ),
        wrong=(
            WrongAnswer("weight_counts = (784 * 32, 32 * 9)", "bias"),
            WrongAnswer("weight_counts = (320, 784 * 32 + 32)", "wrong order"),
            WrongAnswer("weight_counts = (784 * 32 + 32, 32 * 784 * 9 + 32)", "whatever the image size"),
        ),
        answer="weight_counts",
        check=check_weight_sharing,
    ),
    Exercise(
        key="conv_params",
        title="Parameters of one conv layer",
        level=2,
        prompt_md=(
            "How many parameters does `nn.Conv2d(10, 20, kernel_size=5)` have? Count them by hand "
            "(then `count_parameters` can confirm)."
        ),
        starter="conv_params = ...  # a whole number",
        solution="conv_params = 20 * (10 * 5 * 5) + 20  # weights + one bias per filter\nconv_params",
        wrong=(WrongAnswer("conv_params = 20 * 10 * 5 * 5", "bias"), WrongAnswer("conv_params = 520", "all 10 input")),
        answer="conv_params",
        check=check_conv_params,
    ),
    Exercise(
        key="receptive_field",
        title="Receptive field of a stack",
        level=3,
        prompt_md=(
            "Write `receptive_field(layers)`: `layers` is a list of `(kernel, stride)` pairs (convs or pools, "
            "in order); return the side of the square of input pixels one output unit sees. Start with a field "
            "of 1 and a *jump* of 1; each layer widens the field by `(kernel − 1) × jump` and multiplies the "
            "jump by its stride. Try it on the classic net: `[(5, 1), (2, 2), (5, 1), (2, 2)]`."
        ),
        starter=(
            "def receptive_field(layers):\n"
            '    """Side of the input square one unit after `layers` [(kernel, stride), ...] sees."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "def receptive_field(layers):\n"
            '    """Side of the input square one unit after `layers` [(kernel, stride), ...] sees."""\n'
            "    field, jump = 1, 1\n"
            "    for kernel, stride in layers:\n"
            "        field += (kernel - 1) * jump\n"
            "        jump *= stride\n"
            "    return field"
        ),
        wrong=(
            WrongAnswer(
                "def receptive_field(layers):\n    return 1 + sum(k - 1 for k, s in layers)",
                "(k − 1) × jump",
            ),
        ),
        answer="receptive_field",
        check=check_receptive_field,
    ),
    Exercise(
        key="conv_stride",
        title="A strided convolution by hand",
        level=3,
        prompt_md=(
            "Write `conv_stride(x, w, stride)`: `x` is one image `[H, W]`, `w` one filter `[k, k]`; return the "
            "output map of `F.conv2d` with that `stride`, no padding and no bias — without calling `F.conv2d`. "
            "Start from the lesson's loops: with stride `s` the window for output `(i, j)` starts at row `i·s`, "
            "column `j·s`. The check compares with `F.conv2d` on random images, some of them not square."
        ),
        starter=(
            "def conv_stride(x, w, stride):\n"
            '    """Output map of F.conv2d(x, w, stride=stride) for one image [H, W] and one filter [k, k]."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import torch\n\n\n"
            "def conv_stride(x, w, stride):\n"
            '    """Output map of F.conv2d(x, w, stride=stride) for one image [H, W] and one filter [k, k]."""\n'
            "    k = w.shape[0]\n"
            "    rows = (x.shape[0] - k) // stride + 1\n"
            "    cols = (x.shape[1] - k) // stride + 1\n"
            "    out = torch.zeros(rows, cols)\n"
            "    for i in range(rows):\n"
            "        for j in range(cols):\n"
            "            patch = x[i * stride : i * stride + k, j * stride : j * stride + k]\n"
            "            out[i, j] = (patch * w).sum()\n"
            "    return out"
        ),
        wrong=(
            WrongAnswer(
                "import torch.nn.functional as F\n\n"
                "def conv_stride(x, w, stride):\n"
                "    return F.conv2d(x[None, None], w.flip(0, 1)[None, None], stride=stride)[0, 0]",
                "flipped",
            ),
            WrongAnswer(
                "import torch.nn.functional as F\n\n"
                "def conv_stride(x, w, stride):\n"
                "    return F.conv2d(x[None, None], w[None, None])[0, 0]",
                "size of stride 1",
            ),
            WrongAnswer(
                "import torch\n\n"
                "def conv_stride(x, w, stride):\n"
                "    k = w.shape[0]\n"
                "    rows, cols = (x.shape[0] - k) // stride + 1, (x.shape[1] - k) // stride + 1\n"
                "    out = torch.zeros(rows, cols)\n"
                "    for i in range(rows):\n"
                "        for j in range(cols):\n"
                "            out[i, j] = (x[i : i + k, j : j + k] * w).sum()\n"
                "    return out",
                "starts at",
            ),
        ),
        answer="conv_stride",
        check=check_conv_stride,
    ),
)

QUIZ = (
    Q(
        "A batch tensor has shape `[N, C, H, W]`. What is C for the input images, and after `nn.Conv2d(1, 10, 5)`?",
        ("1, then 10", "28, then 24", "10, then 1", "1, then 5"),
        0,
        (
            "A grey image has one channel; each of the 10 filters makes one output channel.",
            "28 and 24 are the height and width, not the channels.",
            "Reversed: `Conv2d(in_channels, out_channels, kernel_size)`.",
            "5 is the kernel size; it changes H and W, not C.",
        ),
    ),
    Q(
        "Where do most of the parameters of the BatchNorm net (hidden 64) live?",
        (
            "In its convolutions",
            "In the BatchNorm layers",
            "In the first fully connected layer, after flattening 32×7×7 values",
            "In the last layer, which has 10 outputs",
        ),
        2,
        (
            "Its two small 3×3 convs hold a few thousand weights.",
            "BatchNorm learns only two numbers per channel.",
            "1,568 inputs × 64 units: about 95 % of its 105,962 parameters.",
            "64 × 10 + 10 = 650 parameters only.",
        ),
    ),
    Q(
        "Why do torchsummary and forward hooks miss layers written as `F.relu(x)` or `x.view(...)` in `forward`?",
        (
            "Because functions have no parameters",
            "Because hooks are attached to modules, and a function call is not a module",
            "Because torchsummary only supports CNNs",
            "They do not miss them",
        ),
        1,
        (
            "MaxPool2d has no parameters either, yet as a module it is seen.",
            "That is why the series' models write `nn.ReLU()`, `nn.MaxPool2d`, `nn.Flatten()` as modules.",
            "It supports any module; it only cannot see function calls.",
            "The lesson shows the functional classic net's table missing those rows.",
        ),
    ),
    Q(
        "The models return logits and train with `nn.CrossEntropyLoss`. What would adding `LogSoftmax` as the last layer change?",
        (
            "The predicted digit",
            "Nothing the training sees: log-softmax of log-probabilities leaves them unchanged",
            "The loss would be negative",
            "Training would fail with a shape error",
        ),
        1,
        (
            "Log-softmax subtracts the same number from every score; the largest stays the largest.",
            "Log-probabilities already describe probabilities summing to one, so a second log-softmax subtracts 0.",
            "Cross-entropy is −log of a probability, never negative.",
            "The shape stays [N, 10].",
        ),
    ),
    Q(
        "A unit of a conv layer has a receptive field of 14×14. What does that mean?",
        (
            "Its feature map is 14×14",
            "It depends on a 14×14 square of input pixels, and on nothing outside it",
            "Its kernel is 14×14",
            "It has 14 × 14 parameters",
        ),
        1,
        (
            "The map size and the field are different: in the classic net an 8×8 map has units seeing 14×14.",
            "Stacked kernels and pooling strides let later units see wider squares of the image.",
            "Its kernel is 5×5; earlier layers and the pool's stride widen what it sees.",
            "Parameters belong to the layer, not to a unit's field.",
        ),
    ),
    Q(
        "You change a conv's kernel size and get `mat1 and mat2 shapes cannot be multiplied`. What is the fix?",
        (
            "Change the batch size",
            "Make the first Linear layer expect the new number of flattened features",
            "Add padding to the Linear layer",
            "Use a bigger learning rate",
        ),
        1,
        (
            "The error is about features per image, not the number of images.",
            "Measure C × H × W of the last feature maps (`flattened_size`) and use it as `in_features`.",
            "Linear layers have no padding.",
            "Shape errors happen before any learning.",
        ),
    ),
    Q(
        "In the 1×1-convolution net a 1×1 conv from 16 to 8 channels, with no ReLU after it, comes before a 3×3 "
        "conv from 8 to 16. Compared with one 3×3 conv from 16 to 16 channels, the pair…",
        (
            "can compute more: it has two layers",
            "has fewer parameters and can compute less: its filters see only 8 mixtures of the 16 channels",
            "computes exactly the same functions with fewer parameters",
            "computes exactly the same as its folded 3×3 conv, border included",
        ),
        1,
        (
            "Without a ReLU between them the two are one linear map: they fold into a single 3×3 conv.",
            "The folded filters have rank at most 8: a bottleneck, not an extra layer of thinking.",
            "Fewer parameters, yes, but not the same functions: a full 16 → 16 conv can use all 16 channel mixtures.",
            "Not at the border: zero padding pads the 1×1's output there, which is not the 1×1 of a zero input.",
        ),
    ),
    Q(
        "Why train a linear model and a small MLP before a CNN, the same way on the same split?",
        (
            "They are always more accurate",
            "To know what the convolutions add: a baseline shows how far the simplest models get",
            "Because a CNN cannot be trained first",
            "To choose the test set",
        ),
        1,
        (
            "They are the yardstick, not the winner: each pixel position gets its own weights.",
            "Accuracy and parameters side by side, and the shift test, show what the convolutions buy.",
            "Any registry model trains with the same loop; the order is about knowing what you gain.",
            "The test set is never chosen or looked at here; baselines are compared on validation images.",
        ),
    ),
)


MATERIAL = LessonMaterial(
    number=2,
    title="Architecture: what every layer does to the shape",
    exercises=EXERCISES,
    quiz=QUIZ,
)

#: A fresh quiz widget for this lesson (the notebook cell calls it).
quiz = MATERIAL.make_quiz
