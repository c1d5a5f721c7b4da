"""Tests for mnistlib.explain: hooks, receptive fields, saliency, the feature space, the pictures."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from mnistlib import explain as E
from mnistlib.architecture import conv_output_size, trace_layers
from mnistlib.widgets.explorer import FeatureMapExplorer

MEAN, STD = 0.1307, 0.3081
BLANK = E.background_value(MEAN, STD)

models_mod = pytest.importorskip("mnistlib.models")
REGISTRY = models_mod.list_models()


def registry_model(name: str) -> nn.Module:
    """A registry model with fixed random weights."""
    torch.manual_seed(0)
    return models_mod.get_model(name)


class Tiny(nn.Module):
    """A plain module (not a registry class) with an in-place ReLU after its conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 14 * 14, 12), nn.Linear(12, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.act(self.conv(x))))


def digit_like() -> torch.Tensor:
    """A normalised 28×28 image: blank background with a bright vertical bar (a '1')."""
    x = torch.full((1, 1, 28, 28), BLANK)
    x[..., 6:22, 12:16] = (1.0 - MEAN) / STD
    return x


# ----------------------------------------------------------------------------- shapes


def predicted_shapes(model: nn.Module, size: int = 28) -> dict[str, tuple[int, int, int]]:
    """Lesson 02's shape table by arithmetic: ``conv_output_size`` layer after layer."""
    c, h = 1, size
    table = {}
    for i, layer in enumerate(model.features):
        if isinstance(layer, nn.Conv2d):
            k, s, p, d = layer.kernel_size[0], layer.stride[0], layer.padding[0], layer.dilation[0]
            c, h = layer.out_channels, conv_output_size(h, k, p, s, d)
        elif isinstance(layer, nn.MaxPool2d):
            h = conv_output_size(h, layer.kernel_size, layer.padding, layer.stride or layer.kernel_size)
        table[f"features.{i}"] = (c, h, h)
    return table


def capture_shapes(model: nn.Module, size: int = 28) -> dict[str, tuple[int, ...]]:
    """Shape ``(C, H, W)`` of each conv layer's output for one blank ``size``×``size`` image."""
    maps = E.capture(model, torch.zeros(1, 1, size, size), E.conv_layers(model))
    return {name: tuple(t.shape[1:]) for name, t in maps.items()}


@pytest.mark.parametrize("name", REGISTRY)
def test_capture_shapes_match_the_shape_table(name: str) -> None:
    model = registry_model(name)
    expected = predicted_shapes(model)
    maps = E.capture(model, torch.zeros(3, 1, 28, 28), list(expected))
    assert {k: tuple(v.shape) for k, v in maps.items()} == {k: (3, *v) for k, v in expected.items()}
    convs = E.conv_layers(model)
    assert convs and all(isinstance(E.get_layer(model, n), nn.Conv2d) for n in convs)
    assert capture_shapes(model) == {n: expected[n] for n in convs}


def test_the_classic_table_from_lesson_02() -> None:
    """The classic CNN's table: conv 1 gives 10 maps of 24×24, conv 2 gives 20 maps of 8×8."""
    shapes = capture_shapes(registry_model("classic"))
    assert list(shapes.values()) == [(10, 24, 24), (20, 8, 8)]


def test_capture_accepts_single_images_and_leaves_no_hooks() -> None:
    model = registry_model("digit-recognizer")
    model.train()
    for x in (torch.zeros(28, 28), torch.zeros(1, 28, 28), torch.zeros(1, 1, 28, 28)):
        assert E.capture(model, x, "features.0")["features.0"].shape == (1, 10, 24, 24)
    assert model.training, "capture must restore the training mode"
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_hooks_removed_even_when_forward_fails() -> None:
    model = registry_model("classic")
    with pytest.raises(RuntimeError):
        E.capture(model, torch.zeros(1, 3, 28, 28), ["features.0"])  # wrong channel count
    assert all(not m._forward_hooks for m in model.modules())


def test_capture_is_not_changed_by_inplace_relu() -> None:
    torch.manual_seed(0)
    model = Tiny()
    x = torch.randn(2, 1, 28, 28)
    got = E.capture(model, x, ["conv", "act"])
    assert torch.allclose(got["conv"], model.conv(x).detach())
    assert (got["conv"] < 0).any(), "the conv output was overwritten by the in-place ReLU"
    assert torch.equal(got["act"], got["conv"].clamp(min=0))


def test_capture_is_deterministic_with_dropout() -> None:
    model = registry_model("digit-recognizer").train()
    x = torch.randn(1, 1, 28, 28)
    a = E.capture(model, x, "features.6")["features.6"]
    b = E.capture(model, x, "features.6")["features.6"]
    assert torch.equal(a, b), "capture must run in eval mode (dropout off)"


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", REGISTRY)
def test_unknown_layer_lists_the_valid_names(name: str) -> None:
    model = registry_model(name)
    with pytest.raises(E.LayerNotFoundError) as info:
        E.capture(model, torch.zeros(1, 1, 28, 28), ["features.0", "conv9"])
    msg = str(info.value)
    assert "'conv9'" in msg
    for valid in E.layer_names(model):
        assert valid in msg
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert all(not m._forward_hooks for m in model.modules())


def test_unknown_layer_everywhere_a_name_is_taken() -> None:
    model = registry_model("classic")
    with pytest.raises(E.LayerNotFoundError, match="features.3"):
        E.receptive_field(model, "features.42")
    with pytest.raises(E.LayerNotFoundError):
        E.plot_kernels(model, "nope")
    with pytest.raises(E.LayerNotFoundError):
        E.get_layer(model, "")
    with pytest.raises(E.LayerNotFoundError):
        FeatureMapExplorer(model, torch.zeros(2, 1, 28, 28), layers=["features.0", "nope"])
    with pytest.raises(E.LayerNotFoundError, match="no nn.Linear"):
        E.penultimate_layer(nn.Sequential(nn.Conv2d(1, 1, 3)))


# ----------------------------------------------------------------------------- receptive field


@pytest.mark.parametrize("name", REGISTRY)
def test_receptive_field_bounds_what_a_unit_can_see(name: str) -> None:
    """The gradient of one central unit is zero outside its receptive field."""
    model = registry_model(name).eval()
    for layer in E.conv_layers(model):
        rf = E.receptive_field(model, layer)
        module = E.get_layer(model, layer)
        out = {}
        handle = module.register_forward_hook(lambda _m, _i, o, out=out: out.__setitem__("y", o))
        x = torch.randn(1, 1, 28, 28, requires_grad=True)
        try:
            model(x)
        finally:
            handle.remove()
        y = out["y"]
        cy, cx = y.shape[-2] // 2, y.shape[-1] // 2
        (g,) = torch.autograd.grad(y[0, :, cy, cx].sum(), x)
        rows = g[0, 0].abs().sum(1).nonzero()
        cols = g[0, 0].abs().sum(0).nonzero()
        assert len(rows) and len(cols)
        assert rows.max() - rows.min() + 1 <= rf and cols.max() - cols.min() + 1 <= rf
        if layer == E.conv_layers(model)[0]:
            assert rf == module.kernel_size[0]


def test_receptive_field_of_the_classic_cnn() -> None:
    model = registry_model("classic")
    assert [E.receptive_field(model, n) for n in E.conv_layers(model)] == [5, 14]
    assert E.receptive_field(model, "features") == 16  # after the second 2×2 pool
    assert E.receptive_field(model, "classifier.1") is None  # flattened: sees everything


# ----------------------------------------------------------------------------- saliency


@pytest.mark.parametrize("name", REGISTRY)
def test_occlusion_of_a_blank_image_is_flat(name: str) -> None:
    model = registry_model(name)
    blank = torch.full((1, 1, 28, 28), BLANK)
    for patch, stride in ((6, 2), (5, 3)):
        sal = E.occlusion_map(model, blank, target=3, background=BLANK, patch=patch, stride=stride)
        assert sal.shape == (28, 28)
        assert torch.count_nonzero(sal) == 0
    assert torch.count_nonzero(E.gradient_x_input(model, blank, background=BLANK)) == 0


@pytest.mark.parametrize("name", REGISTRY)
@pytest.mark.parametrize("shape", [(28, 28), (1, 28, 28), (1, 1, 28, 28)])
def test_saliency_maps_have_the_input_shape_and_are_finite(name: str, shape: tuple) -> None:
    model = registry_model(name)
    x = digit_like().reshape(shape)
    occ = E.occlusion_map(model, x, background=BLANK)
    gxi = E.gradient_x_input(model, x, target=1, background=BLANK)
    for sal in (occ, gxi):
        assert sal.shape == x.shape[-2:]
        assert torch.isfinite(sal).all()
    assert gxi[0, 0] == 0, "background pixels carry no gradient × input"
    assert all(p.grad is None for p in model.parameters()), "must not touch parameter grads"


def test_occlusion_finds_the_pixels_a_model_uses() -> None:
    """A 'model' whose class-0 logit is the ink in the top-left corner."""

    class Corner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(5.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logit0 = self.scale * (x[:, 0, :8, :8] - BLANK).mean(dim=(1, 2))
            return torch.cat([logit0[:, None], torch.zeros(len(x), 9)], dim=1)

    x = torch.full((1, 1, 28, 28), BLANK)
    x[..., :8, :8] = (1 - MEAN) / STD
    occ = E.occlusion_map(Corner(), x, target=0, background=BLANK, patch=4, stride=4)
    assert occ[:8, :8].min() > 0
    assert torch.count_nonzero(occ[12:, 12:]) == 0
    gxi = E.gradient_x_input(Corner(), x, target=0, background=BLANK)
    assert gxi[:8, :8].min() > 0 and torch.count_nonzero(gxi[8:, 8:]) == 0


def test_saliency_rejects_a_batch() -> None:
    with pytest.raises(ValueError, match="one image"):
        E.occlusion_map(registry_model("classic"), torch.zeros(2, 1, 28, 28))


# ----------------------------------------------------------------------------- feature space


@pytest.mark.parametrize("name", REGISTRY)
def test_feature_space_projects_n_images_to_n_by_2(name: str) -> None:
    model = registry_model(name)
    torch.manual_seed(1)
    n = 37
    x, y = torch.randn(n, 1, 28, 28), torch.randint(0, 10, (n,))
    space = E.feature_space(model, x, y, batch_size=16)
    assert space.points.shape == (n, 2)
    assert torch.isfinite(space.points).all()
    last = E.get_layer(model, space.layer)
    assert isinstance(last, nn.Linear) and last.out_features == 10
    assert space.dim == last.in_features
    feats, logits = E.embed(model, x)
    assert feats.shape == (n, last.in_features) and logits.shape == (n, 10)
    assert torch.equal(space.preds, logits.argmax(1))
    assert space.wrong.shape == (n,)
    assert 0 <= float(space.explained.sum()) <= 1 + 1e-6


def test_penultimate_of_a_plain_module() -> None:
    model = Tiny()
    assert E.penultimate_layer(model) == "head.2"
    feats, _ = E.embed(model, torch.randn(5, 1, 28, 28))
    assert feats.shape == (5, 12)


def test_pca_recovers_the_main_direction() -> None:
    torch.manual_seed(0)
    t = torch.randn(500, 1)
    direction = torch.tensor([[3.0, 0.0, 4.0]]) / 5
    data = t * 10 * direction + 0.1 * torch.randn(500, 3) + 7
    points, explained = E.pca_2d(data)
    assert points.shape == (500, 2)
    assert explained[0] > 0.99 and explained[0] >= explained[1]
    assert abs(torch.corrcoef(torch.stack([points[:, 0], t[:, 0]]))[0, 1]) > 0.999
    assert torch.allclose(points.mean(0), torch.zeros(2), atol=1e-4)
    again, _ = E.pca_2d(data)
    assert torch.equal(points, again)


def test_rank_correlation() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(28, 28, generator=g)
    assert E.rank_correlation(a, a * 3 + 1) == pytest.approx(1.0)  # only the order counts
    assert E.rank_correlation(a, a.exp()) == pytest.approx(1.0)
    assert E.rank_correlation(a, -a) == pytest.approx(-1.0)
    assert abs(E.rank_correlation(a, torch.randn(28, 28, generator=g))) < 0.15
    # ties share their average rank: two maps blank in the same places agree there, whatever the ink says
    x = torch.tensor([0.0, 0.0, 0.0, 1.0, 2.0])
    assert E.rank_correlation(x, torch.tensor([0.0, 0.0, 0.0, 2.0, 1.0])) == pytest.approx(7 / 8)
    assert math.isnan(E.rank_correlation(x, torch.zeros(5)))
    with pytest.raises(ValueError, match="shape"):
        E.rank_correlation(a, a[:5])


# ----------------------------------------------------------------------------- pictures


@pytest.mark.parametrize("name", REGISTRY)
def test_plots_return_figures(name: str) -> None:
    model = registry_model(name)
    x = digit_like()
    fig = E.plot_kernels(model)
    assert isinstance(fig, Figure)
    first = E.get_layer(model, E.conv_layers(model)[0])
    assert len([a for a in fig.axes if a.images]) >= first.out_channels
    for layer in E.conv_layers(model):
        maps = E.capture(model, x, layer)[layer]
        assert isinstance(E.plot_feature_maps(maps, image=x), Figure)
    sal = {"occlusion": E.occlusion_map(model, x), "grad × input": E.gradient_x_input(model, x)}
    assert isinstance(E.plot_saliency(x, sal), Figure)
    space = E.feature_space(model, torch.randn(20, 1, 28, 28), torch.arange(20) % 10)
    assert isinstance(E.plot_feature_space(space), Figure)


def test_kernel_colours_are_symmetric_around_zero() -> None:
    fig = E.plot_kernels(registry_model("classic"))
    im = next(a for a in fig.axes if a.images).images[0]
    lo, hi = im.get_clim()
    assert lo == -hi and im.get_cmap().name == "RdBu_r"


def test_explorer_redraws_on_layer_and_image() -> None:
    pytest.importorskip("ipywidgets")
    model = registry_model("classic")
    images = torch.randn(4, 1, 28, 28)
    ex = FeatureMapExplorer(model, images, labels=torch.arange(4))
    assert list(ex.layer.options) == E.conv_layers(model) and ex.index.max == 3
    ex.layer.value = "features.3"
    assert ex.last_shape == (20, 8, 8)
    ex.index.value = 2
    assert torch.equal(ex.current_image(), images[2:3])
    ex.show(digit_like()[0, 0])
    assert torch.equal(ex.current_image(), digit_like())
    ex.layer.value = "features.0"
    assert ex.last_shape == (10, 24, 24) and torch.equal(ex.current_image(), digit_like())
    ex.index.value = 1  # moving the slider goes back to the test images
    assert torch.equal(ex.current_image(), images[1:2])
    assert not plt.get_fignums(), "the explorer closes its figures"
    fig = ex.figure()
    assert "for test image 1 (label 1), predicted" in fig.texts[0].get_text()
    named = FeatureMapExplorer(model, images, labels=torch.arange(4), source="validation image", index=3)
    fig2 = named.figure()
    assert "for validation image 3 (label 3), predicted" in fig2.texts[0].get_text()
    plt.close(fig), plt.close(fig2)


# ----------------------------------------------------------------------------- checkpoints


def test_works_on_a_model_from_load_checkpoint(tmp_path) -> None:
    ckpts = pytest.importorskip("mnistlib.checkpoints")
    model = registry_model("batchnorm")
    path = tmp_path / "m.pt"
    ckpts.save_checkpoint(path, model, name="batchnorm", options={}, hparams={}, history={}, mean=MEAN, std=STD)
    loaded = ckpts.load_checkpoint(path).model
    x = digit_like()
    assert capture_shapes(loaded) == capture_shapes(model)
    a = E.capture(loaded, x, "features.4")["features.4"]
    b = E.capture(model, x, "features.4")["features.4"]
    assert torch.allclose(a, b)
    assert E.occlusion_map(loaded, x).shape == (28, 28)
    assert E.feature_space(loaded, x.repeat(3, 1, 1, 1), torch.ones(3)).points.shape == (3, 2)


@pytest.mark.parametrize("name", REGISTRY)
def test_capture_agrees_with_lesson_02_trace(name: str) -> None:
    model = registry_model(name)
    rows = trace_layers(model)
    maps = E.capture(model, torch.zeros(1, 1, 28, 28), [r.name for r in rows])
    for r in rows:
        assert tuple(maps[r.name].shape[1:]) == r.output_shape
        if r.kind == "Conv2d":
            assert E.receptive_field(model, r.name) == r.receptive_field


def test_activation_after_finds_the_relu_the_next_layer_reads() -> None:
    from mnistlib.models import get_model

    model = get_model("batchnorm")
    assert E.activation_after(model, "features.0") == "features.2"  # conv → BatchNorm → ReLU
    assert E.activation_after(get_model("one-by-one"), "features.6") == "features.8"  # 1×1, then 3×3 + ReLU
    assert E.activation_after(model, "classifier.4") == "classifier.4"  # nothing after it


# ----------------------------------------------------------------------------- activation statistics


def _batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(n)]


def _fit_with(stats: E.ActivationStats, model: nn.Module, lr: float = 0.0, n: int = 5, epochs: int = 1):
    from types import SimpleNamespace

    from mnistlib.training import fit

    data = SimpleNamespace(train=_batches(n), val=_batches(2, seed=1))
    return fit(model, data, torch.optim.SGD(model.parameters(), lr=lr), epochs=epochs, device="cpu",
               callbacks=[stats])


def test_activation_stats_are_the_training_batches_statistics() -> None:
    torch.manual_seed(0)
    model = Tiny()
    stats = E.ActivationStats()
    _fit_with(stats, model, lr=0.0, n=5, epochs=2)  # lr 0: the weights stay, so every batch can be recomputed
    assert stats.layers == ["act"]  # the default: every ReLU
    assert stats.steps == list(range(1, 11))  # 5 batches × 2 epochs; the validation passes are not counted
    for step, (x, _) in zip(stats.steps, _batches(5) * 2, strict=True):
        with torch.no_grad():
            out = torch.relu(model.conv(x))
        got = [stats.stats["act"][kind][step - 1] for kind in ("mean", "std", "zeros")]
        want = [float(out.mean()), float(out.std()), float((out == 0).float().mean())]
        assert got == pytest.approx(want, rel=1e-5), step


def test_activation_stats_every_and_chosen_layers() -> None:
    model = registry_model("classic")
    stats = E.ActivationStats(["features.0", "classifier.2"], every=2)
    _fit_with(stats, model, lr=0.01, n=5)
    assert stats.steps == [2, 4] and set(stats.stats) == {"features.0", "classifier.2"}
    assert all(len(v) == 2 for d in stats.stats.values() for v in d.values())
    assert stats.stats["features.0"]["zeros"] == [0.0, 0.0]  # a conv's output, before any ReLU
    with pytest.raises(ValueError):
        E.ActivationStats(every=0)


def test_activation_stats_remove_their_hooks_even_when_the_run_fails() -> None:
    model = registry_model("batchnorm")

    class Boom:
        def after_batch(self, state) -> None:
            raise RuntimeError("boom")

    from types import SimpleNamespace

    from mnistlib.training import fit

    stats = E.ActivationStats()
    with pytest.raises(RuntimeError, match="boom"):
        fit(model, SimpleNamespace(train=_batches(3), val=[]), torch.optim.SGD(model.parameters(), lr=0.1),
            epochs=1, device="cpu", callbacks=[stats, Boom()])
    assert len(stats.layers) == 3 and stats.steps == [1]
    assert not any(m._forward_hooks for m in model.modules())


def test_activation_stats_figure_has_a_row_per_run() -> None:
    runs = {}
    for lr in (0.0, 0.1):
        torch.manual_seed(0)
        runs[f"lr {lr}"] = stats = E.ActivationStats()
        _fit_with(stats, Tiny(), lr=lr, n=3)
    fig = E.plot_activation_stats(runs)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert [len(ax.lines) for ax in fig.axes] == [1] * 6
    assert all(ax.get_ylim() == (-0.03, 1.03) for ax in fig.axes[2::3])  # shares of zeros: one scale, 0 to 1
    plt.close(fig)


def test_occlusion_docstring_names_the_patch_it_uses() -> None:
    """Lesson 07 prints this docstring: the patch is filled with the blank background, not grey."""
    doc = E.occlusion_map.__doc__
    assert "blank patch" in doc and "grey" not in doc
