"""Lesson 05 · Draw a digit: exercises and quiz (plain data + checks).

The centring exercises are graded against :func:`mnistlib.drawing.centre_of_mass` and
:func:`mnistlib.drawing.centre_in_frame`, the very step ``prepare_digit`` uses.
"""

from __future__ import annotations

import numpy as np

from mnistlib.course.quiz import Question as Q
from mnistlib.drawing import centre_in_frame, centre_of_mass

from .core import Exercise, LessonMaterial, Wrong, WrongAnswer, checker, close, need_callable


@checker("what the naive shortcut does to a small digit")
def check_shrink(answer: object) -> str:
    right = 40 * 28 / 280
    if close(answer, right, rel=1e-2):
        return "a few pixels of ink in a corner: nothing like a training image."
    if close(answer, 40, rel=1e-2) or close(answer, 20, rel=1e-2):
        raise Wrong("the naive shortcut shrinks the whole canvas to 28×28, the digit with it, by the same factor.")
    raise Wrong("the canvas side goes from 280 to 28 pixels; scale the digit's width by the same factor.")


@checker("scaling the ink's box")
def check_scale_box(answer: object) -> str:
    try:
        h, w = (float(v) for v in answer)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise Wrong("give two numbers: (height, width).") from None
    if close(h, 20) and close(w, 10):
        return "proportions kept, longer side 20 pixels, like MNIST."
    if close(h, 10) and close(w, 20):
        raise Wrong("height first, then width.")
    if close(h, 20) and close(w, 20):
        raise Wrong("keep the proportions: a tall, thin digit stays tall and thin.")
    raise Wrong("scale both sides by the same factor, chosen so the longer side becomes 20.")


def _test_images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    a = np.zeros((20, 12), np.float32)
    a[1:5, 1:11] = 1.0  # a heavy top bar …
    a[5:19, 8:10] = 0.6  # … and a thin stem: the centre of mass sits high and right
    b = (rng.random((15, 18)) ** 3).astype(np.float32)
    c = np.zeros((9, 9), np.float32)
    c[2, 7] = 1.0
    c[6, 1] = 0.25
    return [a, b, c]


@checker("centre of mass")
def check_centre_of_mass(answer: object) -> str:
    fn = need_callable(answer)
    for img in _test_images():
        right = centre_of_mass(img)
        try:
            got = tuple(float(v) for v in fn(img.copy()))
        except (TypeError, ValueError):
            raise Wrong("return two numbers: (row, column).") from None
        if len(got) != 2:
            raise Wrong("return two numbers: (row, column).")
        if all(close(g, r, rel=1e-4, abs_=1e-4) for g, r in zip(got, right, strict=True)):
            continue
        if all(close(g, r, rel=1e-4, abs_=1e-4) for g, r in zip(got, right[::-1], strict=True)):
            raise Wrong("row first, then column.")
        rows, cols = np.flatnonzero(img.any(axis=1)), np.flatnonzero(img.any(axis=0))
        box = ((rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2)
        if all(close(g, r, abs_=1e-4) for g, r in zip(got, box, strict=True)):
            raise Wrong("that is the middle of the ink's box; weight each pixel by its ink instead.")
        raise Wrong("average the row (and column) index of every pixel, weighted by its ink, divided by the total ink.")
    return "the same point prepare_digit moves to the centre."


def _placement(out: np.ndarray, digit: np.ndarray) -> tuple[int, int] | None:
    """(top, left) if ``out`` is ``digit`` pasted at an integer offset into blanks, else None."""
    h, w = digit.shape
    for top in range(out.shape[0] - h + 1):
        for left in range(out.shape[1] - w + 1):
            rest = out.copy()
            rest[top : top + h, left : left + w] = 0
            if np.allclose(out[top : top + h, left : left + w], digit, atol=1e-6) and not rest.any():
                return top, left
    return None


@checker("centre-of-mass centring")
def check_centre_in_frame(answer: object) -> str:
    fn = need_callable(answer)
    for digit in _test_images()[:2]:
        out = np.asarray(fn(digit.copy()), dtype=np.float32)
        if out.shape != (28, 28):
            raise Wrong("return a 28 × 28 array.")
        if _placement(out, digit) is None:
            raise Wrong("paste the digit unchanged at a whole-pixel offset into a blank frame (no resizing, no lost ink).")
        cy, cx = centre_of_mass(out)
        ry, rx = centre_of_mass(centre_in_frame(digit))
        if abs(cy - ry) <= 1e-6 and abs(cx - rx) <= 1e-6:
            continue
        if max(abs(cy - 14), abs(cx - 14)) <= 1.0 + 1e-6:
            raise Wrong("nearly: round the shift to the nearest whole pixel rather than cutting off the fraction.")
        raise Wrong("move the digit so its centre of mass, not the middle of its box, lands on pixel (14, 14).")
    return "that is MNIST's recipe, and prepare_digit's last step."


EXERCISES = (
    Exercise(
        key="shrink",
        title="What the naive shortcut does",
        level=1,
        prompt_md=(
            "A learner draws a 7 only 40 pixels wide in a corner of the 280 × 280 canvas. The naive shortcut "
            "(`naive_28`) shrinks the whole canvas to 28 × 28. About how many pixels wide is the 7 then?"
        ),
        starter="width_after = ...  # a number of pixels",
        solution="width_after = 40 * 28 / 280\nwidth_after",
        wrong=(WrongAnswer("width_after = 20", "same factor"),),
        answer="width_after",
        check=check_shrink,
    ),
    Exercise(
        key="scale_box",
        title="Scaling the ink's box",
        level=1,
        prompt_md=(
            "The ink of a drawn 1 fills a box 120 pixels tall and 60 wide. MNIST's recipe scales it so the longer "
            "side is 20 pixels, keeping its proportions. What are its height and width then?"
        ),
        starter="scaled_box = ...  # (height, width)",
        solution="scale = 20 / max(120, 60)\nscaled_box = (120 * scale, 60 * scale)\nscaled_box",
        wrong=(WrongAnswer("scaled_box = (20, 20)", "proportions"), WrongAnswer("scaled_box = (10, 20)", "height first")),
        answer="scaled_box",
        check=check_scale_box,
    ),
    Exercise(
        key="centre_of_mass",
        title="Centre of mass",
        level=2,
        prompt_md=(
            "Write `centre_of_mass(img)` for a 2-D NumPy array of ink (0 = blank): return `(row, column)` of the "
            "ink-weighted average position, in pixel-index coordinates."
        ),
        starter=(
            "import numpy as np\n\n\n"
            "def centre_of_mass(img):\n"
            '    """(row, column) of the ink-weighted centre of a 2-D array."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import numpy as np\n\n\n"
            "def centre_of_mass(img):\n"
            '    """(row, column) of the ink-weighted centre of a 2-D array."""\n'
            "    total = img.sum()\n"
            "    rows = np.arange(img.shape[0]) @ img.sum(axis=1) / total\n"
            "    cols = np.arange(img.shape[1]) @ img.sum(axis=0) / total\n"
            "    return float(rows), float(cols)"
        ),
        wrong=(
            WrongAnswer(
                "import numpy as np\n\ndef centre_of_mass(img):\n"
                "    rows, cols = np.flatnonzero(img.any(axis=1)), np.flatnonzero(img.any(axis=0))\n"
                "    return (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2",
                "weight each pixel",
            ),
            WrongAnswer(
                "import numpy as np\n\ndef centre_of_mass(img):\n"
                "    t = img.sum()\n"
                "    return np.arange(img.shape[1]) @ img.sum(axis=0) / t, np.arange(img.shape[0]) @ img.sum(axis=1) / t",
                "row first",
            ),
        ),
        answer="centre_of_mass",
        check=check_centre_of_mass,
    ),
    Exercise(
        key="centre_in_frame",
        title="Centre-of-mass centring",
        level=3,
        prompt_md=(
            "Write `centre_digit(digit)`: paste a scaled digit (a NumPy array at most 20 pixels a side) into a blank "
            "28 × 28 frame, shifted by whole pixels so that its centre of mass lands on pixel (14, 14). Use your "
            "`centre_of_mass` (or `mnistlib.drawing.centre_of_mass`). The test digit has a heavy top bar, so "
            "centring its box is not enough."
        ),
        starter=(
            "import numpy as np\n\n\n"
            "def centre_digit(digit):\n"
            '    """A 28×28 frame with `digit` pasted so its centre of mass is on pixel (14, 14)."""\n'
            "    raise NotImplementedError  # your code here"
        ),
        solution=(
            "import numpy as np\n\n"
            "from mnistlib.drawing import centre_of_mass\n\n\n"
            "def centre_digit(digit):\n"
            '    """A 28×28 frame with `digit` pasted so its centre of mass is on pixel (14, 14)."""\n'
            "    h, w = digit.shape\n"
            "    cy, cx = centre_of_mass(digit)\n"
            "    top = min(max(round(14 - cy), 0), 28 - h)  # clamped: no ink falls off the frame\n"
            "    left = min(max(round(14 - cx), 0), 28 - w)\n"
            "    frame = np.zeros((28, 28), dtype=np.float32)\n"
            "    frame[top : top + h, left : left + w] = digit\n"
            "    return frame"
        ),
        wrong=(
            WrongAnswer(
                "import numpy as np\n\ndef centre_digit(digit):\n"
                "    h, w = digit.shape\n    top, left = (28 - h) // 2, (28 - w) // 2\n"
                "    frame = np.zeros((28, 28), np.float32)\n    frame[top:top + h, left:left + w] = digit\n    return frame",
                "centre of mass, not the middle of its box",
            ),
            WrongAnswer(
                "import numpy as np\nfrom mnistlib.drawing import centre_of_mass\n\ndef centre_digit(digit):\n"
                "    h, w = digit.shape\n    cy, cx = centre_of_mass(digit)\n"
                "    top, left = int(14 - cy), int(14 - cx)\n"
                "    frame = np.zeros((28, 28), np.float32)\n    frame[top:top + h, left:left + w] = digit\n    return frame",
                "round the shift",
            ),
        ),
        answer="centre_digit",
        check=check_centre_in_frame,
    ),
)

QUIZ = (
    Q(
        "Why does a drawing need MNIST's preprocessing before the model sees it?",
        (
            "The model only accepts PNG files",
            "The model learned from digits scaled to a 20-pixel box and centred by mass; other inputs look unlike anything it saw",
            "To make the drawing prettier",
            "To make prediction faster",
        ),
        1,
        (
            "The model takes a tensor; the file format is irrelevant.",
            "Same model, same strokes: prepared, the drawing is read right; raw, it can be misread, even confidently.",
            "It is about matching the training data, not looks.",
            "The model costs the same on any 28×28 input.",
        ),
    ),
    Q(
        "Why centre by the centre of mass rather than by the middle of the ink's box?",
        (
            "It is faster",
            "MNIST's digits were centred that way, so the model expects it",
            "The box centre cannot be computed",
            "It makes the digit bigger",
        ),
        1,
        (
            "Both are cheap.",
            "A 7's heavy top bar pulls its centre of mass up; matching the training recipe matters.",
            "It can, it is just not what MNIST did.",
            "Centring moves, it does not scale.",
        ),
    ),
    Q(
        "A photo shows dark ink on light paper. What does `prepare_digit` do first?",
        (
            "Nothing special",
            "Inverts it so ink is bright on a dark background, like MNIST",
            "Rejects it",
            "Converts it to colour",
        ),
        1,
        (
            "The model expects ink = 1 on 0; dark ink would be read as background.",
            "It compares the border (the paper) with the darkest and brightest pixels to decide.",
            "Any contrast direction is accepted.",
            "It converts to grey, not colour.",
        ),
    ),
    Q(
        "Why does the pad record stroke points in Python instead of reading the canvas pixels back?",
        (
            "Reading pixels is impossible in JupyterLab",
            "Reading back is asynchronous; recording strokes makes prediction immediate and testable without a browser",
            "Strokes take more memory",
            "The canvas is too small",
        ),
        1,
        (
            "It is possible (`sync_image_data`), only asynchronous.",
            "That is also how the tests draw a 1 and a 7 from code.",
            "A few hundred points are tiny.",
            "Size has nothing to do with it.",
        ),
    ),
    Q(
        "Scaling a drawing to 20 pixels turns its sharp edges grey. Is that a problem?",
        (
            "Yes, it confuses the model",
            "No: MNIST's digits were anti-aliased the same way, so grey edges are what the model knows",
            "Yes, it must be thresholded to black and white",
            "No, because the model ignores edges",
        ),
        1,
        (
            "The training digits have grey edges too.",
            "Matching the training data, again.",
            "Thresholding would make the input less like MNIST.",
            "Edges are exactly what the first conv layer reacts to.",
        ),
    ),
)


MATERIAL = LessonMaterial(
    number=5,
    title="Draw a digit",
    exercises=EXERCISES,
    quiz=QUIZ,
)

#: A fresh quiz widget for this lesson (the notebook cell calls it).
quiz = MATERIAL.make_quiz
