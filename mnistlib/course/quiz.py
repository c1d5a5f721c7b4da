"""A self-check quiz for the end of a lesson, built on core ipywidgets only (no extra JavaScript).

Questions are plain data (:class:`Question`): the text, the options, the index of the right one
and one explanation per option, shown when the learner picks that option and presses **Check**.
:class:`Quiz` shows them as ``RadioButtons(value=None)`` (nothing pre-selected) with a Check button
and an ``Output`` for the feedback.

A page without a kernel (the HTML book, nbconvert) cannot run widgets, so a quiz also carries a
static version: :meth:`Quiz.static_html` lists the options and hides each answer in a
``<details>`` element. ``display(quiz)`` offers both (plus a deterministic text/plain line, which
is what nbval compares); JupyterLab shows the widget, the book the static HTML.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["QuizError", "Question", "Quiz", "inline_html", "LETTERS"]

LETTERS = "ABCDEFGH"
NO_CHOICE = "Choose an answer first."


class QuizError(ValueError):
    """A malformed question (no options, an answer index out of range, a missing explanation)."""


def inline_html(text: str) -> str:
    """Escape ``text`` for HTML and turn `code` spans and **bold** into tags (all a quiz needs)."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


@dataclass(frozen=True)
class Question:
    """One multiple-choice question: ``explain[i]`` says why option ``i`` is right or wrong."""

    text: str
    options: tuple[str, ...]
    answer: int
    explain: tuple[str, ...]

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise QuizError(f"question {self.text[:60]!r}: {'; '.join(problems)}")

    def problems(self) -> list[str]:
        """What is wrong with this question's data (empty when it is well-formed)."""
        out = []
        if not self.text.strip():
            out.append("empty question text")
        if not 2 <= len(self.options) <= len(LETTERS):
            out.append(f"needs 2 to {len(LETTERS)} options, has {len(self.options)}")
        if len(set(self.options)) != len(self.options):
            out.append("two options are the same")
        if any(not o.strip() for o in self.options):
            out.append("an option is empty")
        if not 0 <= self.answer < len(self.options):
            out.append(f"answer index {self.answer} is not one of the {len(self.options)} options")
        if len(self.explain) != len(self.options) or any(not e.strip() for e in self.explain):
            out.append("needs one non-empty explanation per option")
        return out

    def feedback(self, choice: int | None) -> tuple[bool, str]:
        """(right?, message) for the option index the learner chose (None: nothing chosen)."""
        if choice is None:
            return False, NO_CHOICE
        if self.answer == choice:
            return True, f"Right. {self.explain[choice]}"
        return False, f"Not quite. {self.explain[choice]} Try another answer."


@dataclass
class _Row:
    """The widgets of one question (built on first display)."""

    radio: Any
    button: Any
    out: Any
    box: Any


@dataclass
class Quiz:
    """A list of questions shown as widgets in JupyterLab and as static HTML elsewhere."""

    questions: Sequence[Question]
    title: str = "Quiz"
    _rows: list[_Row] = field(default_factory=list, init=False, repr=False)
    _widget: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.questions:
            raise QuizError("a quiz needs at least one question")
        self.questions = tuple(self.questions)

    # ---- plain text and static HTML -----------------------------------------------------
    def __repr__(self) -> str:
        return f"{self.title}: {len(self.questions)} questions (run the cell in JupyterLab to answer them)"

    def text(self) -> str:
        """The questions and options as plain text, without the answers."""
        lines = [f"{self.title}"]
        for i, q in enumerate(self.questions, 1):
            lines.append(f"{i}. {q.text}")
            lines += [f"   {LETTERS[j]}) {o}" for j, o in enumerate(q.options)]
        return "\n".join(lines)

    def static_html(self) -> str:
        """Every question with its options; the answer and all explanations inside ``<details>``."""
        parts = [f'<div class="mnist-quiz mnist-quiz-static"><p><strong>{inline_html(self.title)}</strong></p>']
        for i, q in enumerate(self.questions, 1):
            options = "".join(f"<li>{inline_html(o)}</li>" for o in q.options)
            why = "".join(
                f"<li><strong>{LETTERS[j]}</strong>{' (right)' if j == q.answer else ''}: {inline_html(e)}</li>"
                for j, e in enumerate(q.explain)
            )
            parts.append(
                f'<div class="mnist-quiz-question"><p>{i}. {inline_html(q.text)}</p>'
                f'<ol type="A">{options}</ol>'
                f"<details><summary>Answer</summary><p><strong>{LETTERS[q.answer]}</strong>: "
                f"{inline_html(q.options[q.answer])}</p><ul>{why}</ul></details></div>"
            )
        parts.append("</div>")
        return "".join(parts)

    # ---- the widget -------------------------------------------------------------------
    @property
    def widget(self) -> Any:
        """The ipywidgets box (built once)."""
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _build(self) -> Any:
        import ipywidgets as widgets

        boxes = [widgets.HTML(f"<strong>{inline_html(self.title)}</strong>")]
        for i, q in enumerate(self.questions, 1):
            radio = widgets.RadioButtons(options=list(q.options), value=None, layout=widgets.Layout(width="auto"))
            button = widgets.Button(description="Check", button_style="info")
            out = widgets.Output()
            button.on_click(lambda _b, k=i - 1: self.check(k))
            box = widgets.VBox([widgets.HTML(f"<p>{i}. {inline_html(q.text)}</p>"), radio, button, out])
            box.add_class("mnist-quiz-question")
            self._rows.append(_Row(radio, button, out, box))
            boxes.append(box)
        quiz = widgets.VBox(boxes)
        quiz.add_class("mnist-quiz")
        return quiz

    def choose(self, index: int, option: int | None) -> None:
        """Select ``option`` (an index, or None for no choice) in question ``index``, as a click would."""
        row = self._row(index)
        row.radio.value = None if option is None else self.questions[index].options[option]

    def check(self, index: int) -> tuple[bool, str]:
        """Grade question ``index`` (what its Check button does); the feedback goes to its Output."""
        q, row = self.questions[index], self._row(index)
        choice = None if row.radio.value is None else q.options.index(row.radio.value)
        right, message = q.feedback(choice)
        # Set the outputs directly (not `with out: print`): this works with or without a kernel.
        row.out.outputs = ()
        row.out.append_stdout((("✓ " if right else "✗ ") if choice is not None else "") + message + "\n")
        return right, message

    def feedback_text(self, index: int) -> str:
        """What question ``index``'s Output shows now."""
        return "".join(o.get("text", "") for o in self._row(index).out.outputs)

    def click(self, index: int) -> None:
        """Press question ``index``'s Check button (runs its callbacks as the browser would)."""
        self._row(index).button.click()

    def _row(self, index: int) -> _Row:
        self.widget  # noqa: B018 (build on first use)
        return self._rows[index]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_() or {})
        bundle["text/plain"] = repr(self)
        bundle["text/html"] = self.static_html()
        return bundle
