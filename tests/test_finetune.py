"""Lesson 08's two ways to close the gap to your handwriting: fine-tuning, and stronger augmentation."""

from __future__ import annotations

import types

import pytest
import torch

from mnistlib.data import TensorLoader, get_augment
from mnistlib.handwriting.finetune import STRONGER_AUGMENT, HandAugment, fine_tune, mixed_data, save_fine_tuned

#: Fine-tuning may cost at most this much MNIST validation accuracy (a fraction: one percentage point).
FORGET_MARGIN = 0.01


def bar_image() -> torch.Tensor:
    """A batch of one: a vertical bar, 2 px wide with gray edges, in the middle of 28×28 (values in 0–1)."""
    x = torch.zeros(1, 1, 28, 28)
    x[..., 4:24, 13:15] = 1.0
    x[..., 4:24, 12] = x[..., 4:24, 15] = 0.4
    return x


def test_thickness_thickens_or_thins() -> None:
    x = bar_image().repeat(64, 1, 1, 1)
    out = HandAugment(thickness=1)(x, torch.Generator().manual_seed(0))
    ink = out.flatten(1).sum(1)
    assert (ink > x[0].sum()).any() and (ink < x[0].sum()).any() and (ink == x[0].sum()).any()
    assert out.min() >= 0 and out.max() <= 1


def test_slant_shears_the_top_against_the_bottom() -> None:
    x = bar_image().repeat(32, 1, 1, 1)
    out = HandAugment(slant=0.4)(x, torch.Generator().manual_seed(1))
    cols = torch.arange(28.0)

    def centre(rows: slice) -> torch.Tensor:
        part = out[:, 0, rows]
        return (part.sum(1) * cols).sum(1) / part.sum((1, 2))

    lean = centre(slice(4, 8)) - centre(slice(20, 24))
    assert lean.abs().max() > 3 and (lean > 0).any() and (lean < 0).any()


def test_hand_augment_is_an_augment_the_loaders_accept() -> None:
    assert HandAugment().is_identity and not HandAugment(thickness=1).is_identity
    assert repr(HandAugment(rotation=5, slant=0.3)) == "HandAugment(rotation=5, slant=0.3)"
    assert get_augment(STRONGER_AUGMENT) is STRONGER_AUGMENT
    images = (bar_image()[:, 0] * 255).to(torch.uint8).repeat(8, 1, 1)
    x, y = next(iter(TensorLoader(images, torch.zeros(8, dtype=torch.int64), 8, augment=STRONGER_AUGMENT)))
    assert x.shape == (8, 1, 28, 28) and torch.isfinite(x).all()


@pytest.fixture
def mnist_env(data_root, monkeypatch):
    monkeypatch.setenv("MNISTLIB_DATA", str(data_root))
    return data_root


def test_mixed_data_mixes_your_digits_with_mnist(mnist_env) -> None:
    mine = torch.full((5, 28, 28), 7, dtype=torch.uint8)
    labels = torch.tensor([1, 2, 3, 4, 5])
    data = mixed_data(mine, labels, mean=0.1, std=0.3, mnist_per_own=3, repeat=2, augment="none")
    assert data.train.dataset_size == 5 * 2 + 5 * 3 and len(data.val.images) == 5_000
    assert (data.train.images == 7).all(dim=(1, 2)).sum() == 10
    assert data.train.labels[:10].tolist() == [1, 2, 3, 4, 5] * 2
    with pytest.raises(ValueError, match="uint8"):
        mixed_data(mine.float(), labels, mean=0.1, std=0.3)


def test_fine_tuning_reads_your_digits_better_without_forgetting_mnist(mnist_env, tmp_path) -> None:
    """Seeded, on the CPU: a small model, synthetic handwriting, fine-tuned with the defaults."""
    from mnistlib.handwriting.store import HandwritingDataset, HandwritingStore, stratified_split
    from mnistlib.handwriting.synthetic import make_synthetic_digits
    from mnistlib.recipes import Recipe, train
    from mnistlib.training import evaluate

    data = __import__("mnistlib.data", fromlist=["get_data"]).get_data(batch_size=64, subset=3000, seed=0)
    recipe = Recipe("base", "a small base model", "batchnorm", epochs=1, batch_size=64, lr=5e-3, scheduler="onecycle")
    base = train(recipe, data, save=False, seed=0, device="cpu", verbose=False).model
    ckpt = types.SimpleNamespace(model=base, mean=data.mean, std=data.std)

    store = HandwritingStore(tmp_path / "my_digits")
    make_synthetic_digits(store, per_digit=10, seed=0)
    mine = HandwritingDataset(store, mean=data.mean, std=data.std)
    tune, held = stratified_split(mine.targets, 0.3, seed=0)

    def held_out_accuracy(model: torch.nn.Module) -> float:
        x = torch.stack([mine[i][0] for i in held])
        with torch.no_grad():
            return (model.eval()(x).argmax(1) == mine.targets[held]).float().mean().item()

    weights = {k: v.clone() for k, v in base.state_dict().items()}
    before = held_out_accuracy(base), evaluate(base, data.val)[1]
    tuned = fine_tune(ckpt, mine.uint8_images()[tune], mine.targets[tune], device="cpu")
    after = held_out_accuracy(tuned), evaluate(tuned, data.val)[1]

    assert after[0] >= before[0] + 0.1, (before, after)  # your held-out digits: clearly better
    assert after[1] >= before[1] - FORGET_MARGIN, (before, after)  # MNIST: not forgotten
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in weights.items())  # the original is kept


def test_a_fine_tuned_model_is_saved_as_its_own_kind(tmp_path) -> None:
    from mnistlib.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
    from mnistlib.models import get_model

    torch.manual_seed(0)
    base_path = save_checkpoint(tmp_path / "best_model_20240101_000000.pth", get_model("classic"),
                                history={"val_acc": [0.9]}, mean=0.2, std=0.4)
    base = load_checkpoint(base_path)
    tuned = get_model("classic")
    path = save_fine_tuned(tuned, base, history={"val_acc": [0.95]}, folder=tmp_path)
    assert path.name.startswith("finetuned_model_") and latest_checkpoint("best", tmp_path) == base_path
    again = load_checkpoint(path)
    assert (again.name, again.mean, again.std, again.best_val_acc) == ("classic", 0.2, 0.4, 0.95)
    assert all(torch.equal(v, tuned.state_dict()[k]) for k, v in again.model.state_dict().items())
    assert not list(tmp_path.glob(".*"))  # no lock or temporary file left
