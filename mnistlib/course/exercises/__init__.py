"""Exercises with checks, and quizzes, for every lesson, as plain data.

``material(3)`` returns lesson 03's :class:`~mnistlib.course.exercises.core.LessonMaterial`; each lesson's
module (``mnistlib.course.exercises.lesson03``) also holds its ``check_*`` functions, which a learner calls
in the cell after an answer::

    from mnistlib.course.exercises import lesson03 as ex
    ex.check_training_step(training_step)

``python -m mnistlib.course.insert NOTEBOOK LESSON`` writes the material into a notebook.
"""

from __future__ import annotations

import importlib
import importlib.util

from .core import Exercise, ExerciseFailed, Feedback, LessonMaterial, Wrong, WrongAnswer, checker

__all__ = [
    "LESSONS",
    "UnknownLessonError",
    "material",
    "Exercise",
    "ExerciseFailed",
    "Feedback",
    "LessonMaterial",
    "Wrong",
    "WrongAnswer",
    "checker",
]

#: The lessons that have material (a module ``lessonNN``).
LESSONS = tuple(n for n in range(1, 10) if importlib.util.find_spec(f"{__name__}.lesson{n:02d}"))


class UnknownLessonError(KeyError, ValueError):
    """A lesson number with no material; the message lists the lessons that have some."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def material(lesson: int | str) -> LessonMaterial:
    """The material of one lesson (``3``, ``"03"`` or ``"lesson03"``)."""
    text = str(lesson).removeprefix("lesson")
    number = int(text) if text.isdigit() else -1
    if number not in LESSONS:
        known = ", ".join(f"{n:02d}" for n in LESSONS)
        raise UnknownLessonError(f"no material for lesson {lesson!r}; lessons are {known}")
    return importlib.import_module(f"{__name__}.lesson{number:02d}").MATERIAL
