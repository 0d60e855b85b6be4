"""A firmware whose depthwise convolution rounds differently: `hil run` fails, and its verdict names the first
diverging layer (the first depthwise layer), the element and both values, traced on a real QEMU board; one whose
ensemble is wrong has every layer agree; and a correct image's layer outputs are LiteRT's intermediate tensors."""

import json
import os
import re
import shutil

import numpy as np
import pytest

from hil.firmware import build as firmware
from hil.model.reference import Reference
from hil.hw import protocol
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS
from hil.hw.link import DeviceError, DeviceLink
from hil.model.card import load_model
from hil.model.layers import model_layers
from hil.model.testsets import load_model_testsets
from hil.run import divergence
from tests.support.labs import REGRESSION, hil, run_dir_of, write_lab

pytestmark = [
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed"),
    pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None and not os.environ.get("CI"),
                       reason="needs the ARM toolchain (CI installs it)"),
]

KIND, MODEL, SLOT = "mps2-an386", "qute-digits", "an386-digits"
DEPTHWISE_CALL = "conv_outputs(acc, channels, &o, out);"  # the depthwise kernel's rescale (the DSP path all boards run)
# The mutant rounds the rescaled accumulator down (an arithmetic shift) where TFLite rounds to nearest.
FLOORING = """
static void conv_outputs_flooring(const int32_t *acc, int32_t count, const conv_output_t *o, int8_t *out)
{
    for (int32_t i = 0; i < count; i++) {
        const channel_rescale_t *r = &o->channel[i];
        const int32_t biased = (int32_t)((uint32_t)acc[i] + (uint32_t)r->bias);
        const int32_t shifted = (int32_t)((uint32_t)biased << r->left_shift);
        const int32_t high = (int32_t)(((int64_t)shifted * r->multiplier + ((int64_t)1 << 30)) >> 31);
        out[i] = (int8_t)clamp((high >> r->right_shift) + o->offset, o->act_min, o->act_max);
    }
}

static bool dsp_depthwise_conv2d("""


def run_mutant(tmp_path, source_file: str, edits: list[tuple[str, str]]):
    """`hil run` on one board whose image is built from firmware/ with textual edits to one source file: the
    run's result and its run.json."""
    source = tmp_path / "firmware"
    shutil.copytree(firmware.FIRMWARE_DIR, source, ignore=shutil.ignore_patterns("prebuilt", "build"))
    path = source / "src" / source_file
    text = path.read_text()
    for original, replacement in edits:
        assert text.count(original) == 1, f"{original!r} moved in {source_file}: update this test"
        text = text.replace(original, replacement)
    path.write_text(text)
    (mutant,) = firmware.build(out=tmp_path / "mutant", source_dir=source, images=[(KIND, MODEL)],
                               roundings=(Reference.LITERT,))
    assert mutant.image_sha256 != firmware.prebuilt(KIND, MODEL).image_sha256
    lab = write_lab(tmp_path, boards={SLOT: (KIND, MODEL)}, samples=3,
                    manifests={(KIND, MODEL): mutant.directory / "manifest.json"})
    result = hil("run", lab)
    assert result.returncode == REGRESSION, result.stdout + result.stderr
    return result, json.loads((run_dir_of(tmp_path) / "run.json").read_text())


def test_the_verdict_names_the_first_layer_that_rounds_differently(tmp_path):
    result, run = run_mutant(tmp_path, "kernels.c", [
        (DEPTHWISE_CALL, DEPTHWISE_CALL.replace("conv_outputs(", "conv_outputs_flooring(")),
        ("\nstatic bool dsp_depthwise_conv2d(", FLOORING)])
    layers = model_layers(load_model(MODEL))
    depthwise = next(layer for layer in layers if layer.op == "DEPTHWISE_CONV_2D")
    assert depthwise.index > 0  # layers before it use the untouched kernels: they must agree
    shown = " ".join(result.stdout.replace("│", " ").split())  # the verdict panel's lines, unwrapped
    traces = run["layer_traces"]
    assert traces and all(t.get("failure") is None for t in traces), traces
    for t in traces:
        d = t["divergence"]
        assert (d["layer"], d["stage"], d["op"]) == (depthwise.index, "stage1", "DEPTHWISE_CONV_2D")
        assert tuple(d["coordinates"]) == tuple(int(c) for c in np.unravel_index(d["element"], depthwise.output_shape))
        assert d["device"] == d["host"] - 1  # flooring instead of rounding: one step down, never up
        line = (f"{SLOT}/{t['testset']}#{t['index']}: first diverging layer {depthwise.index} (stage1 "
                f"DEPTHWISE_CONV_2D), element {d['element']} [{', '.join(map(str, d['coordinates']))}]: "
                f"device {d['device']}, host {d['host']}")
        assert line in run["verdict"]["reasons"] and line in shown, result.stdout
    assert re.search(rf"{SLOT}/\S+: \d+ of \d+ answers differ from the host reference", result.stdout)


def test_a_wrong_ensemble_is_told_from_a_wrong_layer(tmp_path):
    """The ensemble's confidence one step low: every output byte is right, so every layer agrees, and the
    verdict says the difference is in the decisions."""
    ensemble = "*confidence_q15 = (uint16_t)(summed[best] / (uint32_t)k);"
    result, run = run_mutant(tmp_path, "decisions.c",
                             [(ensemble, "*confidence_q15 = (uint16_t)(summed[best] / (uint32_t)k - 1u);")])
    traces = run["layer_traces"]
    layers = len(model_layers(load_model(MODEL)))
    assert traces and all(t["divergence"] is None and t.get("failure") is None for t in traces), traces
    assert all(t["layers"] == layers for t in traces)
    shown = " ".join(result.stdout.replace("│", " ").split())
    for t in traces:
        line = (f"{SLOT}/{t['testset']}#{t['index']}: every one of its {layers} layers agrees with LiteRT: the "
                "difference is in the exit decision or the ensemble")
        assert line in run["verdict"]["reasons"] and line in shown, result.stdout


@pytest.mark.parametrize("kind, model", [("mps2-an386", "qute-digits"), ("mps2-an500", "qute-mnist1d")])
def test_a_correct_device_traces_every_layer_as_litert_computes_it(kind, model):
    """The prebuilt image's layer outputs are LiteRT's intermediate tensors, bit for bit, whatever the threshold;
    a trace raises no busy window; a layer or offset that does not exist is refused."""
    card, manifest = load_model(model), firmware.prebuilt(kind, model)
    layers = model_layers(card)
    samples = load_model_testsets(card)[0].inputs[:2]
    with QemuBoard(BOARD_KINDS[kind], manifest.elf) as qemu:
        link = DeviceLink(qemu.link, name=kind, timeout=10)
        link.set_threshold(0)  # the early exit always taken: a trace still runs both stages
        windows = link.hello().windows
        for sample in samples:
            host = divergence.host_layer_outputs(card, layers, sample)
            digests = link.request(protocol.Trace(protocol.TRACE_DIGESTS, 0, sample.tobytes())).digests
            assert divergence.first_differing_layer(host, digests) is None
            widest = max(layers, key=lambda layer: layer.output_bytes)  # several chunks
            assert widest.output_bytes > protocol.TRACE_CHUNK
            rows = [link.request(protocol.Trace(widest.index, offset, sample.tobytes())).data
                    for offset in range(0, widest.output_bytes, protocol.TRACE_CHUNK)]
            assert b"".join(rows) == host[widest.index].tobytes()
        assert link.hello().windows == windows
        for layer, offset in ((len(layers), 0), (widest.index, widest.output_bytes), (protocol.TRACE_DIGESTS, 1)):
            with pytest.raises(DeviceError) as refused:
                link.request(protocol.Trace(layer, offset, samples[0].tobytes()))
            assert refused.value.code == protocol.ErrorCode.BAD_VALUE
