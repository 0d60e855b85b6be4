"""Generator of docs/protocol-vectors.json (run: python tests/support/gen_protocol_vectors.py).

Independent of hil/hw/protocol.py on purpose, so the vectors check it rather than copy it:
a byte-loop port of the Cheshire & Baker / Wikipedia COBS encoder, zlib.crc32, struct."""
import json, struct, zlib, hashlib
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "protocol-vectors.json"

def cobs(data):
    out = bytearray([0]); code_at = 0; code = 1
    for i, b in enumerate(data):
        if b:
            out.append(b); code += 1
        if not b or code == 0xFF:
            out[code_at] = code; code = 1; code_at = len(out)
            if not b or i < len(data) - 1:
                out.append(0)
    if code_at < len(out):
        out[code_at] = code
    return bytes(out)

def raw(t, seq, payload):
    body = bytes([t]) + struct.pack("<H", seq) + payload
    return body + struct.pack("<I", zlib.crc32(body))

def wire(t, seq, payload):
    return cobs(raw(t, seq, payload)) + b"\0"

frames = []
def frame(name, message, t, seq, fields, payload, note=None):
    r = raw(t, seq, payload)
    v = {"name": name, "message": message, "type": t, "seq": seq, "fields": fields,
         "payload_hex": payload.hex(), "raw_hex": r.hex(), "wire_hex": wire(t, seq, payload).hex()}
    if note: v["note"] = note
    frames.append(v)
    return v

s8 = lambda xs: struct.pack(f"<{len(xs)}b", *xs)

frame("hello", "HELLO", 1, 1, {}, b"")
frame("hello_seq_fffe", "HELLO", 1, 0xFFFE, {}, b"", "the largest seq a host uses (0xFFFF means unknown)")
frame("set_threshold", "SET_THRESHOLD", 2, 2, {"tau_q15": 18022}, struct.pack("<H", 18022), "tau 0.55")
frame("set_threshold_never_exit", "SET_THRESHOLD", 2, 3, {"tau_q15": 32768}, struct.pack("<H", 32768))
sample = [12, -5, 127, -128, 33, 1, -1, 64]
frame("infer", "INFER", 3, 0x1234, {"sample_hex": s8(sample).hex()}, s8(sample))
zs = [0, 0, 7, 0, -3, 0, 0, 0, 9, 0]
frame("infer_payload_with_zeros", "INFER", 3, 0x0100, {"sample_hex": s8(zs).hex()}, s8(zs),
      "zeros at the start, in runs and at the end; seq 0x0100 puts a zero in the header")
frame("infer_all_zeros", "INFER", 3, 5, {"sample_hex": bytes(16).hex()}, bytes(16))
frame("infer_burst", "INFER_BURST", 4, 6, {"count": 1000, "sample_hex": s8(sample).hex()},
      struct.pack("<H", 1000) + s8(sample))
frame("profile", "PROFILE", 5, 8, {"count": 10, "sample_hex": s8(sample).hex()}, struct.pack("<H", 10) + s8(sample),
      "as INFER_BURST: a count, then the sample")
frame("trace_digests", "TRACE", 6, 7, {"layer": 0xFF, "offset": 0, "sample_hex": s8(sample).hex()},
      struct.pack("<BH", 0xFF, 0) + s8(sample), "layer 0xFF: the CRC-32 of every layer's output")
frame("trace_layer", "TRACE", 6, 8, {"layer": 2, "offset": 480, "sample_hex": s8(sample).hex()},
      struct.pack("<BH", 2, 480) + s8(sample), "layer 2's output from byte 480")

model_sha = hashlib.sha256(b"qute-digits model").digest()
fw_sha = hashlib.sha256(b"qute firmware").digest()
info_fields = {"protocol_version": 2, "clock_hz": 80_000_000, "max_payload": 256, "input_size": 64,
               "num_classes": 10, "num_heads": 4, "tau_q15": 32768, "windows": 70000,
               "model_sha256_hex": model_sha.hex(), "firmware_sha256_hex": fw_sha.hex(),
               "board": "nucleo-l432kc", "firmware_id": "qute-fw 0.1.0"}
info = (struct.pack("<BIHHBBHI", 2, 80_000_000, 256, 64, 10, 4, 32768, 70000) + model_sha + fw_sha
        + bytes([13]) + b"nucleo-l432kc" + bytes([13]) + b"qute-fw 0.1.0")
frame("info", "INFO", 0x81, 1, info_fields, info)
frame("info_empty_strings", "INFO", 0x81, 9, dict(info_fields, board="", firmware_id="", tau_q15=0, windows=0),
      info[:11] + struct.pack("<HI", 0, 0) + model_sha + fw_sha + b"\0\0",
      "tau 0 (always exit), no busy window yet (a board just booted), two empty strings")
frame("threshold_set", "THRESHOLD_SET", 0x82, 2, {"tau_q15": 18022}, struct.pack("<H", 18022))
ex = [[90, -12, 3, -128, 0, 0, 5, 127, -1, 10]]
frame("result_exited", "RESULT", 0x83, 0x1234, {"exited": True, "predicted": 7, "confidence_q15": 31130,
      "cycles": 123456, "window": 42, "logits": ex},
      struct.pack("<BBHIIB", 1, 7, 31130, 123456, 42, 1) + s8(ex[0]))
heads = [[1, 2, 3], [0, 0, 0], [-4, 50, 6], [7, -8, 0]]
frame("result_not_exited", "RESULT", 0x83, 0x0007, {"exited": False, "predicted": 1, "confidence_q15": 20000,
      "cycles": 0x01020304, "window": 0x0A0B0C0D, "logits": heads},
      struct.pack("<BBHIIB", 0, 1, 20000, 0x01020304, 0x0A0B0C0D, 4) + b"".join(s8(r) for r in heads),
      "the exit's logits, then three heads; logits of zero; the window ordinal pins LE order")
frame("burst_result", "BURST_RESULT", 0x84, 6, {"count": 1000, "total_cycles": 0xDEADBEEF, "window": 0x11223344,
      "exited": False, "predicted": 3, "confidence_q15": 32768},
      struct.pack("<HIIBBH", 1000, 0xDEADBEEF, 0x11223344, 0, 3, 32768))
ticks = [170861, 0, 0x123456789A, 15115]
frame("profile_result", "PROFILE_RESULT", 0x85, 8, {"count": 10, "layer_ticks": ticks},
      struct.pack("<HB4Q", 10, 4, *ticks), "each layer's ticks summed over the runs, u64: one above 2**32")
crcs = [zlib.crc32(bytes([i]) * (i + 1)) for i in range(3)]
frame("trace_result_digests", "TRACE_RESULT", 0x86, 7, {"layer": 0xFF, "num_layers": 3, "layer_bytes": 0,
      "offset": 0, "data_hex": struct.pack("<3I", *crcs).hex()},
      struct.pack("<BBHH3I", 0xFF, 3, 0, 0, *crcs), "three layers' CRC-32s, little-endian")
chunk = bytes((7 * i + 1) % 256 for i in range(240))
frame("trace_result_chunk", "TRACE_RESULT", 0x86, 8, {"layer": 2, "num_layers": 15, "layer_bytes": 2048,
      "offset": 480, "data_hex": chunk.hex()},
      struct.pack("<BBHH", 2, 15, 2048, 480) + chunk, "a full chunk: 240 bytes of a 2048-byte output")
tail = bytes(range(1, 9))
frame("trace_result_last_chunk", "TRACE_RESULT", 0x86, 9, {"layer": 14, "num_layers": 15, "layer_bytes": 10,
      "offset": 2, "data_hex": tail.hex()},
      struct.pack("<BBHH", 14, 15, 10, 2) + tail, "the last 8 bytes of a 10-byte output")
frame("edge", "EDGE", 0x90, 42, {"pin": 2, "level": 1, "ticks": 0x89ABCDEF}, struct.pack("<BBI", 2, 1, 0x89ABCDEF),
      "on the second UART, with the device's own seq")
reshape_input = [5, -1, 0, 127, -128, 3]
frame("conformance", "CONFORMANCE", 7, 0x0707, {"vector_hex": (bytes([5]) + s8(reshape_input)).hex()},
      bytes([5]) + s8(reshape_input), "a RESHAPE vector (kernel 5): its input follows the kernel id")
frame("conformance_result", "CONFORMANCE_RESULT", 0x87, 0x0707, {"kernel": 5, "output_hex": s8(reshape_input).hex()},
      bytes([5]) + s8(reshape_input), "the answer to that vector: the kernel id, then its output")
frame("error_bad_crc", "ERROR", 0xE0, 0xFFFF, {"code": 1, "seq": 0xFFFF}, struct.pack("<BH", 1, 0xFFFF),
      "a framing error: the offending seq is unknown")
frame("error_bad_value", "ERROR", 0xE0, 0x0203, {"code": 6, "seq": 0x0203}, struct.pack("<BH", 6, 0x0203))

def nonzero_frame(payload_len, seed):
    # payload bytes and seq chosen so that the whole raw frame holds no zero: one COBS run
    for k in range(1, 255):
        payload = bytes(((i * 7 + seed + k) % 255) + 1 for i in range(payload_len))
        seq = 0x0101 + k
        r = raw(3, seq, payload)
        if 0 not in r:
            return seq, payload
    raise RuntimeError

for n in (254, 255, MAX := 256):
    payload = bytes((i % 255) + 1 for i in range(n))  # no zero in the payload
    frame(f"infer_payload_{n}", "INFER", 3, 0x0A0B, {"sample_hex": payload.hex()}, payload,
          {254: "a 254-byte payload (raw 261: the full block ends inside the payload)",
           255: "a 255-byte payload (raw 262)",
           256: "MAX_PAYLOAD: the longest frame, 266 wire bytes"}[n])
for raw_len in (253, 254, 255):
    seq, payload = nonzero_frame(raw_len - 7, raw_len)
    frame(f"raw_frame_{raw_len}_nonzero", "INFER", 3, seq, {"sample_hex": payload.hex()}, payload,
          f"a raw frame of {raw_len} bytes without a zero: one COBS block "
          + {253: "of 253 (code 0xFE)", 254: "of exactly 254 (code 0xFF, no final 0x01)",
             255: "of 254 then one of 1 byte"}[raw_len])
seq_mp, payload_mp = nonzero_frame(256, 7)
frame("infer_max_payload_nonzero", "INFER", 3, seq_mp, {"sample_hex": payload_mp.hex()}, payload_mp,
      "263 raw bytes without a zero: 265 encoded bytes, the most a receiver holds")

# ---------------------------------------------------------------- receive vectors
by_name = {f["name"]: f for f in frames}
W = lambda name: bytes.fromhex(by_name[name]["wire_hex"])
def F(name):
    f = by_name[name]
    return {"event": "frame", "type": f["type"], "seq": f["seq"], "payload_hex": f["payload_hex"]}
CODES = {1: "BAD_CRC", 2: "UNKNOWN_MESSAGE", 3: "BAD_LENGTH", 4: "FRAME_TOO_LONG", 5: "BAD_FRAMING", 6: "BAD_VALUE"}
def E(code):
    return {"event": "error", "code": code, "error": CODES[code]}
BAD_CRC, TOO_LONG, BAD_FRAMING = 1, 4, 5

receive = []
def rx(name, stream, events, note):
    receive.append({"name": name, "note": note, "stream_hex": stream.hex(), "events": events})

def flip(raw_bytes, index, bit):
    b = bytearray(raw_bytes); b[index] ^= 1 << bit
    return cobs(bytes(b)) + b"\0"

hello_raw = bytes.fromhex(by_name["hello"]["raw_hex"])
thr_raw = bytes.fromhex(by_name["set_threshold"]["raw_hex"])

rx("lone_delimiter", b"\0", [], "an empty frame is no frame and no error: a flush")
rx("delimiters_then_frame", b"\0\0\0" + W("hello"), [F("hello")],
   "a sender may lead with 0x00 to end whatever the receiver holds")
rx("garbage_before_frame", bytes.fromhex("deadbeef00") + W("hello"), [E(BAD_FRAMING), F("hello")],
   "line noise ended by a 0x00: code 0xDE promises 220 bytes and gets 3")
rx("garbage_run_into_frame", bytes.fromhex("deadbeef") + W("hello") + W("set_threshold"),
   [E(BAD_FRAMING), F("set_threshold")],
   "noise with no 0x00 after it merges with the next frame, which is lost; the one after is received")
rx("two_frames_back_to_back", W("infer") + W("result_exited"), [F("infer"), F("result_exited")],
   "one delimiter between frames is enough")
rx("flipped_crc_bit_then_good", flip(thr_raw, len(thr_raw) - 1, 7) + W("hello"), [E(BAD_CRC), F("hello")],
   "SET_THRESHOLD with bit 7 of its last CRC byte flipped, re-encoded as valid COBS")
rx("flipped_payload_bit", flip(thr_raw, 3, 0), [E(BAD_CRC)],
   "SET_THRESHOLD with bit 0 of its first payload byte flipped")
rx("truncated_frame_then_good", W("infer")[:6] + b"\0" + W("hello"), [E(BAD_FRAMING), F("hello")],
   "the first 6 bytes of INFER, a 0x00 (e.g. the sender restarted), then HELLO")
rx("truncated_frame_swallows_the_next", W("infer")[:6] + W("hello") + W("set_threshold"),
   [E(BAD_FRAMING), F("set_threshold")],
   "without a 0x00 after the cut, the next frame is part of the bad one; resync at its delimiter")
long_payload = bytes((i % 255) + 1 for i in range(257))
long_wire = cobs(raw(3, 0x0A0B, long_payload)) + b"\0"
assert len(long_wire) == 267
rx("overlong_frame_then_good", long_wire + W("hello"), [E(TOO_LONG), F("hello")],
   "a well-formed frame with a 257-byte payload: 266 encoded bytes; the error comes at the 266th, "
   "the rest up to the 0x00 is dropped")
rx("overlong_garbage_then_good", b"\x55" * 600 + b"\0" + W("hello"), [E(TOO_LONG), F("hello")],
   "600 bytes without a 0x00: one error, however long the run")
rx("encoded_body_266_too_long", W("infer_max_payload_nonzero")[:-1] + b"\x01\x00" + W("hello"),
   [E(TOO_LONG), F("hello")],
   "the longest frame plus a redundant 0x01 code: 266 bytes before the 0x00, one too many")
rx("decodes_too_long", b"\x01" * 265 + b"\0" + W("hello"), [E(TOO_LONG), F("hello")],
   "265 encoded bytes (allowed) that decode to 264 zeros (one more than a raw frame may hold)")
rx("short_frame", bytes.fromhex("0701020304050600") + W("hello"), [E(BAD_FRAMING), F("hello")],
   "valid COBS of 6 bytes: shorter than the 7 of an empty frame")
rx("bad_cobs_code", bytes.fromhex("0511220000") + W("hello"), [E(BAD_FRAMING), F("hello")],
   "code 0x05 promises 4 data bytes, only 2 follow")
bad_last = bytearray(W("hello")); bad_last[3] += 1  # the last block's code byte 05 -> 06
rx("bad_cobs_last_block", bytes(bad_last), [E(BAD_FRAMING)],
   "HELLO with its last code byte raised by one: the block runs past the 0x00")
rx("non_canonical_cobs_accepted", W("raw_frame_254_nonzero")[:-1] + b"\x01\x00", [F("raw_frame_254_nonzero")],
   "an encoder that adds a 0x01 code after a final full block (some COBS code does) is understood")
unknown = cobs(raw(0x7F, 1, b"")) + b"\0"
rx("unknown_type_is_framed", unknown, [{"event": "frame", "type": 0x7F, "seq": 1, "payload_hex": ""}],
   "framing does not know message types; parsing the message gives UNKNOWN_MESSAGE")
rx("max_frames_back_to_back", W("infer_max_payload_nonzero") * 2,
   [F("infer_max_payload_nonzero"), F("infer_max_payload_nonzero")],
   "the longest frame twice: the receiver's buffer is reused")

# ---------------------------------------------------------------- message errors
message_errors = []
def me(name, direction, t, payload, code, note, input_size=None):
    v = {"name": name, "direction": direction, "type": t, "payload_hex": payload.hex(), "code": code,
         "error": CODES[code], "note": note}
    if input_size is not None: v["input_size"] = input_size
    message_errors.append(v)

H, D = "host_to_device", "device_to_host"
me("hello_with_payload", H, 1, b"\0", 3, "HELLO has no payload", 64)
me("set_threshold_short", H, 2, b"\x10", 3, "one byte of a u16", 64)
me("set_threshold_long", H, 2, b"\x10\0\0", 3, "a byte too many", 64)
me("infer_wrong_size", H, 3, bytes(63), 3, "63 bytes for a model that takes 64", 64)
me("infer_burst_count_zero", H, 4, bytes(2) + bytes(64), 6, "count 0", 64)
me("infer_burst_count_zero_wrong_size", H, 4, bytes(2) + bytes(63), 3,
   "both wrong: the length is checked first", 64)
me("infer_burst_no_sample", H, 4, b"\x01\x00", 3, "a count and no sample", 64)
me("profile_count_zero", H, 5, bytes(2) + bytes(64), 6, "count 0", 64)
me("profile_count_zero_wrong_size", H, 5, bytes(2) + bytes(63), 3, "both wrong: the length is checked first", 64)
me("profile_no_sample", H, 5, b"\x01\x00", 3, "a count and no sample", 64)
me("unknown_type_3f", H, 0x3F, b"", 2, "no message 0x3F in v2", 64)
me("trace_wrong_size", H, 6, struct.pack("<BH", 0xFF, 0) + bytes(63), 3, "63 sample bytes for 64", 64)
me("trace_no_sample", H, 6, struct.pack("<BH", 2, 0), 3, "a layer and offset, no sample", 64)
me("conformance_empty", H, 7, b"", 3, "a CONFORMANCE without even a kernel id", 64)
me("unknown_type_7f", H, 0x7F, b"\x01", 2, "no message 0x7F in v2", 64)
me("result_exited_flag_2", D, 0x83, struct.pack("<BBHIIB", 2, 0, 0, 0, 1, 1) + bytes(3), 6, "exited is 0 or 1")
me("result_exited_two_outputs", D, 0x83, struct.pack("<BBHIIB", 1, 0, 0, 0, 1, 2) + bytes(6), 6,
   "an exit that was taken reports 1 output")
me("result_ragged_logits", D, 0x83, struct.pack("<BBHIIB", 0, 0, 0, 0, 1, 4) + bytes(10), 3,
   "10 logit bytes do not split into 4 outputs")
me("result_no_logits", D, 0x83, struct.pack("<BBHIIB", 1, 0, 0, 0, 1, 1), 3, "no logits at all")
me("burst_result_short", D, 0x84, bytes(13), 3, "14 bytes expected")
me("burst_result_v1", D, 0x84, struct.pack("<HIBBH", 1000, 5, 0, 3, 32768), 3,
   "a v1 BURST_RESULT (no window ordinal): 10 bytes")
me("profile_result_ragged", D, 0x85, struct.pack("<HB", 1, 2) + bytes(12), 3, "12 tick bytes for 2 layers of 8")
me("profile_result_count_zero", D, 0x85, struct.pack("<HBQ", 0, 1, 5), 6, "no runs")
me("threshold_set_long", D, 0x82, bytes(3), 3, "2 bytes expected")
me("trace_result_short", D, 0x86, bytes(5), 3, "6 bytes of header expected")
me("trace_result_digests_short", D, 0x86, struct.pack("<BBHH", 0xFF, 3, 0, 0) + bytes(8), 3,
   "two CRC-32s for three layers")
me("trace_result_chunk_long", D, 0x86, struct.pack("<BBHH", 2, 15, 512, 0) + bytes(241), 3,
   "241 bytes: a chunk is at most 240")
me("trace_result_chunk_short", D, 0x86, struct.pack("<BBHH", 14, 15, 10, 2) + bytes(7), 3,
   "7 bytes where 8 are left of the output")
me("trace_result_offset_past_output", D, 0x86, struct.pack("<BBHH", 14, 15, 10, 10), 6,
   "offset 10 of a 10-byte output")
me("trace_result_layer_past_model", D, 0x86, struct.pack("<BBHH", 15, 15, 10, 0) + bytes(10), 6,
   "layer 15 of a 15-layer model")
me("edge_level_2", D, 0x90, struct.pack("<BBI", 1, 2, 0), 6, "level is 0 or 1")
me("error_unknown_code", D, 0xE0, struct.pack("<BH", 9, 1), 6, "codes are 1..6")
me("error_short", D, 0xE0, b"\x01\x02", 3, "3 bytes expected")
me("info_cut_in_firmware_id", D, 0x81, info[:-1], 3, "the firmware id is one byte short")
me("info_trailing_byte", D, 0x81, info + b"\0", 3, "a byte after the firmware id")
me("info_version_1", D, 0x81, b"\x01" + info[1:], 6,
   "a v1 device (no window ordinals): the host says so rather than misread it")
me("info_version_3", D, 0x81, b"\x03" + info[1:], 6, "a newer device: the host says so rather than misread it")

doc = {
    "description": "Test vectors for wire protocol v2 (docs/protocol.md). Generated once by an independent "
                   "script (byte-loop COBS, zlib.crc32, struct) and frozen: hil/hw/protocol.py and "
                   "firmware/src/protocol.c must both reproduce them (tests/test_protocol.py).",
    "protocol_version": 2,
    "constants": {"MAX_PAYLOAD": 256, "MIN_RAW_FRAME": 7, "MAX_RAW_FRAME": 263, "MAX_ENCODED_FRAME": 266,
                  "SEQ_UNKNOWN": 65535},
    "error_codes": {str(k): v for k, v in CODES.items()},
    "frames": frames,
    "receive": receive,
    "message_errors": message_errors,
}
def dump(doc):
    """Top-level keys and one vector per block, each field on its own line, values compact."""
    out = ["{"]
    items = list(doc.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if isinstance(value, list):
            out.append(f'  "{key}": [')
            for j, vector in enumerate(value):
                fields = [f'    "{k}": {json.dumps(v)}' for k, v in vector.items()]
                out.append("   {\n" + ",\n".join(fields) + "\n   }" + ("," if j < len(value) - 1 else ""))
            out.append("  ]" + comma)
        else:
            out.append(f'  "{key}": {json.dumps(value)}{comma}')
    out.append("}")
    return "\n".join(out) + "\n"

if __name__ == "__main__":  # tests import it to check the frozen file against it
    text = dump(doc)
    assert json.loads(text) == doc
    VECTORS.write_text(text)
