"""The quiz widget, headless: choose an option, press Check, read the feedback; and its static HTML."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from mnistlib.course.exercises import LESSONS, material
from mnistlib.course.quiz import NO_CHOICE, Question, Quiz, QuizError

Q1 = Question("What is 2 + 2?", ("3", "4", "`22`"), 1, ("One short.", "Addition.", "That is concatenation."))
Q2 = Question("Pick **B**.", ("A", "B"), 1, ("Not A.", "B it is."))


def test_starts_with_nothing_selected() -> None:
    quiz = Quiz([Q1, Q2])
    rows = quiz.widget.children[1:]
    assert len(rows) == 2
    assert quiz._rows[0].radio.value is None and quiz._rows[1].radio.value is None


def test_clicking_check_without_a_choice_asks_for_one() -> None:
    quiz = Quiz([Q1])
    quiz.click(0)
    assert quiz.feedback_text(0).strip() == NO_CHOICE


def test_wrong_choice_explains_that_option_without_revealing_the_answer() -> None:
    quiz = Quiz([Q1])
    quiz.choose(0, 2)
    quiz.click(0)
    text = quiz.feedback_text(0)
    assert text.startswith("✗ Not quite.") and "concatenation" in text and "Addition" not in text


def test_right_choice_says_so_and_explains() -> None:
    quiz = Quiz([Q1, Q2])
    quiz.choose(1, 1)
    quiz.click(1)
    assert quiz.feedback_text(1).strip() == "✓ Right. B it is."
    assert quiz.feedback_text(0) == ""  # other questions untouched


def test_feedback_is_replaced_not_appended() -> None:
    quiz = Quiz([Q1])
    for option in (0, 1):
        quiz.choose(0, option)
        quiz.click(0)
    assert quiz.feedback_text(0).count("\n") == 1 and "Right" in quiz.feedback_text(0)


def test_text_repr_is_deterministic_and_hides_answers() -> None:
    a, b = Quiz([Q1, Q2], title="Quiz · lesson 01"), Quiz([Q1, Q2], title="Quiz · lesson 01")
    a.widget  # noqa: B018 (building the widgets must not change the text)
    assert repr(a) == repr(b) == "Quiz · lesson 01: 2 questions (run the cell in JupyterLab to answer them)"
    bundle = a._repr_mimebundle_()
    assert bundle["text/plain"] == repr(a)
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "Addition" not in a.text()


class _Details(HTMLParser):
    """Collects the text inside and outside <details> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.depth, self.inside, self.outside = 0, [], []

    def handle_starttag(self, tag: str, attrs) -> None:
        self.depth += tag == "details"

    def handle_endtag(self, tag: str) -> None:
        self.depth -= tag == "details"

    def handle_data(self, data: str) -> None:
        (self.inside if self.depth else self.outside).append(data)


def test_static_html_hides_every_explanation_in_details() -> None:
    quiz = Quiz([Q1, Q2])
    html = quiz.static_html()
    parser = _Details()
    parser.feed(html)
    outside, inside = " ".join(parser.outside), " ".join(parser.inside)
    assert "What is 2 + 2?" in outside and "22" in outside
    for q in (Q1, Q2):
        for explanation in q.explain:
            assert explanation in inside and explanation not in outside
    assert html.count("<details>") == 2 and "<code>22</code>" in html and "<strong>B</strong>" in html
    assert quiz._repr_mimebundle_()["text/html"] == html


def test_static_html_escapes_text() -> None:
    q = Question("Is 1 < 2 & 3 > 2?", ("<yes>", "no"), 0, ("both true", "no"))
    html = Quiz([q]).static_html()
    assert "<yes>" not in html and "&lt;yes&gt;" in html and "1 &lt; 2 &amp; 3" in html


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(options=("a",), answer=0, explain=("x",)), "2 to"),
        (dict(options=("a", "b"), answer=2, explain=("x", "y")), "answer index 2"),
        (dict(options=("a", "b"), answer=0, explain=("x",)), "one non-empty explanation"),
        (dict(options=("a", "a"), answer=0, explain=("x", "y")), "the same"),
    ],
)
def test_malformed_questions_are_refused_with_a_reason(kwargs, message) -> None:
    with pytest.raises(QuizError, match=re.escape(message)):
        Question("q?", **kwargs)


def test_every_lesson_quiz_answers_right_only_on_its_answer() -> None:
    for lesson in LESSONS:
        quiz = material(lesson).make_quiz()
        for i, q in enumerate(quiz.questions):
            for option in range(len(q.options)):
                quiz.choose(i, option)
                right, _ = quiz.check(i)
                assert right == (option == q.answer)
