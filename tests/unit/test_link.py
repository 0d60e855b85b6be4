"""The host's link over real pseudo-terminals: replies that are not answers, broken frames, retries,
and what a board's thread does with an error nobody foresaw. The device end is a pty whose other
side echoes or speaks the real protocol (tests/support/ptys.py); the firmware's own side is tested on
QEMU in tests/physical/test_misbehaving_boards.py."""

import time

import pytest
import serial

from hil.firmware import build as firmware
from hil.hw import protocol
from hil.hw.board import Board
from hil.lab.load import BoardSpec, RunSettings
from hil.hw.link import DeviceLink, NoValidReply
from hil.model.card import load_model
from hil.run.rack import BoardFailure
from hil.run.records import MEASUREMENTS, RecordJournal, read_records
from hil.run.stream import BoardContext, Job, Journals, stream_board
from hil.model.testsets import load_model_testsets

from tests.support.ptys import FakeDevice, LineRelay, reframed

INFO = protocol.Info(protocol.PROTOCOL_VERSION, 25_000_000, protocol.MAX_PAYLOAD, 64, 10, 3, 32768, 0,
                     b"\x11" * 32, b"\x22" * 32, "fake", "fake-1")
EXITED = protocol.Result(True, 3, 30000, 1234, 1, (tuple(range(10)),))


def reply(frame: protocol.Frame, message) -> bytes:
    return protocol.encode_message(message, frame.seq)


def answers(frame: protocol.Frame, result=EXITED, burst_count=None) -> bytes:
    """A well-behaved device, except for what the test passes in."""
    request = protocol.parse_message(frame)
    if isinstance(request, protocol.Hello):
        return reply(frame, INFO)
    if isinstance(request, protocol.SetThreshold):
        return reply(frame, protocol.ThresholdSet(request.tau_q15))
    if isinstance(request, protocol.InferBurst):
        return reply(frame, protocol.BurstResult(burst_count or request.count, 99, 1, True, 3, 30000))
    return reply(frame, result)


def open_link(path: str, timeout: float = 2.0) -> DeviceLink:
    return DeviceLink(serial.Serial(path, timeout=1.0, exclusive=True), name="bench-1", timeout=timeout)


def test_an_echoed_request_is_a_wrong_reply_not_an_answer():
    with LineRelay(None) as echo:
        link = open_link(echo.path)
        with pytest.raises(protocol.ProtocolError) as wrong:
            link.request(protocol.Hello())
        assert wrong.value.code == protocol.ErrorCode.UNKNOWN_MESSAGE
        assert "HELLO instead of INFO" in str(wrong.value)
        with pytest.raises(NoValidReply, match=r"bench-1: no valid answer to INFER in 3 attempts: "
                                               r"3 wrong replies \(INFER instead of RESULT\)$"):
            link.exchange(protocol.Infer(b"\x01" * 64), retries=2)
        assert link.counts.retries == 2 and link.counts.rejected == {"HELLO instead of INFO": 1,
                                                                     "INFER instead of RESULT": 3}
        link.port.close()


def test_a_result_must_have_the_shape_the_boards_info_reported():
    # INFO says 1 + 3 heads; this RESULT of a full path carries only 2 heads.
    two_heads = protocol.Result(False, 3, 30000, 1234, 1, tuple(tuple(range(10)) for _ in range(3)))
    with FakeDevice(lambda frame: answers(frame, result=two_heads)) as device:
        link = open_link(device.path)
        assert link.hello() == INFO
        with pytest.raises(protocol.ProtocolError, match="RESULT of 3x10 logits where INFO makes 4x10") as wrong:
            link.infer(b"\x01" * 64)
        assert wrong.value.code == protocol.ErrorCode.BAD_LENGTH
        link.port.close()


def test_a_burst_must_report_the_runs_asked_for():
    with FakeDevice(lambda frame: answers(frame, burst_count=4)) as device:
        link = open_link(device.path)
        with pytest.raises(protocol.ProtocolError, match="BURST_RESULT of 4 runs for 5"):
            link.infer_burst(b"\x01" * 64, 5)
        link.port.close()


def test_a_broken_reply_costs_one_quick_retry_and_is_counted():
    sent = []

    def corrupt_first_info(frame):
        sent.append(frame)
        return reframed(answers(frame), flip_crc=True) if len(sent) == 1 else answers(frame)

    with FakeDevice(corrupt_first_info) as device:
        link = open_link(device.path, timeout=5.0)
        started = time.monotonic()
        info, attempts = link.exchange(protocol.Hello(), retries=2)
        assert (info, attempts) == (INFO, 2)
        assert time.monotonic() - started < 2, "the retry waited for a timeout after the broken frame"
        assert link.counts.corrupt == {"BAD_CRC": 1} and link.counts.retries == 1 and link.counts.timeouts == 0
        assert link.counts.describe() == "1 corrupt frame (BAD_CRC)"
        link.port.close()


def test_a_request_that_never_gets_an_answer_says_what_arrived():
    with FakeDevice(lambda frame: reframed(answers(frame), flip_crc=True)) as device:
        link = open_link(device.path)
        with pytest.raises(NoValidReply, match=r"no valid answer to HELLO in 2 attempts: 2 corrupt frames \(BAD_CRC\)$"):
            link.exchange(protocol.Hello(), retries=1)
        link.port.close()


class PtyBoard(Board):
    """A board whose UART is a pty with a fake device behind it; never brought up, so nothing to flash."""

    def __init__(self, spec, manifest, run):
        super().__init__(spec, manifest, run, flasher=None)

    def _open_port(self):
        raise NotImplementedError

    def alive(self) -> bool:
        return True

    def reset(self) -> None:
        raise NotImplementedError

    def power_cycle(self) -> None:
        raise NotImplementedError

    def _make_monitor(self, traces_dir):
        return None

    def _stop(self) -> None:
        pass


def test_an_error_nobody_foresaw_in_a_boards_thread_is_that_boards_failure(tmp_path):
    card = load_model("qute-digits")
    testset = load_model_testsets(card)[0]
    spec = BoardSpec("pty-1", "mps2-an386", "qute-digits", None)
    board = PtyBoard(spec, firmware.prebuilt("mps2-an386", "qute-digits"), RunSettings())

    def advance(slot, samples):  # e.g. a progress display that does not know the board
        raise KeyError(slot)

    with FakeDevice(answers) as device:
        board.link = open_link(device.path)
        with RecordJournal(tmp_path) as journal, RecordJournal(tmp_path, MEASUREMENTS) as measurements:
            context = BoardContext(32768, 25_000_000, 1, Journals(journal, measurements))
            failures = stream_board(board, [Job(testset, [0, 1])], context, advance)
        board.link.port.close()
    assert failures == [BoardFailure("pty-1", "stream", "pty-1: unexpected KeyError: 'pty-1'")]
    assert [r.index for r in read_records(tmp_path)] == [0]  # what was answered is kept


@pytest.mark.parametrize("send", ["send_raw", "hello"])
def test_a_port_whose_other_side_goes_away_during_the_drain_is_link_lost(monkeypatch, send):
    # pyserial's flush() is tcdrain(2), whose error is termios.error, not an OSError. Here the other
    # side closes while the bytes drain: the real call on a real pty, only its timing is arranged.
    import os
    import pty
    import termios

    from hil.hw.link import LinkLost

    master, slave = pty.openpty()
    port = serial.Serial(os.ttyname(slave), 115200, timeout=0.1)
    os.close(slave)
    real_tcdrain, raised = termios.tcdrain, []

    def other_side_gone_while_draining(fd: int) -> None:
        os.close(master)
        try:
            real_tcdrain(fd)
        except termios.error as error:
            raised.append(error)
            raise

    monkeypatch.setattr(termios, "tcdrain", other_side_gone_while_draining)
    link = DeviceLink(port, "pty-1", timeout=0.5)
    try:
        with pytest.raises(LinkLost, match="pty-1: link lost .*Input/output error"):
            link.send_raw(b"\x00") if send == "send_raw" else link.hello()
    finally:
        port.close()
    assert [type(error) for error in raised] == [termios.error]
