"""The fake board (hil.testing.fake_board) against the firmware it stands in for: the same requests to
a QEMU board and to the fake get the same answers, all but the cycle counts. The unit tests of the
pipeline rely on this."""

import shutil

import pytest

from hil.firmware import build as firmware
from hil.hw import protocol
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS
from hil.hw.link import DeviceError, DeviceLink
from hil.lab.load import BoardSpec, RunSettings
from hil.model import decisions
from hil.model.card import load_model
from hil.model.testsets import load_model_testsets
from hil.testing.fake_board import FakeBoard

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
KIND, MODEL, SAMPLES = "mps2-an500", "qute-mnist1d", 16


def without_cycles(reply):
    return reply.__class__(**{**reply.__dict__, "cycles": 0}) if isinstance(reply, protocol.Result) else reply


def test_the_fake_answers_every_request_as_the_firmware_does():
    manifest = firmware.prebuilt(KIND, MODEL)
    fake = FakeBoard(BoardSpec("twin", KIND, MODEL, None), manifest, RunSettings(), metered=False)
    fake.bring_up()
    testset = load_model_testsets(load_model(MODEL))[1]
    requests = [protocol.Hello(), protocol.SetThreshold(decisions.threshold_q15("0.7"))]
    requests += [protocol.Infer(testset.inputs[i].tobytes()) for i in range(SAMPLES)]
    requests += [protocol.InferBurst(3, testset.inputs[0].tobytes()), protocol.Infer(b"\x01"), protocol.Hello()]
    with QemuBoard(BOARD_KINDS[KIND], manifest.elf) as qemu:
        real = DeviceLink(qemu.link, name="qemu", timeout=10)
        for request in requests:
            answers = []
            for link in (real, fake.link):
                try:
                    answers.append(without_cycles(link.request(request)))
                except DeviceError as error:
                    answers.append(error.code)
            if isinstance(request, protocol.InferBurst):
                answers = [a.__class__(**{**a.__dict__, "total_cycles": 0}) for a in answers]
            if isinstance(request, protocol.Hello):
                answers = [(a.tau_q15, a.windows, a.model_sha256, a.firmware_sha256, a.num_heads, a.input_size)
                           for a in answers]
            assert answers[0] == answers[1], request
    fake.shut_down()
