"""How fast a model trains and predicts: the two measurements lesson 06 makes, one change at a time.

Training throughput runs the series' own loop (:func:`mnistlib.training.train_one_epoch`) over a
fixed number of batches, so what is timed is exactly what a training run does.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from .devices import synchronize
from .training import train_one_epoch

__all__ = ["training_images_per_second", "inference_images_per_second", "take"]


def take(loader: Iterable, batches: int) -> Iterator:
    """The first ``batches`` batches of ``loader``, starting it again as often as needed."""
    done = 0
    while done < batches:
        for batch in loader:
            yield batch
            done += 1
            if done == batches:
                return


def training_images_per_second(model: nn.Module, loader: Iterable, *, steps: int = 50, warmup: int = 5,
                               lr: float = 3e-4, device: torch.device | str = "cpu") -> float:
    """Training throughput: images per second over ``steps`` Adam steps, after ``warmup`` untimed ones.

    Loading, augmenting and normalising the batches is timed too: it is part of every training step.
    """
    model.to(device)
    optimizer, loss_fn = torch.optim.Adam(model.parameters(), lr=lr), nn.CrossEntropyLoss()
    train_one_epoch(model, take(loader, warmup), optimizer, loss_fn, device)
    seen = []
    counted = ((x, y) for x, y in take(loader, steps) if not seen.append(len(y)))
    synchronize(device)
    start = time.perf_counter()
    train_one_epoch(model, counted, optimizer, loss_fn, device)
    synchronize(device)
    return sum(seen) / (time.perf_counter() - start)


def inference_images_per_second(predict: Callable[[Any], Any], x: Any, batch: int, *, seconds: float = 1.0,
                                repeats: int = 3, device: torch.device | str = "cpu") -> float:
    """Prediction throughput: the median images/s of ``predict(batch of x)`` over ``repeats`` timings of about
    ``seconds`` each, after a warm-up. ``predict`` is any callable: a model in eval mode, an ONNX session's run."""
    batches = [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)] or [x]
    for b in batches[:3]:
        predict(b)
    rates = []
    for _ in range(repeats):
        n, i = 0, 0
        synchronize(device)
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds or n == 0:
            predict(batches[i % len(batches)])
            synchronize(device)
            n, i = n + len(batches[i % len(batches)]), i + 1
        rates.append(n / elapsed)
    return float(statistics.median(rates))
