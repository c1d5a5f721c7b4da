"""The lessons as a static HTML book (mkdocs + mkdocs-jupyter, offline), built from executed notebooks.

    python -m mnistlib.course.book build --notebooks build/executed --out build/site
    python -m mnistlib.course.book serve build/site          # http://127.0.0.1:8000 (search needs a server)
    python -m mnistlib.course.book execute notebooks/01_*.ipynb --out DIR   # run lessons into DIR (nbclient)
"""

from __future__ import annotations

from .build import BookError, BuildResult, Lesson, build, find_lessons, markdown_maths, prepare_notebook

__all__ = ["BookError", "BuildResult", "Lesson", "build", "find_lessons", "markdown_maths", "prepare_notebook"]
