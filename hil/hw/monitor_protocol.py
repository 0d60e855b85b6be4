"""Monitor protocol v1: between the host and a measurement unit (docs/monitor.md is the spec).

A measurement unit timestamps the DUT's GPIO edges on a capture input and reads an INA219
on the DUT's supply. It uses the framing of the device protocol (COBS, CRC-32, sequence numbers)
with its own message types, so one decoder serves both links. Requests are answered like
the device's; EDGE and SAMPLE frames come unprompted, in time order, as they happen.
Every time is a tick of the unit's own clock (INFO.clock_hz), counted in 64 bits.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from hil.hw.protocol import ErrorCode, ErrorReply, Frame, ProtocolError, _FixedLayout, _flag, _pack_text, _unpack_text

MONITOR_PROTOCOL_VERSION = 1


class MonitorMessage(IntEnum):
    HELLO = 0x41
    CONFIGURE = 0x42
    FLUSH = 0x43
    INFO = 0xC1
    CONFIGURED = 0xC2
    FLUSHED = 0xC3
    EDGE = 0xD0
    SAMPLE = 0xD1
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
        if rest or version != MONITOR_PROTOCOL_VERSION or clock_hz == 0:
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


# ErrorReply is protocol v1's ERROR, whose type MonitorMessage.ERROR repeats.
_MESSAGES: dict[int, type] = {cls.TYPE: cls for cls in (MonitorHello, MonitorInfo, Configure, Configured, Flush,
                                                         Flushed, MonitorEdge, Sample, ErrorReply)}


def parse_monitor_message(frame: Frame):
    cls = _MESSAGES.get(frame.type)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, f"monitor message type {frame.type:#04x}")
    return cls.from_payload(frame.payload)
