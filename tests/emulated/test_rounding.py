"""The kernel rounding modes on emulated boards: each prebuilt image answers as the reference its manifest's
`rounding` names, byte for byte, on the samples where LiteRT and TFLM differ (docs/decisions.md, Which reference).

Per model, every test set's differing samples (all of them, found by running both references on every sample)
and its first CONTROLS, at τ = 1 (every byte of the exit and the heads), on one board kind per model: qute-digits on
mps2-an386 (Cortex-M4), qute-mnist1d on mps2-an500 (Cortex-M7). The kernels are the same C on every kind, and
`hil firmware verify --rounding tflm --full` ran every sample of every image at every threshold (docs/firmware.md).
"""

import shutil

import numpy as np
import pytest

from hil.firmware import build as firmware
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS
from hil.hw.link import DeviceLink
from hil.model import decisions
from hil.model.card import load_model
from hil.model.reference import Reference, ReferenceOutputs, run_reference
from hil.model.testsets import load_model_testsets

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")

BOARD_OF = {"qute-digits": "mps2-an386", "qute-mnist1d": "mps2-an500"}
CONTROLS = 3  # samples per test set where the references may agree, compared too


def _outputs(outputs: ReferenceOutputs) -> np.ndarray:
    """(N, 1 + heads, classes): the exit's and every head's int8 logits per sample."""
    return np.stack([outputs.exit, *outputs.heads], axis=1)


@pytest.fixture(scope="module", params=list(BOARD_OF))
def samples(request):
    """Per test set: the samples compared, and both references' outputs on them; only where the two differ
    do they tell the rounding modes apart."""
    card = load_model(request.param)
    chosen = {}
    for testset in load_model_testsets(card):
        litert, tflm = (_outputs(run_reference(card, testset.inputs, reference=r)) for r in Reference)
        differing = np.nonzero(np.any(litert != tflm, axis=(1, 2)))[0]
        indices = sorted(set(differing.tolist()) | set(range(CONTROLS)))
        chosen[testset.name] = (testset.inputs[indices], {Reference.LITERT: litert[indices],
                                                          Reference.TFLM: tflm[indices]}, len(differing))
    assert sum(count for *_rest, count in chosen.values()) > 0, f"{card.name}: no sample tells the references apart"
    return card, chosen


@pytest.mark.parametrize("rounding", list(Reference))
def test_each_image_answers_as_its_rounding_modes_reference_where_they_differ(samples, rounding):
    card, chosen = samples
    manifest = firmware.prebuilt(BOARD_OF[card.name], card.name, rounding)
    assert manifest.rounding is rounding
    other = next(r for r in Reference if r is not rounding)
    told_apart = 0
    with QemuBoard(BOARD_KINDS[manifest.board], manifest.elf) as qemu:
        link = DeviceLink(qemu.link, name=f"{manifest.board}/{card.name}/{rounding}")
        assert link.hello().firmware_sha256.hex() == manifest.image_sha256
        link.set_threshold(decisions.Q15_ONE)  # the full path: every byte of the exit and the heads
        for name, (inputs, expected, _count) in chosen.items():
            for i, sample in enumerate(inputs):
                answer = np.array(link.infer(sample.tobytes()).logits, dtype=np.int8)
                assert np.array_equal(answer, expected[rounding][i]), f"{name} sample {i}: not {rounding}'s outputs"
                told_apart += not np.array_equal(answer, expected[other][i])
    assert told_apart == sum(count for *_rest, count in chosen.values()) > 0
