"""Tests for mnistlib.evaluation: counts, mistakes, pictures, and the recipe comparison."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import math

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from mnistlib import compare
from mnistlib import evaluation as ev
from mnistlib.data import get_data
from mnistlib.models import get_model


@pytest.fixture
def mnist(data_root, monkeypatch):
    """Point mnistlib at the real MNIST files (skips when there are none)."""
    monkeypatch.setenv("MNISTLIB_DATA", str(data_root))
    return data_root


# A hand-worked example: 10 images of digits 0, 1 and 2.
LABELS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
PREDS = torch.tensor([0, 0, 0, 1, 1, 2, 1, 2, 0, 2])
#   true 0: 3 of 4 right (one called 1); true 1: 2 of 3 (one called 2); true 2: 2 of 3 (one called 0)


def fake_predictions() -> ev.Predictions:
    """Predictions with known probabilities: four mistakes of different confidence."""
    labels = torch.tensor([3, 5, 8, 4, 9, 7, 1])
    preds = torch.tensor([3, 3, 3, 9, 4, 7, 7])
    conf = torch.tensor([0.99, 0.60, 0.95, 0.80, 0.55, 0.90, 0.99])
    probs = torch.full((7, 10), 0.0)
    for i, (p, c) in enumerate(zip(preds.tolist(), conf.tolist(), strict=True)):
        probs[i] = (1 - c) / 9
        probs[i, p] = c
    images = torch.arange(7).float().view(7, 1, 1).expand(7, 28, 28).clone()
    return ev.Predictions(probs=probs, preds=preds, labels=labels, images=images)


# ------------------------------------------------------------------------------------- counts


def test_confusion_matrix_hand_example():
    cm = ev.confusion_matrix(PREDS, LABELS)
    assert cm.shape == (10, 10) and cm.dtype == torch.int64
    assert int(cm.sum()) == len(LABELS)
    assert cm[:3, :3].tolist() == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    assert int(cm.diagonal().sum()) == int((PREDS == LABELS).sum())
    assert cm.sum(dim=1)[:3].tolist() == [4, 3, 3]  # rows are the true digits


def test_per_class_accuracy_hand_example():
    acc = ev.per_class_accuracy(PREDS, LABELS)
    assert acc.shape == (10,)
    assert acc[:3].tolist() == pytest.approx([3 / 4, 2 / 3, 2 / 3])
    assert all(math.isnan(v) for v in acc[3:].tolist())  # digits with no examples
    assert ev.accuracy(PREDS, LABELS) == pytest.approx(7 / 10)


def test_confusion_matrix_random_sums_and_diagonal():
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 10, (1000,), generator=g)
    preds = torch.where(torch.rand(1000, generator=g) < 0.8, labels, torch.randint(0, 10, (1000,), generator=g))
    cm = ev.confusion_matrix(preds, labels)
    assert int(cm.sum()) == 1000
    for d in range(10):
        assert int(cm[d, d]) == int(((preds == d) & (labels == d)).sum())
        assert int(cm[d].sum()) == int((labels == d).sum())
        assert int(cm[:, d].sum()) == int((preds == d).sum())
    acc = ev.per_class_accuracy(preds, labels)
    assert acc.tolist() == pytest.approx((cm.diagonal().double() / cm.sum(1)).tolist())


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="labels"):
        ev.confusion_matrix(torch.tensor([1, 2]), torch.tensor([1]))
    with pytest.raises(ValueError, match="0–9"):
        ev.confusion_matrix(torch.tensor([10]), torch.tensor([1]))


def test_top_confusions():
    cm = torch.zeros(10, 10, dtype=torch.int64)
    cm[4, 9], cm[9, 4], cm[3, 5], cm[7, 7] = 12, 5, 8, 900
    assert ev.top_confusions(cm, 5) == [(4, 9, 12), (3, 5, 8), (9, 4, 5)]


# ------------------------------------------------------------------------------------- mistakes


def test_most_confident_mistakes_sorted_and_all_wrong():
    p = fake_predictions()
    mistakes = ev.most_confident_mistakes(p, k=10)
    assert len(mistakes) == int((~p.correct).sum()) == 5
    assert all(m.true != m.pred for m in mistakes)
    probs = [m.prob for m in mistakes]
    assert probs == sorted(probs, reverse=True)
    assert [m.index for m in mistakes] == [6, 2, 3, 1, 4]
    assert mistakes[0].prob == pytest.approx(0.99) and mistakes[0].true == 1 and mistakes[0].pred == 7
    assert mistakes[0].image is not None and float(mistakes[0].image[0, 0]) == 6.0
    assert len(ev.most_confident_mistakes(p, k=2)) == 2


def test_predict_all_on_a_real_model(mnist):
    data = get_data(batch_size=64, subset=256, val_size=500)
    torch.manual_seed(0)
    model = get_model("one-by-one")
    model.train()
    p = ev.predict_all(model, data.val, "cpu")
    assert model.training  # mode restored
    assert p.probs.shape == (500, 10) and p.preds.shape == p.labels.shape == (500,)
    assert torch.allclose(p.probs.sum(1), torch.ones(500), atol=1e-5)
    assert p.images.shape == (500, 28, 28)
    assert p.accuracy == pytest.approx(float((p.preds == p.labels).float().mean()))
    mistakes = ev.most_confident_mistakes(p, k=8)
    assert all(m.true != m.pred for m in mistakes)
    assert all(a.prob >= b.prob for a, b in zip(mistakes, mistakes[1:], strict=False))
    assert ev.predict_all(model, data.val, keep_images=False).images is None


# ------------------------------------------------------------------------------------- figures


def test_plot_functions_return_figures():
    p = fake_predictions()
    cm = ev.confusion_matrix(p.preds, p.labels)
    assert isinstance(ev.plot_confusion(cm), Figure)
    assert isinstance(ev.plot_per_class_accuracy(ev.per_class_accuracy(p.preds, p.labels)), Figure)
    fig = ev.plot_mistakes(ev.most_confident_mistakes(p, k=4))
    assert isinstance(fig, Figure)
    assert "1 → 7" in [ax.get_title().split("\n")[0] for ax in fig.axes]
    assert isinstance(ev.plot_predictions(p, n=7, ncols=4), Figure)
    with pytest.raises(ValueError):
        ev.plot_mistakes([])


# ------------------------------------------------------------------------------------- sealed test set


def test_sealed_loader_refuses_until_unsealed():
    sealed = ev.SealedLoader([(torch.zeros(1), torch.zeros(1))])
    with pytest.raises(ev.TestSetSealedError):
        iter(sealed)
    with sealed.unsealed() as loader:
        assert len(list(loader)) == 1
    assert sealed.reads == 1 and sealed.sealed
    with pytest.raises(ev.TestSetSealedError):
        list(sealed)


# ------------------------------------------------------------------------------------- the comparison


@pytest.fixture
def training():
    """mnistlib.training, or skip while it is not there yet."""
    return pytest.importorskip("mnistlib.training")


def test_compare_recipes_tiny(training, mnist, tmp_path):
    rows = compare.compare_recipes(["digit-recognizer", "one-by-one"], epochs=1, subset=256, val_size=500,
                              device="cpu", checkpoint_dir=tmp_path, log=None)
    assert [r.recipe for r in rows] == ["digit-recognizer", "one-by-one"]
    for r in rows:
        assert r.params == sum(p.numel() for p in get_model(r.model).parameters())
        assert r.epochs == r.epochs_run == 1 and r.train_images == 256
        assert r.train_seconds > 0
        assert 0.0 <= r.val_acc <= 1.0 and 0.0 <= r.test_acc <= 1.0
        assert r.claimed_accuracy
    assert rows[0].augment == "rotate5" and rows[0].batch_size == 128 and rows[0].lr == 3e-4  # its own recipe
    assert rows[1].params == 24_210 and rows[1].augment == "crop-rotate15" and rows[1].batch_size == 64
    assert all((tmp_path / r.recipe).is_dir() for r in rows)  # checkpoints chosen and saved per recipe
    table = compare.recipe_table(rows, part="measured")
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| recipe")
    assert "24,210" in table and "the 1×1-convolution net" in table


def test_compare_recipes_keeps_the_test_set_out_of_training(training, mnist, monkeypatch, tmp_path):
    """A training loop that peeks at the test set fails: the test loader is sealed during fit."""
    seen = {}

    def peeking_fit(model, data, *args, **kwargs):
        seen["test_type"] = type(data.test)
        next(iter(data.test))

    monkeypatch.setattr("mnistlib.recipes.fit", peeking_fit)
    with pytest.raises(ev.TestSetSealedError):
        compare.compare_recipes(["one-by-one"], epochs=1, subset=64, val_size=100,
                           device="cpu", checkpoint_dir=tmp_path, log=None)
    assert seen["test_type"] is ev.SealedLoader


def test_recipe_table_marks_subset_runs():
    row = compare.Row(recipe="x", title="the x | net", model="x", params=1234, epochs=5, epochs_run=2, batch_size=64,
                 lr=1e-3, augment="none", train_seconds=3.2, val_acc=0.9812, test_acc=0.97654,
                 claimed_accuracy="", claimed_parameters="", train_images=256)
    table = compare.recipe_table([row])
    assert "2 of 5 (256 imgs)" in table and "97.65%" in table and "1,234" in table
    assert "the x \\| net" in table


def _row(title: str, claim: str) -> compare.Row:
    return compare.Row(recipe="x", title=title, model="x", params=24_210, epochs=5, epochs_run=5, batch_size=64,
                       lr=1e-3, augment="none", train_seconds=65.0, val_acc=0.986, test_acc=0.9888,
                       claimed_accuracy=claim, claimed_parameters="24,210", train_images=55_000)


def test_recipe_table_puts_claims_in_a_second_narrow_table():
    """Measured figures and each write-up's claims are two tables of at most seven columns, not one of nine."""
    rows = [_row("the 1×1-convolution net", "98.16% (scored on the 60,000 training images, not the test set)"),
            _row("another net", "")]
    measured, claims = compare.recipe_table(rows, part="measured"), compare.recipe_table(rows, part="claims")
    both = f"{measured}\n\nWhat each write-up claims, beside what was measured:\n\n{claims}"
    assert compare.recipe_table(rows) == both
    for table, columns in ((measured, 7), (claims, 5)):
        header, rule, *body = table.splitlines()
        assert header.count(" | ") == columns - 1 and len(body) == 2
        assert all(line.count(" | ") == columns - 1 for line in body)
    assert "98.16%" not in measured and "| 5 of 5 | 65 | 98.60% | 98.88% |" in measured
    assert "| 98.16% (scored on the 60,000 training images, not the test set) | 98.88% | 24,210 | 24,210 |" in claims
    assert "| another net | — | 98.88% |" in claims
    with pytest.raises(ValueError, match="part must be"):
        compare.recipe_table(rows, part="wide")


class _Untrained(nn.Module):
    """Always predicts digit 0, with certainty."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full((len(x), 10), -10.0)
        out[:, 0] = 10.0
        return out


def test_constant_model_confusion_is_one_column(mnist):
    data = get_data(batch_size=64, subset=64, val_size=300)
    p = ev.predict_all(_Untrained(), data.val, "cpu", keep_images=False)
    cm = ev.confusion_matrix(p.preds, p.labels)
    assert int(cm[:, 0].sum()) == 300 and int(cm[:, 1:].sum()) == 0
    assert ev.per_class_accuracy(p.preds, p.labels)[0] == pytest.approx(1.0)
