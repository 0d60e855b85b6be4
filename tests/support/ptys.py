"""Serial ports that misbehave at the lowest level, for the tests: real pseudo-terminals.

- `LineRelay`: a pty standing in for a board's serial port, in front of the board's real UART
  (a QEMU pty). What the host sends goes through untouched; what the board sends passes
  frame by frame through a `rewrite` (a flipped bit, another message type). With no board
  behind it, every byte the host sends comes straight back: an echoing port.
- `FakeDevice`: a pty whose other end answers each request frame with what `answer` returns,
  in the real protocol (hil.hw.protocol): for link tests that need no firmware.
"""

from __future__ import annotations

import os
import select
import struct
import threading
import tty
from collections.abc import Callable

from hil.hw import protocol
from hil.hw.emulated.served import raw_pty  # noqa: F401 - the one implementation, for the tests that import it here


def reframed(wire: bytes, type: int | None = None, flip_crc: bool = False) -> bytes:
    """One device frame (wire bytes, delimiter included) with another type and a valid CRC, or with
    one CRC bit flipped (a frame that arrives broken)."""
    raw = bytearray(protocol.cobs_decode(wire[:-1]))
    if type is not None:
        raw[0] = type
        raw[-protocol.CRC_SIZE:] = struct.pack("<I", protocol.crc32(bytes(raw[:-protocol.CRC_SIZE])))
    if flip_crc:
        raw[-1] ^= 0x01
    return protocol.cobs_encode(bytes(raw)) + protocol.DELIMITER


def follow_edges(fd: int, on_edge: Callable[[protocol.Edge], None], name: str) -> None:
    """Hand every EDGE frame an emulated board's wire (read from `fd`) carries to `on_edge`, until it closes:
    what a measurement unit clipped to the board's pins sees."""
    from hil.hw.channel import Framing

    framing = Framing(name)
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        if not data:
            return
        for event in framing.decode(data):
            if isinstance(event, protocol.Frame) and event.type == protocol.MessageType.EDGE:
                on_edge(protocol.Edge.from_payload(event.payload))


class _Pty:
    """A raw pty pair; the lab opens `path`, this side reads and writes `master`."""

    def __init__(self) -> None:
        self.master, self._slave, self.path = raw_pty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self._slave)

    def _run(self) -> None:
        raise NotImplementedError


class LineRelay(_Pty):
    def __init__(self, device: str | None, rewrite: Callable[[bytes], bytes] = lambda frame: frame):
        """`device`: the board's UART (a pty path), or None for an echoing port; `rewrite`: each device
        frame, wire bytes with its delimiter, to what the host gets instead."""
        super().__init__()
        self.rewrite = rewrite
        self._device = None
        if device is not None:
            self._device = os.open(device, os.O_RDWR | os.O_NOCTTY)
            tty.setraw(self._device)

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        if self._device is not None:
            os.close(self._device)

    def _run(self) -> None:
        pending = b""  # device bytes of a frame not yet complete
        sources = [self.master] + ([self._device] if self._device is not None else [])
        while not self._stop.is_set():
            for fd in select.select(sources, [], [], 0.05)[0]:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # the lab closed its end for a moment (EIO): nothing to pass on
                    continue
                if fd == self.master:
                    os.write(self._device if self._device is not None else self.master, data)
                    continue
                *frames, pending = (pending + data).split(protocol.DELIMITER)
                for body in frames:
                    os.write(self.master, self.rewrite(body + protocol.DELIMITER) if body else protocol.DELIMITER)


class FakeDevice(_Pty):
    def __init__(self, answer: Callable[[protocol.Frame], bytes]):
        """`answer`: wire bytes to send back for each request frame (b"" for none)."""
        super().__init__()
        self.answer = answer
        self.requests: list[protocol.Frame] = []

    def _run(self) -> None:
        decoder = protocol.FrameDecoder()
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                continue
            for event in decoder.feed(data):
                if isinstance(event, protocol.Frame):
                    self.requests.append(event)
                    os.write(self.master, self.answer(event))
