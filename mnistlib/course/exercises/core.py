"""What every lesson's exercises, quiz and reading list are made of: plain data plus check functions.

An :class:`Exercise` holds the markdown prompt, the learner's starter code, a worked solution, at
least one typical wrong answer (with a phrase its hint must contain) and the check. A check is a
function decorated with :func:`checker`: it receives the learner's answer (a number, a tuple, a
function...) and either returns (right) or raises :class:`Wrong` with a hint that never states
the answer. The decorator turns that into a :class:`Feedback` and treats ``...``, ``None`` and a
function that raises ``NotImplementedError`` as "not tried yet", so a starter cell never fails.

Checks decide from mnistlib's reference functions, synthetic data or the training split; none of
them reads the test set.
"""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mnistlib.course.quiz import Question, Quiz

__all__ = [
    "Wrong",
    "ExerciseFailed",
    "Feedback",
    "checker",
    "WrongAnswer",
    "Exercise",
    "LessonMaterial",
    "close",
    "need_int",
    "need_callable",
]

LEVELS = {1: "predict or compute by hand", 2: "compute with a few lines", 3: "write a small function"}


class Wrong(Exception):
    """Raised inside a check: the answer is wrong; the message is the hint."""


class ExerciseFailed(AssertionError):
    """A check called with ``strict=True`` did not pass (so a notebook run fails loudly)."""


@dataclass(frozen=True)
class Feedback:
    """The verdict of one check: ``status`` is "right", "wrong" or "todo" (not tried yet)."""

    exercise: str
    status: str
    message: str

    def __bool__(self) -> bool:
        return self.status == "right"

    @property
    def headline(self) -> str:
        return {"right": "✓ Right", "wrong": "✗ Not yet", "todo": "… Not tried yet"}[self.status]

    def __repr__(self) -> str:
        return f"{self.headline} ({self.exercise}): {self.message}"

    def _repr_html_(self) -> str:
        colour = {"right": "#2e7d32", "wrong": "#c62828", "todo": "#6d6d6d"}[self.status]
        return (
            f'<div class="mnist-check mnist-check-{self.status}" style="border-left:4px solid {colour};'
            f'padding:2px 8px"><strong style="color:{colour}">{self.headline}</strong> '
            f"<em>({html.escape(self.exercise)})</em>: {html.escape(self.message)}</div>"
        )


def _not_tried(answer: Any) -> bool:
    return answer is ... or answer is None


def checker(title: str, right: str = "well done.") -> Callable[[Callable[[Any], str | None]], Callable[..., Feedback]]:
    """Decorate ``fn(answer)`` (returns a message or None when right, raises :class:`Wrong`) into a
    check ``check(answer, strict=False) -> Feedback``; ``strict=True`` raises unless right."""

    def wrap(fn: Callable[[Any], str | None]) -> Callable[..., Feedback]:
        @functools.wraps(fn)
        def check(answer: Any, *, strict: bool = False) -> Feedback:
            if _not_tried(answer):
                fb = Feedback(title, "todo", "replace the `...` with your answer, run that cell, then this one.")
            else:
                try:
                    fb = Feedback(title, "right", fn(answer) or right)
                except Wrong as exc:
                    fb = Feedback(title, "wrong", str(exc))
                except NotImplementedError:
                    fb = Feedback(title, "todo", "your function still raises NotImplementedError: write its body.")
                except Exception as exc:  # the learner's code failed inside the check
                    fb = Feedback(title, "wrong", f"your answer raised {type(exc).__name__}: {exc}")
            if strict and not fb:
                raise ExerciseFailed(repr(fb))
            return fb

        check.title = title  # type: ignore[attr-defined]
        return check

    return wrap


# --------------------------------------------------------------------------------------------
# Small helpers the checks share


def close(value: Any, target: float, rel: float = 1e-3, abs_: float = 1e-6) -> bool:
    """Whether ``value`` is a finite number within ``rel``/``abs_`` of ``target``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and math.isclose(v, target, rel_tol=rel, abs_tol=abs_)


def need_int(value: Any, what: str = "a whole number") -> int:
    """``value`` as an int, or :class:`Wrong` if it is not a whole number."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise Wrong(f"give {what}, not {type(value).__name__}.") from None
    if not math.isfinite(f) or f != int(f):
        raise Wrong(f"give {what}: sizes and counts are whole numbers.")
    return int(f)


def need_callable(value: Any) -> Callable[..., Any]:
    """``value`` if it is a function, else :class:`Wrong`."""
    if not callable(value):
        raise Wrong(f"pass the function itself (its name, without brackets), not a {type(value).__name__}.")
    return value


# --------------------------------------------------------------------------------------------
# The data


@dataclass(frozen=True)
class WrongAnswer:
    """A typical wrong answer (code binding the answer name) and a phrase its hint must contain."""

    code: str
    hint: str


@dataclass(frozen=True)
class Exercise:
    """One exercise: prompt, starter, worked solution, typical wrong answers and the check.

    ``answer`` is the name the starter and the solution bind (a variable or a function); the
    check cell passes it to ``check``. ``level``: 1 predict/compute by hand, 2 a few lines of code,
    3 a small function.
    """

    key: str
    title: str
    level: int
    prompt_md: str
    starter: str
    solution: str
    wrong: tuple[WrongAnswer, ...]
    answer: str
    check: Callable[..., Feedback]

    @property
    def check_name(self) -> str:
        return self.check.__name__


@dataclass(frozen=True)
class LessonMaterial:
    """A lesson's exercises and quiz: what :mod:`mnistlib.course.insert` writes into its notebook.

    The rest of a lesson — its opening, recap and further reading included — lives in the notebook.
    """

    number: int
    title: str
    exercises: tuple[Exercise, ...]
    quiz: tuple[Question, ...]

    @property
    def module(self) -> str:
        return f"mnistlib.course.exercises.lesson{self.number:02d}"

    def make_quiz(self) -> Quiz:
        return Quiz(self.quiz, title=f"Quiz · lesson {self.number:02d}")

    def exercise(self, key: str) -> Exercise:
        for ex in self.exercises:
            if ex.key == key:
                return ex
        raise KeyError(f"lesson {self.number:02d} has no exercise {key!r}; it has {[e.key for e in self.exercises]}")


def bullet_list(items: Sequence[str]) -> str:
    """Markdown bullets."""
    return "\n".join(f"- {item}" for item in items)
