"""Write a benchmark's figures into ``benchmarks/results.json`` without losing anyone else's.

Read, change one key, write: the other keys (another script's, or ones this code does not know)
come back unchanged. The file is replaced atomically — a temporary file in the same folder,
fsync, ``os.replace`` — so an interrupted run or a full disk leaves the old file whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mnistlib._support.files import write_text
from mnistlib.course.results import RESULTS_PATH

__all__ = ["RESULTS_PATH", "save_result", "write_json", "write_text", "tidy"]


def tidy(data: Any, digits: int = 6) -> Any:
    """``data`` with every float rounded to ``digits`` decimals (0.9909999823570251 → 0.991)."""
    if isinstance(data, float):
        return round(data, digits)
    if isinstance(data, dict):
        return {k: tidy(v, digits) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [tidy(v, digits) for v in data]
    return data



def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def save_result(key: str, entry: dict, path: str | Path | None = None) -> Path:
    """Store ``entry`` under ``key`` in the results file (other keys kept); returns the file's path."""
    path = Path(path) if path is not None else RESULTS_PATH
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        results = {}
    if not isinstance(results, dict):
        raise ValueError(f"{path} does not hold a JSON object; refusing to overwrite it")
    results[key] = tidy(entry)
    write_json(path, results)
    return path
