"""The ``export`` subcommand of ``python -m mnistlib``: ONNX, int8, and the page that runs in a browser.

The work is :mod:`mnistlib.export` (the float32 file, checked against PyTorch; the int8 copy) and
:mod:`mnistlib.apps.webpage` (the static page); this module is the command line around them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from mnistlib.checkpoints import CheckpointError, load_checkpoint
from mnistlib.export import CALIBRATION_IMAGES, PARITY_IMAGES, ExportError, export_onnx, quantize_int8

from .webpage import WebPageError, build_site, serve_hint

__all__ = ["add_export_command", "run_export_command"]


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
    ex.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES, metavar="N",
                    help=f"training images used to calibrate int8 [{CALIBRATION_IMAGES:,}]")
    ex.add_argument("--web", metavar="DIR", help="also write a static drawing page that runs the model in any "
                    "browser (serve DIR with: python -m http.server -d DIR)")
    ex.add_argument("--web-model", choices=("fp32", "int8"), default="fp32",
                    help="which model the page runs: float32, or the smaller int8 copy [fp32]")
    ex.set_defaults(func=run_export_command)
    return ex


def run_export_command(args: argparse.Namespace) -> int:
    """The ``export`` subcommand: 0 when everything was written, 2 with one ``error:`` line otherwise."""
    if not (args.onnx or args.int8 or getattr(args, "web", None)):
        print("error: export needs --onnx OUT.onnx (and optionally --int8 OUT_INT8.onnx)", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory() as work:
            fp32 = Path(args.onnx) if args.onnx else Path(work) / "model.onnx"  # a float32 file is always checked
            report = export_onnx(args.checkpoint, fp32)
            print(report if args.onnx else f"float32 export checked (not kept): {report.parity}")
            int8 = Path(args.int8) if args.int8 else Path(work) / "model-int8.onnx"
            if args.int8 or getattr(args, "web_model", "fp32") == "int8" and getattr(args, "web", None):
                print(quantize_int8(fp32, int8, n_calibration=max(1, args.calibration_images)))
            if getattr(args, "web", None):
                _write_web(args, fp32 if args.web_model == "fp32" else int8)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _write_web(args: argparse.Namespace, onnx_file: Path) -> None:
    """The static page of :mod:`mnistlib.apps.webpage` with ``onnx_file`` and the checkpoint's normalisation."""
    try:
        ckpt = load_checkpoint(args.checkpoint)
        site = build_site(onnx_file, args.web, mean=ckpt.mean, std=ckpt.std)
    except (CheckpointError, WebPageError, OSError) as exc:
        raise ExportError(f"--web {args.web}: {exc}") from None
    print(f"wrote the drawing page to {site}. {serve_hint(site)}")
