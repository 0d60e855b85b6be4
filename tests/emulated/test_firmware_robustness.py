"""Garbage on the line: a running emulated board answers with error frames, never hangs
or resets, and afterwards still gives bit-exact results."""

import shutil
import struct

import numpy as np
import pytest

from hil.model import decisions
from hil.firmware import build as firmware
from hil.hw import protocol
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS
from hil.hw.link import DeviceError, DeviceLink
from hil.model.card import load_model
from hil.model.reference import run_reference
from hil.model.testsets import load_model_testsets

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
IMAGES = [("mps2-an386", "qute-digits"), ("mps2-an500", "qute-mnist1d")]
TAU = decisions.threshold_q15("0.7")


@pytest.fixture(scope="module", params=IMAGES, ids=["-".join(i) for i in IMAGES])
def board(request):
    manifest = firmware.prebuilt(*request.param)
    with QemuBoard(BOARD_KINDS[manifest.board], manifest.elf) as qemu:
        link = DeviceLink(qemu.link, name="/".join(request.param), timeout=10)
        link.set_threshold(TAU)  # a reset would put it back to 1.0: we check it stays
        yield qemu, link, load_model(manifest.model)


def replies(link: DeviceLink, quiet: float = 0.5) -> list:
    """Every frame the device sends until the line is quiet."""
    decoder, events = protocol.FrameDecoder(), []
    link.port.timeout = quiet
    while data := link.port.read(max(1, link.port.in_waiting)):
        events += decoder.feed(data)
    return [protocol.parse_message(e) for e in events if isinstance(e, protocol.Frame)]


def error_codes(messages) -> list:
    return [m.code for m in messages if isinstance(m, protocol.ErrorReply)]


def assert_still_exact(link: DeviceLink, card, count: int = 4):
    testset = load_model_testsets(card)[1]
    reference = run_reference(card, testset.inputs[:count])
    for i in range(count):
        result = link.infer(testset.inputs[i].tobytes())
        assert result.logits[0] == tuple(reference.exit[i])
    assert link.hello().tau_q15 == TAU, "the board reset"


def test_random_bytes_then_normal_service(board):
    qemu, link, card = board
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, 20_000, dtype=np.uint8)
    link.send_raw(noise.tobytes() + protocol.DELIMITER)
    codes = error_codes(replies(link))
    assert codes, "the device said nothing about 20 kB of noise"
    assert set(codes) <= {protocol.ErrorCode.BAD_FRAMING, protocol.ErrorCode.BAD_CRC,
                          protocol.ErrorCode.FRAME_TOO_LONG}
    assert qemu.alive()
    assert_still_exact(link, card)


def test_truncated_frame(board):
    _qemu, link, card = board
    sample = load_model_testsets(card)[0].inputs[0].tobytes()
    frame = protocol.encode_frame(protocol.MessageType.INFER, 77, sample)
    link.send_raw(frame[: len(frame) // 2] + protocol.DELIMITER)
    assert error_codes(replies(link)) in ([protocol.ErrorCode.BAD_FRAMING], [protocol.ErrorCode.BAD_CRC])
    assert_still_exact(link, card)


def test_flipped_crc_bit(board):
    _qemu, link, card = board
    raw = bytearray(protocol.raw_frame(protocol.MessageType.HELLO, 78, b""))
    raw[-1] ^= 0x10
    link.send_raw(protocol.cobs_encode(bytes(raw)) + protocol.DELIMITER)
    (reply,) = replies(link)
    assert reply == protocol.ErrorReply(protocol.ErrorCode.BAD_CRC, protocol.SEQ_UNKNOWN)
    assert_still_exact(link, card)


def test_oversized_frame(board):
    _qemu, link, card = board
    body = struct.pack("<BH", protocol.MessageType.INFER, 79) + bytes(range(1, 256)) * 2
    raw = body + struct.pack("<I", protocol.crc32(body))
    link.send_raw(protocol.cobs_encode(raw) + protocol.DELIMITER)
    assert error_codes(replies(link)) == [protocol.ErrorCode.FRAME_TOO_LONG]
    assert_still_exact(link, card)


@pytest.mark.parametrize("message_type, payload, code", [
    (protocol.MessageType.INFER, b"\x01" * 3, protocol.ErrorCode.BAD_LENGTH),
    (0x55, b"", protocol.ErrorCode.UNKNOWN_MESSAGE),
    (protocol.MessageType.INFER_BURST, None, protocol.ErrorCode.BAD_VALUE),
    (protocol.MessageType.SET_THRESHOLD, b"\x01", protocol.ErrorCode.BAD_LENGTH),
])
def test_well_framed_but_wrong_messages(board, message_type, payload, code):
    _qemu, link, card = board
    if payload is None:  # a burst of zero runs of a correct sample
        payload = b"\x00\x00" + load_model_testsets(card)[0].inputs[0].tobytes()
    link.send_raw(protocol.encode_frame(message_type, 80, payload))
    assert replies(link) == [protocol.ErrorReply(code, 80)]
    assert_still_exact(link, card, count=1)


def test_a_request_after_garbage_without_a_delimiter_is_answered_or_refused(board):
    """Noise without a closing 0x00 glues onto the next frame: the device must refuse that
    frame rather than act on it, and the host's retry after a resync must then work."""
    _qemu, link, card = board
    link.send_raw(b"\x13\x37\x42")
    sample = load_model_testsets(card)[0].inputs[2].tobytes()
    with pytest.raises(DeviceError) as refused:
        link.infer(sample)
    assert refused.value.code in (protocol.ErrorCode.BAD_FRAMING, protocol.ErrorCode.BAD_CRC)
    link.resync()
    assert_still_exact(link, card, count=1)
