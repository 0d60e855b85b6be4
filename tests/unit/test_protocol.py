"""Wire protocol v2 (docs/protocol.md) on both sides: hil/hw/protocol.py and firmware/src/protocol.c.

(a) and (b): both pass every vector in docs/protocol-vectors.json; the C side is built for
the host and driven through ctypes, one byte at a time as a UART would feed it. (c) property
tests: round trips, C bytes == Python bytes, resync after garbage. (d) the tests have
teeth: corrupted vectors and mutated implementations fail them."""

import ctypes
import json
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil import REPO_ROOT
from hil.hw import protocol as p
from tests.support.native import FIRMWARE_SRC, build_shared_library

VECTORS = json.loads((REPO_ROOT / "docs" / "protocol-vectors.json").read_text())
FRAMES = {v["name"]: v for v in VECTORS["frames"]}
RECEIVE = {v["name"]: v for v in VECTORS["receive"]}
MESSAGE_ERRORS = {v["name"]: v for v in VECTORS["message_errors"]}
HOST_TYPES = {p.MessageType.HELLO, p.MessageType.SET_THRESHOLD, p.MessageType.INFER, p.MessageType.INFER_BURST,
              p.MessageType.PROFILE, p.MessageType.TRACE, p.MessageType.CONFORMANCE}

# --- reading the vectors -------------------------------------------------------------------


def vector_message(vector) -> p.Message:
    """The message a frame vector's fields describe (bytes as *_hex, logits as rows)."""
    kwargs = {}
    for name, value in vector["fields"].items():
        if name.endswith("_hex"):
            kwargs[name[: -len("_hex")]] = bytes.fromhex(value)
        elif name == "logits":
            kwargs[name] = tuple(tuple(row) for row in value)
        elif name == "layer_ticks":
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    cls = p.MESSAGES[vector["type"]]
    if cls is p.ErrorReply:
        kwargs["code"] = p.ErrorCode(kwargs["code"])
    return cls(**kwargs)


def vector_events(vector) -> list:
    return [p.Frame(e["type"], e["seq"], bytes.fromhex(e["payload_hex"])) if e["event"] == "frame"
            else p.FrameError(p.ErrorCode(e["code"])) for e in vector["events"]]


def frame_of(vector) -> p.Frame:
    return p.Frame(vector["type"], vector["seq"], bytes.fromhex(vector["payload_hex"]))


# --- the two sides behind one interface ----------------------------------------------------


class PythonSide:
    name = "python"

    def encode(self, type: int, seq: int, payload: bytes) -> bytes:
        return p.encode_frame(type, seq, payload)

    def receive(self, stream: bytes) -> list:
        """Byte by byte, like a UART; feeding the whole stream at once must agree."""
        decoder, events = p.FrameDecoder(), []
        for byte in stream:
            events += decoder.feed(bytes([byte]))
        assert p.FrameDecoder().feed(stream) == events
        return events


class RxState(ctypes.Structure):
    """proto_rx_t, field for field (protocol.h)."""

    _fields_ = [("buf", ctypes.c_uint8 * (p.MAX_ENCODED_FRAME - 1)), ("len", ctypes.c_size_t),
                ("discarding", ctypes.c_bool), ("type", ctypes.c_uint8), ("seq", ctypes.c_uint16),
                ("payload", ctypes.POINTER(ctypes.c_uint8)), ("payload_len", ctypes.c_size_t),
                ("error", ctypes.c_uint8)]


class Request(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint8), ("tau_q15", ctypes.c_uint16), ("count", ctypes.c_uint16),
                ("sample", ctypes.POINTER(ctypes.c_int8)), ("trace_layer", ctypes.c_uint8),
                ("trace_offset", ctypes.c_uint16), ("vector", ctypes.c_void_p),
                ("vector_len", ctypes.c_size_t)]


class InfoC(ctypes.Structure):
    _fields_ = [("clock_hz", ctypes.c_uint32), ("input_size", ctypes.c_uint16), ("num_classes", ctypes.c_uint8),
                ("num_heads", ctypes.c_uint8), ("tau_q15", ctypes.c_uint16), ("windows", ctypes.c_uint32),
                ("model_sha256", ctypes.c_char_p),
                ("firmware_sha256", ctypes.c_char_p), ("board", ctypes.c_char_p), ("firmware_id", ctypes.c_char_p)]


class ResultC(ctypes.Structure):
    _fields_ = [("exited", ctypes.c_bool), ("predicted", ctypes.c_uint8), ("confidence_q15", ctypes.c_uint16),
                ("cycles", ctypes.c_uint32), ("window", ctypes.c_uint32), ("num_outputs", ctypes.c_uint8),
                ("num_classes", ctypes.c_uint8),
                ("logits", ctypes.c_char_p)]


class TraceResultC(ctypes.Structure):
    _fields_ = [("layer", ctypes.c_uint8), ("num_layers", ctypes.c_uint8), ("layer_bytes", ctypes.c_uint16),
                ("offset", ctypes.c_uint16), ("data", ctypes.c_char_p), ("data_len", ctypes.c_size_t)]


class BurstResultC(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint16), ("total_cycles", ctypes.c_uint32), ("window", ctypes.c_uint32),
                ("exited", ctypes.c_bool),
                ("predicted", ctypes.c_uint8), ("confidence_q15", ctypes.c_uint16)]


RX_NONE, RX_FRAME_READY, RX_ERROR = 0, 1, 2
GUARD = 32  # bytes after an output buffer that must stay untouched


def load_c(sources, directory):
    lib = build_shared_library(sources, directory)
    u8, u16, u32, size = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_size_t
    out, data = ctypes.POINTER(ctypes.c_uint8), ctypes.c_char_p
    signatures = {
        "proto_encode": (size, [u8, u16, data, size, out]),
        "proto_crc32": (u32, [data, size]),
        "proto_rx_init": (None, [ctypes.POINTER(RxState)]),
        "proto_rx_byte": (ctypes.c_int, [ctypes.POINTER(RxState), u8]),
        "proto_parse_request": (ctypes.c_int, [u8, data, size, size, ctypes.POINTER(Request)]),
        "proto_put_info": (size, [out, ctypes.POINTER(InfoC)]),
        "proto_put_threshold_set": (size, [out, u16]),
        "proto_put_result": (size, [out, ctypes.POINTER(ResultC)]),
        "proto_put_burst_result": (size, [out, ctypes.POINTER(BurstResultC)]),
        "proto_put_profile_result": (size, [out, u16, ctypes.POINTER(ctypes.c_uint64), u8]),
        "proto_put_trace_result": (size, [out, ctypes.POINTER(TraceResultC)]),
        "proto_put_edge": (size, [out, u8, u8, u32]),
        "proto_put_error": (size, [out, u8, u16]),
        "proto_put_u16": (None, [out, u16]),
        "proto_put_u32": (None, [out, u32]),
        "proto_get_u16": (u16, [data]),
        "proto_get_u32": (u32, [data]),
        "conformance_run": (ctypes.c_int, [data, size, out, ctypes.POINTER(size)]),
    }
    for name, (restype, argtypes) in signatures.items():
        getattr(lib, name).restype = restype
        getattr(lib, name).argtypes = argtypes
    return lib


def guarded(size: int):
    """An output buffer of `size` bytes plus a guard, all 0xAA."""
    return (ctypes.c_uint8 * (size + GUARD))(*([0xAA] * (size + GUARD)))


def unguarded(buffer, size: int, n: int) -> bytes:
    """The first n bytes, after checking nothing was written past `size`."""
    assert bytes(buffer[size:]) == b"\xaa" * GUARD, "wrote past the end of the buffer"
    return bytes(buffer[:n])


class CSide:
    name = "c"

    def __init__(self, lib):
        self.lib = lib

    def encode(self, type: int, seq: int, payload: bytes) -> bytes:
        out = guarded(p.MAX_ENCODED_FRAME)
        n = self.lib.proto_encode(type, seq, bytes(payload), len(payload), out)
        return unguarded(out, p.MAX_ENCODED_FRAME, n)

    def receive(self, stream: bytes) -> list:
        rx, events = RxState(), []
        self.lib.proto_rx_init(ctypes.byref(rx))
        for byte in stream:
            status = self.lib.proto_rx_byte(ctypes.byref(rx), byte)
            if status == RX_FRAME_READY:  # read straight from the struct, as the firmware does
                events.append(p.Frame(rx.type, rx.seq, ctypes.string_at(rx.payload, rx.payload_len)))
            elif status == RX_ERROR:
                assert rx.seq == p.SEQ_UNKNOWN
                events.append(p.FrameError(p.ErrorCode(rx.error)))
            else:
                assert status == RX_NONE
        return events

    def parse_request(self, type: int, payload: bytes, input_size: int) -> tuple[int, Request]:
        request = Request()
        code = self.lib.proto_parse_request(type, payload, len(payload), input_size, ctypes.byref(request))
        return code, request

    def payload(self, message: p.Message) -> bytes:
        """A device message's payload as the firmware builds it."""
        out, lib = guarded(p.MAX_PAYLOAD), self.lib
        if isinstance(message, p.Info):
            assert (message.protocol_version, message.max_payload) == (p.PROTOCOL_VERSION, p.MAX_PAYLOAD)
            info = InfoC(message.clock_hz, message.input_size, message.num_classes, message.num_heads,
                         message.tau_q15, message.windows, message.model_sha256, message.firmware_sha256,
                         message.board.encode(), message.firmware_id.encode())
            n = lib.proto_put_info(out, ctypes.byref(info))
        elif isinstance(message, p.ThresholdSet):
            n = lib.proto_put_threshold_set(out, message.tau_q15)
        elif isinstance(message, p.Result):
            logits = b"".join(struct.pack(f"<{len(row)}b", *row) for row in message.logits)
            result = ResultC(message.exited, message.predicted, message.confidence_q15, message.cycles,
                             message.window, len(message.logits), len(message.logits[0]), logits)
            n = lib.proto_put_result(out, ctypes.byref(result))
        elif isinstance(message, p.BurstResult):
            burst = BurstResultC(message.count, message.total_cycles, message.window, message.exited,
                                 message.predicted, message.confidence_q15)
            n = lib.proto_put_burst_result(out, ctypes.byref(burst))
        elif isinstance(message, p.ProfileResult):
            ticks = (ctypes.c_uint64 * len(message.layer_ticks))(*message.layer_ticks)
            n = lib.proto_put_profile_result(out, message.count, ticks, len(message.layer_ticks))
        elif isinstance(message, p.TraceResult):
            trace = TraceResultC(message.layer, message.num_layers, message.layer_bytes, message.offset, message.data,
                                 len(message.data))
            n = lib.proto_put_trace_result(out, ctypes.byref(trace))
        elif isinstance(message, p.Edge):
            n = lib.proto_put_edge(out, message.pin, message.level, message.ticks)
        elif isinstance(message, p.ErrorReply):
            n = lib.proto_put_error(out, message.code, message.seq)
        elif isinstance(message, p.ConformanceResult):
            # The firmware writes this reply where it runs the vector: the answer to a RESHAPE of that output.
            assert message.kernel == 5, "the frame vectors' CONFORMANCE_RESULT answers a RESHAPE vector"
            n = ctypes.c_size_t()
            vector = bytes([message.kernel]) + message.output
            assert lib.conformance_run(vector, len(vector), out, ctypes.byref(n)) == 0
            n = n.value
        else:
            raise TypeError(message)
        return unguarded(out, p.MAX_PAYLOAD, n)


@pytest.fixture(scope="module")
def c_side(tmp_path_factory):
    sources = [FIRMWARE_SRC / name for name in ("protocol.c", "conformance.c", "kernels.c")]
    return CSide(load_c(sources, tmp_path_factory.mktemp("protocol")))


@pytest.fixture(scope="module", params=["python", "c"])
def side(request):
    return PythonSide() if request.param == "python" else request.getfixturevalue("c_side")


# --- the vector checks, shared by both sides and by the teeth tests --------------------------


def check_frame_vector(side, vector) -> None:
    payload, wire = bytes.fromhex(vector["payload_hex"]), bytes.fromhex(vector["wire_hex"])
    assert side.encode(vector["type"], vector["seq"], payload) == wire, f"{side.name} encodes {vector['name']}"
    assert side.receive(wire) == [frame_of(vector)], f"{side.name} decodes {vector['name']}"


def check_receive_vector(side, vector) -> None:
    got = side.receive(bytes.fromhex(vector["stream_hex"]))
    assert got == vector_events(vector), f"{side.name} on {vector['name']}: {got}"


def check_python_message(vector) -> None:
    """Fields -> payload -> fields, and the raw frame and COBS layers on their own."""
    message, raw, wire = vector_message(vector), bytes.fromhex(vector["raw_hex"]), bytes.fromhex(vector["wire_hex"])
    assert message.to_payload().hex() == vector["payload_hex"]
    assert p.parse_message(frame_of(vector)) == message
    assert p.encode_message(message, vector["seq"]) == wire
    assert p.raw_frame(vector["type"], vector["seq"], message.to_payload()) == raw
    assert p.cobs_encode(raw) + b"\x00" == wire and p.cobs_decode(wire[:-1]) == raw


def check_c_message(c_side, vector) -> None:
    """Host messages through the firmware's parser, device messages through its builders."""
    message, payload = vector_message(vector), bytes.fromhex(vector["payload_hex"])
    if vector["type"] not in HOST_TYPES:
        assert c_side.payload(message) == payload
        return
    sample = getattr(message, "sample", b"")
    code, request = c_side.parse_request(vector["type"], payload, len(sample))
    assert (code, request.type) == (0, vector["type"])
    assert request.tau_q15 == getattr(message, "tau_q15", 0)
    assert request.count == getattr(message, "count", 1 if sample else 0)
    assert (request.trace_layer, request.trace_offset) == (getattr(message, "layer", 0), getattr(message, "offset", 0))
    assert ctypes.string_at(request.sample, len(sample)) == sample if sample else not request.sample
    vector = getattr(message, "vector", b"")
    assert ctypes.string_at(request.vector, request.vector_len) == vector if vector else not request.vector


# --- (a), (b): every vector, both sides ----------------------------------------------------


@pytest.mark.parametrize("name", FRAMES)
def test_frame_vector(side, name):
    check_frame_vector(side, FRAMES[name])


@pytest.mark.parametrize("name", RECEIVE)
def test_receive_vector(side, name):
    check_receive_vector(side, RECEIVE[name])


@pytest.mark.parametrize("name", FRAMES)
def test_python_message_vector(name):
    check_python_message(FRAMES[name])


@pytest.mark.parametrize("name", FRAMES)
def test_c_message_vector(c_side, name):
    check_c_message(c_side, FRAMES[name])


@pytest.mark.parametrize("name", MESSAGE_ERRORS)
def test_message_error_vector(c_side, name):
    vector = MESSAGE_ERRORS[name]
    frame = p.Frame(vector["type"], 0, bytes.fromhex(vector["payload_hex"]))
    with pytest.raises(p.ProtocolError) as raised:
        p.parse_message(frame, vector.get("input_size"))
    assert raised.value.code == vector["code"]
    if vector["direction"] == "host_to_device":
        assert c_side.parse_request(frame.type, frame.payload, vector["input_size"])[0] == vector["code"]


def test_vectors_cover_what_the_spec_asks_for():
    assert {v["type"] for v in FRAMES.values()} == set(p.MessageType)
    payload_sizes = {len(v["payload_hex"]) // 2 for v in FRAMES.values()}
    raw_sizes = {len(v["raw_hex"]) // 2 for v in FRAMES.values()}
    assert {254, 255, p.MAX_PAYLOAD} <= payload_sizes and {254, 255, p.MAX_RAW_FRAME} <= raw_sizes
    assert any(b"\x00" in bytes.fromhex(v["payload_hex"]) for v in FRAMES.values())
    assert max(len(v["wire_hex"]) // 2 for v in FRAMES.values()) == p.MAX_ENCODED_FRAME
    errors = {e["code"] for v in RECEIVE.values() for e in v["events"] if e["event"] == "error"}
    assert errors == {p.ErrorCode.BAD_CRC, p.ErrorCode.FRAME_TOO_LONG, p.ErrorCode.BAD_FRAMING}
    assert {v["code"] for v in MESSAGE_ERRORS.values()} == {
        p.ErrorCode.UNKNOWN_MESSAGE, p.ErrorCode.BAD_LENGTH, p.ErrorCode.BAD_VALUE}


# --- building blocks ---------------------------------------------------------------------


def test_constants_agree():
    assert (p.MIN_RAW_FRAME, p.MAX_RAW_FRAME, p.MAX_ENCODED_FRAME) == (7, 263, 266)
    assert VECTORS["constants"] == {"MAX_PAYLOAD": p.MAX_PAYLOAD, "MIN_RAW_FRAME": p.MIN_RAW_FRAME,
                                    "MAX_RAW_FRAME": p.MAX_RAW_FRAME, "MAX_ENCODED_FRAME": p.MAX_ENCODED_FRAME,
                                    "SEQ_UNKNOWN": p.SEQ_UNKNOWN}
    header = (FIRMWARE_SRC / "protocol.h").read_text()
    assert "#define PROTO_MAX_PAYLOAD 256u" in header and "#define PROTO_SEQ_UNKNOWN 0xFFFFu" in header
    assert ctypes.sizeof(RxState().buf) == p.MAX_ENCODED_FRAME - 1


# Wikipedia's COBS examples: known answers from outside this repository.
COBS_EXAMPLES = [
    ("00", "0101"), ("0000", "010101"), ("001100", "01021101"), ("11220033", "0311220233"),
    ("11223344", "0511223344"), ("11000000", "0211010101"),
    (bytes(range(1, 255)).hex(), "ff" + bytes(range(1, 255)).hex()),
    (bytes(range(0, 255)).hex(), "01ff" + bytes(range(1, 255)).hex()),
    (bytes(range(1, 256)).hex(), "ff" + bytes(range(1, 255)).hex() + "02ff"),
    (bytes(range(2, 256)).hex() + "00", "ff" + bytes(range(2, 256)).hex() + "0101"),
    (bytes(range(3, 256)).hex() + "0001", "fe" + bytes(range(3, 256)).hex() + "0201"),
]


@pytest.mark.parametrize("data, encoded", COBS_EXAMPLES)
def test_cobs_known_answers(data, encoded):
    assert p.cobs_encode(bytes.fromhex(data)).hex() == encoded
    assert p.cobs_decode(bytes.fromhex(encoded)).hex() == data


@pytest.mark.parametrize("encoded", ["", "00", "0511", "021100", "0300"])
def test_cobs_decode_rejects(encoded):
    with pytest.raises(ValueError):
        p.cobs_decode(bytes.fromhex(encoded))


def test_crc_check_value(c_side):
    assert p.crc32(b"123456789") == c_side.lib.proto_crc32(b"123456789", 9) == 0xCBF43926
    assert c_side.lib.proto_crc32(b"", 0) == 0


def test_little_endian_helpers(c_side):
    lib, out = c_side.lib, guarded(4)
    lib.proto_put_u32(out, 0x89ABCDEF)
    assert unguarded(out, 4, 4) == bytes.fromhex("efcdab89") and lib.proto_get_u32(b"\xef\xcd\xab\x89") == 0x89ABCDEF
    lib.proto_put_u16(out, 0xBEEF)
    assert unguarded(out, 4, 2) == bytes.fromhex("efbe") and lib.proto_get_u16(b"\xef\xbe") == 0xBEEF


def test_too_long_is_refused(c_side):
    with pytest.raises(ValueError):
        p.encode_frame(3, 1, bytes(p.MAX_PAYLOAD + 1))
    assert c_side.lib.proto_encode(3, 1, bytes(p.MAX_PAYLOAD + 1), p.MAX_PAYLOAD + 1, guarded(300)) == 0
    info = vector_message(FRAMES["info"])
    assert c_side.payload(p.Info(**{**info.__dict__, "board": "b" * 200})) == b""  # 81 + 2 + 200 + 13 > 256
    assert c_side.payload(p.Result(True, 0, 0, 0, 1, ((1,) * 244,))) == b""  # 13 + 244 > 256
    assert len(c_side.payload(p.Result(True, 0, 0, 0, 1, ((1,) * 243,)))) == 256
    with pytest.raises(ValueError):
        p.Info(**{**info.__dict__, "board": "b" * 200}).to_payload()
    assert c_side.payload(p.ProfileResult(1, (7,) * 32)) == b""  # 3 + 32 x 8 > 256
    assert len(c_side.payload(p.ProfileResult(1, (7,) * 31))) == 251
    with pytest.raises(ValueError):
        p.ProfileResult(1, (7,) * 32).to_payload()


def test_decoder_keeps_state_across_chunks():
    wire = p.encode_frame(3, 7, b"\x00abc\x00")
    decoder = p.FrameDecoder()
    assert decoder.feed(wire[:4]) == [] and decoder.feed(b"") == []
    assert decoder.feed(wire[4:] + wire[:-1]) == [p.Frame(3, 7, b"\x00abc\x00")]
    assert decoder.feed(b"\x00") == [p.Frame(3, 7, b"\x00abc\x00")]


# --- (c) properties ------------------------------------------------------------------------

nonzero = lambda data: data.replace(b"\x00", b"\x01")  # long runs cross COBS block boundaries
payloads = st.one_of(st.binary(max_size=p.MAX_PAYLOAD),
                     st.binary(min_size=240, max_size=p.MAX_PAYLOAD).map(nonzero))
frames = st.builds(p.Frame, st.integers(0, 255), st.integers(0, 0xFFFF), payloads)
garbage = st.one_of(st.binary(max_size=40), st.binary(min_size=200, max_size=700).map(nonzero))


@settings(max_examples=300, deadline=None)
@given(frame=frames, cuts=st.lists(st.integers(0, p.MAX_ENCODED_FRAME), max_size=4))
def test_round_trip_and_c_equals_python(c_side, frame, cuts):
    wire = p.encode_frame(frame.type, frame.seq, frame.payload)
    assert c_side.encode(frame.type, frame.seq, frame.payload) == wire
    assert len(wire) <= p.MAX_ENCODED_FRAME and b"\x00" not in wire[:-1]
    assert c_side.receive(wire) == [frame]
    decoder, events, start = p.FrameDecoder(), [], 0
    for cut in sorted(cuts) + [len(wire)]:  # any chunking gives the same
        events += decoder.feed(wire[start:cut])
        start = max(start, cut)
    assert events == [frame]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=p.MAX_RAW_FRAME + 30))
def test_cobs_round_trip_and_crc(c_side, data):
    encoded = p.cobs_encode(data)
    assert b"\x00" not in encoded and p.cobs_decode(encoded) == data
    assert len(encoded) <= len(data) + max(1, -(-len(data) // 254))
    assert c_side.lib.proto_crc32(data, len(data)) == zlib.crc32(data)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(st.one_of(frames, garbage), max_size=8))
def test_garbage_never_makes_a_wrong_frame_and_resync_recovers(c_side, items):
    stream, sent, recoverable = bytearray(), [], []
    for item in items:
        if isinstance(item, p.Frame):
            if not stream or stream[-1] == 0:  # a frame after a delimiter must come through
                recoverable.append(item)
            stream += p.encode_frame(item.type, item.seq, item.payload)
            sent.append(item)
        else:
            stream += item
    events = PythonSide().receive(bytes(stream))
    assert c_side.receive(bytes(stream)) == events  # the same events, errors included
    received = [e for e in events if isinstance(e, p.Frame)]
    assert all(frame in sent for frame in received)
    remaining = iter(received)
    assert all(frame in remaining for frame in recoverable)  # in order: a subsequence


# --- (d) teeth -----------------------------------------------------------------------------


def flip_bit(hex_text: str, bit: int) -> str:
    data = bytearray.fromhex(hex_text)
    data[bit // 8 % len(data)] ^= 1 << (bit % 8)
    return data.hex()


@pytest.mark.parametrize("name", ["hello", "infer_payload_with_zeros", "raw_frame_254_nonzero", "infer_payload_256"])
@pytest.mark.parametrize("bit", [0, 13, 77])
def test_a_corrupted_frame_vector_fails(side, name, bit):
    vector = FRAMES[name]
    for key in ("wire_hex", "payload_hex"):
        if vector[key]:
            with pytest.raises(AssertionError):
                check_frame_vector(side, {**vector, key: flip_bit(vector[key], bit)})
    with pytest.raises(AssertionError):
        check_frame_vector(side, {**vector, "seq": vector["seq"] ^ 1})


@pytest.mark.parametrize("name", ["flipped_crc_bit_then_good", "overlong_frame_then_good", "lone_delimiter"])
def test_a_corrupted_receive_vector_fails(side, name):
    vector = RECEIVE[name]
    wrong_events = [{**vector["events"][0], "code": 6}] if vector["events"] else [{"event": "error", "code": 5}]
    with pytest.raises(AssertionError):
        check_receive_vector(side, {**vector, "events": wrong_events})
    with pytest.raises(AssertionError):
        check_receive_vector(side, {**vector, "events": vector["events"] + [{"event": "error", "code": 5}]})


def test_a_corrupted_message_vector_fails():
    vector = FRAMES["result_not_exited"]
    with pytest.raises(AssertionError):
        check_python_message({**vector, "fields": {**vector["fields"], "cycles": 1}})


def test_python_mutants_fail_the_vectors(monkeypatch):
    """A CRC with another init, and a COBS that adds 0x01 after a final full block."""
    with monkeypatch.context() as patch:
        patch.setattr(p, "crc32", lambda data: zlib.crc32(data, 1))
        with pytest.raises(AssertionError):
            check_frame_vector(PythonSide(), FRAMES["hello"])
    original = p.cobs_encode
    monkeypatch.setattr(p, "cobs_encode", lambda data: original(data) + (b"\x01" if len(data) % 254 == 0 else b""))
    check_frame_vector(PythonSide(), FRAMES["raw_frame_253_nonzero"])  # the mutant is right here...
    with pytest.raises(AssertionError):  # ...and only the boundary vector catches it
        check_frame_vector(PythonSide(), FRAMES["raw_frame_254_nonzero"])


C_MUTANTS = {  # a one-line change to protocol.c -> a vector that must catch it
    "crc_init": ("return crc_update(0xFFFFFFFFu, data, len)", "return crc_update(0xFFFFFFFEu, data, len)", "frame",
                 "hello"),
    "final_0x01": ("if (w->after_full) {", "if (w->after_full && false) {", "frame", "raw_frame_254_nonzero"),
    "limit_off_by_one": ("if (rx->len == sizeof rx->buf) {", "if (rx->len == sizeof rx->buf - 1u) {", "frame",
                         "infer_max_payload_nonzero"),
    "no_discard": ("if (rx->discarding) return PROTO_RX_NONE;", "", "receive", "overlong_garbage_then_good"),
    "empty_is_error": ("if (discarded || len == 0) return PROTO_RX_NONE;", "if (discarded) return PROTO_RX_NONE;",
                       "receive", "lone_delimiter"),
}


@pytest.mark.parametrize("mutant", C_MUTANTS)
def test_c_mutants_fail_the_vectors(tmp_path, mutant):
    original, replacement, kind, vector = C_MUTANTS[mutant]
    source = (FIRMWARE_SRC / "protocol.c").read_text()
    assert source.count(original) == 1, "the mutated line moved: update C_MUTANTS"
    (tmp_path / "protocol.c").write_text(source.replace(original, replacement))
    mutated = CSide(load_c([tmp_path / "protocol.c", FIRMWARE_SRC / "conformance.c", FIRMWARE_SRC / "kernels.c"],
                           tmp_path))
    check = check_frame_vector if kind == "frame" else check_receive_vector
    with pytest.raises(AssertionError):
        check(mutated, (FRAMES if kind == "frame" else RECEIVE)[vector])
