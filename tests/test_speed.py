"""mnistlib.speed: throughput measured with the series' own loop, and threads restored."""

from __future__ import annotations

import pytest
import torch

from mnistlib import speed
from mnistlib.devices import threads
from mnistlib.models import get_model


def test_take_restarts_the_loader_until_it_has_enough() -> None:
    assert list(speed.take([1, 2, 3], 7)) == [1, 2, 3, 1, 2, 3, 1]
    assert list(speed.take([1, 2], 0)) == []


def test_images_per_second_trains_with_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    loader = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))] * 3
    batches = []
    real = speed.train_one_epoch
    monkeypatch.setattr(speed, "train_one_epoch", lambda model, data, *a: real(
        model, [b for b in data if not batches.append(len(b[1]))], *a))
    model = get_model("classic-bn")
    before = model.classifier[-1].weight.detach().clone()
    assert speed.images_per_second(model, loader, steps=4, warmup=2) > 0
    assert len(batches) == 6 and not torch.equal(before, model.classifier[-1].weight)


def test_inference_speed_leaves_the_mode_alone() -> None:
    model = get_model("record")
    model.train()
    assert speed.inference_speed(model, 4, min_seconds=0.0) > 0 and model.training


def test_threads_are_restored() -> None:
    before = torch.get_num_threads()
    with threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError), threads(0):
        pass
