"""mnistlib: the code behind the mnist-lessons notebooks, so each lesson's prose stays readable.

Where each lesson's code lives (the core is this package's top-level modules):

* 01 data and augmentation — :mod:`mnistlib.data`, :mod:`mnistlib.plots`
* 02 architecture — :mod:`mnistlib.models`, :mod:`mnistlib.architecture`, :mod:`mnistlib.tables`
* 03 training — :mod:`mnistlib.training` (the one loop), :mod:`mnistlib.callbacks`,
  :mod:`mnistlib.recipes`, :mod:`mnistlib.checkpoints`
* 04 evaluation — :mod:`mnistlib.evaluation`, :mod:`mnistlib.compare`
* 05 draw a digit — :mod:`mnistlib.drawing`, :mod:`mnistlib.strokes`, and the pad in :mod:`mnistlib.widgets`
* 06 faster and better — :mod:`mnistlib.speed`, the fast and record recipes in :mod:`mnistlib.recipes`
* 07 inside the network — :mod:`mnistlib.explain` (and its viewer in :mod:`mnistlib.widgets`)
* 08 your own handwriting — :mod:`mnistlib.handwriting`
* 09 out of the notebook — :mod:`mnistlib.export`, and the apps in :mod:`mnistlib.apps`

Shared by all: :mod:`mnistlib.config` (where data and checkpoints live), :mod:`mnistlib.devices`.
Interactive widgets (they need a running kernel): :mod:`mnistlib.widgets`. Around the lessons:
:mod:`mnistlib.course` (exercises, quizzes, the book, measured results). Private: :mod:`mnistlib._support`.
Imports point one way — ``_support`` ← core ← ``widgets`` ← ``handwriting`` ← {``apps``, ``course``} —
as ``lint-imports`` checks.
"""

import sys as _sys

if _sys.argv[:1] == ["-m"]:
    # `python -m …` is still locating its module: from here on, before any slow import, Ctrl-C gives one
    # line instead of a traceback (for the command line and the app only: see mnistlib._support.signals).
    from mnistlib._support.signals import quiet_startup as _quiet_startup

    _quiet_startup(("mnistlib", "mnistlib.apps.webapp"))

__version__ = "0.1.0"
