"""Small models trained in seconds for tests that need a model that reads digits (not a good one).

A plain loop over the first ``n`` images of the training split, so these tests do not depend on
the training engine's options.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mnistlib.checkpoints import save_checkpoint
from mnistlib.data import mnist_tensors, split_indices
from mnistlib.devices import seed_everything
from mnistlib.models import get_model

MEAN, STD = 0.1307, 0.3081


def tiny_model() -> nn.Module:
    """A seeded, untrained model mapping [N,1,28,28] → [N,10]: enough to test the plumbing."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()


class Fixed(nn.Module):
    """A model that always answers with the given probabilities."""

    def __init__(self, probs: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(probs).log())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


def train_small(name: str = "batchnorm", n: int = 5_000, epochs: int = 1, batch: int = 64, lr: float = 3e-3,
                seed: int = 0) -> nn.Module:
    """Model ``name`` trained with Adam and a one-cycle schedule on ``n`` training images; eval mode."""
    seed_everything(seed)
    images, labels = mnist_tensors(train=True)
    train_idx, _ = split_indices(len(images))
    idx = train_idx[:n]
    x = ((images[idx].float() / 255 - MEAN) / STD).unsqueeze(1)
    y = labels[idx]
    model = get_model(name)
    steps = epochs * -(-n // batch)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            b = perm[i : i + batch]
            opt.zero_grad()
            F.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
            sched.step()
    return model.eval()


def save_small(path: Path, model: nn.Module) -> Path:
    """Save ``model`` as an mnistlib checkpoint with the standard MNIST constants."""
    return save_checkpoint(path, model, mean=MEAN, std=STD, history={})
