"""Lesson 09: take a trained model out of Python — ONNX export with a parity check, and int8.

An ONNX file is the network as a graph of standard operators plus its weights: any ONNX runtime
(onnxruntime in Python, C++, C#, Java, JavaScript in a browser…) can run it without PyTorch and
without the Python class that defined the model. :func:`export_onnx` writes one with a dynamic
batch dimension and refuses to report success until onnxruntime and PyTorch give the same answers
on 1,000 test images. :func:`quantize_int8` makes a smaller int8 copy with onnxruntime's static
quantisation, calibrated on training images only.

Every problem with the input (a bad checkpoint, a path that cannot be written, a model that does
not export) raises :class:`ExportError`, whose message is one line. Files are written whole or not at
all (a temporary beside the target, renamed into place; temporaries of exports that were killed are
removed by the next one), and only a regular file is ever replaced.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._support import files
from ._support.quiet import first_line, quiet_output, root_cause_line
from .devices import eval_mode, model_device

__all__ = [
    "ExportError",
    "ExportReport",
    "Int8Report",
    "OnnxModule",
    "TrainingImagesReader",
    "calibration_images",
    "check_output",
    "check_parity",
    "export_onnx",
    "load_onnx",
    "model_bytes",
    "onnx_session",
    "quantize_int8",
    "run_onnx",
    "test_images",
]

INPUT_NAME = "image"  #: the ONNX graph's input: a normalised batch [N, 1, 28, 28]
OUTPUT_NAME = "logits"  #: … and its output: [N, 10] raw scores
PARITY_IMAGES = 1_000  #: test images on which onnxruntime must agree with PyTorch
PARITY_TOLERANCE = 1e-3  #: largest logit difference accepted (float32 rounding gives ~1e-6)
CALIBRATION_IMAGES = 1_000  #: training images that calibrate the int8 ranges
MAX_CALIBRATION = 55_000  #: the training split's size: calibration never draws from validation or test images
MAX_ONNX_BYTES = 256 * 1024 * 1024  #: an ONNX file larger than this is refused unread (an MNIST model is < 2 MB)
META = "mnistlib."  #: prefix of the metadata keys written into the ONNX file


class ExportError(Exception):
    """A checkpoint or model that cannot be exported, or a file that cannot be written (one line)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how closely onnxruntime matched PyTorch."""

    path: Path
    model: str
    n_images: int
    same_predictions: int
    max_abs_diff: float
    batch_sizes: tuple[int, ...]
    file_bytes: int
    opset: int

    @property
    def ok(self) -> bool:
        """Every prediction identical and every logit within :data:`PARITY_TOLERANCE`."""
        return self.same_predictions == self.n_images and self.max_abs_diff <= PARITY_TOLERANCE

    @property
    def parity(self) -> str:
        """The parity check in words."""
        return (f"onnxruntime and PyTorch predict the same digit for {self.same_predictions:,} of "
                f"{self.n_images:,} test images; largest logit difference {self.max_abs_diff:.1e}")

    def __str__(self) -> str:
        return f"wrote {self.path} ({self.file_bytes / 1024:,.0f} KiB, ONNX opset {self.opset}): {self.parity}"


@dataclass(frozen=True)
class Int8Report:
    """The int8 file against its float32 original: size and test accuracy."""

    path: Path
    fp32_path: Path
    fp32_bytes: int
    int8_bytes: int
    fp32_accuracy: float
    int8_accuracy: float
    agreement: float  #: fraction of test images on which both predict the same digit
    n_test: int
    n_calibration: int
    reduce_range: bool

    @property
    def size_ratio(self) -> float:
        """int8 size / float32 size."""
        return self.int8_bytes / self.fp32_bytes

    def __str__(self) -> str:
        return (f"wrote {self.path} ({self.int8_bytes / 1024:,.0f} KiB, {self.size_ratio:.0%} of float32): "
                f"test accuracy {self.int8_accuracy:.2%} (float32 {self.fp32_accuracy:.2%}, "
                f"{self.n_test:,} images; same digit for {self.agreement:.2%}); calibrated on "
                f"{self.n_calibration:,} training images")


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def check_output(path: str | Path) -> Path:
    """``path`` as a place an exported file may go, or :class:`ExportError` in one line: not a folder, not
    something that is not a regular file (a device, a FIFO), not a name the file system refuses."""
    path = Path(path).expanduser()
    try:
        if path.is_dir():
            raise ExportError(f"cannot write {path}: it is a folder (give a file name ending in .onnx)")
        files.check_replaceable(path)
        if path.parent.exists() and not path.parent.is_dir():
            raise ExportError(f"cannot write {path}: {path.parent} is a file, not a folder")
    except OSError as exc:  # not a regular file, a name too long, no permission to look
        raise ExportError(f"cannot write {path}: {exc.strerror or first_line(exc)}") from None
    return path


def _write_model(path: Path, data: bytes) -> None:
    """Write an ONNX model's bytes to ``path`` atomically, after removing what killed exports left beside it."""
    try:
        files.clean_stale(path.parent, targets=lambda name: name.endswith(".onnx"))
        files.atomic_write(path, lambda tmp: tmp.write_bytes(data), suffix=".onnx")
    except OSError as exc:  # a full disk, a read-only folder…
        raise ExportError(f"cannot write {path}: {exc.strerror or first_line(exc)}") from None


def model_bytes(source: str | Path | bytes) -> bytes:
    """An ONNX model's bytes (read from a file, refused when it is larger than :data:`MAX_ONNX_BYTES`)."""
    if isinstance(source, bytes):
        return source
    path = Path(source).expanduser()
    try:
        size = path.stat().st_size
        if size > MAX_ONNX_BYTES:
            raise ExportError(f"{path}: {size:,} bytes, more than the {MAX_ONNX_BYTES:,} an ONNX model may have here")
        return path.read_bytes()
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file") from None
    except OSError as exc:
        raise ExportError(f"{path}: cannot be read ({exc.strerror or first_line(exc)})") from None


def _load_checkpoint(source: Any) -> Any:
    """A Checkpoint as given, or loaded from a path; a bad file becomes an :class:`ExportError`."""
    from .checkpoints import CheckpointError, load_checkpoint

    if hasattr(source, "model") and hasattr(source, "mean"):
        return source
    try:
        return load_checkpoint(source, "cpu")
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None


def _metadata(ckpt: Any) -> dict[str, str]:
    """Everything a runtime needs beside the graph: how to normalise, and where the model came from."""
    source = Path(ckpt.path).name if getattr(ckpt, "path", None) else ""
    return {
        f"{META}model": str(ckpt.name),
        f"{META}options": json.dumps(ckpt.options or {}, sort_keys=True),
        f"{META}mean": repr(float(ckpt.mean)),
        f"{META}std": repr(float(ckpt.std)),
        f"{META}checkpoint": source,
        f"{META}input": "normalised [N, 1, 28, 28] float32: (pixel in 0..1 - mean) / std, ink = 1",
    }


def read_metadata(path: str | Path | bytes) -> dict[str, str]:
    """The ``mnistlib.*`` metadata stored in an ONNX file or model bytes (keys without the prefix)."""
    import onnx

    model = onnx.load_model_from_string(model_bytes(path))
    return {p.key[len(META):]: p.value for p in model.metadata_props if p.key.startswith(META)}


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _normalised(images: torch.Tensor, mean: float, std: float) -> np.ndarray:
    """uint8 [N, 28, 28] → float32 [N, 1, 28, 28] normalised as in training."""
    return ((images.float() / 255.0 - mean) / std).unsqueeze(1).numpy().astype(np.float32)


def test_images(n: int | None, mean: float, std: float) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` MNIST test images (None: all 10,000), normalised, with their labels."""
    from .data import MNISTNotFoundError, mnist_tensors

    try:
        images, labels = mnist_tensors(train=False)
    except MNISTNotFoundError as exc:
        raise ExportError(first_line(exc)) from None
    n = len(images) if n is None else min(n, len(images))
    return _normalised(images[:n], mean, std), labels[:n].numpy()


test_images.__test__ = False  # not a pytest test, despite its name


def calibration_images(n: int, mean: float, std: float, seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    """``n`` seeded images from the *training* part of the training set, and their indices.

    Only :func:`mnistlib.data.split_indices`' training half is drawn from, so calibration never sees
    a validation image, and the test set is never opened (``mnist_tensors(train=True)``).
    """
    from .data import MNISTNotFoundError, mnist_tensors, split_indices

    try:
        images, _ = mnist_tensors(train=True)
    except MNISTNotFoundError as exc:
        raise ExportError(first_line(exc)) from None
    train_idx, _ = split_indices(len(images))
    pick = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))[:n]
    indices = train_idx[pick].sort().values
    return _normalised(images[indices], mean, std), indices


class TrainingImagesReader:
    """Feeds onnxruntime's calibration batches of training images (see :func:`calibration_images`).

    onnxruntime's ``CalibrationDataReader`` accepts any object with ``get_next`` (it checks by
    duck typing), so this class needs no onnxruntime import until quantisation starts.
    """

    source = "train"  #: the MNIST file the images come from: always the training set

    def __init__(self, n: int, mean: float, std: float, seed: int = 0, batch: int = 100) -> None:
        self.images, self.indices = calibration_images(n, mean, std, seed)
        self.batch = batch
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.images):
            return None
        x = self.images[self._next : self._next + self.batch]
        self._next += self.batch
        return {INPUT_NAME: x}

    def rewind(self) -> None:
        self._next = 0


# --------------------------------------------------------------------------------------------
# Running an ONNX file
# --------------------------------------------------------------------------------------------


def onnx_session(path: str | Path | bytes, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for an ONNX file or model bytes (``threads``: intra-op threads, None: its
    default). The bytes are handed over, so any file name works, UTF-8 or not."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    data = model_bytes(path)
    where = "the model" if isinstance(path, bytes) else str(path)
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/… kinds
        raise ExportError(f"{where}: onnxruntime cannot load it: {first_line(exc)}") from None


def run_onnx(session: Any, x: np.ndarray, batch: int = 1_000) -> np.ndarray:
    """Logits of an onnxruntime session (or an ONNX path or model bytes) for a normalised batch, ``batch`` at a
    time."""
    if isinstance(session, (str, Path, bytes)):
        session = onnx_session(session)
    chunks = [session.run(None, {INPUT_NAME: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 10), np.float32)


class OnnxModule(nn.Module):
    """An ONNX file wrapped as a PyTorch module, so code written for a model (``classify``) runs it.

    It has no parameters: the weights live in the file and onnxruntime does the maths on the CPU.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = onnx_session(self.path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(run_onnx(self.session, x))


def load_onnx(path: str | Path) -> tuple[OnnxModule, dict[str, str]]:
    """An exported file as an :class:`OnnxModule` and its ``mnistlib.*`` metadata (mean, std, model)."""
    path = Path(path).expanduser()
    try:
        if not path.is_file():
            raise ExportError(f"{path}: no such file")
    except OSError as exc:  # a name too long for the file system
        raise ExportError(f"{path}: {exc.strerror or first_line(exc)}") from None
    try:
        meta = read_metadata(path)
    except ExportError:
        raise
    except Exception as exc:  # a protobuf DecodeError for anything that is not ONNX
        raise ExportError(f"{path}: not an ONNX file ({first_line(exc)})") from None
    return OnnxModule(path), meta


# --------------------------------------------------------------------------------------------
# Export and parity
# --------------------------------------------------------------------------------------------


def _cpu_model(model: nn.Module) -> nn.Module:
    """The model itself when it is on the CPU, else a CPU copy (the learner's model stays where it is)."""
    return model if model_device(model).type == "cpu" else copy.deepcopy(model).to("cpu")


def _export_bytes(model: nn.Module, name: str, metadata: dict[str, str]) -> bytes:
    """PyTorch's (dynamo) exporter: eval mode, dynamic batch, one model with the weights inside, as bytes."""
    example = (torch.zeros(2, 1, 28, 28),)
    try:
        with eval_mode(model), quiet_output():
            program = torch.onnx.export(
                model, example, None, dynamo=True, dynamic_shapes=({0: "batch"},),
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
            )  # fmt: skip
    except Exception as exc:
        raise ExportError(f"model {name!r} does not export to ONNX: {root_cause_line(exc)}") from None
    program.model.metadata_props.update(metadata)
    return program.model_proto.SerializeToString()


def _opset(data: bytes) -> int:
    import onnx

    model = onnx.load_model_from_string(data)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def check_parity(path: str | Path | bytes, model: nn.Module, x: np.ndarray, name: str = "") -> ExportReport:
    """Run ``x`` through onnxruntime (in batches of 1, 37 and the rest) and PyTorch; compare.

    ``path`` is an ONNX file or the model's bytes. Uneven batch sizes also prove the batch dimension is dynamic.
    """
    data = model_bytes(path)
    session = onnx_session(data)
    sizes = tuple(s for s in (1, 37, len(x) - 38) if s > 0)
    starts = np.cumsum((0, *sizes))
    got = np.concatenate([run_onnx(session, x[a:b], batch=len(x)) for a, b in zip(starts[:-1], starts[1:],
                                                                                  strict=True)])
    with eval_mode(model), torch.inference_mode():
        want = model(torch.from_numpy(x).to(model_device(model))).float().cpu().numpy()
    return ExportReport(
        path=Path() if isinstance(path, bytes) else Path(path), model=name, n_images=len(x),
        same_predictions=int((got.argmax(1) == want.argmax(1)).sum()),
        max_abs_diff=float(np.abs(got - want).max()) if len(x) else 0.0,
        batch_sizes=sizes, file_bytes=len(data), opset=_opset(data),
    )  # fmt: skip


def export_onnx(checkpoint: Any, out: str | Path, *, n_check: int = PARITY_IMAGES) -> ExportReport:
    """Export a Checkpoint (or a checkpoint path) to one ONNX file at ``out``, checked for parity.

    The file appears only when onnxruntime predicts the same digit as PyTorch on ``n_check`` test
    images (normalised with the checkpoint's mean and std) and every logit is within
    :data:`PARITY_TOLERANCE`; otherwise :class:`ExportError` says what differed and nothing is written.
    """
    ckpt = _load_checkpoint(checkpoint)
    out = check_output(out)
    model = _cpu_model(ckpt.model)
    x, _ = test_images(n_check, ckpt.mean, ckpt.std)
    data = _export_bytes(model, ckpt.name, _metadata(ckpt))
    report = check_parity(data, model, x, ckpt.name)
    if not report.ok:
        raise ExportError(
            f"the ONNX model of {ckpt.name!r} disagrees with PyTorch: same digit for {report.same_predictions:,} "
            f"of {report.n_images:,} test images, largest logit difference {report.max_abs_diff:.2e} "
            f"(allowed {PARITY_TOLERANCE:g}); nothing written"
        )
    _write_model(out, data)
    return dataclasses.replace(report, path=out)


# --------------------------------------------------------------------------------------------
# int8
# --------------------------------------------------------------------------------------------


def cpu_lacks_vnni() -> bool:
    """True on an x86 CPU without VNNI, where onnxruntime's int8 kernels can saturate (use reduce_range)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False  # not Linux: assume a recent CPU
    return "vnni" not in flags


def quantize_int8(
    fp32_path: str | Path,
    out: str | Path,
    *,
    n_calibration: int = CALIBRATION_IMAGES,
    n_test: int | None = None,
    seed: int = 0,
    reduce_range: bool | None = None,
) -> Int8Report:
    """An int8 copy of an exported file by static QDQ quantisation, with its test accuracy next to float32.

    Weights are quantised per output channel; activation ranges are calibrated on ``n_calibration``
    training images (:class:`TrainingImagesReader`). ``reduce_range=None`` turns on 7-bit weights only
    on x86 CPUs without VNNI. ``n_test`` test images (None: all 10,000) score both files.
    """
    if type(n_calibration) is not int or not 1 <= n_calibration <= MAX_CALIBRATION:
        raise ValueError(f"n_calibration is the number of training images that calibrate int8, a whole number "
                         f"from 1 to {MAX_CALIBRATION:,}; got {n_calibration!r}")
    fp32_path, out = Path(fp32_path).expanduser(), check_output(out)
    fp32 = model_bytes(fp32_path)
    try:
        meta = read_metadata(fp32)
    except Exception as exc:  # a protobuf DecodeError for anything that is not ONNX
        raise ExportError(f"{fp32_path}: not an ONNX file ({first_line(exc)})") from None
    mean, std = float(meta.get("mean", 0.1307)), float(meta.get("std", 0.3081))
    reduce_range = cpu_lacks_vnni() if reduce_range is None else reduce_range
    reader = TrainingImagesReader(n_calibration, mean, std, seed)
    with files.work_folder("mnistlib-export") as work:  # onnxruntime's quantiser reads and writes named files
        (work / "fp32.onnx").write_bytes(fp32)
        int8 = _quantized(work, fp32_path.name, reader, reduce_range)
        x, labels = test_images(n_test, mean, std)
        fp32_pred, int8_pred = run_onnx(fp32, x).argmax(1), run_onnx(int8, x).argmax(1)
    _write_model(out, int8)
    return Int8Report(
        path=out, fp32_path=fp32_path, fp32_bytes=len(fp32), int8_bytes=len(int8),
        fp32_accuracy=float((fp32_pred == labels).mean()), int8_accuracy=float((int8_pred == labels).mean()),
        agreement=float((fp32_pred == int8_pred).mean()), n_test=len(labels),
        n_calibration=len(reader.indices), reduce_range=bool(reduce_range),
    )  # fmt: skip


def _quantized(work: Path, name: str, reader: TrainingImagesReader, reduce_range: bool) -> bytes:
    """``work/fp32.onnx`` quantised to int8 (static QDQ, per channel), its metadata carried over, as bytes."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, prepared, int8 = work / "fp32.onnx", work / "prepared.onnx", work / "int8.onnx"
    try:
        with quiet_output():
            quant_pre_process(str(fp32), str(prepared))
            quantize_static(
                str(prepared), str(int8), reader,
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
            )  # fmt: skip
    except Exception as exc:
        raise ExportError(f"{name} could not be quantised: {first_line(exc)}") from None
    _copy_metadata(fp32, int8)
    return int8.read_bytes()


def _copy_metadata(source: Path, target: Path) -> None:
    """Carry the ``mnistlib.*`` metadata over to the quantised file (the quantiser drops it)."""
    import onnx

    model = onnx.load(str(target))
    present = {p.key for p in model.metadata_props}
    for key, value in read_metadata(source).items():
        if META + key not in present:
            model.metadata_props.add(key=META + key, value=value)
    model.metadata_props.add(key=f"{META}quantised", value="int8 static QDQ, per channel, training-image calibration")
    onnx.save(model, str(target))
