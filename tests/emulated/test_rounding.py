"""The kernel rounding modes on emulated boards: each prebuilt image answers as the reference its manifest's
`rounding` names, byte for byte, on the samples where LiteRT and TFLM differ (docs/decisions.md, Which reference).

Per model, every test set's differing samples (all of them, found by running both references on every sample)
and its first CONTROLS, at τ = 1 (every byte of the exit and the heads), on one board kind per model: qute-digits on
mps2-an386 (Cortex-M4), qute-mnist1d on mps2-an500 (Cortex-M7). The kernels are the same C on every kind, and
`hil firmware verify --rounding tflm --full` ran every sample of every image at every threshold (docs/firmware.md).
Last, a `hil run` with `run.reference: tflm` on the tflm image.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hil import REPO_ROOT
from hil.firmware import build as firmware
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS
from hil.hw.link import DeviceLink
from hil.lab.load import load_lab
from hil.model import decisions
from hil.model.card import load_model
from hil.model.reference import Reference, ReferenceOutputs, run_reference
from hil.model.testsets import load_model_testsets, write_npz
from hil.run.records import read_records
from hil.store import health
from tests.support.labs import BOARDS, PASS, hil, write_lab

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")

BOARD_OF = {"qute-digits": "mps2-an386", "qute-mnist1d": "mps2-an500"}
CONTROLS = 3  # samples per test set where the references may agree, compared too
RUN_SAMPLES = 12  # per test set of the run
PER_SAMPLE = ("inputs", "labels", "corruption")  # a test set's arrays with one entry per sample


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



def _lead_with_differing(card, source: Path, target: Path, count: int) -> int:
    """Writes `count` samples of the test set `source` to `target`, those where the references differ first;
    returns how many of them differ."""
    with np.load(source) as data:
        arrays = {key: data[key] for key in data.files}
    litert, tflm = (_outputs(run_reference(card, arrays["inputs"], reference=r)) for r in Reference)
    differ = np.any(litert != tflm, axis=(1, 2))
    order = np.concatenate([np.nonzero(differ)[0], np.nonzero(~differ)[0]])[:count]
    write_npz(target, {key: value[order] if key in PER_SAMPLE else value for key, value in arrays.items()})
    return int(differ[order].sum())


def test_a_run_against_tflm_on_the_tflm_image_passes_where_litert_would_differ(tmp_path):
    """`hil run` of a lab with `run.reference: tflm` and the tflm image, as a user runs it: real QEMU, flashed
    through the emulated probe. Each test set leads with samples where the references differ, so the health
    check's known question (the first sample) and the records are such samples."""
    slot, (kind, model) = "an500-mnist1d", BOARDS["an500-mnist1d"]
    path = write_lab(tmp_path, boards={slot: (kind, model)}, samples=RUN_SAMPLES, reference="tflm")
    lab = load_lab(path)
    card = lab.models[model].card
    differing = [_lead_with_differing(card, REPO_ROOT / "fixtures" / "testsets" / model / f"{t.name}.npz", t.path,
                                      RUN_SAMPLES) for t in lab.models[model].testsets]
    assert all(differing), f"a test set of {model} has no sample where the references differ: {differing}"
    result = hil("run", path, "--json")
    assert result.returncode == PASS, result.stderr[-3000:]
    run_dir = Path(json.loads(result.stdout)["run_dir"])
    run = json.loads((run_dir / "run.json").read_text())
    board, manifest = run["boards"][slot], firmware.prebuilt(kind, model, Reference.TFLM)
    assert run["reference"] == board["firmware"]["rounding"] == "tflm"
    assert board["reported"]["firmware_sha256"] == board["flash"]["image_sha256"] == manifest.image_sha256
    (check,) = health.history(run_dir.parent, lab.name, slot)
    assert check.ok, check.reason
    assert len(read_records(run_dir)) == len(differing) * RUN_SAMPLES
