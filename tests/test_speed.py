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


def test_training_images_per_second_trains_with_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    loader = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))] * 3
    batches = []
    real = speed.train_one_epoch
    monkeypatch.setattr(speed, "train_one_epoch", lambda model, data, *a: real(
        model, [b for b in data if not batches.append(len(b[1]))], *a))
    model = get_model("classic-bn")
    before = model.classifier[-1].weight.detach().clone()
    assert speed.training_images_per_second(model, loader, steps=4, warmup=2) > 0
    assert len(batches) == 6 and not torch.equal(before, model.classifier[-1].weight)


def test_inference_images_per_second_times_whole_batches_of_any_callable() -> None:
    seen: list[int] = []
    rate = speed.inference_images_per_second(lambda b: seen.append(len(b)), torch.zeros(10, 1, 28, 28), 4,
                                             seconds=0.0, repeats=2)
    assert rate > 0 and seen and set(seen) == {4}  # two whole batches of 4 from 10 images, never a partial one


def test_threads_are_restored() -> None:
    before = torch.get_num_threads()
    with threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError), threads(0):
        pass
