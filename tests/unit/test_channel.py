"""The one framed channel (hil/hw/channel.py), on pyserial's own loop:// port: the wire bytes are the
protocol vectors' byte for byte, the reader resyncs and counts, the one sequence counter skips
0xFFFF, replies are matched to their request, and the tap sees every frame both ways."""

import json
import logging
import threading
import time

import pytest
import serial

from hil import REPO_ROOT
from hil.hw import monitor_protocol as mp
from hil.hw import protocol as p
from hil.hw.channel import (WIRE_LOG, Channel, ChannelLost, Direction, Framing, Replies, SequenceCounter,
                            may_answer, open_port, refuses)

VECTORS = json.loads((REPO_ROOT / "docs" / "protocol-vectors.json").read_text())


def loop_channel(tap=None) -> Channel:
    return Channel(open_port("loop://"), "bench-1", tap=tap)


@pytest.mark.parametrize("vector", VECTORS["frames"], ids=lambda v: v["name"])
def test_a_message_goes_out_as_the_vectors_wire_bytes_and_comes_back_as_its_frame(vector):
    message = p.parse_message(p.Frame(vector["type"], vector["seq"], bytes.fromhex(vector["payload_hex"])))
    channel = loop_channel()
    assert channel.send(message, vector["seq"]) == vector["seq"]
    wire = bytes.fromhex(vector["wire_hex"])
    assert channel.port.read(len(wire)) == wire  # exactly what went on the line
    channel.port.write(wire)
    assert channel.read(1.0) == [p.Frame(vector["type"], vector["seq"], bytes.fromhex(vector["payload_hex"]))]


@pytest.mark.parametrize("vector", VECTORS["receive"], ids=lambda v: v["name"])
def test_the_reader_resyncs_and_counts_what_it_dropped(vector):
    framing = Framing("bench-1")
    stream = bytes.fromhex(vector["stream_hex"])
    events = [e for i in range(len(stream)) for e in framing.decode(stream[i:i + 1])]  # a byte at a time
    assert [("frame", e.type, e.seq, e.payload.hex()) if isinstance(e, p.Frame) else ("error", e.code)
            for e in events] == [("frame", e["type"], e["seq"], e["payload_hex"]) if e["event"] == "frame"
                                 else ("error", e["code"]) for e in vector["events"]]
    errors = [p.ErrorCode(e["code"]).name for e in vector["events"] if e["event"] == "error"]
    assert sum(framing.reader.corrupt.values()) == len(errors) and set(framing.reader.corrupt) == set(errors)
    assert framing.reader.frames == len(vector["events"]) - len(errors)


def test_one_sequence_counter_counts_to_fffe_and_wraps_to_0_never_ffff():
    counter = SequenceCounter()
    counter.last = 0xFFFD
    assert [counter.next() for _ in range(4)] == [0xFFFE, 0, 1, 2]


def test_unprompted_frames_and_replies_share_the_counter_only_when_no_seq_is_given():
    framing = Framing("unit", mp.MonitorMessage)
    assert framing.encode(mp.Flushed(5))[0] == 1
    assert framing.encode(mp.Flushed(5), 0x1234)[0] == 0x1234  # a reply goes with its request's seq
    assert framing.encode(mp.Flushed(5))[0] == 2


def test_which_frame_answers_which_request():
    error = p.Frame(p.MessageType.ERROR, 7, b"")
    assert may_answer(p.Frame(p.MessageType.RESULT, 7, b""), 7) and not may_answer(p.Frame(0x83, 6, b""), 7)
    assert may_answer(error, 9)  # an ERROR names what it refuses in its payload, not its seq
    assert refuses(p.ErrorReply(p.ErrorCode.BAD_CRC, 9), 9) and refuses(p.ErrorReply(p.ErrorCode.BAD_CRC, p.SEQ_UNKNOWN), 9)
    assert not refuses(p.ErrorReply(p.ErrorCode.BAD_CRC, 8), 9)


def test_replies_hand_over_the_answer_and_drop_late_ones():
    replies = Replies()
    late, answer = p.ThresholdSet(1), p.ThresholdSet(2)
    replies.put(p.Frame(late.TYPE, 4, late.to_payload()), late)
    replies.put(p.Frame(p.MessageType.ERROR, 3, b""), p.ErrorReply(p.ErrorCode.BAD_CRC, 3))  # refuses request 3
    threading.Timer(0.05, replies.put, (p.Frame(answer.TYPE, 5, answer.to_payload()), answer)).start()
    assert replies.wait(5, timeout=2.0) == answer
    assert replies.wait(6, timeout=0.05) is None
    replies.put(p.Frame(p.MessageType.ERROR, p.SEQ_UNKNOWN, b""), p.ErrorReply(p.ErrorCode.BAD_CRC, p.SEQ_UNKNOWN))
    assert replies.wait(7, timeout=1.0) == p.ErrorReply(p.ErrorCode.BAD_CRC, p.SEQ_UNKNOWN)


def test_the_tap_and_the_wire_log_see_every_frame_in_and_out(caplog):
    seen = []
    channel = loop_channel(seen.append)
    with caplog.at_level(logging.DEBUG, logger=WIRE_LOG.name):
        seq = channel.send(p.Hello())
        channel.read(1.0)  # loop:// hands back what was sent
        channel.port.write(b"\x05\x01\x02\x03\x00")  # a frame that is no valid COBS
        channel.read(1.0)
        channel.resync()
    assert [(e.direction, type(e.frame).__name__) for e in seen] == [
        (Direction.SENT, "Frame"), (Direction.RECEIVED, "Frame"), (Direction.RECEIVED, "FrameError"),
        (Direction.SENT, "NoneType")]
    assert seen[0].frame == seen[1].frame == p.Frame(p.MessageType.HELLO, seq, b"") and seen[3].raw == b"\x00"
    logged = [r.wire for r in caplog.records if r.name == WIRE_LOG.name]
    assert logged == [
        {"link": "bench-1", "dir": "out", "type": 1, "name": "HELLO", "seq": seq, "payload": ""},
        {"link": "bench-1", "dir": "in", "type": 1, "name": "HELLO", "seq": seq, "payload": ""},
        {"link": "bench-1", "dir": "in", "error": "BAD_FRAMING", "detail": seen[2].frame.detail},
        {"link": "bench-1", "dir": "out", "raw": "00"}]


def test_a_listener_hands_over_every_frame_and_reports_the_port_lost():
    channel, frames, lost = loop_channel(), [], threading.Event()
    listener = channel.listen(frames.append, lambda error: lost.set(), wait=0.02)
    for value in range(3):
        channel.send(p.ThresholdSet(value))
    deadline = time.monotonic() + 2
    while len(frames) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [p.parse_message(f).tau_q15 for f in frames] == [0, 1, 2]
    channel.close()  # under the reading thread: it is lost, not stopping
    assert lost.wait(2.0)
    listener.stop()


def test_a_closed_port_is_channel_lost_naming_the_link():
    channel = loop_channel()
    channel.close()
    with pytest.raises(ChannelLost, match=r"^bench-1: link lost \(.*\); the board or its port went away$"):
        channel.send(p.Hello())


def test_a_port_pyserial_cannot_open_is_a_serial_exception():
    with pytest.raises(serial.SerialException):
        open_port("/dev/ttyNOTHERE0")
