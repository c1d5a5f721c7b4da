"""PyTorch float32 against ONNX float32 and ONNX int8, in one run, on one trained checkpoint.

For each: file size, test accuracy (10,000 images) and images/s with batches of 1 and of 1,000,
all on the CPU with the same number of threads. Prints a markdown table and stores the figures
under the key ``"export"`` of ``benchmarks/results.json`` (the other keys are kept).

    MNISTLIB_DATA=/path/to/data python benchmarks/export_speed.py                 # trains the checkpoint first
    python benchmarks/export_speed.py --checkpoint checkpoints/best_model_X.pth   # or measure yours
    python benchmarks/export_speed.py --smoke                                     # seconds: a sanity check

Without ``--checkpoint`` it trains one first with :data:`TRAIN_COMMAND` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import shlex
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import render
import torch
from machine import cpu_name
from store import RESULTS_PATH, save_result

from mnistlib import export as ex
from mnistlib.checkpoints import load_checkpoint, plain
from mnistlib.course.results import table
from mnistlib.devices import eval_mode
from mnistlib.speed import inference_images_per_second

KEY = "export"
TRAIN_ARGS = ["train", "--model", "batchnorm", "--epochs", "2", "--scheduler", "onecycle", "--lr", "5e-3",
              "--batch-size", "64"]
TRAIN_COMMAND = "python -m mnistlib " + " ".join(TRAIN_ARGS)
LABELS = {"pytorch": "PyTorch float32", "onnx": "ONNX float32", "int8": "ONNX int8"}


# ------------------------------------------------------------------------------------ helpers






def train_checkpoint(folder: Path) -> Path:
    """Train the benchmark's checkpoint with the command line (:data:`TRAIN_COMMAND`); returns the best file."""
    cmd = [sys.executable, "-m", "mnistlib", *TRAIN_ARGS, "--checkpoint-dir", str(folder), "--no-figures",
           "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return sorted(folder.glob("best_model_*.pth"))[-1]


def weights_bytes(model: torch.nn.Module) -> int:
    """Size of the model's weights saved alone with ``torch.save`` (a checkpoint adds optimizer state)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


# ------------------------------------------------------------------------------------ measuring


def speeds(runners: dict, x: np.ndarray, seconds: float, rounds: int) -> dict:
    """images/s of every runner at batch 1 and 1,000: the best of ``rounds`` interleaved timings.

    Interleaving gives every runner the same share of whatever else the CPU is doing, and the best
    round (like ``timeit``'s minimum time) is the closest to what the machine can do when it is free.
    """
    best = {k: {"images_per_s_batch_1": 0.0, "images_per_s_batch_1000": 0.0}
                                         for k in runners}
    for _ in range(rounds):
        for key, run in runners.items():
            for batch, data in ((1, x[:2000]), (1000, x)):
                rate = inference_images_per_second(run, data, batch, seconds=seconds, repeats=1)
                field = f"images_per_s_batch_{batch}"
                best[key][field] = max(best[key][field], rate)
    return best


def measure(checkpoint: Path, args: argparse.Namespace, folder: Path) -> dict:
    """Every figure of the table (each model at each thread count), plus the parity and int8 reports."""
    ckpt = load_checkpoint(checkpoint)
    fp32, int8 = folder / "model.onnx", folder / "model_int8.onnx"
    parity = ex.export_onnx(ckpt, fp32)
    quant = ex.quantize_int8(fp32, int8)
    x, labels = ex.test_images(None, ckpt.mean, ckpt.std)

    def pytorch(threads: int):
        def run(b: np.ndarray) -> np.ndarray:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                return ckpt.model(torch.from_numpy(b)).numpy()
        return run

    def onnx(path: Path, threads: int):
        session = ex.onnx_session(path, threads)
        return lambda b: session.run(None, {ex.INPUT_NAME: b})[0]

    makers = {"pytorch": pytorch, "onnx": lambda t: onnx(fp32, t), "int8": lambda t: onnx(int8, t)}
    runners = {(k, t): make(t) for t in args.threads for k, make in makers.items()}
    sizes = {"pytorch": weights_bytes(ckpt.model), "onnx": fp32.stat().st_size, "int8": int8.stat().st_size}
    with eval_mode(ckpt.model):
        accuracy = {k: float((np.concatenate([runners[k, args.threads[0]](x[i : i + 1000])
                                              for i in range(0, len(x), 1000)]).argmax(1) == labels).mean())
                    for k in makers}
        rates = speeds(runners, x, 0.2 if args.smoke else args.seconds, 1 if args.smoke else args.rounds)
    rows = {f"{k}@{t}": {"label": LABELS[k], "threads": t, "bytes": sizes[k], "test_accuracy": accuracy[k],
                         **rates[k, t]} for k, t in runners}
    return {"checkpoint": ckpt, "rows": rows, "parity": parity, "int8": quant}








def record(measured: dict, args: argparse.Namespace, source: str, started: float) -> dict:
    """The JSON-ready entry for results.json."""
    import onnxruntime

    ckpt, parity, quant = measured["checkpoint"], measured["parity"], measured["int8"]
    return plain({
        "rows": measured["rows"],
        "model": ckpt.name,
        "checkpoint": source,
        "best_val_acc": ckpt.best_val_acc,
        "parity": {"images": parity.n_images, "same_predictions": parity.same_predictions,
                   "max_abs_logit_diff": parity.max_abs_diff, "opset": parity.opset},
        "int8": {"calibration_images": quant.n_calibration, "test_images": quant.n_test,
                 "agreement_with_float32": quant.agreement, "reduce_range": quant.reduce_range,
                 "size_ratio": quant.size_ratio},
        "threads": args.threads,
        "timing": f"best of {args.rounds} interleaved rounds of {args.seconds:g} s per model and batch size",
        "load_average": [round(v, 2) for v in measured["load"]] if measured.get("load") else None,
        "mode": "smoke" if args.smoke else "full",
        "machine": f"{os.cpu_count()}-core CPU ({cpu_name()})",
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "mnistlib": version("mnistlib"),
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "seconds": round(time.perf_counter() - started, 1),
        "command": ("python benchmarks/export_speed.py " + shlex.join(sys.argv[1:])).strip(),
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help=f"measure this checkpoint [train one: {TRAIN_COMMAND}]")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="CPU thread counts for PyTorch and onnxruntime, each measured [1 2]")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each speed timing [1]")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds; the best counts [5]")
    parser.add_argument("--smoke", action="store_true", help="short timings, results.json untouched")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="results file [benchmarks/results.json]")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        if args.checkpoint:
            path, source = Path(args.checkpoint), f"given: {Path(args.checkpoint).name}"
        else:
            print(f"training the checkpoint: {TRAIN_COMMAND}", flush=True)
            path, source = train_checkpoint(Path(work)), f"trained by this run: {TRAIN_COMMAND}"
        load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # as the measuring starts
        measured = measure(path, args, Path(work))
    if load_before is not None:
        measured["load"] = (load_before, os.getloadavg()[0])
    entry = record(measured, args, source, started)
    print(f"\nCheckpoint: {source} (model {entry['model']}, validation accuracy {entry['best_val_acc']:.2%})")
    print(measured["parity"])
    print(measured["int8"], "\n")
    print(table(KEY, {KEY: entry}))
    if not args.smoke:
        save_result(KEY, entry, args.results)
        render.main(["--results", str(args.results)])  # README's export table, from the file just written
    return 0


if __name__ == "__main__":
    sys.exit(main())
