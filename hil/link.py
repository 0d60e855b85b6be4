"""The host end of a board's UART: protocol v1 requests and replies over any pyserial port.

An emulated board's port is a QEMU pseudo-terminal, a physical board's a USB serial
device, a remote one an rfc2217:// URL: pyserial hides the difference, so this one class
serves every board. Each request carries a fresh sequence number; replies with another
number (late answers to a request that timed out) are dropped, and so are frames that
arrive broken, so a noisy line costs a retry, never a wrong answer.
"""

from __future__ import annotations

import termios
import time

import serial

from hil import protocol
from hil.errors import HilError


class LinkTimeout(HilError):
    """No valid reply in time: the board is hung, gone, or the line is broken."""


class LinkLost(HilError):
    """The port itself went away (an unplugged board, a dead emulator): retrying cannot help."""


class DeviceError(HilError):
    """The device answered with an ERROR frame."""

    def __init__(self, message: str, code: protocol.ErrorCode):
        super().__init__(message)
        self.code = code


class DeviceLink:
    def __init__(self, port: serial.SerialBase, name: str = "board", timeout: float = 5.0):
        self.port = port
        self.name = name
        self.timeout = timeout
        self._decoder = protocol.FrameDecoder()
        self._seq = 0
        self.dropped: list[protocol.FrameError] = []  # broken frames seen, for the report

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % protocol.SEQ_UNKNOWN  # 0xFFFF is reserved for "unknown"
        return self._seq

    def _lost(self, error: Exception) -> LinkLost:
        return LinkLost(f"{self.name}: link lost ({error}); the board or its port went away")

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are: for tests that put garbage on the line."""
        try:
            self.port.write(data)
            self.port.flush()
        except (serial.SerialException, OSError) as error:
            raise self._lost(error) from None

    def request(self, message, timeout: float | None = None):
        """Send one message and return the device's reply to it."""
        seq = self._next_seq()
        self.send_raw(protocol.encode_message(message, seq))
        return self.receive(seq, timeout)

    def receive(self, seq: int, timeout: float | None = None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkTimeout(f"{self.name}: no reply to request {seq} within "
                                  f"{self.timeout if timeout is None else timeout:.1f} s; check the board and its port")
            wait = min(remaining, 0.5)
            if self.port.timeout != wait:  # pyserial reconfigures the tty on every assignment
                self.port.timeout = wait
            try:
                data = self.port.read(max(1, self.port.in_waiting))
            except (serial.SerialException, OSError) as error:
                raise self._lost(error) from None
            for event in self._decoder.feed(data):
                if isinstance(event, protocol.FrameError):
                    self.dropped.append(event)
                    continue
                if event.seq != seq and event.type != protocol.MessageType.ERROR:
                    continue  # a late reply to an earlier request
                reply = protocol.parse_message(event)
                if isinstance(reply, protocol.ErrorReply):
                    if reply.seq not in (seq, protocol.SEQ_UNKNOWN):
                        continue
                    raise DeviceError(f"{self.name}: device refused request {seq}: {reply.code.name}", reply.code)
                return reply

    def resync(self) -> None:
        """A lone delimiter ends any half-received frame on the device; stale input is dropped."""
        self.send_raw(protocol.DELIMITER)
        time.sleep(0.05)
        try:
            self.port.reset_input_buffer()
        except (serial.SerialException, OSError, termios.error) as error:
            raise self._lost(error) from None
        self._decoder = protocol.FrameDecoder()

    def hello(self) -> protocol.Info:
        return self.request(protocol.Hello())

    def set_threshold(self, tau_q15: int) -> int:
        return self.request(protocol.SetThreshold(tau_q15)).tau_q15

    def infer(self, sample: bytes) -> protocol.Result:
        return self.request(protocol.Infer(bytes(sample)))

    def infer_burst(self, sample: bytes, count: int) -> protocol.BurstResult:
        return self.request(protocol.InferBurst(count, bytes(sample)))
