"""The ``export`` subcommand of ``python -m mnistlib``: ONNX, int8, and the page that runs in a browser.

The work is :mod:`mnistlib.export` (the float32 file, checked against PyTorch; the int8 copy) and
:mod:`mnistlib.apps.webpage` (the static page); this module is the command line around them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnistlib._support import files
from mnistlib.checkpoints import CheckpointError, load_checkpoint
from mnistlib.export import (
    CALIBRATION_IMAGES,
    MAX_CALIBRATION,
    PARITY_IMAGES,
    ExportError,
    check_output,
    export_onnx,
    quantize_int8,
)

from .webpage import WebPageError, build_site, check_site_folder, serve_hint

__all__ = ["add_export_command", "run_export_command"]


def _calibration_count(text: str) -> int:
    """``--calibration-images``: a whole number of training images, 1 to :data:`MAX_CALIBRATION`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= MAX_CALIBRATION:
        raise argparse.ArgumentTypeError(f"from 1 to {MAX_CALIBRATION:,} (the training images), got {value}")
    return value


def add_export_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``export`` to a CLI's subcommands; returns its parser (so more outputs can be added)."""
    ex = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX (checked against PyTorch), optionally int8 too",
        description="Write the checkpoint's model as one ONNX file with a dynamic batch dimension, which any "
        "ONNX runtime can run without PyTorch or mnistlib. It is kept only if onnxruntime and PyTorch "
        f"predict the same digit for {PARITY_IMAGES:,} test images; the largest logit difference is printed. "
        "--int8 also writes a smaller int8 copy (static quantisation calibrated on training images) and "
        "prints both test accuracies.",
    )
    ex.add_argument("checkpoint", help="a .pth file written by train")
    ex.add_argument("--onnx", metavar="OUT.onnx", help="where to write the float32 ONNX model")
    ex.add_argument("--int8", metavar="OUT_INT8.onnx", help="also write an int8 copy here")
    ex.add_argument("--calibration-images", type=_calibration_count, default=CALIBRATION_IMAGES, metavar="N",
                    help=f"training images used to calibrate int8, 1 to {MAX_CALIBRATION:,} [{CALIBRATION_IMAGES:,}]")
    ex.add_argument("--web", metavar="DIR", help="also write a static drawing page that runs the model in any "
                    "browser (serve DIR with: python -m http.server -d DIR)")
    ex.add_argument("--web-model", choices=("fp32", "int8"), default="fp32",
                    help="which model the page runs: float32, or the smaller int8 copy [fp32]")
    ex.set_defaults(func=run_export_command)
    return ex


def run_export_command(args: argparse.Namespace) -> int:
    """The ``export`` subcommand: 0 when everything was written, 2 with one ``error:`` line otherwise."""
    web = getattr(args, "web", None)
    if not (args.onnx or args.int8 or web):
        print("error: export needs --onnx OUT.onnx (and optionally --int8 OUT_INT8.onnx)", file=sys.stderr)
        return 2
    try:
        _check_outputs(args)  # before the minutes of work, not after
        with files.work_folder("mnistlib-export") as work:
            _export(args, work)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the scratch folder itself: a full or read-only temporary folder
        print(f"error: {exc.filename or 'export'}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before exporting, outputs that could never be written (one :class:`ExportError` line)."""
    for path in (args.onnx, args.int8):
        if path:
            check_output(path)
    if getattr(args, "web", None):
        try:
            check_site_folder(args.web)
        except WebPageError as exc:
            raise ExportError(f"--web {args.web}: {exc}") from None


def _export(args: argparse.Namespace, work: Path) -> None:
    """The float32 file (always made and checked, kept with ``--onnx``), the int8 copy, the page."""
    fp32 = Path(args.onnx) if args.onnx else work / "model.onnx"
    report = export_onnx(args.checkpoint, fp32)
    print(report if args.onnx else f"float32 export checked (not kept): {report.parity}")
    web = getattr(args, "web", None)
    int8 = Path(args.int8) if args.int8 else work / "model-int8.onnx"
    if args.int8 or (web and getattr(args, "web_model", "fp32") == "int8"):
        print(quantize_int8(fp32, int8, n_calibration=args.calibration_images))
    if web:
        _write_web(args, fp32 if args.web_model == "fp32" else int8)


def _write_web(args: argparse.Namespace, onnx_file: Path) -> None:
    """The static page of :mod:`mnistlib.apps.webpage` with ``onnx_file`` and the checkpoint's normalisation."""
    try:
        ckpt = load_checkpoint(args.checkpoint)
        site = build_site(onnx_file, args.web, mean=ckpt.mean, std=ckpt.std)
    except (CheckpointError, WebPageError, OSError) as exc:
        raise ExportError(f"--web {args.web}: {exc}") from None
    print(f"wrote the drawing page to {site}. {serve_hint(site)}")
