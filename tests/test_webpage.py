"""The web page's preprocessing (preprocess.js, run with Node) matches ``prepare_digit``; the site builds.

Tolerance: every pixel of the 28×28 result within ``PIXEL_TOLERANCE`` = 1e-5 on the 0..1 scale
(1/400 of an 8-bit grey level). preprocess.js mirrors Pillow's Lanczos filter and NumPy's float32
rounding, so the two differ by float32 rounding only (measured: at most 1.2e-7, two float32 steps).
Both 28×28 images also go through one ONNX model in onnxruntime and must give the same digit.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from waiting import PAGE_S
from webpage_helpers import export_onnx, parity_rasters, trained_checkpoint

from mnistlib.apps.webpage import PAGE_FILES, RUNTIME_FILES, WebPageError, build_site, serve_hint
from mnistlib.drawing import DrawingError, prepare_digit

REPO = Path(__file__).resolve().parent.parent
PREPROCESS_JS = REPO / "mnistlib" / "apps" / "webpage" / "preprocess.js"
RUNNER = Path(__file__).resolve().parent / "js" / "prepare_digits.mjs"
PIXEL_TOLERANCE = 1e-5
NODE_TIMEOUT_S = PAGE_S


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed: the parity test runs preprocess.js with Node.js")
    return path


def run_js(rasters: list[np.ndarray], tmp_path: Path) -> list[dict]:
    """preprocess.js's answer for each 8-bit raster: {"image": 784 floats} or {"error": message}."""
    manifest, blob = [], bytearray()
    for r in rasters:
        r = np.ascontiguousarray(r, dtype=np.uint8)
        manifest.append({"offset": len(blob), "width": r.shape[1], "height": r.shape[0],
                         "channels": 1 if r.ndim == 2 else r.shape[2]})
        blob += r.tobytes()
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "pixels.bin").write_bytes(bytes(blob))
    result = subprocess.run(
        [node(), str(RUNNER), str(PREPROCESS_JS), str(tmp_path / "manifest.json"), str(tmp_path / "pixels.bin")],
        capture_output=True, text=True, timeout=NODE_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def parity(tmp_path_factory) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, Python 28×28 images, JavaScript 28×28 images) for every parity raster."""
    rasters = parity_rasters()
    js = run_js(list(rasters.values()), tmp_path_factory.mktemp("parity"))
    py_images, js_images = [], []
    for (name, raster), answer in zip(rasters.items(), js, strict=True):
        assert "error" not in answer, f"{name}: preprocess.js refused it: {answer['error']}"
        py_images.append(prepare_digit(raster))
        js_images.append(np.asarray(answer["image"], dtype=np.float64).reshape(28, 28))
    return list(rasters), np.stack(py_images), np.stack(js_images)


def test_preprocess_js_matches_prepare_digit_pixel_for_pixel(parity) -> None:
    names, py, js = parity
    diff = np.abs(py - js).max(axis=(1, 2))
    worst = int(np.argmax(diff))
    print(f"largest pixel difference: {diff[worst]:.2e} ({names[worst]}), {len(names)} rasters")
    assert diff.max() <= PIXEL_TOLERANCE, {n: float(d) for n, d in zip(names, diff, strict=True) if d > PIXEL_TOLERANCE}
    assert all(img.max() == pytest.approx(1.0) for img in js)  # the ink was found and stretched


def test_preprocess_js_gives_the_same_prediction(parity, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    ckpt = trained_checkpoint()
    onnx_path = export_onnx(ckpt.model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names, py, js = parity

    def digits(images: np.ndarray) -> np.ndarray:
        x = ((images.astype(np.float32) - ckpt.mean) / ckpt.std).reshape(-1, 1, 28, 28)
        return session.run(None, {session.get_inputs()[0].name: x})[0].argmax(axis=1)

    py_digits, js_digits = digits(py), digits(js)
    assert list(py_digits) == list(js_digits), dict(zip(names, zip(py_digits, js_digits, strict=True), strict=True))
    assert dict(zip(names, py_digits, strict=False))["example 7"] == 7  # a trained model, not noise


@pytest.mark.parametrize(
    "raster",
    [np.full((50, 40), 255, np.uint8), np.full((30, 30), 3, np.uint8), np.zeros((20, 20, 4), np.uint8)],
    ids=["white", "almost black", "transparent"],
)
def test_preprocess_js_refuses_what_prepare_digit_refuses(raster, tmp_path) -> None:
    with pytest.raises(DrawingError) as python_error:
        prepare_digit(raster)
    (answer,) = run_js([raster], tmp_path)
    assert answer == {"error": str(python_error.value)}


def fake_model(tmp_path: Path) -> Path:
    from mnistlib.models import get_model

    return export_onnx(get_model("classic"), tmp_path / "tiny.onnx")


def test_build_site_writes_a_self_contained_page(tmp_path) -> None:
    site = build_site(fake_model(tmp_path), tmp_path / "site" / "deep", mean=0.1307, std=0.3081)
    assert site == (tmp_path / "site" / "deep").resolve()
    for name in (*PAGE_FILES, *RUNTIME_FILES, "model.onnx", "config.json"):
        assert (site / name).is_file() and (site / name).stat().st_size > 0, name
    assert json.loads((site / "config.json").read_text()) == {"model": "model.onnx", "mean": 0.1307, "std": 0.3081}
    assert (site / "model.onnx").read_bytes() == (tmp_path / "tiny.onnx").read_bytes()
    assert not list(site.glob(".*.tmp"))  # no temporary file left behind
    links = re.findall(r'(?:src|href)="([^"]*)"', (site / "index.html").read_text())
    assert links and all(":" not in link and not link.startswith("/") for link in links), links
    script = (site / "app.js").read_text()
    assert "https://" not in script and not re.search(r'from "(?!\./)', script)  # nothing from another host
    assert "127.0.0.1" in serve_hint(site)


def test_build_site_refuses_bad_input_in_one_line(tmp_path) -> None:
    model = fake_model(tmp_path)
    cases = [
        (tmp_path / "missing.onnx", tmp_path / "a", 0.1, 0.3, "No such ONNX model"),
        (model, tmp_path / "b", 0.1, 0.0, "std must be > 0"),
        (model, tmp_path / "c", float("nan"), 0.3, "Bad normalisation"),
    ]
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    cases.append((tmp_path / "garbage.onnx", tmp_path / "d", 0.1, 0.3, "is not an ONNX model"))
    (tmp_path / "file").write_text("x")
    cases.append((model, tmp_path / "file", 0.1, 0.3, "is not a folder"))
    for onnx_path, out, mean, std, words in cases:
        with pytest.raises(WebPageError, match=words) as err:
            build_site(onnx_path, out, mean=mean, std=std)
        assert "\n" not in str(err.value)


def test_missing_npm_is_a_clear_error(tmp_path, monkeypatch) -> None:
    import mnistlib.apps.webpage as webpage

    package = tmp_path / "package"
    package.mkdir()
    monkeypatch.setattr(webpage.shutil, "which", lambda name: None)
    with pytest.raises(WebPageError, match="npm is not installed"):
        webpage.ensure_runtime(package)


def test_failing_npm_ci_is_a_clear_error(tmp_path) -> None:
    import mnistlib.apps.webpage as webpage

    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    (tmp_path / "package.json").write_text('{"name": "x", "version": "1.0.0"}')  # no lock file: npm ci refuses
    with pytest.raises(WebPageError, match="npm ci failed") as err:
        webpage.ensure_runtime(tmp_path)
    assert "\n" not in str(err.value)
