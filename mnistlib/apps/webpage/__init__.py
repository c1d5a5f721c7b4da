"""A static web page that reads digits drawn in any browser, with the learner's exported model.

:func:`build_site` writes a folder any static file server can host: ``index.html``, the page's
JavaScript (``app.js``, ``preprocess.js`` — the MNIST recipe of :func:`mnistlib.drawing.prepare_digit`
written once in plain JavaScript), the ONNX model as ``model.onnx``, ``config.json`` (the
checkpoint's normalisation constants) and onnxruntime-web's wasm runtime, copied from the npm
package pinned in this folder's ``package-lock.json`` (installed with ``npm ci`` when missing).
The page never loads anything from another host. Browsers refuse to load the model from
``file://``: serve the folder, e.g. ``python -m http.server -d DIR``.

The folder is built beside its target and renamed into place (:func:`mnistlib._support.files.atomic_folder`):
a full disk or a kill leaves the earlier page whole, never a page without its model. Because the folder is
replaced whole, only a new or empty folder, or an earlier page's, is accepted (:func:`check_site_folder`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

from mnistlib._support import files

__all__ = ["PAGE_FILES", "RUNTIME_FILES", "SITE_FILES", "WebPageError", "build_site", "check_site_folder",
           "ensure_runtime", "serve_hint"]

PACKAGE_DIR = Path(__file__).resolve().parent
#: The page itself, copied from this package.
PAGE_FILES = ("index.html", "style.css", "app.js", "preprocess.js")
#: onnxruntime-web's wasm-only build: the ES module, its wasm loader and the wasm binary.
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MODEL_NAME = "model.onnx"
#: Everything :func:`build_site` writes; a folder holding nothing else is an earlier page, and may be replaced.
SITE_FILES = (*PAGE_FILES, *RUNTIME_FILES, MODEL_NAME, "config.json")
NPM_TIMEOUT_S = 600


class WebPageError(RuntimeError):
    """The web page could not be built; the message is one line saying why."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def _runtime_dir(package_dir: Path) -> Path:
    return package_dir / "node_modules" / "onnxruntime-web" / "dist"


def _npm_ci(package_dir: Path) -> None:
    """Install the pinned onnxruntime-web from package-lock.json (no other version, no audit)."""
    npm = shutil.which("npm")
    if npm is None:
        raise WebPageError(
            "npm is not installed: install Node.js (20 or newer) to build the web page "
            f"(it installs onnxruntime-web into {package_dir / 'node_modules'})."
        )
    try:
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=package_dir, capture_output=True, text=True, timeout=NPM_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise WebPageError(f"npm ci in {package_dir} did not finish in {NPM_TIMEOUT_S} s.") from None
    except OSError as exc:
        raise WebPageError(f"Could not run npm: {exc}") from None
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {result.returncode}"
        raise WebPageError(f"npm ci failed in {package_dir}: {why}")


def ensure_runtime(package_dir: str | Path = PACKAGE_DIR) -> Path:
    """The folder holding onnxruntime-web's runtime files, running ``npm ci`` first if needed."""
    package_dir = Path(package_dir)
    dist = _runtime_dir(package_dir)
    if not all((dist / name).is_file() for name in RUNTIME_FILES):
        _npm_ci(package_dir)
    missing = [name for name in RUNTIME_FILES if not (dist / name).is_file()]
    if missing:
        raise WebPageError(f"onnxruntime-web in {dist} lacks {', '.join(missing)}: check package.json.")
    return dist


def _check_model(onnx_path: Path) -> bytes:
    """The model's bytes, refusing what the page cannot load (missing, empty, external weights)."""
    if not onnx_path.is_file():
        raise WebPageError(f"No such ONNX model: {onnx_path}")
    data = onnx_path.read_bytes()
    if not data:
        raise WebPageError(f"{onnx_path} is empty: export the model again.")
    try:
        import onnx

        model = onnx.load_model_from_string(data)
    except Exception as exc:
        raise WebPageError(f"{onnx_path} is not an ONNX model: {exc}") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise WebPageError(
            f"{onnx_path} keeps its weights in a separate file, which the page cannot load: "
            "export with torch.onnx.export(..., external_data=False)."
        )
    return data


def build_site(onnx_path: str | Path, out_dir: str | Path, *, mean: float, std: float) -> Path:
    """Write the static drawing page for an ONNX model into ``out_dir``, whole (built beside it, then renamed
    into place); returns that folder.

    ``mean`` and ``std`` are the checkpoint's normalisation constants (``Checkpoint.mean/std``).
    Raises :class:`WebPageError` (one line) when the model, the constants, npm or the folder are unusable.
    """
    try:
        mean, std = float(mean), float(std)
    except (TypeError, ValueError, OverflowError):
        raise WebPageError(f"Bad normalisation constants: mean={mean!r}, std={std!r} (numbers needed).") from None
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise WebPageError(f"Bad normalisation constants: mean={mean}, std={std} (std must be > 0).")
    model = _check_model(Path(onnx_path).expanduser())
    dist = ensure_runtime()
    out = check_site_folder(out_dir)
    config = {"model": MODEL_NAME, "mean": mean, "std": std}
    contents = {name: (PACKAGE_DIR / name).read_bytes() for name in PAGE_FILES}
    contents |= {name: (dist / name).read_bytes() for name in RUNTIME_FILES}
    contents |= {MODEL_NAME: model, "config.json": (json.dumps(config, indent=2) + "\n").encode()}
    try:
        files.clean_stale(out.parent, targets=lambda name: name == files.temp_target(out.name))
        with files.atomic_folder(out) as folder:
            for name, data in contents.items():
                _write(folder / name, data)
    except OSError as exc:  # a full disk, a read-only folder: the earlier page, if any, is untouched
        raise WebPageError(f"Could not write the page into {out}: {exc.strerror or exc}") from None
    return out.resolve()


def _write(path: Path, data: bytes) -> None:
    """Write one of the page's files and flush it to disk (the folder is renamed into place afterwards)."""
    path.write_bytes(data)
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def check_site_folder(out_dir: str | Path) -> Path:
    """``out_dir`` as the page's folder: new, empty, or an earlier page (its own files only). Anything else is
    refused with :class:`WebPageError`, since building the page replaces the folder whole."""
    out = Path(out_dir).expanduser().absolute()
    try:
        if out.exists() and not out.is_dir():
            raise WebPageError(f"{out} exists and is not a folder.")
        others = sorted(p.name for p in out.iterdir() if p.name not in SITE_FILES) if out.is_dir() else []
    except OSError as exc:  # a name too long, no permission to look inside
        raise WebPageError(f"Cannot use {out}: {exc.strerror or exc}") from None
    if others:
        shown = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        raise WebPageError(f"{out} holds other files ({shown}): the page replaces its folder whole, so give a "
                           "new or empty folder, or the folder of an earlier page.")
    return out


def serve_hint(out_dir: str | Path, port: int = 8000) -> str:
    """How to open the built page (one line): a local static server, since file:// cannot work."""
    return (
        f"Serve it with `python -m http.server {port} --bind 127.0.0.1 -d {out_dir}` and open "
        f"http://127.0.0.1:{port} "
        "(opening index.html as a file does not work: browsers block loading the model)."
    )
