"""Lesson 09's drawing web app: what it computes (pure functions) and how it is started.

The Streamlit page itself is :mod:`mnistlib.apps.streamlit_app`; everything it does with a model, a drawing or an
uploaded file lives here, so it is tested without a browser. Start it with ``make app`` or

    python -m mnistlib.apps.webapp                              # the newest best checkpoint
    python -m mnistlib.apps.webapp --checkpoint model.onnx      # a checkpoint (.pth) or an exported .onnx
    MNISTLIB_APP_MODEL=model.onnx python -m mnistlib.apps.webapp

It binds to 127.0.0.1 (this computer only) unless ``--address`` says otherwise. Before the server starts, the
launcher refuses in one line (exit code 2) a port outside 1–65535 or in use, an address that does not resolve or
is not this computer's, and a model file that does not load.
"""

from __future__ import annotations

import argparse
import errno
import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import webbrowser
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import nn

from mnistlib._support.quiet import tolerant_output
from mnistlib._support.signals import startup_done
from mnistlib.drawing import FRAME, DrawingError, Prediction, classify, prepare_digit

__all__ = [
    "APP_SCRIPT",
    "MODEL_ENV",
    "AppModelError",
    "AppStartError",
    "app_args",
    "canvas_prediction",
    "check_address",
    "checked_model",
    "image28_png",
    "load_app_model",
    "main",
    "model_path",
    "no_model_message",
    "probability_rows",
    "streamlit_command",
    "upload_prediction",
]

APP_SCRIPT = Path(__file__).with_name("streamlit_app.py")  #: the Streamlit script
MODEL_ENV = "MNISTLIB_APP_MODEL"  #: a checkpoint or .onnx file to serve, when none is given on the command line
TRAIN_HINT = "python -m mnistlib train --model batchnorm --epochs 2 --scheduler onecycle --lr 5e-3 --batch-size 64"
EMPTY_MESSAGE = "Draw a digit in the white square."


class AppModelError(Exception):
    """No model to serve, or a file that is not one; the message is one line saying what to do."""


class AppStartError(Exception):
    """The server could not start where it was asked to (port, address); the message is one line."""


# --------------------------------------------------------------------------------------------
# Which model
# --------------------------------------------------------------------------------------------


def app_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The app's own options (after ``--`` on the ``streamlit run`` line): ``--checkpoint PATH``."""
    parser = argparse.ArgumentParser(prog="mnistlib app", add_help=False)
    parser.add_argument("--checkpoint", default=None)
    args, _ = parser.parse_known_args(list(argv) if argv is not None else [])
    return args


def no_model_message(folder: Path) -> str:
    """What to do when there is no checkpoint yet (one line)."""
    return (f"No trained model yet: {folder} has no best_model_*.pth. Train one — run lesson 03 "
            f"(notebooks/03_training.ipynb) or `{TRAIN_HINT}` — then reload this page, or start the app "
            "with a model: `make app APP_ARGS=\"--checkpoint PATH\"` (a .pth checkpoint or an exported .onnx).")


def model_path(given: str | None = None, folder: Path | None = None) -> Path:
    """The file to serve: ``given``, else ``$MNISTLIB_APP_MODEL``, else lesson 03's run, else the newest best
    checkpoint."""
    from mnistlib.checkpoints import find_checkpoint, latest_checkpoint
    from mnistlib.config import checkpoint_dir

    given = given or os.environ.get(MODEL_ENV) or None
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise AppModelError(f"{path}: no such file (give a .pth checkpoint or an exported .onnx model)")
        return path
    folder = folder if folder is not None else checkpoint_dir()
    newest = find_checkpoint("lesson-03", folder) or latest_checkpoint("best", folder)
    if newest is None:
        raise AppModelError(no_model_message(folder))
    return newest


@dataclass(frozen=True)
class ServedModel:
    """What the app predicts with: a model (PyTorch or onnxruntime), its normalisation, and one line about it."""

    model: nn.Module
    mean: float
    std: float
    description: str


def _describe_checkpoint(ckpt: Any) -> str:
    acc = ckpt.best_val_acc
    return f"model {ckpt.name!r} from {Path(ckpt.path).name}" + (f" (validation accuracy {acc:.1%})" if acc else "")


def load_app_model(path: str | Path) -> ServedModel:
    """A checkpoint (``.pth``) or an exported ONNX file (``.onnx``, run by onnxruntime) ready to predict."""
    from mnistlib.checkpoints import CheckpointError, load_checkpoint
    from mnistlib.export import ExportError, load_onnx

    path = Path(path)
    try:
        if path.suffix.lower() == ".onnx":
            module, meta = load_onnx(path)
            name = meta.get("model", "unknown")
            description = f"ONNX model {name!r} from {path.name}, run by onnxruntime"
            if "quantised" in meta:
                description += " (int8)"
            return ServedModel(module, float(meta.get("mean", 0.1307)), float(meta.get("std", 0.3081)), description)
        ckpt = load_checkpoint(path)
        return ServedModel(ckpt.model, ckpt.mean, ckpt.std, _describe_checkpoint(ckpt))
    except (CheckpointError, ExportError) as exc:
        raise AppModelError(str(exc)) from None


# --------------------------------------------------------------------------------------------
# Predicting
# --------------------------------------------------------------------------------------------


def canvas_prediction(image_data: np.ndarray | None, loaded: ServedModel) -> Prediction | None:
    """The prediction for the canvas's RGBA pixels, or None while it holds no ink (nothing drawn yet)."""
    if image_data is None:
        return None
    a = np.asarray(image_data)
    if a.ndim != 3 or a.size == 0:
        return None
    try:
        image28 = prepare_digit(a)
    except DrawingError:  # a blank canvas: nothing to read yet
        return None
    return classify(image28, loaded.model, loaded.mean, loaded.std)


def _safe_name(name: str) -> str:
    """The uploaded file's own name, reduced to characters safe in a file name."""
    base = re.sub(r"[^\w.\- ]", "_", Path(name or "upload").name).strip(" .")
    return base[:100] or "upload"


def upload_prediction(data: bytes, name: str, loaded: ServedModel) -> Prediction:
    """The prediction for an uploaded image file; :class:`DrawingError` with ``predict``'s messages if bad.

    The bytes go through the very same reader as ``python -m mnistlib predict FILE`` (written to a
    temporary file of the same name), so the learner sees the same messages in both places.
    """
    from mnistlib.drawing import predict_image

    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / _safe_name(name)
        path.write_bytes(data)
        return predict_image(path, loaded)


def describe(prediction: Prediction | None) -> str:
    """The headline for a prediction: ``I read: 7 (98% sure)``, or the empty-canvas message."""
    if prediction is None:
        return EMPTY_MESSAGE
    if not prediction.sure:
        return f"Not sure — maybe a {prediction.digit} ({prediction.confidence:.0%})"
    return f"I read: {prediction.digit} ({prediction.confidence:.0%} sure)"


def probability_rows(prediction: Prediction) -> dict[str, list]:
    """The ten probabilities as columns for a bar chart: ``{"digit": ["0", …], "probability": […]}``."""
    return {"digit": [str(d) for d in range(10)], "probability": [float(p) for p in prediction.probabilities]}


def image28_png(image28: np.ndarray, scale: int = 5) -> bytes:
    """The 28×28 image the model saw, enlarged with hard pixel edges, as PNG bytes (ink white on black)."""
    a = np.uint8(np.clip(np.asarray(image28, dtype=np.float32).reshape(FRAME, FRAME), 0, 1) * 255)
    img = Image.fromarray(a, mode="L").resize((FRAME * scale, FRAME * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Starting the server
# --------------------------------------------------------------------------------------------


def streamlit_command(port: int, address: str = "127.0.0.1", checkpoint: str | None = None) -> list[str]:
    """The ``streamlit run`` command line for the app (headless: no e-mail prompt, no usage statistics)."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT), "--server.headless", "true",
           "--server.address", address, "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--global.developmentMode", "false",
           "--client.toolbarMode", "minimal"]
    if checkpoint:
        cmd += ["--", "--checkpoint", str(Path(checkpoint).expanduser().resolve())]
    return cmd


def _port(text: str) -> int:
    """``--port``: a TCP port, 1–65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, got {port}")
    return port


def check_address(address: str, port: int) -> None:
    """Refuse, with :class:`AppStartError`, an address that does not resolve or is not this computer's, and a
    port already in use or not allowed: a trial bind, released at once, before the server is started."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(address or None, port, type=socket.SOCK_STREAM,
                                                           flags=socket.AI_PASSIVE)[0]
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        why = getattr(exc, "strerror", None) or exc
        raise AppStartError(f"--address {address}: cannot be resolved ({why})") from None
    try:
        with socket.socket(family, kind, proto) as trial:
            trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            trial.bind(where)
    except OSError as exc:
        why = {errno.EADDRINUSE: f"port {port} is in use on {address} (pick another with --port)",
               errno.EADDRNOTAVAIL: f"--address {address} is not an address of this computer"}.get(exc.errno or 0)
        raise AppStartError(why or f"cannot listen on {address} port {port}: {exc.strerror or exc}") from None


def checked_model(given: str | None) -> Path | None:
    """The model file the app will serve, loaded once to refuse a bad one (:class:`AppModelError`) before the
    server starts; None when there is none yet (the page then says how to train one)."""
    try:
        path = model_path(given)
    except AppModelError:
        if given or os.environ.get(MODEL_ENV):
            raise  # a file was named and is missing
        return None
    load_app_model(path)
    return path


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 300.0) -> bool:
    """Poll ``/_stcore/health`` until it answers ``ok`` (True), the server exits or time runs out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """Start the app and open it in a browser; Ctrl-C (or SIGTERM) stops the server. Returns its exit code."""
    parser = argparse.ArgumentParser(prog="python -m mnistlib.apps.webapp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help=f"a .pth checkpoint or an exported .onnx [${MODEL_ENV}, else the "
                        "newest best checkpoint]")
    parser.add_argument("--port", type=_port, default=8501, help="port, 1-65535 [8501]")
    parser.add_argument("--address", default="127.0.0.1", help="address to bind [127.0.0.1: this computer only]")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    tolerant_output()
    args = parser.parse_args(argv)
    try:
        checked_model(args.checkpoint)
        check_address(args.address, args.port)
    except (AppModelError, AppStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url = f"http://{'127.0.0.1' if args.address in ('0.0.0.0', '') else args.address}:{args.port}"
    return _serve(url, streamlit_command(args.port, args.address, args.checkpoint), not args.no_browser)


def _serve(url: str, command: list[str], browser: bool) -> int:
    """Run the server until it exits, Ctrl-C or SIGTERM; print its address (and open it) once it answers."""
    startup_done()  # from here Ctrl-C stops the server (python -m … made it quiet while importing)
    process = None
    try:
        process = subprocess.Popen(command)
        signal.signal(signal.SIGTERM, lambda *_: process.terminate())  # SIGTERM to us stops the server too
        if wait_healthy(url, process):
            print(f"The drawing app is at {url} (Ctrl-C stops it)", flush=True)
            if browser:
                webbrowser.open(url)
        return process.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        if process is not None:
            _reap(process)


def _reap(process: subprocess.Popen, timeout: float = 10.0) -> Any:
    """Wait for the server to exit, killing it when it does not within ``timeout`` s."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


if __name__ == "__main__":
    sys.exit(main())
