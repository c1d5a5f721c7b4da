"""Lesson 08's collection mode: the drawing pad with 0–9 buttons that save what you draw, labelled.

:class:`CollectionPanel` is the row of buttons with undo, counts per digit and a suggestion of what to
draw next; :class:`CollectingPad` is lesson 05's :class:`~mnistlib.widgets.pad.DigitPad` with the panel added.
Every drawing goes to a :class:`~mnistlib.handwriting.store.HandwritingStore` (PNG, strokes, label).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from mnistlib.widgets.pad import DigitPad, DrawingCanvas

from .store import HandwritingStore

__all__ = ["CollectionPanel", "CollectingPad"]


def _counts_html(counts: list[int]) -> str:
    cells = "".join(f'<span style="margin-right:8px"><b>{d}</b>:&nbsp;{n}</span>' for d, n in enumerate(counts))
    return f'<div class="mnist-pad-counts" style="font-family:monospace">{cells}</div>'


class CollectionPanel(widgets.VBox):
    """Save the drawing on ``canvas`` with its label: click the digit you drew.

    Each click stores the drawing (PNG, strokes, label) in ``store`` and clears the canvas; "Undo
    last save" removes the newest sample; the counts and a suggestion keep the set balanced.
    """

    def __init__(self, store: HandwritingStore, canvas: DrawingCanvas) -> None:
        self.store, self.drawing = store, canvas
        self.buttons = [widgets.Button(description=str(d), layout=widgets.Layout(width="34px")) for d in range(10)]
        for d, b in enumerate(self.buttons):
            b.add_class("mnist-pad-label")
            b.add_class(f"mnist-pad-label-{d}")
            b.on_click(canvas._safe(lambda _b, d=d: self.save(d)))
        self.undo_button = widgets.Button(description="Undo last save", icon="undo")
        self.undo_button.add_class("mnist-pad-undo-save")
        self.undo_button.on_click(canvas._safe(lambda _b: self.undo()))
        self.counts = widgets.HTML()
        self.prompt = widgets.HTML()
        self.prompt.add_class("mnist-pad-prompt")
        where = html.escape(str(store.folder))  # the whole path on hover; the folder's name on screen
        title = widgets.HTML(f'<small>Label and save (into <span title="{where}">{html.escape(store.folder.name)}/'
                             "</span>):</small>")
        super().__init__([title, widgets.HBox(self.buttons), widgets.HBox([self.undo_button, self.counts]),
                          self.prompt])
        self.add_class("mnist-pad-collect")
        self.refresh()

    def refresh(self, note: str = "") -> None:
        counts = self.store.counts()
        self.counts.value = _counts_html(counts)
        suggestion = f"Next, please draw a <b>{self.store.next_digit()}</b>."
        self.prompt.value = f"<span>{html.escape(note)} {suggestion}</span>"

    def save(self, label: int) -> None:
        """Store the current drawing as ``label``, then clear the canvas for the next one."""
        if not len(self.drawing.strokes):
            self.refresh("Draw a digit first, then click what it is.")
            return
        try:
            sample = self.store.add_drawing(self.drawing.strokes.as_list(), label,
                                            size=self.drawing.size, brush=self.drawing.brush)
        except OSError as exc:
            self.refresh(f"Not saved ({exc.strerror or exc}); the samples saved before are safe.")
            return
        self.drawing.clear()
        self.refresh(f"Saved {sample.path.name} as a {label}.")

    def undo(self) -> None:
        """Remove the newest saved sample."""
        sample = self.store.remove_last()
        self.refresh("Nothing to undo." if sample is None else f"Removed {sample.path.name} (a {sample.label}).")


class CollectingPad(DigitPad):
    """A :class:`~mnistlib.widgets.pad.DigitPad` that also saves labelled drawings: ``CollectingPad(checkpoint)``.

    ``store`` is a :class:`HandwritingStore`, a folder, or None for ``<data root>/my_digits``; every other
    keyword goes to the pad (``threshold``, ``size``, ``brush``…).
    """

    def __init__(self, model: Any, *, store: HandwritingStore | str | Path | None = None, **pad_options: Any) -> None:
        super().__init__(model, **pad_options)
        store = store if isinstance(store, HandwritingStore) else HandwritingStore(store)
        self.collection = CollectionPanel(store, self.drawing)
        self.children = (self.children[0], self.collection, *self.children[1:])
