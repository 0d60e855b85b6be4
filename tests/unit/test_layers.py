"""hil/model/layers.py numbers a model's layers as the generated firmware calls them: the same count, the same
kernel at each number, and the hook after each call names that number and the layer's output size."""

import re

import pytest

from hil.firmware.codegen import GENERATED_DIR
from hil.model.card import load_model
from hil.model.layers import model_layers
from tests.support.native import KERNEL_FUNCTIONS

pytestmark = pytest.mark.unit



@pytest.mark.parametrize("model", ["qute-digits", "qute-mnist1d"])
def test_layers_are_numbered_as_the_firmware_calls_them(model):
    card = load_model(model)
    layers = model_layers(card)
    source = (GENERATED_DIR / model / "model.c").read_text()
    calls = re.findall(r"^    (k_\w+)\(", source, flags=re.M)
    hooks = [(int(n), int(size)) for n, size in re.findall(r"model_layer_done\((\d+)u, [^;]*, (\d+)u\);", source)]
    assert [KERNEL_FUNCTIONS[layer.op] for layer in layers] == calls
    assert hooks == [(layer.index, layer.output_bytes) for layer in layers]
    header = (GENERATED_DIR / model / "model.h").read_text()
    assert f"#define MODEL_NUM_LAYERS {len(layers)}u" in header
    assert f"#define MODEL_STAGE1_LAYERS {sum(layer.stage == 'stage1' for layer in layers)}u" in header
    assert sum(layer.macs for layer in layers) == card.full_path_macs
