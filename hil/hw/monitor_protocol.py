"""Monitor protocol v1.1: between the host and a measurement unit (docs/monitor.md is the spec).

A measurement unit timestamps the DUT's GPIO edges on a capture input and reads an INA219
on the DUT's supply. It uses the framing of the device protocol (COBS, CRC-32, sequence numbers)
with its own message types, so one decoder serves both links. Requests are answered like
the device's; EDGE and SAMPLE frames come unprompted, in time order, as they happen.
Every time is a tick of the unit's own clock (INFO.clock_hz), counted in 64 bits.
v1.1 (INFO.version 2) carries the same measurements in batches: SAMPLES (consecutive conversions,
raw registers), SAMPLE_RUN (consecutive conversions with identical registers, counted once) and EDGES.
The host still reads a v1 unit (one SAMPLE and EDGE frame each).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, NamedTuple

import numpy as np

from hil.hw.protocol import (MAX_PAYLOAD, ErrorCode, ErrorReply, Frame, ProtocolError, _FixedLayout, _flag, _pack_text,
                             _unpack_text)

VERSION_1, VERSION_1_1 = 1, 2  # INFO.version: the protocol's revision
MONITOR_PROTOCOL_VERSION = VERSION_1_1
SUPPORTED_VERSIONS = (VERSION_1, VERSION_1_1)


class MonitorMessage(IntEnum):
    HELLO = 0x41
    CONFIGURE = 0x42
    FLUSH = 0x43
    INFO = 0xC1
    CONFIGURED = 0xC2
    FLUSHED = 0xC3
    EDGE = 0xD0
    SAMPLE = 0xD1
    SAMPLES = 0xD2  # v1.1
    SAMPLE_RUN = 0xD3  # v1.1
    EDGES = 0xD4  # v1.1
    ERROR = 0xE0  # the layout of protocol v1's ERROR


@dataclass(frozen=True)
class MonitorHello(_FixedLayout):
    TYPE: ClassVar[MonitorMessage] = MonitorMessage.HELLO
    FORMAT: ClassVar[str] = "<"


@dataclass(frozen=True)
class MonitorInfo:
    TYPE: ClassVar[MonitorMessage] = MonitorMessage.INFO
    version: int
    clock_hz: int  # the tick of every time the unit reports
    unit_id: str

    def to_payload(self) -> bytes:
        return struct.pack("<BI", self.version, self.clock_hz) + _pack_text(self.unit_id)

    @classmethod
    def from_payload(cls, payload: bytes) -> MonitorInfo:
        if len(payload) < 6:
            raise ProtocolError(ErrorCode.BAD_LENGTH, f"monitor INFO: {len(payload)} bytes, at least 6")
        version, clock_hz = struct.unpack("<BI", payload[:5])
        unit_id, rest = _unpack_text(payload[5:], "monitor INFO unit id")
        if rest or version not in SUPPORTED_VERSIONS or clock_hz == 0:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"monitor INFO: version {version}, clock {clock_hz} Hz")
        return cls(version, clock_hz, unit_id)


@dataclass(frozen=True)
class Configure(_FixedLayout):
    """The INA219's configuration and calibration registers, as the host computed them."""

    TYPE: ClassVar[MonitorMessage] = MonitorMessage.CONFIGURE
    FORMAT: ClassVar[str] = "<HH"
    config: int
    calibration: int


@dataclass(frozen=True)
class Configured(_FixedLayout):
    """The registers as the chip holds them, and how long one sample's conversion window is."""

    TYPE: ClassVar[MonitorMessage] = MonitorMessage.CONFIGURED
    FORMAT: ClassVar[str] = "<HHI"
    config: int
    calibration: int
    conversion_ticks: int


@dataclass(frozen=True)
class Flush(_FixedLayout):
    """Send everything measured so far."""

    TYPE: ClassVar[MonitorMessage] = MonitorMessage.FLUSH
    FORMAT: ClassVar[str] = "<"


@dataclass(frozen=True)
class Flushed(_FixedLayout):
    """Every EDGE and SAMPLE up to `until` has been sent (they precede this reply)."""

    TYPE: ClassVar[MonitorMessage] = MonitorMessage.FLUSHED
    FORMAT: ClassVar[str] = "<Q"
    until: int


@dataclass(frozen=True)
class MonitorEdge(_FixedLayout):
    TYPE: ClassVar[MonitorMessage] = MonitorMessage.EDGE
    FORMAT: ClassVar[str] = "<BBQ"
    pin: int
    level: int
    at: int

    @classmethod
    def _checked(cls, pin, level, at):
        return cls(pin, int(_flag(level, "monitor EDGE level")), at)


@dataclass(frozen=True)
class Sample(_FixedLayout):
    """One INA219 conversion: raw registers, and the window [start, end) it averaged over."""

    TYPE: ClassVar[MonitorMessage] = MonitorMessage.SAMPLE
    FORMAT: ClassVar[str] = "<QQHHHH"
    start: int
    end: int
    shunt: int
    bus: int
    power: int
    current: int


_SAMPLES_HEADER = struct.Struct("<QIHB")  # start, ticks, bus, count
SAMPLES_MAX = (MAX_PAYLOAD - _SAMPLES_HEADER.size) // 6  # 40 conversions of 6 bytes
_EDGES_HEADER = struct.Struct("<QB")  # at, count
EDGES_MAX = (MAX_PAYLOAD - _EDGES_HEADER.size) // 5  # 49 edges of 5 bytes
_EDGE_RECORD = np.dtype([("pin_level", "u1"), ("delta", "<u4")])
RUN_MIN = 8  # shorter runs of identical registers cost fewer bytes inside a SAMPLES frame


def _count_ok(count: int, records: int, most: int, name: str) -> None:
    if not 1 <= count <= most or records != count:
        raise ProtocolError(ErrorCode.BAD_LENGTH, f"monitor {name}: count {count}, {records} records")


@dataclass(frozen=True, eq=False)
class Samples:
    """v1.1: `count` consecutive conversions, the i-th over [start + i*ticks, start + (i+1)*ticks),
    each with its raw shunt, power and current registers; the bus register, the same for all of
    them (shunt-only mode converts no bus voltage), is sent once."""

    TYPE: ClassVar[MonitorMessage] = MonitorMessage.SAMPLES
    start: int
    ticks: int
    bus: int
    registers: np.ndarray = field(repr=False)  # (count, 3) uint16: shunt, power, current

    def to_payload(self) -> bytes:
        return (_SAMPLES_HEADER.pack(self.start, self.ticks, self.bus, len(self.registers))
                + self.registers.astype("<u2").tobytes())

    @classmethod
    def from_payload(cls, payload: bytes) -> Samples:
        if len(payload) < _SAMPLES_HEADER.size or (len(payload) - _SAMPLES_HEADER.size) % 6:
            raise ProtocolError(ErrorCode.BAD_LENGTH, f"monitor SAMPLES: {len(payload)} bytes")
        start, ticks, bus, count = _SAMPLES_HEADER.unpack_from(payload)
        registers = np.frombuffer(payload, "<u2", offset=_SAMPLES_HEADER.size).reshape(-1, 3)
        _count_ok(count, len(registers), SAMPLES_MAX, "SAMPLES")
        if ticks == 0:
            raise ProtocolError(ErrorCode.BAD_VALUE, "monitor SAMPLES: conversions of 0 ticks")
        return cls(start, ticks, bus, registers)


@dataclass(frozen=True)
class SampleRun(_FixedLayout):
    """v1.1: `count` consecutive conversions of `ticks` from `start` whose four registers were identical."""

    TYPE: ClassVar[MonitorMessage] = MonitorMessage.SAMPLE_RUN
    FORMAT: ClassVar[str] = "<QIIHHHH"
    start: int
    ticks: int
    count: int
    shunt: int
    bus: int
    power: int
    current: int

    @classmethod
    def _checked(cls, start, ticks, count, *registers):
        if ticks == 0 or count == 0:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"monitor SAMPLE_RUN: {count} conversions of {ticks} ticks")
        return cls(start, ticks, count, *registers)


@dataclass(frozen=True, eq=False)
class Edges:
    """v1.1: edges in time order; each record is `pin << 1 | level` and its time after the
    previous edge (the first: after `at`)."""

    TYPE: ClassVar[MonitorMessage] = MonitorMessage.EDGES
    at: int
    records: np.ndarray = field(repr=False)  # of _EDGE_RECORD

    def to_payload(self) -> bytes:
        return _EDGES_HEADER.pack(self.at, len(self.records)) + self.records.astype(_EDGE_RECORD).tobytes()

    @classmethod
    def from_payload(cls, payload: bytes) -> Edges:
        if len(payload) < _EDGES_HEADER.size or (len(payload) - _EDGES_HEADER.size) % _EDGE_RECORD.itemsize:
            raise ProtocolError(ErrorCode.BAD_LENGTH, f"monitor EDGES: {len(payload)} bytes")
        at, count = _EDGES_HEADER.unpack_from(payload)
        records = np.frombuffer(payload, _EDGE_RECORD, offset=_EDGES_HEADER.size)
        _count_ok(count, len(records), EDGES_MAX, "EDGES")
        if np.any(records["pin_level"] > 0x03):
            raise ProtocolError(ErrorCode.BAD_VALUE, "monitor EDGES: a pin other than 0 and 1")
        return cls(at, records)

    def edges(self) -> list[tuple[int, int, int]]:
        """(pin, level, at) of every record."""
        times = (self.at + np.cumsum(self.records["delta"], dtype=np.uint64)).tolist()
        pin_level = self.records["pin_level"].tolist()
        return [(p >> 1, p & 1, t) for p, t in zip(pin_level, times)]


class Conversion(NamedTuple):
    """One conversion as a unit read it: its window and the four raw registers."""

    start: int
    end: int
    shunt: int
    bus: int
    power: int
    current: int


def batch_conversions(conversions: Sequence[Conversion]) -> list[Samples | SampleRun]:
    """v1.1 frames for conversions in time order, lossless: runs of RUN_MIN or more identical
    register sets become one SAMPLE_RUN, the rest SAMPLES of back-to-back windows of one length and
    one bus register."""
    messages: list[Samples | SampleRun] = []
    pending: list[Conversion] = []

    def close_samples() -> None:
        if pending:
            registers = np.array([(c.shunt, c.power, c.current) for c in pending], dtype=np.uint16)
            messages.append(Samples(pending[0].start, pending[0].end - pending[0].start, pending[0].bus, registers))
            pending.clear()

    for _, group in itertools.groupby(conversions, key=lambda c: (c.end - c.start, c[2:])):
        run = list(group)
        tiled = all(a.end == b.start for a, b in itertools.pairwise(run))
        if len(run) >= RUN_MIN and tiled:
            close_samples()
            first = run[0]
            messages.append(SampleRun(first.start, first.end - first.start, len(run), *first[2:]))
            continue
        for conversion in run:
            last = pending[-1] if pending else None
            if last is not None and (len(pending) == SAMPLES_MAX or last.end != conversion.start
                                     or last.bus != conversion.bus
                                     or last.end - last.start != conversion.end - conversion.start):
                close_samples()
            pending.append(conversion)
    close_samples()
    return messages


def batch_edges(edges: Sequence[tuple[int, int, int]]) -> list[Edges]:
    """v1.1 frames for (pin, level, at) edges in time order; a gap beyond 32 bits starts a new frame."""
    messages: list[Edges] = []
    start = 0
    while start < len(edges):
        at, records = edges[start][2], []
        previous = at
        for pin, level, time in edges[start:start + EDGES_MAX]:
            if time - previous >= 1 << 32:
                break
            records.append((pin << 1 | level, time - previous))
            previous = time
        messages.append(Edges(at, np.array(records, dtype=_EDGE_RECORD)))
        start += len(records)
    return messages


# ErrorReply is protocol v1's ERROR, whose type MonitorMessage.ERROR repeats.
_MESSAGES: dict[int, type] = {cls.TYPE: cls for cls in (MonitorHello, MonitorInfo, Configure, Configured, Flush,
                                                         Flushed, MonitorEdge, Sample, Samples, SampleRun, Edges,
                                                         ErrorReply)}


def parse_monitor_message(frame: Frame):
    cls = _MESSAGES.get(frame.type)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, f"monitor message type {frame.type:#04x}")
    return cls.from_payload(frame.payload)
