"""One framed channel: what every end of a framed link stands on (docs/protocol.md, docs/monitor.md).

The device link (hw/link.py), the measurement unit's link (hw/monitor.py), QEMU's wire
recorder (hw/emulated/qemu.py) and the emulated unit itself (hw/emulated/monitor_unit.py)
all speak COBS frames with a CRC and a sequence number. This module holds that once:
- `Framing`: one frame reader (resyncs on a corrupt frame, counts), one sequence counter and
  the trace tap, over bytes only (the emulated unit reads its ptys with select itself);
- `Channel`: a Framing on a pyserial port, opened by path or URL (`open_port`);
- `may_answer` / `refuses` / `Replies`: which frame answers which request;
- the trace: every frame in and out goes to the `hil.wire` logger (`hil run --log-file`)
  and to an optional callback, with the channel's name (the board's slot).
The wire format is hw/protocol.py's; nothing here changes a byte of it.
"""

from __future__ import annotations

import logging
import queue
import termios
import threading
import time
from collections import Counter
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Callable

import serial

from hil.errors import HilError
from hil.hw import protocol

WIRE_LOG = logging.getLogger("hil.wire")  # one DEBUG record per frame; `hil --log-file` keeps them
# What a port raises once it is gone: an unplugged adapter, a dead emulator, a closed socket,
# (TypeError, termios.error) a port closed under the thread reading it, or (termios.error, not an
# OSError) a write's tcdrain or a tcflush whose other side went away: all are ChannelLost.
PORT_ERRORS = (serial.SerialException, OSError, TypeError, termios.error)
MAX_WAIT_S = 0.5  # the longest single read, so that a caller's deadline is kept


class ChannelLost(HilError):
    """The port went away; the link above says what that means for it. `reason`: the port's error."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class Direction(str, Enum):
    SENT = "out"
    RECEIVED = "in"


@dataclass(frozen=True)
class TraceEntry:
    """One frame as it went by: `frame` is a Frame or a FrameError (a corrupt frame dropped);
    `raw` are bytes sent as they are (a resync's lone delimiter, a test's garbage)."""

    channel: str
    direction: Direction
    frame: protocol.Frame | protocol.FrameError | None
    raw: bytes = b""

    def fields(self, types: type[IntEnum]) -> dict:
        """The entry as the wire log writes it: JSON-ready, the payload in hex."""
        entry: dict = {"link": self.channel, "dir": self.direction.value}
        if isinstance(self.frame, protocol.Frame):
            name = types(self.frame.type).name if self.frame.type in types._value2member_map_ else None
            entry.update(type=self.frame.type, name=name, seq=self.frame.seq, payload=self.frame.payload.hex())
        elif isinstance(self.frame, protocol.FrameError):
            entry.update(error=self.frame.code.name, detail=self.frame.detail)
        else:
            entry.update(raw=self.raw.hex())
        return entry


Tap = Callable[[TraceEntry], None]


class SequenceCounter:
    """0, 1, …, 0xFFFE and round again: 0xFFFF is reserved for "unknown" (an unreadable frame)."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last = (self.last + 1) % protocol.SEQ_UNKNOWN
        return self.last


class FrameReader:
    """Bytes in, frames and FrameErrors out. After a corrupt frame the decoder drops bytes up to
    the next delimiter and goes on: that is the resync. Counts what it read."""

    def __init__(self) -> None:
        self._decoder = protocol.FrameDecoder()
        self.frames = 0
        self.corrupt: Counter = Counter()  # by FrameError code

    def feed(self, data: bytes) -> list[protocol.Frame | protocol.FrameError]:
        events = self._decoder.feed(data)
        for event in events:
            if isinstance(event, protocol.FrameError):
                self.corrupt[event.code.name] += 1
            else:
                self.frames += 1
        return events

    def reset(self) -> None:
        """Forget a half-read frame (the input before it was discarded)."""
        self._decoder = protocol.FrameDecoder()


class Framing:
    """The framing of one end of a link, transport aside: encode with the one sequence counter,
    decode with the one reader, and show every frame to the trace."""

    def __init__(self, name: str, types: type[IntEnum] = protocol.MessageType, tap: Tap | None = None):
        self.name = name
        self.types = types  # how the trace names frame types: the device's or the unit's messages
        self.tap = tap
        self.seq = SequenceCounter()
        self.reader = FrameReader()

    def encode(self, message, seq: int | None = None) -> tuple[int, bytes]:
        """`message` in a frame with `seq`, or the next sequence number; returns both."""
        seq = self.seq.next() if seq is None else seq
        payload = message.to_payload()
        self.trace(Direction.SENT, protocol.Frame(message.TYPE, seq, payload))
        return seq, protocol.encode_frame(message.TYPE, seq, payload)

    def decode(self, data: bytes) -> list[protocol.Frame | protocol.FrameError]:
        events = self.reader.feed(data)
        for event in events:
            self.trace(Direction.RECEIVED, event)
        return events

    def trace(self, direction: Direction, frame: protocol.Frame | protocol.FrameError | None, raw: bytes = b"") -> None:
        logged = WIRE_LOG.isEnabledFor(logging.DEBUG)
        if self.tap is None and not logged:
            return  # the common case: nobody watches, nothing is built
        entry = TraceEntry(self.name, direction, frame, raw)
        if self.tap is not None:
            self.tap(entry)
        if logged:
            WIRE_LOG.debug("%s %s", self.name, direction.value, extra={"wire": entry.fields(self.types)})


def open_port(url: str, baudrate: int = 115200, timeout: float = 1.0) -> serial.SerialBase:
    """A serial port by path (/dev/ttyACM0, a pty) or pyserial URL (socket://, rfc2217://, spy://,
    loop://), opened exclusively where the port can be locked (a local tty). SerialException if not."""
    return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, exclusive=True)


class Channel(Framing):
    """A Framing on an open pyserial port. Every port error becomes ChannelLost."""

    def __init__(self, port: serial.SerialBase, name: str, types: type[IntEnum] = protocol.MessageType,
                 tap: Tap | None = None):
        super().__init__(name, types, tap)
        self.port = port
        self.last_received_at = time.monotonic()  # when bytes last arrived, of any frame or none

    def _lost(self, error: Exception) -> ChannelLost:
        return ChannelLost(f"{self.name}: link lost ({error}); the board or its port went away", str(error))

    def send(self, message, seq: int | None = None) -> int:
        """Send `message` with `seq` (default: the next one); returns the seq it went with."""
        seq, data = self.encode(message, seq)
        self._write(data)
        return seq

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are: a resync's delimiter, or garbage a test puts on the line."""
        self.trace(Direction.SENT, None, bytes(data))
        self._write(data)

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
            self.port.flush()
        except PORT_ERRORS as error:
            raise self._lost(error) from None

    def read(self, wait: float) -> list[protocol.Frame | protocol.FrameError]:
        """What arrives within `wait` seconds (at most MAX_WAIT_S), decoded; [] if nothing did."""
        wait = min(wait, MAX_WAIT_S)
        try:
            if self.port.timeout != wait:  # pyserial reconfigures the tty on every assignment
                self.port.timeout = wait
            data = self.port.read(max(1, self.port.in_waiting))
        except PORT_ERRORS as error:
            raise self._lost(error) from None
        if not data:
            return []
        self.last_received_at = time.monotonic()
        return self.decode(data)

    def resync(self) -> None:
        """A lone delimiter ends any half-received frame at the other end; stale input is dropped."""
        self.send_raw(protocol.DELIMITER)
        time.sleep(0.05)
        try:
            self.port.reset_input_buffer()
        except PORT_ERRORS as error:
            raise self._lost(error) from None
        self.reader.reset()

    def listen(self, on_frame: Callable[[protocol.Frame | protocol.FrameError], None],
               on_lost: Callable[[ChannelLost], None] = lambda error: None, wait: float = 0.1) -> Listener:
        """Read on a thread of its own from now on, handing every frame to `on_frame`; for links
        whose other end speaks unprompted (a unit's edges and samples, a board's GPIO wire)."""
        return Listener(self, on_frame, on_lost, wait)

    def close(self) -> None:
        self.port.close()


class Listener:
    """The reading thread of a Channel; `stop()` ends it (before the port is closed)."""

    def __init__(self, channel: Channel, on_frame, on_lost, wait: float):
        self._channel, self._on_frame, self._on_lost, self._wait = channel, on_frame, on_lost, wait
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader {channel.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._channel.read(self._wait)
            except ChannelLost as error:
                if not self._stop.is_set():  # not lost: closed because we are stopping
                    self._on_lost(error)
                return
            for event in events:
                self._on_frame(event)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


# --- which frame answers which request (docs/protocol.md, "Sequence numbers and answers") ---


def may_answer(frame: protocol.Frame, seq: int) -> bool:
    """Whether `frame` can be the answer to request `seq`: it carries that seq, or it is an ERROR,
    which names the request it refuses in its payload. Anything else is a late answer."""
    return frame.seq == seq or frame.type == protocol.MessageType.ERROR


def refuses(reply: protocol.ErrorReply, seq: int) -> bool:
    """Whether an ERROR refuses request `seq`: it names it, or a frame it could not read at all."""
    return reply.seq in (seq, protocol.SEQ_UNKNOWN)


class Replies:
    """Answers that a reading thread hands to the thread waiting for them, matched by seq."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()

    def put(self, frame: protocol.Frame, message) -> None:
        self._queue.put((frame, message))

    def wait(self, seq: int, timeout: float):
        """The answer to request `seq` (an ErrorReply if refused), or None if none came in time;
        answers to earlier requests are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame, message = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if not may_answer(frame, seq):
                continue
            if isinstance(message, protocol.ErrorReply) and not refuses(message, seq):
                continue
            return message
