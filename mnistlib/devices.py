"""Where the maths runs, and how repeatable it is: device choice, seeding, CPU threads, eval mode.

Every module of the series takes its device from here, so "which device is this model on?" has
one answer in the whole library.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["pick_device", "model_device", "seed_everything", "threads", "eval_mode", "synchronize"]


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def pick_device(preference: str | torch.device | None = None, verbose: bool = True) -> torch.device:
    """CUDA if available, else Apple MPS, else CPU — or the device asked for; prints the choice.

    A device that does not exist or is not usable here raises ``ValueError`` with one line saying so.
    """
    if preference is not None and str(preference) != "auto":
        try:
            device = torch.device(preference)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"not a device: {str(preference)!r} (use cpu, cuda, cuda:1 or mps)") from exc
        usable = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
        if device.type not in usable:
            raise ValueError(f"device {str(preference)!r} is not supported here (use cpu, cuda or mps)")
        if not usable[device.type]:
            raise ValueError(f"device {device.type!r} was asked for, but PyTorch cannot use it on this machine")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} was asked for, but there are {torch.cuda.device_count()} GPUs")
        reason = "as asked"
    elif torch.cuda.is_available():
        device, reason = torch.device("cuda"), f"GPU: {torch.cuda.get_device_name(0)}"
    elif _mps_available():
        device, reason = torch.device("mps"), "Apple GPU"
    else:
        device, reason = torch.device("cpu"), "no GPU found"
    if verbose:
        print(f"Using device: {device} ({reason})")
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for a model with neither)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's random generators (CPU and GPU)."""
    import numpy as np

    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Within the block torch uses ``n`` CPU threads (None: leave as is); the old count comes back after."""
    previous = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise ValueError(f"threads must be ≥ 1, got {n}")
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block every sub-module is in eval mode; afterwards each gets its own mode back."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so wall-clock times are true (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
