"""Shape arithmetic, MACs, receptive fields, torchsummary tables and shape-error messages."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import nn

from mnistlib.architecture import (
    compare_models,
    comparison_table,
    conv_output_size,
    explain_shape_error,
    flattened_size,
    layer_macs,
    layer_table,
    model_stats,
    summary_layer_types,
    summary_text,
    trace_layers,
)
from mnistlib.models import ClassicCNNFunctional, count_parameters, get_model, list_models
from mnistlib.tables import format_table

SEED_MODELS = ["digit-recognizer", "classic", "two-conv", "one-by-one", "batchnorm"]


# --------------------------------------------------------------------------------------------
# Shape arithmetic


def test_conv_output_size_formula() -> None:
    assert conv_output_size(28, kernel=5) == 24  # (28 - 5 + 0) / 1 + 1
    assert conv_output_size(24, kernel=2, stride=2) == 12  # a 2×2 max-pool
    assert conv_output_size(28, kernel=3, padding=1) == 28  # "same" padding
    assert conv_output_size(7, kernel=2, stride=2) == 3  # rounded down
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(3, kernel=5)


def test_conv_output_size_agrees_with_pytorch() -> None:
    for size in (5, 12, 28):
        for kernel in (1, 2, 3, 5):
            for padding in (0, 1, 2):
                for stride in (1, 2, 3):
                    if size + 2 * padding < kernel:
                        continue
                    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding)
                    measured = conv(torch.zeros(1, 1, size, size)).shape[-1]
                    assert conv_output_size(size, kernel, padding, stride) == measured


# --------------------------------------------------------------------------------------------
# Multiply-adds


def test_macs_of_a_tiny_conv_by_hand() -> None:
    # 2 filters of 1×3×3 over a 5×5 image: 2×3×3 = 18 outputs, each 1·3·3 = 9 multiply-adds.
    (info,) = trace_layers(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 5, 5))
    assert info.output_shape == (2, 3, 3) and info.macs == 162
    # Grouped, strided, padded: 6×4×4 = 96 outputs, each sees 4/2 channels × 3×3 = 18.
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    assert layer_macs(conv, (6, 4, 4)) == 96 * 18
    assert layer_macs(nn.Linear(5, 3), (3,)) == 15
    assert layer_macs(nn.ReLU(), (10, 4, 4)) == 0
    assert trace_layers(nn.Conv2d(1, 2, 3), (1, 5, 5))[0].macs == 162  # a bare layer works too


def test_macs_of_the_classic_net_by_hand() -> None:
    # conv1 10×24×24·25 + conv2 20×8×8·(10·25) + fc1 320·50 + fc2 50·10
    expected = 10 * 24 * 24 * 25 + 20 * 8 * 8 * 250 + 320 * 50 + 50 * 10
    assert expected == 480_500
    assert model_stats(get_model("classic")).macs == expected


# --------------------------------------------------------------------------------------------
# Receptive fields


def _empirical_receptive_field(model: nn.Module, layer: str, size: int = 64) -> int:
    """Side of the input patch that moves the centre value of ``layer``, found by gradients.

    Max-pools become average pools and conv weights become positive, so no gradient is lost to
    a pooling choice or cancels out; the input is large so the patch never touches the border.
    """
    model = copy.deepcopy(model).eval()
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.MaxPool2d):
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.rsplit(".", 1)[-1], nn.AvgPool2d(m.kernel_size, m.stride))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
    store = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, out: store.update(out=out))
    x = torch.ones(1, 1, size, size, requires_grad=True)
    model.features(x)
    handle.remove()
    out = store["out"]
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = x.grad[0, 0].abs().sum(dim=1).nonzero().flatten()
    cols = x.grad[0, 0].abs().sum(dim=0).nonzero().flatten()
    assert rows.min() > 0 and rows.max() < size - 1, "patch touches the border: use a larger input"
    assert int(rows.max() - rows.min()) == int(cols.max() - cols.min())
    return int(rows.max() - rows.min()) + 1


def test_classic_receptive_fields_by_hand() -> None:
    # conv1 5×5: 5. pool 2 (stride 2): 5 + 1·1 = 6, jump 2. conv2 5×5: 6 + 4·2 = 14.
    # pool 2: 14 + 1·2 = 16, jump 4. So a conv2 value sees 14×14 pixels; after the last pool, 16×16.
    stats = model_stats(get_model("classic"))
    assert stats.rf_last_conv == 14
    assert stats.rf_features == 16
    classic = get_model("classic")
    assert _empirical_receptive_field(classic, "features.3") == 14
    assert _empirical_receptive_field(classic, "features.6") == 16


@pytest.mark.parametrize("name", SEED_MODELS)
def test_receptive_fields_match_gradients(name: str) -> None:
    model = get_model(name)
    layers = trace_layers(model)
    last_conv = [i.name for i in layers if i.kind == "Conv2d"][-1]
    last_map = [i.name for i in layers if len(i.output_shape) == 3][-1]
    stats = model_stats(model)
    assert _empirical_receptive_field(model, last_conv, size=96) == stats.rf_last_conv
    assert _empirical_receptive_field(model, last_map, size=96) == stats.rf_features


# --------------------------------------------------------------------------------------------
# Comparison table


def test_comparison_numbers() -> None:
    stats = {s.name: s for s in compare_models(SEED_MODELS, {"batchnorm": {"hidden": 128}})}
    for name, s in stats.items():
        options = {"hidden": 128} if name == "batchnorm" else {}
        assert s.params == count_parameters(get_model(name, **options))
        assert s.blocks[-1] == (10,)
    assert stats["batchnorm"].params == 207_018
    assert stats["one-by-one"].params == 24_210
    assert stats["classic"].blocks == [(10, 12, 12), (20, 4, 4), (10,)]
    # The 1×1-convolution net's four blocks, as its write-up draws them.
    assert stats["one-by-one"].blocks == [(8, 14, 14), (8, 7, 7), (16, 7, 7), (32, 7, 7), (10,)]
    assert stats["one-by-one"].rf_last_conv == 26  # 3, 4, 8, 10, 18, 26 — 1×1 convs add nothing
    assert stats["batchnorm"].rf_last_conv == 8 and stats["batchnorm"].rf_features == 10


def test_comparison_table_is_plain_text() -> None:
    table = comparison_table(options={"batchnorm": {"hidden": 64}})
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["model", "params", "MACs/image"]
    assert set(lines[1]) <= {"-", " "}
    assert [line.split()[0] for line in lines[2:]] == list_models()
    assert "<" not in table and "105,962" in table and "480,500" in table and "16×16" in table


def test_format_table_aligns_columns() -> None:
    text = format_table([("a", "n"), ("long", "1"), ("b", "100")], align="lr")
    assert text.splitlines() == ["a       n", "----  ---", "long    1", "b     100"]


def test_layer_table_lists_every_layer_module() -> None:
    model = get_model("classic")
    text = layer_table(model)
    leaves = [n for n, m in model.named_modules() if n and not list(m.children())]
    assert [line.split()[0] for line in text.splitlines()[3:]] == leaves
    assert re.search(r"features\.3\s+Conv2d\s+20×8×8\s+5,020\s+320,000\s+14×14", text)


def test_tracing_restores_modes_and_removes_hooks() -> None:
    model = get_model("batchnorm").train()
    model.classifier[3].eval()  # a mixed state must come back as it was
    state = copy.deepcopy(model.state_dict())
    model_stats(model)
    explain_shape_error(model)
    summary_text(model)
    assert model.training and not model.classifier[3].training
    assert all(m.training for i, m in enumerate(model.classifier) if i != 3)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    for key, value in model.state_dict().items():  # BatchNorm statistics untouched
        torch.testing.assert_close(value, state[key])


def test_flattened_size() -> None:
    assert flattened_size(get_model("classic").features) == 320
    assert flattened_size(get_model("batchnorm").features) == 1_568
    assert flattened_size(get_model("classic").features, (1, 32, 32)) == 500


# --------------------------------------------------------------------------------------------
# torchsummary


@pytest.mark.parametrize("name", SEED_MODELS)
def test_summary_totals_and_rng(name: str) -> None:
    model = get_model(name)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    text = summary_text(model)
    assert torch.equal(torch.rand(3), expected_next), "summary_text must not consume the global RNG"
    assert f"Total params: {count_parameters(model):,}" in text
    assert "0x" not in text  # no memory addresses: the table is deterministic
    assert text == summary_text(model)


def test_summary_misses_functional_layers() -> None:
    functional = summary_layer_types(summary_text(ClassicCNNFunctional()))
    modular = summary_layer_types(summary_text(get_model("classic")))
    assert functional == ["Conv2d", "Conv2d", "Dropout2d", "Linear", "Linear"]
    assert modular.count("MaxPool2d") == 2 and modular.count("ReLU") == 3
    assert "Flatten" in modular and "Dropout" in modular
    assert {"MaxPool2d", "ReLU", "Flatten", "Dropout"}.isdisjoint(functional)


def test_summary_reproduces_the_one_by_one_write_up() -> None:
    # The write-up's torchsummary table (its ReLUs and flatten were function calls, so absent).
    written = [
        ("Conv2d", "[-1, 8, 28, 28]", "80"),
        ("MaxPool2d", "[-1, 8, 14, 14]", "0"),
        ("Conv2d", "[-1, 16, 14, 14]", "1,168"),
        ("MaxPool2d", "[-1, 16, 7, 7]", "0"),
        ("Conv2d", "[-1, 8, 7, 7]", "136"),
        ("Conv2d", "[-1, 16, 7, 7]", "1,168"),
        ("Conv2d", "[-1, 16, 7, 7]", "272"),
        ("Conv2d", "[-1, 32, 7, 7]", "4,640"),
        ("Conv2d", "[-1, 32, 7, 7]", "1,056"),
        ("Linear", "[-1, 10]", "15,690"),
    ]
    text = summary_text(get_model("one-by-one"))
    rows = re.findall(r"^\s*(\w+)-\d+\s+(\[[^\]]*\])\s+([\d,]+)$", text, flags=re.MULTILINE)
    assert [r for r in rows if r[0] not in ("ReLU", "Flatten")] == written
    assert "Total params: 24,210" in text


# --------------------------------------------------------------------------------------------
# Shape errors in plain words


def test_explain_linear_mismatch() -> None:
    model = get_model("classic")
    model.features[3] = nn.Conv2d(10, 20, kernel_size=3)  # 12 → 10 → pool 5: 20×5×5 = 500
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        model.eval()(torch.zeros(1, 1, 28, 28))
    message = explain_shape_error(model)
    assert message.startswith("Layer classifier.1, Linear(320 → 50), expects 320 numbers per image")
    assert "give it 500" in message and "20 × 5 × 5 = 500" in message
    assert "nn.Linear(500, 50)" in message
    model.classifier[1] = nn.Linear(500, 50)
    assert explain_shape_error(model).startswith("No shape error")


def test_explain_other_shape_errors() -> None:
    model = get_model("classic")
    model.features[3] = nn.Conv2d(16, 20, kernel_size=5)
    message = explain_shape_error(model)
    assert "features.3" in message and "expects 16 input channels" in message and "gives it 10" in message
    model = get_model("batchnorm")
    model.features[1] = nn.BatchNorm2d(8)
    assert "normalises 8 channels, but it gets 16" in explain_shape_error(model)
    message = explain_shape_error(get_model("classic"), (1, 10, 10))
    assert "features.3" in message and "5×5 window" in message and "only 3×3 pixels" in message
    message = explain_shape_error(ClassicCNNFunctional(), (1, 32, 32))
    assert "not a layer module" in message


def test_no_error_for_every_registry_model() -> None:
    for name in list_models():
        assert explain_shape_error(get_model(name)) == (
            "No shape error: one 1×28×28 image goes through and comes out as 10 values."
        )


def test_global_average_pooling_sees_the_whole_image() -> None:
    """After AdaptiveAvgPool2d(1) one value averages every position: its field is the whole 28×28 image."""
    rows = trace_layers(get_model("record"))
    pool = next(r for r in rows if r.kind == "AdaptiveAvgPool2d")
    assert pool.receptive_field >= 28
    assert layer_table(get_model("record")).splitlines()[-3].split()[-1] == "all"
