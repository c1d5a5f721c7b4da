"""Lesson 08 — your own handwriting: the store of your digits and what the lesson does with them.

* :mod:`.store` — the folder of your labelled digits (pad drawings and photos), as a dataset;
* :mod:`.collect` — the drawing pad with 0–9 buttons that save what you draw;
* :mod:`.synthetic` — a made-up writer, so the lesson runs before you have drawn anything;
* :mod:`.domain_gap` — how far your digits are from MNIST, measured with honest uncertainty;
* :mod:`.finetune` — teaching the model your hand without forgetting MNIST.

It builds on the core (``mnistlib.data``, ``models``, ``recipes``…) and nothing above it imports it
but the apps and the course machinery.
"""

from .store import (
    HandwritingDataset,
    HandwritingStore,
    HandwritingWarning,
    Sample,
    default_folder,
    split_by_session,
    stratified_split,
)

__all__ = ["HandwritingDataset", "HandwritingStore", "HandwritingWarning", "Sample", "default_folder",
           "split_by_session", "stratified_split"]
