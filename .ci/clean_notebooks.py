"""Strip noise from the lesson notebooks so diffs stay readable.

Keeps the outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` (nbval compares them), drops every
other output, execution counts and per-cell metadata except tags and JupyterLab's
``jupyter.source_hidden`` / ``outputs_hidden`` flags (worked solutions stay collapsed). ``--check`` exits 1 when a
notebook is not clean (used by the test suite), otherwise files are rewritten in place.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MARK = "# NBVAL_CHECK_OUTPUT"
KEEP_NB_META = ("kernelspec", "language_info")
HIDDEN_FLAGS = ("source_hidden", "outputs_hidden")


def clean(nb: dict) -> dict:
    """Return a cleaned copy of a notebook dict."""
    nb = json.loads(json.dumps(nb))
    nb["metadata"] = {k: v for k, v in nb.get("metadata", {}).items() if k in KEEP_NB_META}
    li = nb["metadata"].get("language_info")
    if li:
        nb["metadata"]["language_info"] = {"name": li.get("name", "python")}
    for cell in nb["cells"]:
        cell.pop("id", None)
        meta = cell.get("metadata", {})
        cell["metadata"] = {"tags": meta["tags"]} if meta.get("tags") else {}
        # Collapsed cells (a worked solution) stay collapsed: keep JupyterLab's hidden flags only.
        hidden = {k: v for k, v in meta.get("jupyter", {}).items() if k in HIDDEN_FLAGS and v}
        if hidden:
            cell["metadata"]["jupyter"] = hidden
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        # nbval refuses a reference cell that has outputs but no execution count ("unrun").
        checked = src.lstrip().startswith(MARK) and bool(cell.get("outputs"))
        cell["execution_count"] = 1 if checked else None
        if checked:
            outs = []
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream" and out.get("name") == "stderr":
                    continue
                if "execution_count" in out:
                    out["execution_count"] = None
                if out.get("output_type") == "stream":
                    out.pop("metadata", None)
                    text = "".join(out["text"]) if isinstance(out["text"], list) else out["text"]
                    prev = outs[-1] if outs else {}
                    if prev.get("output_type") == "stream" and prev.get("name") == out.get("name"):
                        # one block per stream: how the kernel split the text depends on timing
                        prev["text"] = ("".join(prev["text"]) + text).splitlines(keepends=True)
                        continue
                    out["text"] = text.splitlines(keepends=True)
                outs.append(out)
            cell["outputs"] = outs
        else:
            cell["outputs"] = []
    nb["nbformat"], nb["nbformat_minor"] = 4, 4
    return nb


def dumps(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"] or sorted(Path("notebooks").glob("*.ipynb"))
    dirty = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        new = dumps(clean(json.loads(text)))
        if new != text:
            dirty.append(path)
            if not check:
                path.write_text(new, encoding="utf-8")
    if check and dirty:
        print("not clean (run: python .ci/clean_notebooks.py):", *map(str, dirty))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
