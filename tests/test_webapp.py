"""The drawing web app's logic without a browser: which model, canvas pixels and uploads → predictions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from small_models import save_small, train_small
from waiting import PAGE_S

from mnistlib.apps import webapp
from mnistlib.drawing import DrawingError, load_image
from mnistlib.strokes import example_strokes, rasterize


@pytest.fixture(scope="module")
def files(tmp_path_factory, data_root) -> dict[str, Path]:
    """A small trained checkpoint, and the same model exported to ONNX."""
    import os

    os.environ.setdefault("MNISTLIB_DATA", str(data_root))
    from mnistlib.export import export_onnx

    folder = tmp_path_factory.mktemp("webapp")
    pth = save_small(folder / "best_model_20000101_000000.pth", train_small("batchnorm", 6_000))
    onnx = folder / "model.onnx"
    export_onnx(pth, onnx, n_check=100)
    return {"pth": pth, "onnx": onnx, "folder": folder}


def canvas_rgba(digit: str, transparent: bool = False) -> np.ndarray:
    """What the canvas sends: black ink on white (or on transparent) RGBA, 280×280."""
    ink = rasterize(example_strokes(digit))
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., :3] = 255 - ink[..., None]
    rgba[..., 3] = ink if transparent else 255
    return rgba


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------ which model


def test_no_checkpoint_says_how_to_train_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(webapp.MODEL_ENV, raising=False)
    with pytest.raises(webapp.AppModelError) as info:
        webapp.model_path(None, tmp_path)
    text = str(info.value)
    assert "\n" not in text and str(tmp_path) in text
    assert "lesson 03" in text and "python -m mnistlib train" in text and "--checkpoint" in text


def test_model_path_order(files, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(webapp.MODEL_ENV, raising=False)
    assert webapp.model_path(None, files["folder"]) == files["pth"]  # the newest best checkpoint
    monkeypatch.setenv(webapp.MODEL_ENV, str(files["onnx"]))
    assert webapp.model_path(None, files["folder"]) == files["onnx"]  # the environment variable
    assert webapp.model_path(str(files["pth"]), files["folder"]) == files["pth"]  # the command line
    with pytest.raises(webapp.AppModelError, match="no such file"):
        webapp.model_path(str(tmp_path / "missing.onnx"))


def test_checkpoint_and_onnx_read_a_drawing_alike(files) -> None:
    torch_model, onnx_model = webapp.load_app_model(files["pth"]), webapp.load_app_model(files["onnx"])
    assert "onnxruntime" in onnx_model.description and "batchnorm" in onnx_model.description
    for digit in ("1", "7"):
        a = webapp.canvas_prediction(canvas_rgba(digit), torch_model)
        b = webapp.canvas_prediction(canvas_rgba(digit), onnx_model)
        assert a.digit == b.digit == int(digit)
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


@pytest.mark.parametrize("suffix", [".pth", ".onnx"])
def test_a_bad_model_file_is_one_line(tmp_path: Path, suffix: str) -> None:
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(b"\x00garbage" * 20)
    with pytest.raises(webapp.AppModelError) as info:
        webapp.load_app_model(bad)
    assert "\n" not in str(info.value) and bad.name in str(info.value)


# ------------------------------------------------------------------------ predictions


def test_canvas_states(files) -> None:
    loaded = webapp.load_app_model(files["pth"])
    assert webapp.canvas_prediction(None, loaded) is None  # before the first stroke arrives
    assert webapp.canvas_prediction(np.full((280, 280, 4), 255, np.uint8), loaded) is None  # cleared
    assert webapp.describe(None) == webapp.EMPTY_MESSAGE
    seven = webapp.canvas_prediction(canvas_rgba("7", transparent=True), loaded)
    assert seven.digit == 7 and webapp.describe(seven).startswith("I read: 7 (")
    assert seven.image28.shape == (28, 28) and seven.image28.max() == pytest.approx(1.0)


def test_upload_reads_a_picture(files) -> None:
    loaded = webapp.load_app_model(files["pth"])
    photo = 255 - rasterize(example_strokes("1"))  # dark ink on light paper, like a scan
    assert webapp.upload_prediction(png_bytes(photo), "my one.png", loaded).digit == 1


def test_upload_errors_are_the_predict_commands(files, tmp_path: Path) -> None:
    loaded = webapp.load_app_model(files["pth"])
    for name, data in [("notes.txt", b"not an image\n"), ("blank.png", png_bytes(np.full((50, 50), 255, np.uint8))),
                       ("half.png", png_bytes(np.zeros((40, 40), np.uint8))[:60])]:
        with pytest.raises(DrawingError) as info:
            webapp.upload_prediction(data, name, loaded)
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DrawingError) as cli:  # what `python -m mnistlib predict` prints after "error: PATH:"
            from mnistlib.drawing import predict_image

            predict_image(tmp_path / name, loaded)
        assert str(info.value) == str(cli.value) and "\n" not in str(info.value)
    with pytest.raises(DrawingError, match="notes.txt is not an image"):
        load_image(tmp_path / "notes.txt")


def test_upload_names_cannot_escape_the_temporary_folder(files) -> None:
    loaded = webapp.load_app_model(files["pth"])
    with pytest.raises(DrawingError) as info:
        webapp.upload_prediction(b"junk", "../../etc/passwd", loaded)
    assert "passwd" in str(info.value) and "/etc" not in str(info.value)
    assert webapp._safe_name("../../a b?.png") == "a b_.png" and webapp._safe_name("..") == "upload"


def test_chart_rows_and_image(files) -> None:
    pred = webapp.canvas_prediction(canvas_rgba("7"), webapp.load_app_model(files["pth"]))
    rows = webapp.probability_rows(pred)
    assert rows["digit"] == [str(d) for d in range(10)] and sum(rows["probability"]) == pytest.approx(1.0)
    img = Image.open(io.BytesIO(webapp.image28_png(pred.image28)))
    assert img.size == (140, 140) and img.mode == "L"


# ------------------------------------------------------------------------ starting


def test_streamlit_command_binds_loopback_and_passes_the_model(tmp_path: Path) -> None:
    cmd = webapp.streamlit_command(8765)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8765" and cmd[cmd.index("run") + 1] == str(webapp.APP_SCRIPT)
    assert "--" not in cmd and webapp.APP_SCRIPT.is_file()
    model = tmp_path / "m.onnx"
    cmd = webapp.streamlit_command(8765, checkpoint=str(model))
    assert cmd[cmd.index("--") + 1 :] == ["--checkpoint", str(model.resolve())]
    assert webapp.app_args(cmd[cmd.index("--") + 1 :]).checkpoint == str(model.resolve())
    assert webapp.app_args([]).checkpoint is None


def test_launcher_refuses_a_missing_model(tmp_path: Path, capsys) -> None:
    assert webapp.main(["--checkpoint", str(tmp_path / "nope.pth"), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "\n" not in err.strip()


# ------------------------------------------------------------------------ the page without a model


def run_page(monkeypatch, tmp_path: Path, *args: str):
    """Run the Streamlit script headless (Streamlit's AppTest: no browser, no custom components)."""
    testing = pytest.importorskip("streamlit.testing.v1")
    monkeypatch.setenv("MNISTLIB_CHECKPOINTS", str(tmp_path))
    monkeypatch.delenv(webapp.MODEL_ENV, raising=False)
    monkeypatch.setattr("sys.argv", [str(webapp.APP_SCRIPT), *args])
    page = testing.AppTest.from_file(str(webapp.APP_SCRIPT), default_timeout=PAGE_S)
    return page.run()


def test_page_without_a_model_says_how_to_train_one(monkeypatch, tmp_path: Path) -> None:
    page = run_page(monkeypatch, tmp_path)
    assert not page.exception
    (warning,) = page.warning
    assert "No trained model yet" in warning.value and "lesson 03" in warning.value


def test_page_with_a_bad_model_file_says_so(monkeypatch, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    page = run_page(monkeypatch, tmp_path, "--checkpoint", str(bad))
    assert not page.exception and "bad.onnx" in page.warning[0].value


def test_a_low_top_probability_reads_not_sure() -> None:
    import numpy as np

    from mnistlib.drawing import Prediction

    unsure = Prediction(3, np.array([0.05, 0.05, 0.1, 0.4, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05]), np.zeros((28, 28)))
    assert webapp.describe(unsure).startswith("Not sure — maybe a 3")


# ------------------------------------------------------------------------ starting: refused before the server starts


@pytest.fixture
def no_server(monkeypatch) -> None:
    """Starting the server fails the test: everything below must be refused before it."""
    def never(*args, **kwargs):
        raise AssertionError("the server was started")

    monkeypatch.setattr(webapp.subprocess, "Popen", never)
    monkeypatch.delenv(webapp.MODEL_ENV, raising=False)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") or "error:" in err.splitlines()[-1], err
    assert "Traceback" not in err and len([line for line in err.splitlines() if "error:" in line]) == 1, err
    return err


@pytest.mark.parametrize("port", ["99999", "-1", "0", "http"])
def test_launcher_refuses_a_port_that_cannot_be(port: str, no_server, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        webapp.main(["--port", port, "--no-browser"])
    assert info.value.code == 2 and "--port" in one_error_line(capsys)


def test_launcher_refuses_an_address_it_cannot_serve(no_server, capsys) -> None:
    for address in ("no-such-host.invalid", "203.0.113.7"):  # unresolvable; resolvable but not this computer's
        assert webapp.main(["--address", address, "--no-browser"]) == 2
        assert address in one_error_line(capsys)


def test_launcher_refuses_a_port_in_use(no_server, capsys) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert webapp.main(["--port", str(port), "--no-browser"]) == 2
        assert "in use" in one_error_line(capsys)


@pytest.mark.parametrize("kind", ["garbage.pth", "malicious.pth", "truncated.onnx", "huge-options.pth"])
def test_launcher_refuses_a_bad_model_before_the_server_starts(kind: str, files, tmp_path: Path, no_server, capsys,
                                                               monkeypatch) -> None:
    import pickle

    import torch

    bad = tmp_path / kind
    if kind == "garbage.pth":
        bad.write_bytes(b"\x00garbage" * 20)
    elif kind == "malicious.pth":
        bad.write_bytes(pickle.dumps({"format": "mnistlib-checkpoint", "x": print}))  # names a global: never run
    elif kind == "truncated.onnx":
        bad.write_bytes(files["onnx"].read_bytes()[:500])
    else:
        payload = torch.load(files["pth"], weights_only=True) | {"options": {"hidden": 10**9}}
        torch.save(payload, bad)
    assert webapp.main(["--checkpoint", str(bad), "--no-browser"]) == 2
    assert kind in one_error_line(capsys)
    monkeypatch.setenv(webapp.MODEL_ENV, str(bad))  # the same model named by the environment
    assert webapp.main(["--no-browser"]) == 2
    assert kind in one_error_line(capsys)


def test_the_app_entry_point_is_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from waiting import HANG_S

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk")
    run = subprocess.run([sys.executable, "-m", "mnistlib.apps.webapp", "--checkpoint", str(bad), "--no-browser"],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=HANG_S)
    assert run.returncode == 2 and run.stderr.startswith("error: ") and len(run.stderr.strip().splitlines()) == 1
