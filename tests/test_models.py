"""The model registry: exact sizes, shapes, train/eval behaviour, errors, one training step."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlib import models
from mnistlib.models import (
    ClassicBN,
    ClassicCNN,
    ClassicCNNFunctional,
    RecordNet,
    UnknownModelError,
    count_parameters,
    describe_models,
    get_model,
    list_models,
    model_options,
)
from mnistlib.recipes import RECIPES

SEED_MODELS = ["digit-recognizer", "classic", "two-conv", "one-by-one", "batchnorm"]

# Counted by hand, layer by layer (weights + biases; BatchNorm: weight + bias per channel).
EXPECTED_PARAMS = {
    # conv 1→10 k5: 10·25+10 = 260; conv 10→20 k5: 20·250+20 = 5,020; fc 320→50: 16,050; fc 50→10: 510
    "digit-recognizer": 21_840,
    "classic": 21_840,
    # conv 1→32 k3: 320; conv 32→64 k3: 18,496; fc 3136→128: 401,536; fc 128→10: 1,290
    "two-conv": 421_642,
    # the write-up's torchsummary table: 80+1,168+136+1,168+272+4,640+1,056+15,690
    "one-by-one": 24_210,
    # conv 160 + bn 32 + conv 4,640 + bn 64 + fc 1568→64: 100,416 + fc 64→10: 650
    "batchnorm": 105_962,
}


def _has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())


def test_the_seed_models_are_registered_in_order() -> None:
    assert list_models()[: len(SEED_MODELS)] == SEED_MODELS


@pytest.mark.parametrize("name", SEED_MODELS)
def test_exact_parameter_counts(name: str) -> None:
    model = get_model(name)
    assert count_parameters(model) == EXPECTED_PARAMS[name]
    assert count_parameters(model, trainable_only=True) == EXPECTED_PARAMS[name]


def test_batchnorm_net_counts_follow_the_hidden_size() -> None:
    # 4,896 in the conv/BatchNorm part, then 1568·h + h (fc1) and 10·h + 10 (fc2).
    for hidden in (64, 128, 7):
        assert count_parameters(get_model("batchnorm", hidden=hidden)) == 4_896 + 1_579 * hidden + 10
    assert count_parameters(get_model("batchnorm", hidden=128)) == 207_018
    assert count_parameters(get_model("batchnorm")) > 4 * 25_000  # the write-up's "~25K" is far off


def test_one_by_one_net_matches_its_write_up_layer_by_layer() -> None:
    model = get_model("one-by-one")
    per_layer = [count_parameters(m) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert per_layer == [80, 1_168, 136, 1_168, 272, 4_640, 1_056, 15_690]


def test_functional_classic_is_the_same_network() -> None:
    torch.manual_seed(0)
    functional, modular = ClassicCNNFunctional().eval(), ClassicCNN().eval()
    assert count_parameters(functional) == count_parameters(modular) == 21_840
    # Same parameters in the same order: copy them across and the outputs agree.
    functional.load_state_dict(dict(zip(functional.state_dict(), modular.state_dict().values(), strict=True)))
    x = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(functional(x), modular(x))
    assert "ClassicCNNFunctional" not in {type(get_model(n)).__name__ for n in list_models()}


@pytest.mark.parametrize("name", SEED_MODELS)
@pytest.mark.parametrize("n", [1, 7, 128])
def test_output_is_n_by_10_logits(name: str, n: int) -> None:
    model = get_model(name)
    x = torch.randn(n, 1, 28, 28)
    with torch.no_grad():
        assert model.eval()(x).shape == (n, 10)
        assert model.train()(x).shape == (n, 10)


@pytest.mark.parametrize("name", SEED_MODELS)
def test_features_then_classifier_is_the_forward_pass(name: str) -> None:
    model = get_model(name).eval()
    assert isinstance(model.features, nn.Sequential) and isinstance(model.classifier, nn.Sequential)
    assert isinstance(model.classifier[0], nn.Flatten)
    last = model.classifier[-1]
    assert isinstance(last, nn.Linear) and last.out_features == 10
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model.classifier(model.features(x)), model(x))


@pytest.mark.parametrize("name", SEED_MODELS)
def test_dropout_is_active_only_in_train_mode(name: str) -> None:
    torch.manual_seed(0)
    model = get_model(name)
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        model.train()
        a, b = model(x), model(x)
        model.eval()
        c, d = model(x), model(x)
    torch.testing.assert_close(c, d, rtol=0, atol=0)
    if _has_dropout(model):
        assert not torch.allclose(a, b), "two train-mode passes should drop different units"
    else:  # the 1×1-convolution net has no dropout: train mode is deterministic too
        torch.testing.assert_close(a, b)


def test_batchnorm_eval_is_deterministic_and_per_sample() -> None:
    torch.manual_seed(0)
    model = get_model("batchnorm")
    x = torch.randn(32, 1, 28, 28)
    with torch.no_grad():
        model.train()(x)  # move the running statistics away from their initial values
        model.eval()
        full = model(x)
        torch.testing.assert_close(model(x), full, rtol=0, atol=0)
        # In eval mode a sample's logits do not depend on the rest of its batch.
        torch.testing.assert_close(model(x[:1]), full[:1])
        model.train()
        assert not torch.allclose(model(x[:4])[:1], model(x)[:1])  # train mode: batch statistics


def test_logits_with_cross_entropy_equal_log_softmax_with_nll() -> None:
    torch.manual_seed(0)
    logits = get_model("one-by-one").eval()(torch.randn(8, 1, 28, 28))
    y = torch.randint(0, 10, (8,))
    torch.testing.assert_close(F.cross_entropy(logits, y), F.nll_loss(F.log_softmax(logits, dim=1), y))


@pytest.mark.parametrize("name", SEED_MODELS)
def test_one_optimizer_step_on_cpu(name: str) -> None:
    torch.manual_seed(0)
    model = get_model(name).train()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    loss = nn.CrossEntropyLoss()(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert math.isfinite(loss.item())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_unknown_name_lists_the_known_names() -> None:
    with pytest.raises(UnknownModelError) as info:
        get_model("resnet")
    message = str(info.value)
    assert "'resnet'" in message
    for name in list_models():
        assert repr(name) in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert not message.startswith('"')  # not KeyError's quoted repr
    with pytest.raises(UnknownModelError):
        get_model(["classic"])  # type: ignore[arg-type]


def test_bad_options() -> None:
    with pytest.raises(TypeError, match="'classic' does not take option.*hidden.*no options"):
        get_model("classic", hidden=64)
    with pytest.raises(TypeError, match="hiden.*it takes: hidden=64"):
        get_model("batchnorm", hiden=64)
    for bad in (0, -3, 2.5, "64", True):
        with pytest.raises(ValueError, match="hidden"):
            get_model("batchnorm", hidden=bad)
        with pytest.raises(ValueError, match="hidden"):
            get_model("two-conv", hidden=bad)


def test_model_options_and_remembered_name() -> None:
    assert model_options("batchnorm") == {"hidden": 64}
    assert model_options("two-conv") == {"hidden": 128}
    assert model_options("classic") == {}
    model = get_model("batchnorm", hidden=128)
    assert model.registry_name == "batchnorm" and model.registry_options == {"hidden": 128}
    assert model.classifier[1].out_features == 128
    assert get_model("classic") is not get_model("classic")


def test_register_adds_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))

    class Tiny(models.MNISTNet):
        """A tiny test net."""

        def __init__(self, width: int = 4) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, width, 3), nn.ReLU())
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(width * 26 * 26, 10))

    models.register("tiny", Tiny)
    assert "tiny" in list_models()
    assert get_model("tiny", width=2)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert describe_models()["tiny"] == "A tiny test net."
    with pytest.raises(TypeError, match="width=4"):
        get_model("tiny", depth=2)


def test_every_model_has_a_one_line_description() -> None:
    descriptions = describe_models()
    assert list(descriptions) == list_models()
    for name, line in descriptions.items():
        assert line and "\n" not in line and len(line) <= 100, name


@pytest.mark.parametrize("n", [1, 7])
def test_record_model_is_small_and_maps_to_ten_logits(n: int) -> None:
    model = get_model("record", **RECIPES["record"].model_options)
    assert count_parameters(model) < 20_000
    for mode in (model.train, model.eval):
        mode()
        assert model(torch.randn(n, 1, 28, 28)).shape == (n, 10)


@pytest.mark.parametrize("options", [{}, {"c1": 16, "c2": 32, "hidden": 128}, {"kernel2": 3}])
def test_classic_bn_shapes(options: dict) -> None:
    model = get_model("classic-bn", **options)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.features)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="c1"):
        ClassicBN(c1=0)
    with pytest.raises(ValueError, match="widths"):
        RecordNet(widths=())


def test_channels_last_step_matches_contiguous() -> None:
    """A training step on the same batch: channels-last gives the same loss and gradients (to rounding)."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    for name in ("classic-bn", "record", "digit-recognizer"):
        torch.manual_seed(1)
        a = get_model(name)
        b = get_model(name)
        b.load_state_dict(a.state_dict())
        b.to(memory_format=torch.channels_last)
        for model in (a, b):  # BatchNorm uses batch statistics; dropout off so both see the same net
            model.train()
            for m in model.modules():
                if isinstance(m, nn.modules.dropout._DropoutNd):
                    m.eval()
        losses = []
        for model, batch in ((a, x), (b, x.contiguous(memory_format=torch.channels_last))):
            loss = nn.functional.cross_entropy(model(batch), y)
            loss.backward()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-5, abs=1e-6)
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pa.grad, pb.grad.contiguous(), rtol=1e-3, atol=1e-5)


def test_lesson_06_variants_keep_the_shape_and_change_one_thing() -> None:
    plain = get_model("classic-bn", batchnorm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert all(c.bias is not None for c in plain.modules() if isinstance(c, nn.Conv2d))
    fc = get_model("record", head="fc")
    assert isinstance(fc.classifier[-1], nn.Linear) and fc.classifier[-1].in_features == 24 * 7 * 7
    for model in (plain, fc):
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(fc) - count_parameters(get_model("record")) == (24 * 49 - 24) * 10
    with pytest.raises(ValueError, match="head"):
        get_model("record", head="mlp")


def test_one_by_one_bottleneck_folds_into_the_next_conv_but_restricts_it() -> None:
    """The 16 → 8 1×1 conv (no ReLU) and the 8 → 16 3×3 after it are one 3×3 conv away from the padded
    border, and that folded conv's filters have rank ≤ 8: fewer functions, not more (lesson 02)."""
    torch.manual_seed(0)
    squeeze, conv3 = get_model("one-by-one").features[6:8]
    assert (squeeze.kernel_size, squeeze.in_channels, squeeze.out_channels) == ((1, 1), 16, 8)
    assert (conv3.kernel_size, conv3.padding, conv3.in_channels) == ((3, 3), (1, 1), 8)
    weight = torch.einsum("omuv,mi->oiuv", conv3.weight, squeeze.weight[:, :, 0, 0])
    bias = conv3.bias + torch.einsum("omuv,m->o", conv3.weight, squeeze.bias)
    with torch.no_grad():
        x = torch.randn(2, 16, 7, 7)
        gap = (conv3(squeeze(x)) - F.conv2d(x, weight, bias, padding=1)).abs()
    assert gap[..., 1:-1, 1:-1].max() < 1e-5  # inside: exactly one conv
    assert gap.max() > 1e-3  # the border: zero padding of the 1×1's output is not the 1×1 of zero input
    as_matrix = weight.detach().permute(0, 2, 3, 1).reshape(-1, 16)  # [c_out·k·k, c_in]
    assert int(torch.linalg.matrix_rank(as_matrix)) == 8
    full = nn.Conv2d(16, 16, 3).weight.detach().permute(0, 2, 3, 1).reshape(-1, 16)
    assert int(torch.linalg.matrix_rank(full)) == 16
