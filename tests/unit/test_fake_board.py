"""hil.testing.fake_board on its own: it answers as the firmware does (the host reference's outputs,
the decision spec's decisions, the firmware's refusals), so that the unit tests of the pipeline
built on it mean something. tests/emulated/test_fake_board_twin.py holds it against the firmware
itself, on QEMU."""

import numpy as np
import pytest

from hil.firmware import build as firmware
from hil.hw import protocol
from hil.hw.link import DeviceError, LinkTimeout
from hil.lab.load import BoardSpec, RunSettings
from hil.model import decisions
from hil.model.reference import run_reference
from hil.model.testsets import load_model_testsets
from hil.testing.fake_board import FakeBoard, Faults, Timing, flip_crc

SAMPLES = 24


def fake(model: str = "qute-digits", faults: Faults = Faults(), timeout: float = 1.0) -> FakeBoard:
    kind = "mps2-an386"
    board = FakeBoard(BoardSpec("fake-1", kind, model, None), firmware.prebuilt(kind, model),
                      RunSettings(request_timeout_s=timeout), faults, metered=False)
    board.bring_up()
    return board


@pytest.mark.parametrize("tau", ["0.5", "0.9", "1.0"])
def test_the_fake_answers_with_the_host_reference_and_the_decision_spec(card, tau):
    board = fake(card.name)
    testset = load_model_testsets(card)[1]  # a shifted set: both exit paths are taken
    inputs = testset.inputs[:SAMPLES]
    reference = run_reference(card, inputs)
    tau_q15 = decisions.threshold_q15(tau)
    spec = decisions.cascade(reference.exit, card.exit_lut, decisions.ensemble(list(reference.heads), card.head_luts),
                             tau_q15)
    assert board.link.set_threshold(tau_q15) == tau_q15
    timing = Timing.of(card)
    for i, sample in enumerate(inputs):
        result = board.link.infer(sample.tobytes())
        assert (result.exited, result.predicted, result.confidence_q15) == (
            bool(spec.exited[i]), int(spec.predicted[i]), int(spec.confidence_q15[i]))
        expected = [reference.exit[i]] + ([] if result.exited else [h[i] for h in reference.heads])
        assert [list(row) for row in result.logits] == [list(row) for row in expected]
        assert result.cycles == timing.stage1_cycles + (timing.answer_cycles if result.exited else timing.stage2_cycles)
        assert result.window == i + 1
    if tau == "1.0":
        assert not spec.exited.any()
    board.shut_down()


def test_the_fake_refuses_what_the_firmware_refuses():
    board = fake()
    link = board.link
    assert link.set_threshold(40_000) == decisions.Q15_ONE  # clamped to 1.0, as qute.c does
    link.send_raw(flip_crc(protocol.encode_message(protocol.Hello(), 7)))
    with pytest.raises(DeviceError, match="BAD_CRC") as unreadable:
        link.receive(7, timeout=1)
    assert unreadable.value.code == protocol.ErrorCode.BAD_CRC
    with pytest.raises(DeviceError, match="BAD_LENGTH"):
        link.infer(b"\x01" * 3)  # the model takes 64 bytes
    link.send_raw(protocol.encode_frame(protocol.MessageType.INFER_BURST, 8, b"\x00\x00" + b"\x01" * 64))
    with pytest.raises(DeviceError, match="BAD_VALUE"):  # a burst of 0 runs
        link.receive(8, timeout=1)
    link.send_raw(protocol.encode_message(protocol.ThresholdSet(5), 9))  # a reply, not a request
    with pytest.raises(DeviceError, match="UNKNOWN_MESSAGE"):
        link.receive(9, timeout=1)
    assert link.hello().windows == 0  # nothing it refused ran
    board.shut_down()


def test_a_burst_is_one_window_of_every_run():
    board = fake()
    sample = load_model_testsets(board.firmware.card)[0].inputs[0].tobytes()
    single = board.link.infer(sample)
    burst = board.link.infer_burst(sample, 5)
    assert (burst.count, burst.total_cycles, burst.window) == (5, 5 * single.cycles, 2)
    assert (burst.exited, burst.predicted, burst.confidence_q15) == (single.exited, single.predicted,
                                                                    single.confidence_q15)
    board.shut_down()


def test_a_restart_loses_the_request_and_puts_threshold_and_windows_back():
    board = fake(faults=Faults(restart_before=frozenset({2})), timeout=0.2)
    sample = load_model_testsets(board.firmware.card)[0].inputs[0].tobytes()
    board.link.set_threshold(20_000)
    assert board.link.infer(sample).window == 1
    with pytest.raises(LinkTimeout):
        board.link.infer(sample)
    info = board.link.hello()
    assert (info.tau_q15, info.windows) == (decisions.Q15_ONE, 0)
    assert board.link.infer(sample).window == 1  # the same ordinal again: the host can tell it restarted
    board.shut_down()


def test_faults_change_what_arrives():
    board = fake(faults=Faults(corrupt_results=frozenset({1}), wrong_logits=frozenset({2}), gone_after=3,
                               firmware_sha256=b"\x99" * 32), timeout=0.5)
    assert board.link.hello().firmware_sha256 == b"\x99" * 32
    sample = load_model_testsets(board.firmware.card)[0].inputs[0].tobytes()
    with pytest.raises(protocol.ProtocolError, match="BAD_CRC"):
        board.link.infer(sample)
    board.link.resync()
    wrong = board.link.infer(sample)
    exit_logits, _heads = board.firmware.outputs(sample)
    assert np.count_nonzero(np.asarray(wrong.logits[0]) - exit_logits[0]) == 1
    assert board.alive()
    with pytest.raises(Exception, match="not open|Port not open"):
        board.link.infer(sample)
    assert not board.alive()
