"""The course machinery around the lessons — a learner uses it, never needs to read it.

* :mod:`.exercises` — each lesson's exercises (with checks and worked solutions) and quiz, as data;
* :mod:`.quiz` — the quiz widget and its static fallback;
* :mod:`.insert` — writes a lesson's exercises and quiz into its notebook (``--check`` for drift);
* :mod:`.book` — the static HTML book built from the executed lessons;
* :mod:`.results` — renders ``benchmarks/results.json``, the one source of measured figures.
"""
