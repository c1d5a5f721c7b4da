"""Lesson 08: close the gap between MNIST and your handwriting — by fine-tuning, or by augmenting.

* :func:`fine_tune` — a copy of a trained model, trained a few more epochs at a low learning rate on
  your digits mixed with MNIST training images (the mix keeps it from forgetting MNIST).
* :func:`train_with_augmentation` — the other way: a new model trained from scratch on MNIST alone,
  with augmentation that imitates how hands differ (:class:`HandAugment`: stroke thickness and slant,
  on top of :class:`~mnistlib.data.Augment`'s rotation, shift, zoom and elastic bends).
* :func:`save_fine_tuned` — keep the result as a checkpoint the pad (and every lesson) can load.

Both training paths go through :func:`_train`, the single call into the training engine.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mnistlib.checkpoints import checkpoint_path, new_run_stamp, release_stamp, save_checkpoint
from mnistlib.data import Augment, DataBundle, TensorLoader, get_data, mnist_tensors, split_indices

__all__ = ["STRONGER_AUGMENT", "HandAugment", "fine_tune", "mixed_data", "save_fine_tuned",
           "train_with_augmentation"]


@dataclass(frozen=True, repr=False)
class HandAugment(Augment):
    """:class:`~mnistlib.data.Augment` plus the two ways hands differ most from MNIST's writers.

    ``thickness``: strokes made up to this many pixels thicker or thinner (at random, per image);
    ``slant``: a random shear up to this much either way (0.3: the top of the digit moves 0.3 of its
    height sideways relative to the bottom).
    """

    thickness: int = 0
    slant: float = 0.0

    def __repr__(self) -> str:
        return "Hand" + super().__repr__()  # only what differs from the defaults, as Augment prints

    @property
    def is_identity(self) -> bool:
        return super().is_identity and self.thickness == 0 and self.slant == 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Warp a float batch ``[B, 1, H, W]`` with pixels in 0–1 (background 0)."""
        if self.thickness:
            x = _thicken(x, self.thickness, generator)
        if self.slant:
            shear = (torch.rand(len(x), generator=generator) * 2 - 1).to(x) * self.slant
            theta = torch.zeros(len(x), 2, 3, dtype=x.dtype, device=x.device)
            theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 1] = 1, shear, 1
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        geometry = Augment(**{f.name: getattr(self, f.name) for f in fields(Augment)})
        return geometry(x, generator)


def _thicken(x: torch.Tensor, most: int, generator: torch.Generator | None) -> torch.Tensor:
    """Each image's strokes made thicker or thinner by a random 0..``most`` steps of about half a pixel a
    side: thicker = averaged with its 3×3 dilation (soft edges, like MNIST's); thinner = the faint edge
    pixels dropped and the rest darkened (``2x − 1``)."""
    steps = torch.randint(-most, most + 1, (len(x),), generator=generator).to(x.device)
    out, thick, thin = x.clone(), x, x
    for k in range(1, most + 1):
        thick = (thick + F.max_pool2d(thick, 3, stride=1, padding=1)) / 2
        thin = (2 * thin - 1).clamp(0, 1)
        out[steps == k], out[steps == -k] = thick[steps == k], thin[steps == -k]
    return out


#: Augmentation for training from scratch towards handwriting that is not MNIST's. Thickness and slant
#: only: on the synthetic writer (2 epochs, all 55,000 images, one seed) they scored best of five
#: augmentations, a little above none (within the noise of 200 digits), while adding elastic bends or
#: rotation, shift and zoom as well clearly lowered the accuracy (benchmarks/handwriting.py; figures in
#: benchmarks/results.json under "handwriting").
STRONGER_AUGMENT = HandAugment(thickness=1, slant=0.3)


def _fit(model: nn.Module, data: DataBundle, *, epochs: int, lr: float, seed: int,
         device: str | torch.device | None = None, verbose: bool = False):
    """Fine-tuning is the series' one loop run on a trained model: Adam at a low constant learning rate,
    with the callbacks any run gets (Ctrl-C, timing, a progress bar), saving nothing. Returns the History."""
    from mnistlib.devices import seed_everything
    from mnistlib.recipes import RUN_SETTINGS, Recipe, default_callbacks, make_optimizer
    from mnistlib.training import fit

    seed_everything(seed)
    data.train.epoch = 0  # the same shuffles every time
    recipe = Recipe("fine-tune", "fine-tuning on your digits", getattr(model, "registry_name", "custom"),
                    epochs=epochs, lr=lr)
    optimizer = make_optimizer("adam", model.parameters(), lr)
    callbacks = default_callbacks(recipe, RUN_SETTINGS | {"save": False, "verbose": verbose}, optimizer,
                                  len(data.train))
    return fit(model, data, optimizer, epochs=epochs, device=device, callbacks=callbacks)


def mixed_data(images: torch.Tensor, labels: torch.Tensor, *, mean: float, std: float, mnist_per_own: int = 10,
               repeat: int = 4, batch_size: int = 64, augment: Augment | str = "rotate10-shift2",
               seed: int = 0) -> DataBundle:
    """Training batches of your digits (uint8 [N, 28, 28], each repeated ``repeat`` times) mixed with
    ``mnist_per_own`` × N random MNIST training images; validation is MNIST's 5,000 validation images."""
    if images.dtype != torch.uint8 or images.ndim != 3 or len(images) != len(labels) or not len(images):
        raise ValueError("images must be a non-empty uint8 tensor [N, 28, 28] with one label each")
    mnist, mnist_labels = mnist_tensors(True)
    train_idx, val_idx = split_indices(len(mnist), 5_000, seed=0)
    gen = torch.Generator().manual_seed(seed)
    pick = train_idx[torch.randperm(len(train_idx), generator=gen)[: mnist_per_own * len(images)]]
    x = torch.cat([images.repeat(repeat, 1, 1), mnist[pick]])
    y = torch.cat([torch.as_tensor(labels, dtype=torch.int64).repeat(repeat), mnist_labels[pick]])
    common = dict(mean=mean, std=std)
    val = TensorLoader(mnist[val_idx], mnist_labels[val_idx], 1_000, shuffle=False, **common)
    train = TensorLoader(x, y, batch_size, shuffle=True, augment=augment, seed=seed, **common)
    return DataBundle(train=train, val=val, test=val, mean=mean, std=std,
                      augment=augment if isinstance(augment, str) else "custom")


def fine_tune(checkpoint, images: torch.Tensor, labels: torch.Tensor, *, epochs: int = 3, lr: float = 5e-4,
              seed: int = 0, device: str | torch.device | None = None, verbose: bool = False,
              **mix) -> nn.Module:
    """A copy of ``checkpoint``'s model fine-tuned on your digits mixed with MNIST (see :func:`mixed_data`);
    the checkpoint's own model is left untouched. Few epochs, low learning rate: adjust, not relearn."""
    model = copy.deepcopy(checkpoint.model)
    data = mixed_data(images, labels, mean=checkpoint.mean, std=checkpoint.std, seed=seed, **mix)
    _fit(model, data, epochs=epochs, lr=lr, seed=seed, device=device, verbose=verbose)
    return model.cpu().eval()


def train_with_augmentation(name: str = "batchnorm", *, augment: Augment = STRONGER_AUGMENT, epochs: int = 2,
                            subset: int | None = None, lr: float = 5e-3, seed: int = 0,
                            device: str | torch.device | None = None,
                            verbose: bool = False) -> tuple[nn.Module, DataBundle]:
    """A new model ``name`` trained from scratch on MNIST with ``augment`` (OneCycle Adam, batches of 64);
    returns the model and its data (whose ``mean``/``std`` it was trained with)."""
    from mnistlib.recipes import Recipe, train

    data = get_data(batch_size=64, augment=augment, subset=subset, seed=seed)
    recipe = Recipe("stronger-augment", f"{name} with {augment!r}", name, epochs=epochs, batch_size=64, lr=lr,
                    scheduler="onecycle")
    run = train(recipe, data, save=False, seed=seed, device=device, verbose=verbose)
    return run.model.cpu().eval(), data


def save_fine_tuned(model: nn.Module, checkpoint, *, history: dict | None = None,
                    folder: str | Path | None = None) -> Path:
    """Save a fine-tuned copy of ``checkpoint``'s model as ``finetuned_model_<stamp>.pth`` (same model
    name, options and normalisation; ``history`` e.g. ``{"val_acc": [0.98]}``). Never picked as "best"."""
    stamp = new_run_stamp(folder)
    try:
        path = checkpoint_path("finetuned", stamp, folder)
        return save_checkpoint(path, model, name=checkpoint.name, options=checkpoint.options,
                               hparams={"fine_tuned_from": str(checkpoint.path or checkpoint.name)},
                               history=history or {}, mean=checkpoint.mean, std=checkpoint.std)
    finally:
        release_stamp(stamp, folder)
