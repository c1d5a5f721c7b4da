"""Every exercise's check passes its worked solution, fails its typical wrong answers with their hint,
and calls the untouched starter "not tried yet"; every quiz and reading list is well-formed."""

from __future__ import annotations

import inspect
import re

import pytest
from exercise_code import run_code

from mnistlib.course.exercises import LESSONS, ExerciseFailed, material
from mnistlib.course.exercises.core import Feedback

EXERCISES = [(n, ex) for n in LESSONS for ex in material(n).exercises]
IDS = [f"{n:02d}-{ex.key}" for n, ex in EXERCISES]


@pytest.mark.parametrize(("lesson", "ex"), EXERCISES, ids=IDS)
def test_solution_passes(lesson: int, ex) -> None:
    feedback = ex.check(run_code(ex.solution, ex.answer))
    assert isinstance(feedback, Feedback)
    assert feedback.status == "right", feedback
    ex.check(run_code(ex.solution, ex.answer), strict=True)  # strict: no exception when right


@pytest.mark.parametrize(("lesson", "ex"), EXERCISES, ids=IDS)
def test_wrong_answers_fail_with_their_hint(lesson: int, ex) -> None:
    assert ex.wrong, "every exercise needs at least one typical wrong answer"
    for wrong in ex.wrong:
        feedback = ex.check(run_code(wrong.code, ex.answer))
        assert feedback.status == "wrong", (wrong.code, feedback)
        assert wrong.hint in feedback.message, (wrong.code, feedback.message)
        with pytest.raises(ExerciseFailed):
            ex.check(run_code(wrong.code, ex.answer), strict=True)


@pytest.mark.parametrize(("lesson", "ex"), EXERCISES, ids=IDS)
def test_starter_is_not_tried_yet_and_does_not_fail(lesson: int, ex) -> None:
    feedback = ex.check(run_code(ex.starter, ex.answer))
    assert feedback.status == "todo", feedback
    with pytest.raises(ExerciseFailed):
        ex.check(run_code(ex.starter, ex.answer), strict=True)


@pytest.mark.parametrize(("lesson", "ex"), EXERCISES, ids=IDS)
def test_hints_do_not_give_the_answer_away(lesson: int, ex) -> None:
    """A hint never prints the value the solution computes (for number answers of two digits or more:
    a single digit also appears in formulas such as `(k − 1)/2`)."""
    value = run_code(ex.solution, ex.answer)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) >= 10:
        for wrong in ex.wrong:
            message = ex.check(run_code(wrong.code, ex.answer)).message
            for text in {f"{value}", f"{value:,}", f"{value:.4f}", f"{value:.3f}"}:
                assert not re.search(rf"(?<![\d.,]){re.escape(text)}(?![\d])", message), (message, value)


@pytest.mark.parametrize(("lesson", "ex"), EXERCISES, ids=IDS)
def test_exercise_data_is_complete(lesson: int, ex) -> None:
    assert ex.level in (1, 2, 3)
    assert ex.prompt_md.strip() and ex.title.strip()
    module = inspect.getmodule(ex.check)
    assert module.__name__ == material(lesson).module
    assert getattr(module, ex.check_name) is ex.check, "the check cell imports it by this name"
    assert ex.check_name.startswith("check_")
    assert ex.answer in ex.starter and ex.answer in ex.solution


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_material_is_well_formed(lesson: int) -> None:
    m = material(lesson)
    assert m.number == lesson
    assert 3 <= len(m.exercises) <= 6, "3–6 exercises per lesson"
    assert len({ex.key for ex in m.exercises}) == len(m.exercises)
    assert {ex.level for ex in m.exercises} >= {1, 3} or {ex.level for ex in m.exercises} >= {1, 2}
    assert [ex.level for ex in m.exercises] == sorted(ex.level for ex in m.exercises), "graded easy → hard"
    assert 5 <= len(m.quiz) <= 8, "5–8 quiz questions per lesson"
    for q in m.quiz:
        assert q.problems() == []
    m.make_quiz()  # builds without error


def test_material_lookup() -> None:
    assert material("03").number == 3 and material("lesson03").number == 3
    with pytest.raises(KeyError, match="lessons are"):
        material(12)
