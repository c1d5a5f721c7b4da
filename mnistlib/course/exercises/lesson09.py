"""Lesson 09 · ONNX export and int8: exercises and quiz (plain data + checks)."""

from __future__ import annotations

import torch

from mnistlib.course.quiz import Question as Q

from .core import Exercise, LessonMaterial, Wrong, WrongAnswer, checker, close, need_callable, need_int

RECORD_PARAMS = 17_826


@checker("the size of the weights")
def check_model_bytes(answer: object) -> str:
    try:
        fp32, int8 = (need_int(v, "a whole number of bytes") for v in answer)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise Wrong("give two whole numbers: (float32 bytes, int8 bytes).") from None
    if (fp32, int8) == (RECORD_PARAMS * 4, RECORD_PARAMS):
        return ("a quarter of the bytes for the weights; the file also keeps biases, scales, zero points and the "
                "graph, so it shrinks a little less — the lesson prints by how much.")
    if (fp32, int8) == (RECORD_PARAMS * 32, RECORD_PARAMS * 8):
        raise Wrong("those are bits; a byte is 8 bits.")
    if fp32 == RECORD_PARAMS * 4:
        raise Wrong("float32 is right; int8 stores each weight in a single byte.")
    raise Wrong("a float32 takes 4 bytes, an int8 one byte; multiply by the number of parameters.")


@checker("which images calibrate int8")
def check_calibration(answer: object) -> str:
    word = str(answer).strip().lower()
    if word in {"train", "training"}:
        return ("the images the model learned from; validation then judges the quantised copy, and the test set "
                "gives the final number once.")
    if word == "test":
        raise Wrong("never choose anything with the test set: it is read once, for the final report.")
    if word in {"validation", "val"}:
        raise Wrong("keep validation to judge the quantised model afterwards; calibrate on the images the model learned from.")
    raise Wrong('answer "train", "validation" or "test".')


@checker("one scale per output channel")
def check_per_channel(answer: object) -> str:
    fn = need_callable(answer)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 4, 3, 3, generator=g) * torch.linspace(0.1, 2.0, 8).reshape(8, 1, 1, 1)
    right = w.abs().amax(dim=(1, 2, 3)) / 127
    got = torch.as_tensor(fn(w.clone())).float().flatten()
    if got.numel() == 1:
        raise Wrong("one scale for the whole tensor wastes precision on small channels: one per output channel.")
    if got.numel() != 8:
        raise Wrong("return one scale for each of the 8 output channels (the first dimension).")
    if torch.allclose(got, right, rtol=1e-5):
        return "per-channel scales are what `per_channel=True` asks the quantiser for."
    if torch.allclose(got, right * 127 / 255, rtol=1e-5):
        raise Wrong("symmetric int8 uses −127 … 127: divide the largest magnitude by 127.")
    raise Wrong("for each output channel: the largest absolute weight in it, divided by 127.")


@checker("symmetric int8 quantisation")
def check_quantize(answer: object) -> str:
    fn = need_callable(answer)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(500, generator=g) * 0.3
    w[7] = -1.2  # the largest magnitude, negative
    q, scale = fn(w.clone())
    q = torch.as_tensor(q)
    if q.dtype != torch.int8:
        raise Wrong("return the quantised values as an int8 tensor (`.to(torch.int8)`).")
    if not close(scale, float(w.abs().max()) / 127, rel=1e-5):
        if close(scale, float(w.abs().max()) / 255, rel=1e-5) or close(scale, float(w.max() - w.min()) / 255, rel=1e-5):
            raise Wrong("symmetric int8 uses −127 … 127 around zero: the scale is the largest magnitude / 127.")
        raise Wrong("the scale maps the largest absolute weight to 127.")
    error = (q.float() * float(scale) - w).abs().max()
    if error > float(scale) / 2 + 1e-6:
        raise Wrong("round to the nearest integer before converting: `.to(torch.int8)` alone cuts towards zero.")
    return "every weight is off by at most half a step: scale / 2."


EXERCISES = (
    Exercise(
        key="model_bytes",
        title="How much smaller is int8?",
        level=1,
        prompt_md=(
            f"The record net has {RECORD_PARAMS:,} parameters. How many bytes do its weights take as float32, and "
            "as int8 (ignore the few scales the file adds)?"
        ),
        starter="weight_bytes = ...  # (float32 bytes, int8 bytes)",
        solution=f"weight_bytes = ({RECORD_PARAMS} * 4, {RECORD_PARAMS} * 1)\nweight_bytes",
        wrong=(
            WrongAnswer(f"weight_bytes = ({RECORD_PARAMS} * 32, {RECORD_PARAMS} * 8)", "bits"),
            WrongAnswer(f"weight_bytes = ({RECORD_PARAMS} * 4, {RECORD_PARAMS} * 2)", "single byte"),
        ),
        answer="weight_bytes",
        check=check_model_bytes,
    ),
    Exercise(
        key="calibration",
        title="Which images calibrate?",
        level=1,
        prompt_md=(
            "Static int8 quantisation runs a few hundred images through the model to choose each layer's scale. "
            'Which split should they come from: `"train"`, `"validation"` or `"test"`?'
        ),
        starter='calibrate_on = ...  # "train", "validation" or "test"',
        solution='calibrate_on = "train"\ncalibrate_on',
        wrong=(WrongAnswer('calibrate_on = "test"', "never choose"), WrongAnswer('calibrate_on = "validation"', "judge")),
        answer="calibrate_on",
        check=check_calibration,
    ),
    Exercise(
        key="per_channel",
        title="One scale per output channel",
        level=2,
        prompt_md=(
            "Write `channel_scales(weight)` for a conv weight `[out, in, k, k]`: one symmetric int8 scale per output "
            "channel, the largest absolute weight of that channel divided by 127."
        ),
        starter=(
            "def channel_scales(weight):\n"
            '    """One scale per output channel: max |w| in it / 127."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "def channel_scales(weight):\n"
            '    """One scale per output channel: max |w| in it / 127."""\n'
            "    return weight.abs().amax(dim=(1, 2, 3)) / 127"
        ),
        wrong=(
            WrongAnswer("def channel_scales(weight):\n    return weight.abs().max() / 127", "one per output channel"),
            WrongAnswer("def channel_scales(weight):\n    return weight.abs().amax(dim=(1, 2, 3)) / 255", "−127 … 127"),
        ),
        answer="channel_scales",
        check=check_per_channel,
    ),
    Exercise(
        key="quantize",
        title="Symmetric int8 quantisation",
        level=3,
        prompt_md=(
            "Write `quantize_int8(w)`: return `(q, scale)` where `scale = max|w| / 127` and `q` is `w / scale` rounded "
            "to the nearest integer, as an `int8` tensor. Then `q * scale` should be within `scale / 2` of `w`."
        ),
        starter=(
            "import torch\n\n\n"
            "def quantize_int8(w):\n"
            '    """(int8 tensor q, float scale) with q * scale ≈ w."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import torch\n\n\n"
            "def quantize_int8(w):\n"
            '    """(int8 tensor q, float scale) with q * scale ≈ w."""\n'
            "    scale = float(w.abs().max()) / 127\n"
            "    q = torch.round(w / scale).clamp(-127, 127).to(torch.int8)\n"
            "    return q, scale"
        ),
        wrong=(
            WrongAnswer(
                "import torch\n\ndef quantize_int8(w):\n"
                "    scale = float(w.abs().max()) / 127\n    return (w / scale).to(torch.int8), scale",
                "round to the nearest",
            ),
            WrongAnswer(
                "import torch\n\ndef quantize_int8(w):\n"
                "    scale = float(w.abs().max()) / 255\n"
                "    return torch.round(w / scale).clamp(-128, 127).to(torch.int8), scale",
                "largest magnitude / 127",
            ),
        ),
        answer="quantize_int8",
        check=check_quantize,
    ),
)

QUIZ = (
    Q(
        "Why export a PyTorch model to ONNX?",
        (
            "To make it more accurate",
            "To run it without Python or PyTorch, e.g. with onnxruntime in a browser or an app",
            "Because PyTorch cannot save models",
            "To train it faster",
        ),
        1,
        (
            "Export keeps the maths; accuracy stays the same.",
            "One file, many runtimes.",
            "PyTorch saves checkpoints; ONNX is for deployment elsewhere.",
            "ONNX files are for inference.",
        ),
    ),
    Q(
        "Why call `model.eval()` before exporting?",
        (
            "It is not needed",
            "So Dropout disappears and BatchNorm uses its running averages (and can be folded into the conv)",
            "To make the file smaller",
            "To allow a dynamic batch size",
        ),
        1,
        (
            "In training mode the exported graph would drop values at random.",
            "The exported model must behave like the one you evaluated.",
            "Size barely changes.",
            "Dynamic shapes are a separate export option.",
        ),
    ),
    Q(
        "You export with an example input of shape (1, 1, 28, 28) and no dynamic axis. What happens with a batch of 64?",
        (
            "It works",
            "The runtime rejects the input: the batch size was fixed at export",
            "It silently uses the first image",
            "It becomes slower but works",
        ),
        1,
        (
            "Only if the batch dimension was declared dynamic.",
            "Declare the batch dimension dynamic when exporting.",
            "Runtimes check shapes; nothing is silently dropped.",
            "It fails with a shape error.",
        ),
    ),
    Q(
        "After int8 quantisation, how do you check the model is still good?",
        (
            "Compare its accuracy with the float model's on the validation split, and how often their predictions agree",
            "Look at the file size",
            "Check that it loads",
            "Score the test set with several quantisation settings and keep the best",
        ),
        0,
        (
            "Accuracy and agreement on validation tell you what the smaller file cost; the test set is for the final number.",
            "Smaller is the point, not the check.",
            "Loading says nothing about accuracy.",
            "That is choosing on the test set.",
        ),
    ),
    Q(
        "For a CNN in onnxruntime, which int8 route is recommended here?",
        (
            "Dynamic quantisation",
            "Static quantisation with calibration (QDQ), per-channel",
            "Casting the float weights to int8 by hand",
            "None: CNNs cannot be quantised",
        ),
        1,
        (
            "For convolutions it produces ConvInteger nodes that lack fast kernels in many builds.",
            "Calibration on training images picks activation scales; per-channel keeps small channels precise.",
            "Without scales the values would be meaningless.",
            "They quantise well; MNIST nets lose little accuracy.",
        ),
    ),
    Q(
        "The ONNX model's logits differ from PyTorch's by about 1e-6. Is the export broken?",
        (
            "Yes",
            "No: float32 operations in a different order round differently; differences of that size are expected",
            "Yes, it must be exactly 0",
            "No, because ONNX uses float64",
        ),
        1,
        (
            "Differences this small are rounding, not a bug.",
            "Check the predicted digits agree and the largest difference is tiny.",
            "Bit-exact agreement across runtimes is not to be expected.",
            "Both use float32 here.",
        ),
    ),
)


MATERIAL = LessonMaterial(
    number=9,
    title="Export to ONNX and int8",
    exercises=EXERCISES,
    quiz=QUIZ,
)

#: A fresh quiz widget for this lesson (the notebook cell calls it).
quiz = MATERIAL.make_quiz
