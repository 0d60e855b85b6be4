"""Wire protocol v2 between the host and the QUTE firmware (docs/protocol.md is the spec).

A raw frame is  type (u8) | seq (u16 LE) | payload (0..256) | crc32 (u32 LE, zlib's CRC over
the bytes before it). On the wire it is COBS-encoded and ends with one 0x00. This module
works on bytes only (no serial port): `encode_frame` makes wire bytes, `FrameDecoder` turns
a byte stream cut into arbitrary chunks back into `Frame`s and `FrameError`s, and one
dataclass per message converts between fields and payload bytes. firmware/src/protocol.c
is the device side of the same spec; docs/protocol-vectors.json holds vectors both pass.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import astuple, dataclass, field
from enum import IntEnum
from typing import ClassVar, Union

from hil.errors import HilError

PROTOCOL_VERSION = 2  # v2: RESULT, BURST_RESULT and INFO carry busy-window ordinals
MAX_PAYLOAD = 256
HEADER_SIZE = 3  # type + seq
CRC_SIZE = 4
MIN_RAW_FRAME = HEADER_SIZE + CRC_SIZE  # 7: an empty payload
MAX_RAW_FRAME = MIN_RAW_FRAME + MAX_PAYLOAD  # 263
# COBS adds one code byte per started block of 254 bytes; then the 0x00 delimiter: 266.
MAX_ENCODED_FRAME = MAX_RAW_FRAME + -(-MAX_RAW_FRAME // 254) + 1
# The most bytes a receiver holds between two delimiters before it gives up: 265.
MAX_ENCODED_BODY = MAX_ENCODED_FRAME - 1
SEQ_UNKNOWN = 0xFFFF  # the offending seq of an ERROR when the frame could not be read
TRACE_DIGESTS = 0xFF  # TRACE's layer that asks for the CRC-32 of every layer's output
TRACE_CHUNK = 240  # the most output bytes of one layer a TRACE_RESULT carries
DELIMITER = b"\x00"


class MessageType(IntEnum):
    HELLO = 0x01
    SET_THRESHOLD = 0x02
    INFER = 0x03
    INFER_BURST = 0x04
    PROFILE = 0x05
    TRACE = 0x06
    CONFORMANCE = 0x07  # one kernel conformance vector (hil/firmware/conformance.py)
    INFO = 0x81
    THRESHOLD_SET = 0x82
    RESULT = 0x83
    BURST_RESULT = 0x84
    PROFILE_RESULT = 0x85
    TRACE_RESULT = 0x86
    CONFORMANCE_RESULT = 0x87
    EDGE = 0x90
    ERROR = 0xE0


class ErrorCode(IntEnum):
    BAD_CRC = 1
    UNKNOWN_MESSAGE = 2
    BAD_LENGTH = 3
    FRAME_TOO_LONG = 4
    BAD_FRAMING = 5
    BAD_VALUE = 6


class ProtocolError(HilError):
    """A frame or message that breaks the protocol; `code` is the ERROR code that names it."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(f"protocol error {code.name}: {message}")
        self.code = code


# --- COBS and CRC ---------------------------------------------------------------------------
# Our own COBS (a dozen lines) rather than the `cobs` package: one dependency less, and the
# variant matters for the vectors. Like the `cobs` package and Wikipedia's reference code, the
# encoder ends right after a final full 254-byte block instead of adding a 0x01 code byte.


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode `data` (no delimiter). The result contains no 0x00."""
    out = bytearray()
    runs = bytes(data).split(b"\x00")  # every run but the last is followed by a zero
    for index, run in enumerate(runs):
        full_block = False
        while len(run) >= 254:  # 0xFF: 254 data bytes and no zero after them
            out += b"\xff" + run[:254]
            run, full_block = run[254:], True
        if run or not full_block or index < len(runs) - 1:
            out += bytes([len(run) + 1]) + run
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Invert `cobs_encode`; ValueError on input that is not valid COBS."""
    if not data:
        raise ValueError("COBS: empty input (the encoding of nothing is 01)")
    out, index = bytearray(), 0
    while index < len(data):
        code = data[index]
        block = data[index + 1 : index + code]
        if code == 0 or len(block) != code - 1 or 0 in block:
            raise ValueError(f"COBS: bad code byte {code:#04x} at offset {index}")
        out += block
        index += code
        if code < 0xFF and index < len(data):  # the zero a short block stands for
            out.append(0)
    return bytes(out)


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC, the zlib one; check value crc32(b"123456789") == 0xCBF43926."""
    return zlib.crc32(data) & 0xFFFFFFFF


# --- frames ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class FrameError:
    """Bytes between two delimiters that were dropped; `code` is what an ERROR reply carries."""

    code: ErrorCode
    detail: str = field(default="", compare=False)


def raw_frame(type: int, seq: int, payload: bytes) -> bytes:
    """type | seq | payload | crc, before COBS."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes, at most {MAX_PAYLOAD}")
    body = struct.pack("<BH", type, seq) + bytes(payload)
    return body + struct.pack("<I", crc32(body))


def encode_frame(type: int, seq: int, payload: bytes = b"") -> bytes:
    """The wire bytes of one frame, delimiter included."""
    return cobs_encode(raw_frame(type, seq, payload)) + DELIMITER


def decode_body(body: bytes) -> Frame | FrameError:
    """Decode the bytes between two delimiters (without them)."""
    try:
        raw = cobs_decode(body)
    except ValueError as error:
        return FrameError(ErrorCode.BAD_FRAMING, str(error))
    if len(raw) < MIN_RAW_FRAME:
        return FrameError(ErrorCode.BAD_FRAMING, f"{len(raw)} raw bytes, at least {MIN_RAW_FRAME}")
    if len(raw) > MAX_RAW_FRAME:
        return FrameError(ErrorCode.FRAME_TOO_LONG, f"{len(raw)} raw bytes, at most {MAX_RAW_FRAME}")
    (crc,) = struct.unpack("<I", raw[-CRC_SIZE:])
    if crc != crc32(raw[:-CRC_SIZE]):
        return FrameError(ErrorCode.BAD_CRC, f"crc {crc:#010x}, computed {crc32(raw[:-CRC_SIZE]):#010x}")
    type, seq = struct.unpack("<BH", raw[:HEADER_SIZE])
    return Frame(type, seq, raw[HEADER_SIZE:-CRC_SIZE])


class FrameDecoder:
    """Byte stream in, frames and errors out; chunks may split frames anywhere.

    0x00 ends a frame. An empty frame (two 0x00 in a row) is ignored, so a sender may send a
    0x00 first to flush a half-received frame. After more than MAX_ENCODED_BODY bytes without
    a 0x00 the decoder reports FRAME_TOO_LONG once and drops bytes up to the next 0x00.
    """

    def __init__(self) -> None:
        self._body = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        events: list[Frame | FrameError] = []
        *complete, rest = bytes(data).split(DELIMITER)
        for chunk in complete:
            events += self._append(chunk)
            events += self._end_of_frame()
        events += self._append(rest)
        return events

    def _append(self, chunk: bytes) -> list[FrameError]:
        if self._discarding:
            return []
        self._body += chunk
        if len(self._body) <= MAX_ENCODED_BODY:
            return []
        self._body.clear()
        self._discarding = True
        return [FrameError(ErrorCode.FRAME_TOO_LONG, f"no delimiter within {MAX_ENCODED_BODY} bytes")]

    def _end_of_frame(self) -> list[Frame | FrameError]:
        body, discarded = bytes(self._body), self._discarding
        self._body.clear()
        self._discarding = False
        if discarded or not body:
            return []
        return [decode_body(body)]


# --- messages -------------------------------------------------------------------------------


def _require(condition: bool, code: ErrorCode, message: str) -> None:
    if not condition:
        raise ProtocolError(code, message)


def _unpack(fmt: str, payload: bytes, name: str) -> tuple:
    size = struct.calcsize(fmt)
    _require(len(payload) == size, ErrorCode.BAD_LENGTH, f"{name}: {len(payload)} bytes, expected {size}")
    return struct.unpack(fmt, payload)


def _flag(value: int, name: str) -> bool:
    _require(value in (0, 1), ErrorCode.BAD_VALUE, f"{name} is {value}, expected 0 or 1")
    return bool(value)


class _FixedLayout:
    """A message whose payload is its fields in order, packed with one struct FORMAT."""

    TYPE: ClassVar[MessageType]
    FORMAT: ClassVar[str]

    def to_payload(self) -> bytes:
        return struct.pack(self.FORMAT, *astuple(self))

    @classmethod
    def from_payload(cls, payload: bytes):
        return cls._checked(*_unpack(cls.FORMAT, payload, cls.TYPE.name))

    @classmethod
    def _checked(cls, *values):
        """Overridden where a field has fewer legal values than its bytes can hold."""
        return cls(*values)


@dataclass(frozen=True)
class Hello(_FixedLayout):
    TYPE: ClassVar[MessageType] = MessageType.HELLO
    FORMAT: ClassVar[str] = "<"


@dataclass(frozen=True)
class SetThreshold(_FixedLayout):
    """tau_q15 >= 32768 means the exit is never taken."""

    TYPE: ClassVar[MessageType] = MessageType.SET_THRESHOLD
    FORMAT: ClassVar[str] = "<H"
    tau_q15: int


@dataclass(frozen=True)
class Infer:
    """One input tensor, raw int8 bytes; its length must be the model's input size."""

    TYPE: ClassVar[MessageType] = MessageType.INFER
    sample: bytes

    def to_payload(self) -> bytes:
        return bytes(self.sample)

    @classmethod
    def from_payload(cls, payload: bytes) -> Infer:
        _require(len(payload) >= 1, ErrorCode.BAD_LENGTH, "INFER: empty input")
        return cls(bytes(payload))


@dataclass(frozen=True)
class InferBurst:
    """Run the same sample `count` times back to back."""

    TYPE: ClassVar[MessageType] = MessageType.INFER_BURST
    count: int
    sample: bytes

    def to_payload(self) -> bytes:
        return struct.pack("<H", self.count) + bytes(self.sample)

    @classmethod
    def from_payload(cls, payload: bytes) -> InferBurst:
        _require(len(payload) >= 3, ErrorCode.BAD_LENGTH, f"INFER_BURST: {len(payload)} bytes, at least 3")
        (count,) = struct.unpack("<H", payload[:2])
        _require(count >= 1, ErrorCode.BAD_VALUE, "INFER_BURST: count 0")
        return cls(count, bytes(payload[2:]))


@dataclass(frozen=True)
class Profile:
    """Run both stages of the sample `count` times (whatever the threshold) and time every layer."""

    TYPE: ClassVar[MessageType] = MessageType.PROFILE
    count: int
    sample: bytes

    def to_payload(self) -> bytes:
        return struct.pack("<H", self.count) + bytes(self.sample)

    @classmethod
    def from_payload(cls, payload: bytes) -> Profile:
        _require(len(payload) >= 3, ErrorCode.BAD_LENGTH, f"PROFILE: {len(payload)} bytes, at least 3")
        (count,) = struct.unpack("<H", payload[:2])
        _require(count >= 1, ErrorCode.BAD_VALUE, "PROFILE: count 0")
        return cls(count, bytes(payload[2:]))


@dataclass(frozen=True)
class Trace:
    """Run `sample` through the full path and send `layer`'s output from `offset` (at most TRACE_CHUNK
    bytes), or with layer TRACE_DIGESTS (offset 0) the CRC-32 of every layer's output."""

    TYPE: ClassVar[MessageType] = MessageType.TRACE
    FIXED: ClassVar[str] = "<BH"
    layer: int
    offset: int
    sample: bytes

    def to_payload(self) -> bytes:
        return struct.pack(self.FIXED, self.layer, self.offset) + bytes(self.sample)

    @classmethod
    def from_payload(cls, payload: bytes) -> Trace:
        _require(len(payload) >= 4, ErrorCode.BAD_LENGTH, f"TRACE: {len(payload)} bytes, at least 4")
        layer, offset = struct.unpack(cls.FIXED, payload[:3])
        return cls(layer, offset, bytes(payload[3:]))


@dataclass(frozen=True)
class Conformance:
    """One kernel conformance vector: a kernel id, its parameters and its tensors (docs/protocol.md)."""

    TYPE: ClassVar[MessageType] = MessageType.CONFORMANCE
    vector: bytes

    def to_payload(self) -> bytes:
        return bytes(self.vector)

    @classmethod
    def from_payload(cls, payload: bytes) -> Conformance:
        _require(len(payload) >= 1, ErrorCode.BAD_LENGTH, "CONFORMANCE: empty vector")
        return cls(bytes(payload))


@dataclass(frozen=True)
class ConformanceResult:
    """The kernel a vector ran through and the int8 output it computed."""

    TYPE: ClassVar[MessageType] = MessageType.CONFORMANCE_RESULT
    kernel: int
    output: bytes

    def to_payload(self) -> bytes:
        return bytes([self.kernel]) + bytes(self.output)

    @classmethod
    def from_payload(cls, payload: bytes) -> ConformanceResult:
        _require(len(payload) >= 1, ErrorCode.BAD_LENGTH, "CONFORMANCE_RESULT: empty")
        return cls(payload[0], bytes(payload[1:]))


@dataclass(frozen=True)
class Info:
    TYPE: ClassVar[MessageType] = MessageType.INFO
    FIXED: ClassVar[str] = "<BIHHBBHI32s32s"  # everything before the two strings: 81 bytes
    protocol_version: int
    clock_hz: int
    max_payload: int
    input_size: int
    num_classes: int
    num_heads: int
    tau_q15: int
    windows: int  # busy windows raised since boot: the ordinal of the last one, 0 if none
    model_sha256: bytes
    firmware_sha256: bytes
    board: str
    firmware_id: str

    def to_payload(self) -> bytes:
        if len(self.model_sha256) != 32 or len(self.firmware_sha256) != 32:
            raise ValueError("INFO: a sha256 is 32 bytes")
        fixed = struct.pack(self.FIXED, self.protocol_version, self.clock_hz, self.max_payload, self.input_size,
                            self.num_classes, self.num_heads, self.tau_q15, self.windows, self.model_sha256,
                            self.firmware_sha256)
        payload = fixed + _pack_text(self.board) + _pack_text(self.firmware_id)
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"INFO: {len(payload)} bytes, at most {MAX_PAYLOAD}")
        return payload

    @classmethod
    def from_payload(cls, payload: bytes) -> Info:
        size = struct.calcsize(cls.FIXED)
        _require(len(payload) >= size + 2, ErrorCode.BAD_LENGTH, f"INFO: {len(payload)} bytes, at least {size + 2}")
        # The version comes first so that a host can tell a newer device from a broken one.
        _require(payload[0] == PROTOCOL_VERSION, ErrorCode.BAD_VALUE,
                 f"INFO: device speaks protocol v{payload[0]}, this host v{PROTOCOL_VERSION}")
        fixed = struct.unpack(cls.FIXED, payload[:size])
        board, rest = _unpack_text(payload[size:], "board")
        firmware_id, rest = _unpack_text(rest, "firmware id")
        _require(not rest, ErrorCode.BAD_LENGTH, f"INFO: {len(rest)} bytes after the firmware id")
        return cls(*fixed, board, firmware_id)


def _pack_text(text: str) -> bytes:
    data = text.encode("ascii")
    if len(data) > 255:
        raise ValueError(f"text of {len(data)} bytes, at most 255")
    return bytes([len(data)]) + data


def _unpack_text(data: bytes, name: str) -> tuple[str, bytes]:
    """A u8 length and that many ASCII bytes; returns the text and what follows."""
    _require(len(data) >= 1 and len(data) >= 1 + data[0], ErrorCode.BAD_LENGTH, f"INFO: {name} cut short")
    text, rest = data[1 : 1 + data[0]], data[1 + data[0] :]
    _require(text.isascii(), ErrorCode.BAD_VALUE, f"INFO: {name} is not ASCII")
    return text.decode("ascii"), rest


@dataclass(frozen=True)
class ThresholdSet(_FixedLayout):
    TYPE: ClassVar[MessageType] = MessageType.THRESHOLD_SET
    FORMAT: ClassVar[str] = "<H"
    tau_q15: int


@dataclass(frozen=True)
class Result:
    """`logits[0]` is the early exit; when it did not exit, one row per head follows. `window` is
    the ordinal of the busy window the inference ran in, so that the host can tell it from the
    window of a request whose reply was lost."""

    TYPE: ClassVar[MessageType] = MessageType.RESULT
    FIXED: ClassVar[str] = "<BBHIIB"  # 13 bytes, then num_outputs x num_classes int8
    exited: bool
    predicted: int
    confidence_q15: int
    cycles: int
    window: int
    logits: tuple[tuple[int, ...], ...]

    def to_payload(self) -> bytes:
        if len({len(row) for row in self.logits}) != 1:
            raise ValueError("RESULT: logits need at least one row, all rows as long")
        fixed = struct.pack(self.FIXED, self.exited, self.predicted, self.confidence_q15, self.cycles, self.window,
                            len(self.logits))
        return fixed + b"".join(struct.pack(f"<{len(row)}b", *row) for row in self.logits)

    @classmethod
    def from_payload(cls, payload: bytes) -> Result:
        size = struct.calcsize(cls.FIXED)
        _require(len(payload) > size, ErrorCode.BAD_LENGTH, f"RESULT: {len(payload)} bytes, at least {size + 1}")
        exited, predicted, confidence, cycles, window, outputs = struct.unpack(cls.FIXED, payload[:size])
        exited = _flag(exited, "RESULT exited")
        # The exit always runs; when it is not taken, every head (at least one) runs too.
        _require(outputs == 1 if exited else outputs >= 2, ErrorCode.BAD_VALUE,
                 f"RESULT: {outputs} outputs with exited={int(exited)}")
        rest = payload[size:]
        classes = len(rest) // outputs
        _require(len(rest) == outputs * classes, ErrorCode.BAD_LENGTH,
                 f"RESULT: {len(rest)} logit bytes for {outputs} outputs")
        _require(predicted < classes and confidence <= 32768, ErrorCode.BAD_VALUE,
                 f"RESULT: class {predicted} of {classes}, confidence {confidence}")
        values = struct.unpack(f"<{len(rest)}b", rest)
        logits = tuple(values[i : i + classes] for i in range(0, len(values), classes))
        return cls(exited, predicted, confidence, cycles, window, logits)


@dataclass(frozen=True)
class BurstResult(_FixedLayout):
    """`count` runs, their cycles summed, in the one busy window `window`; the decision is the last run's."""

    TYPE: ClassVar[MessageType] = MessageType.BURST_RESULT
    FORMAT: ClassVar[str] = "<HIIBBH"
    count: int
    total_cycles: int
    window: int
    exited: bool
    predicted: int
    confidence_q15: int

    @classmethod
    def _checked(cls, count, cycles, window, exited, predicted, confidence):
        return cls(count, cycles, window, _flag(exited, "BURST_RESULT exited"), predicted, confidence)


@dataclass(frozen=True)
class ProfileResult:
    """Each layer's cycle-counter ticks, in the firmware's layer order, summed over `count` runs
    (u64 on the wire, so that no count overflows them)."""

    TYPE: ClassVar[MessageType] = MessageType.PROFILE_RESULT
    FIXED: ClassVar[str] = "<HB"  # count, num_layers; then num_layers x u64
    count: int
    layer_ticks: tuple[int, ...]

    def to_payload(self) -> bytes:
        payload = struct.pack(self.FIXED, self.count, len(self.layer_ticks))
        payload += struct.pack(f"<{len(self.layer_ticks)}Q", *self.layer_ticks)
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"PROFILE_RESULT: {len(payload)} bytes, at most {MAX_PAYLOAD}")
        return payload

    @classmethod
    def from_payload(cls, payload: bytes) -> ProfileResult:
        size = struct.calcsize(cls.FIXED)
        _require(len(payload) >= size, ErrorCode.BAD_LENGTH, f"PROFILE_RESULT: {len(payload)} bytes, at least {size}")
        count, layers = struct.unpack(cls.FIXED, payload[:size])
        _require(len(payload) == size + 8 * layers, ErrorCode.BAD_LENGTH,
                 f"PROFILE_RESULT: {len(payload)} bytes for {layers} layers, expected {size + 8 * layers}")
        _require(count >= 1, ErrorCode.BAD_VALUE, "PROFILE_RESULT: count 0")
        return cls(count, struct.unpack(f"<{layers}Q", payload[size:]))


@dataclass(frozen=True)
class TraceResult:
    """A TRACE's answer: `data` is `layer`'s output from `offset` (the layer's output is `layer_bytes` long),
    or, for layer TRACE_DIGESTS, `num_layers` little-endian u32 CRC-32s, one per layer's output."""

    TYPE: ClassVar[MessageType] = MessageType.TRACE_RESULT
    FIXED: ClassVar[str] = "<BBHH"  # 6 bytes, then the data
    layer: int
    num_layers: int
    layer_bytes: int
    offset: int
    data: bytes

    @property
    def digests(self) -> tuple[int, ...]:
        """The CRC-32 of every layer's output, in layer order (an answer to layer TRACE_DIGESTS)."""
        return struct.unpack(f"<{self.num_layers}I", self.data)

    def to_payload(self) -> bytes:
        payload = struct.pack(self.FIXED, self.layer, self.num_layers, self.layer_bytes, self.offset) + self.data
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"TRACE_RESULT: {len(payload)} bytes, at most {MAX_PAYLOAD}")
        return payload

    @classmethod
    def from_payload(cls, payload: bytes) -> TraceResult:
        size = struct.calcsize(cls.FIXED)
        _require(len(payload) >= size, ErrorCode.BAD_LENGTH, f"TRACE_RESULT: {len(payload)} bytes, at least {size}")
        layer, layers, layer_bytes, offset = struct.unpack(cls.FIXED, payload[:size])
        data = bytes(payload[size:])
        if layer == TRACE_DIGESTS:
            _require(layer_bytes == 0 and offset == 0, ErrorCode.BAD_VALUE,
                     f"TRACE_RESULT: digests with layer_bytes {layer_bytes}, offset {offset}")
            expected = 4 * layers
        else:
            _require(layer < layers and offset < layer_bytes, ErrorCode.BAD_VALUE,
                     f"TRACE_RESULT: layer {layer} of {layers}, offset {offset} of {layer_bytes} bytes")
            expected = min(TRACE_CHUNK, layer_bytes - offset)
        _require(len(data) == expected, ErrorCode.BAD_LENGTH,
                 f"TRACE_RESULT: {len(data)} data bytes, expected {expected}")
        return cls(layer, layers, layer_bytes, offset, data)


@dataclass(frozen=True)
class Edge(_FixedLayout):
    """A level change on an emulated GPIO pin, sent on the device's second UART."""

    TYPE: ClassVar[MessageType] = MessageType.EDGE
    FORMAT: ClassVar[str] = "<BBI"
    pin: int
    level: int
    ticks: int

    @classmethod
    def _checked(cls, pin, level, ticks):
        return cls(pin, int(_flag(level, "EDGE level")), ticks)


@dataclass(frozen=True)
class ErrorReply(_FixedLayout):
    """The device's answer to a frame it could not take; `seq` is SEQ_UNKNOWN when unreadable."""

    TYPE: ClassVar[MessageType] = MessageType.ERROR
    FORMAT: ClassVar[str] = "<BH"
    code: ErrorCode
    seq: int

    @classmethod
    def _checked(cls, code, seq):
        _require(code in ErrorCode._value2member_map_, ErrorCode.BAD_VALUE, f"ERROR: unknown code {code}")
        return cls(ErrorCode(code), seq)


Message = Union[Hello, SetThreshold, Infer, InferBurst, Profile, Trace, Conformance, Info, ThresholdSet, Result,
                BurstResult, ProfileResult, TraceResult, ConformanceResult, Edge, ErrorReply]
MESSAGES: dict[int, type] = {cls.TYPE: cls for cls in Message.__args__}
SAMPLE_AT: dict[type, int] = {Infer: 0, InferBurst: 2, Profile: 2, Trace: 3}  # where the sample starts in the payload


def parse_message(frame: Frame, input_size: int | None = None) -> Message:
    """The message a frame carries; ProtocolError (with the ERROR code to send back) if it is bad.

    With `input_size`, the sample of INFER, INFER_BURST, PROFILE and TRACE must be exactly that long.
    """
    cls = MESSAGES.get(frame.type)
    _require(cls is not None, ErrorCode.UNKNOWN_MESSAGE, f"type {frame.type:#04x}")
    if input_size is not None and cls in SAMPLE_AT:
        # The length before the values (a count of 0), as the firmware checks them.
        sample = len(frame.payload) - SAMPLE_AT[cls]
        _require(sample == input_size, ErrorCode.BAD_LENGTH,
                 f"{cls.TYPE.name}: sample of {sample} bytes, the model takes {input_size}")
    return cls.from_payload(frame.payload)


def encode_message(message: Message, seq: int) -> bytes:
    """The wire bytes of `message` in a frame with `seq`."""
    return encode_frame(message.TYPE, seq, message.to_payload())
