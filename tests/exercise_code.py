"""Running an exercise's code (a starter, a solution, a typical wrong answer) the way a notebook cell would."""

from __future__ import annotations

from typing import Any


def run_code(code: str, name: str) -> Any:
    """Execute ``code`` in a fresh namespace and return what it bound to ``name``."""
    namespace: dict[str, Any] = {"__name__": "__exercise__"}
    exec(compile(code, f"<exercise {name}>", "exec"), namespace)  # noqa: S102 (our own data)
    return namespace[name]
