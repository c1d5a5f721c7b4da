"""The interactive widgets of the lessons: they need a running kernel, and build on the core's computations.

* :mod:`.pad` — lesson 05's drawing pad: a canvas, the model's answer beside it (:class:`~.pad.DigitPad`);
* :mod:`.explorer` — lesson 07's feature-map viewer (:class:`~.explorer.FeatureMapExplorer`).

Lesson 08's collecting pad (:mod:`mnistlib.handwriting.collect`) builds on the drawing pad.
"""
