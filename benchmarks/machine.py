"""Where and under what load a benchmark ran: the CPU, the threads, a model's one-line description.

Every figure in ``benchmarks/results.json`` carries :func:`conditions` — the machine, torch's
version and threads, the load average before and after, the date and the command — because a
timing means little without them (on a shared 2-core machine, other jobs can halve a throughput).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
from torch import nn

from mnistlib.models import count_parameters

__all__ = ["cpu_name", "cpu_threads_available", "load_average", "describe_model", "machine", "Conditions"]


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def cpu_threads_available() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average (how busy the machine was), or None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def describe_model(model: nn.Module) -> str:
    """One line: registry name, options, parameters and memory layout, e.g. ``record (17,826 parameters)``."""
    name = getattr(model, "registry_name", type(model).__name__)
    options = getattr(model, "registry_options", {}) or {}
    shown = ", ".join(f"{k}={v}" for k, v in options.items())
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1), None)
    layout = conv is not None and conv.weight.is_contiguous(memory_format=torch.channels_last)
    extras = [s for s in (shown, f"{count_parameters(model):,} parameters", "channels-last" * layout) if s]
    return f"{name} ({'; '.join(extras)})"


def machine(device: str | torch.device = "cpu") -> dict:
    """The CPU (and GPU), the cores this process may use, torch's version and its threads."""
    device = str(device)
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return {"cpu": cpu_name(), "cores": cpu_threads_available(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": device, "gpu": gpu}


def _niceness() -> int:
    try:
        return os.nice(0)
    except (AttributeError, OSError):
        return 0


class Conditions:
    """Started when a measurement starts; :meth:`finish` returns what results.json records beside it."""

    def __init__(self, script: str, argv: list[str] | None, device: str | torch.device = "cpu") -> None:
        self.device = device
        args = sys.argv[1:] if argv is None else argv
        omp = os.environ.get("OMP_NUM_THREADS")
        nice = _niceness()
        prefix = (f"OMP_NUM_THREADS={omp} " if omp else "") + (f"nice -n {nice} " if nice else "")
        self.command = f"{prefix}python benchmarks/{script} {shlex.join(args)}".strip()
        self.load_before, self.start = load_average(), time.perf_counter()

    def finish(self) -> dict:
        """The conditions of the measurement just ended."""
        return {"command": self.command, "machine": machine(self.device),
                "date": dt.datetime.now().astimezone().isoformat(timespec="minutes"),
                "load_before": self.load_before, "load_after": load_average(),
                "minutes": round((time.perf_counter() - self.start) / 60, 1)}
