"""The kernel conformance suite: small int8 vectors, each with the host reference's expected output.

A vector is one kernel call as the firmware makes it (the integer parameters the code generator would emit,
firmware/src/kernels.h) with tensors small enough to travel in one CONFORMANCE request (docs/protocol.md).
The suite is generated (hil/firmware/conformance_gen.py, `hil firmware conformance`) and committed as
conformance_suite.json beside this file, with its sha256 in conformance_suite.sha256; reading it checks the
digest, so a run names exactly the suite it ran (run.json `conformance`). This module is the wire layout and
the file; it needs neither LiteRT nor a board.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from hil.errors import BadInput
from hil.hw.protocol import MAX_PAYLOAD

SUITE_FILE = Path(__file__).resolve().parent / "conformance_suite.json"
DIGEST_FILE = SUITE_FILE.with_suffix(".sha256")
SUITE_FORMAT = 2  # 2: with TFLM's expected outputs
MAX_CHANNELS = 32  # CONF_MAX_CHANNELS in firmware/src/conformance.h
MAX_OUTPUT = MAX_PAYLOAD - 1  # the reply carries the kernel id first

CONV_HEADER = "<B15BhhbbB"  # kernel, 15 shape bytes, input/output offsets, act range, has_bias: 23 bytes
FC_HEADER = "<BBBBBhhhbb"  # kernel, in, out, per_channel, has_bias, input/filter/output offsets, act range: 13
POOL_HEADER = "<B11Bbb"  # kernel, 11 shape bytes, act range: 14 bytes
CONV_SHAPE = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "kernel_h", "kernel_w", "stride_h", "stride_w",
              "dilation_h", "dilation_w", "pad_h", "pad_w", "depth_multiplier")
POOL_SHAPE = ("in_h", "in_w", "channels", "out_h", "out_w", "filter_h", "filter_w", "stride_h", "stride_w",
              "pad_h", "pad_w")


class Kernel(IntEnum):
    """The kernels the models use, by the id a CONFORMANCE request names them with (conf_kernel_t)."""

    CONV_2D = 1
    DEPTHWISE_CONV_2D = 2
    FULLY_CONNECTED = 3
    AVERAGE_POOL_2D = 4
    RESHAPE = 5


@dataclass(frozen=True)
class Vector:
    name: str  # unique in the suite, e.g. conv/tie-negative
    kernel: Kernel
    corner: str  # what it is built to reach
    payload: bytes  # the CONFORMANCE request's payload
    expected: bytes  # LiteRT's output (BUILTIN_REF, `run.reference: litert`), int8 as bytes
    expected_tflm: bytes  # TFLM's (`run.reference: tflm`): it differs only on the FC's rescale corners

    def expected_by(self, reference: str) -> bytes:
        """The expected output against the host reference a lab names (hil/model/reference.py Reference)."""
        return self.expected_tflm if reference == "tflm" else self.expected


@dataclass(frozen=True)
class Suite:
    vectors: tuple[Vector, ...]
    sha256: str  # of the suite file's bytes

    def by_kernel(self) -> dict[Kernel, list[Vector]]:
        grouped: dict[Kernel, list[Vector]] = {}
        for vector in self.vectors:
            grouped.setdefault(vector.kernel, []).append(vector)
        return grouped


def _i8(values) -> bytes:
    return bytes(int(v) & 0xFF for v in values)


def _checked(payload: bytes, output_size: int, channels: int = 0) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"vector of {len(payload)} bytes, a CONFORMANCE request carries at most {MAX_PAYLOAD}")
    if output_size > MAX_OUTPUT or channels > MAX_CHANNELS:
        raise ValueError(f"output of {output_size} bytes / {channels} channels: at most {MAX_OUTPUT} / {MAX_CHANNELS}")
    return payload


def conv_payload(fields: dict, multipliers: list[tuple[int, int]], bias, input_bytes, filter_bytes,
                 depthwise: bool) -> bytes:
    """CONV_2D / DEPTHWISE_CONV_2D: the header, (multiplier, shift) per channel, the biases if any, input, filter."""
    kernel = Kernel.DEPTHWISE_CONV_2D if depthwise else Kernel.CONV_2D
    shape = [fields[name] for name in CONV_SHAPE]
    header = struct.pack(CONV_HEADER, kernel, *shape, fields["input_offset"], fields["output_offset"],
                         fields["act_min"], fields["act_max"], bias is not None)
    words = b"".join(struct.pack("<ib", m, s) for m, s in multipliers)
    if bias is not None:
        words += struct.pack(f"<{len(bias)}i", *[int(b) for b in bias])
    size = fields["out_h"] * fields["out_w"] * fields["out_c"]
    return _checked(header + words + _i8(input_bytes) + _i8(filter_bytes), size, fields["out_c"])


def fc_payload(fields: dict, scales: list[tuple[int, int]], per_channel: bool, bias, input_bytes,
               weight_bytes) -> bytes:
    """FULLY_CONNECTED: the header, (mantissa, exponent) per scale, the biases if any, input, weights."""
    header = struct.pack(FC_HEADER, Kernel.FULLY_CONNECTED, fields["in_features"], fields["out_features"],
                         per_channel, bias is not None, fields["input_offset"], fields["filter_offset"],
                         fields["output_offset"], fields["act_min"], fields["act_max"])
    words = b"".join(struct.pack("<Qh", m, e) for m, e in scales)
    if bias is not None:
        words += struct.pack(f"<{len(bias)}i", *[int(b) for b in bias])
    return _checked(header + words + _i8(input_bytes) + _i8(weight_bytes), fields["out_features"],
                    fields["out_features"])


def pool_payload(fields: dict, input_bytes) -> bytes:
    header = struct.pack(POOL_HEADER, Kernel.AVERAGE_POOL_2D, *[fields[name] for name in POOL_SHAPE],
                         fields["act_min"], fields["act_max"])
    return _checked(header + _i8(input_bytes), fields["out_h"] * fields["out_w"] * fields["channels"])


def reshape_payload(input_bytes) -> bytes:
    data = _i8(input_bytes)
    return _checked(bytes([Kernel.RESHAPE]) + data, len(data))


# --- the file ---------------------------------------------------------------------------------------------------


def suite_bytes(vectors: list[Vector]) -> bytes:
    """The suite file: one vector per line, so that a diff names the vectors that changed."""
    lines = [json.dumps({"name": v.name, "kernel": v.kernel.name, "corner": v.corner, "vector": v.payload.hex(),
                         "expected": v.expected.hex(), "expected_tflm": v.expected_tflm.hex()},
                        separators=(",", ":")) for v in vectors]
    return (f'{{"format":{SUITE_FORMAT},"vectors":[\n' + ",\n".join(lines) + "\n]}\n").encode()


def read_suite(path: Path = SUITE_FILE, digest_path: Path = DIGEST_FILE) -> Suite:
    """The committed suite, its digest checked; BadInput (exit 3) names the file and what to do."""
    fix = "regenerate it with `hil firmware conformance` and commit both files"
    try:
        data = path.read_bytes()
        recorded = digest_path.read_text().split()[0]
    except (OSError, IndexError) as error:
        raise BadInput(f"{path}: conformance suite unreadable ({error}); {fix}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != recorded:
        raise BadInput(f"{path}: sha256 {digest[:12]}… differs from {digest_path.name}'s {recorded[:12]}…; {fix}")
    try:
        document = json.loads(data)
        if document["format"] != SUITE_FORMAT:
            raise ValueError(f"format {document['format']}, this hil reads {SUITE_FORMAT}")
        vectors = tuple(Vector(v["name"], Kernel[v["kernel"]], v["corner"], bytes.fromhex(v["vector"]),
                               bytes.fromhex(v["expected"]), bytes.fromhex(v["expected_tflm"]))
                        for v in document["vectors"])
    except (ValueError, KeyError, TypeError) as error:
        raise BadInput(f"{path}: malformed conformance suite ({error}); {fix}") from None
    return Suite(vectors, digest)


def write_suite(vectors: list[Vector], path: Path = SUITE_FILE, digest_path: Path = DIGEST_FILE) -> str:
    data = suite_bytes(vectors)
    digest = hashlib.sha256(data).hexdigest()
    path.write_bytes(data)
    digest_path.write_text(f"{digest}  {path.name}\n")
    return digest
