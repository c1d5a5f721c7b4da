"""How fast a model trains and predicts: the two measurements lesson 06 makes, one change at a time.

Training throughput runs the series' own loop (:func:`mnistlib.training.train_one_epoch`) over a
fixed number of batches, so what is timed is exactly what a training run does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from .devices import eval_mode
from .training import train_one_epoch

__all__ = ["images_per_second", "inference_speed", "take"]


def take(loader: Iterable, batches: int) -> Iterator:
    """The first ``batches`` batches of ``loader``, starting it again as often as needed."""
    done = 0
    while done < batches:
        for batch in loader:
            yield batch
            done += 1
            if done == batches:
                return


def _sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def images_per_second(model: nn.Module, loader: Iterable, *, steps: int = 50, warmup: int = 5, lr: float = 3e-4,
                      device: torch.device | str = "cpu") -> float:
    """Training throughput: images per second over ``steps`` Adam steps, after ``warmup`` untimed ones.

    Loading, augmenting and normalising the batches is timed too: it is part of every training step.
    """
    model.to(device)
    optimizer, loss_fn = torch.optim.Adam(model.parameters(), lr=lr), nn.CrossEntropyLoss()
    train_one_epoch(model, take(loader, warmup), optimizer, loss_fn, device)
    seen = []
    counted = ((x, y) for x, y in take(loader, steps) if not seen.append(len(y)))
    _sync(device)
    start = time.perf_counter()
    train_one_epoch(model, counted, optimizer, loss_fn, device)
    _sync(device)
    return sum(seen) / (time.perf_counter() - start)


@torch.inference_mode()
def inference_speed(model: nn.Module, batch_size: int, *, min_seconds: float = 1.0,
                    device: torch.device | str = "cpu", warmup: int = 2) -> float:
    """Prediction throughput in eval mode: images per second for batches of ``batch_size`` random images."""
    x = torch.randn(batch_size, 1, 28, 28, device=device)
    with eval_mode(model.to(device)):
        for _ in range(warmup):
            model(x)
        _sync(device)
        batches, start = 0, time.perf_counter()
        while batches == 0 or time.perf_counter() - start < min_seconds:
            model(x).argmax(1)
            batches += 1
            _sync(device)
    return batches * batch_size / (time.perf_counter() - start)
