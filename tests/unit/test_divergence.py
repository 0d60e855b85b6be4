"""The first diverging layer on host arrays (hil/run/divergence.py): LiteRT's intermediate tensors, in the firmware's
layer order, end in the reference's own outputs; the comparison names the first layer and element that differ,
with both values; and a finding goes through run.json unchanged."""

import numpy as np
import pytest

from hil import REPO_ROOT
from hil.model.card import load_model
from hil.model.layers import model_layers
from hil.model.reference import run_reference
from hil.model.testsets import load_testset
from hil.run import divergence
from hil.run.divergence import Divergence, TraceFinding
from hil.store import files
from tests.unit.test_result_files import a_run

pytestmark = pytest.mark.unit


def clean_inputs(card):
    return load_testset(REPO_ROOT / "fixtures" / "testsets" / card.name / "clean.npz", card).inputs


@pytest.fixture(scope="module")
def digits():
    card = load_model("qute-digits")
    layers = model_layers(card)
    sample = clean_inputs(card)[0]
    return card, layers, sample, divergence.host_layer_outputs(card, layers, sample)


@pytest.mark.parametrize("model", ["qute-digits", "qute-mnist1d"])
def test_the_host_layers_end_in_the_reference_outputs(model):
    """Stage 2 fed stage 1's feature map: its head layers are the reference's heads, stage 1's last layer its exit."""
    card = load_model(model)
    layers = model_layers(card)
    inputs = clean_inputs(card)[:2]
    reference = run_reference(card, inputs)
    for i, sample in enumerate(inputs):
        outputs = divergence.host_layer_outputs(card, layers, sample)
        assert [o.size for o in outputs] == [layer.output_bytes for layer in layers]
        exit_layer = max(layer.index for layer in layers if layer.stage == "stage1")  # stage 1 ends in the exit
        assert outputs[exit_layer].tolist() == reference.exit[i].tolist()
        heads = [o for o, layer in zip(outputs, layers) if layer.stage == "stage2" and layer.op == "FULLY_CONNECTED"]
        assert [h.tolist() for h in heads] == [h[i].tolist() for h in reference.heads]


def test_equal_layers_have_no_divergence(digits):
    _card, layers, _sample, host = digits
    assert divergence.first_divergence(layers, host, [o.copy() for o in host]) is None
    assert divergence.first_differing_layer(host, tuple(divergence.digest(o) for o in host)) is None


def test_the_first_differing_layer_and_element_are_named_with_both_values(digits):
    _card, layers, _sample, host = digits
    device = [o.copy() for o in host]
    target = next(layer for layer in layers if layer.op == "DEPTHWISE_CONV_2D")
    later = layers[target.index + 3]
    element = 2 * target.output_shape[-1] + 5  # pixel (0, 2), channel 5
    device[target.index][element] = np.int8(int(host[target.index][element]) - 1 if host[target.index][element] > -128
                                            else -127)
    device[target.index][element + 7] ^= 1  # a later element of the same layer: not the first
    device[later.index][0] ^= 1  # a later layer: not the first either
    found = divergence.first_divergence(layers, host, device)
    assert found == Divergence(target.index, target.stage, "DEPTHWISE_CONV_2D", element, (0, 0, 2, 5),
                               int(device[target.index][element]), int(host[target.index][element]))
    digests = tuple(divergence.digest(o) for o in device)
    assert divergence.first_differing_layer(host, digests) == target.index
    assert divergence.first_differing_element(target, host[target.index], device[target.index]) == found
    assert found.describe() == (f"first diverging layer {target.index} (stage1 DEPTHWISE_CONV_2D), element {element} "
                                f"[0, 0, 2, 5]: device {found.device}, host {found.host}")


def test_a_device_of_another_shape_is_not_compared(digits):
    _card, layers, _sample, host = digits
    with pytest.raises(ValueError, match="the model has 15"):
        divergence.first_differing_layer(host, (0,) * 14)
    with pytest.raises(ValueError, match="the device sent 10 bytes"):
        divergence.first_differing_element(layers[0], host[0], host[0][:10])


def test_the_digest_is_the_crc_the_frames_use(digits):
    """zlib's CRC-32 of the int8 bytes: firmware/src/protocol.c's proto_crc32 (its check value)."""
    assert divergence.digest(np.frombuffer(b"123456789", dtype=np.int8)) == 0xCBF43926


def test_findings_go_through_run_json_unchanged(tmp_path):
    findings = [TraceFinding("an386-digits", "clean", 3, 15, Divergence(2, "stage1", "DEPTHWISE_CONV_2D", 37,
                                                                         (0, 2, 1, 5), -12, -11)),
                TraceFinding("an386-digits", "ood", 0, 15, None),
                TraceFinding("an386-digits", "ood", 1, 0, None, "no valid answer to TRACE in 2 attempts")]
    run = a_run(layer_traces=findings)
    run.write(tmp_path)
    assert files.read_run(tmp_path).layer_traces == findings
    assert [f.line() for f in findings] == [
        "an386-digits/clean#3: first diverging layer 2 (stage1 DEPTHWISE_CONV_2D), element 37 [0, 2, 1, 5]: "
        "device -12, host -11",
        "an386-digits/ood#0: every one of its 15 layers agrees with LiteRT: the difference is in the exit decision "
        "or the ensemble",
        "an386-digits/ood#1: not traced: no valid answer to TRACE in 2 attempts"]
