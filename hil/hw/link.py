"""The host end of a board's UART: protocol v2 requests and replies over any pyserial port.

An emulated board's port is a QEMU pseudo-terminal, a physical board's a USB serial
device, a remote one an rfc2217:// URL: pyserial hides the difference, so this one class
serves every board. Each request carries a fresh sequence number; replies with another
number (late answers to a request that timed out) are dropped. A reply must be the one
its request is answered with (docs/protocol.md) and fit the board's INFO; a broken frame
or a reply that is not an answer to the request is a protocol error, so a noisy line or a
confused board costs a retry (`exchange`), never a wrong answer. Everything but valid
answers is counted in `counts`, for run.json, the console and the final error message.
The framing, the sequence numbers and the trace are hw/channel.py's.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Callable

import serial

from hil.hw import protocol
from hil.hw.channel import Channel, ChannelLost, Tap, may_answer, refuses
from hil.errors import HilError

log = logging.getLogger(__name__)


class LinkTimeout(HilError):
    """No valid reply in time: the board is hung, gone, or the line is broken."""


class LinkLost(HilError):
    """The port itself went away (an unplugged board, a dead emulator): retrying cannot help."""


class DeviceError(HilError):
    """The device answered with an ERROR frame."""

    def __init__(self, message: str, code: protocol.ErrorCode):
        super().__init__(message)
        self.code = code


class NoValidReply(HilError):
    """Every attempt at one request failed; the message says what arrived instead."""


# What the device answers each request with (docs/protocol.md, "Sequence numbers and answers").
ANSWERS: dict[type, type] = {
    protocol.Hello: protocol.Info,
    protocol.SetThreshold: protocol.ThresholdSet,
    protocol.Infer: protocol.Result,
    protocol.InferBurst: protocol.BurstResult,
    protocol.Profile: protocol.ProfileResult,
    protocol.Trace: protocol.TraceResult,
    protocol.Conformance: protocol.ConformanceResult,
}
RECOVERABLE = (LinkTimeout, DeviceError, protocol.ProtocolError)  # a resync and another attempt may help


def plural(count: int, noun: str) -> str:
    if count != 1:
        noun = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{count} {noun}"


def _kinds(counter: Counter) -> str:
    if len(counter) == 1:
        return next(iter(counter))
    return ", ".join(f"{count} {kind}" for kind, count in counter.most_common())


@dataclass
class LinkCounts:
    """What one link met besides valid answers: a line that needed 687 retries is reported, not
    hidden behind a pass."""

    requests: int = 0
    retries: int = 0  # requests sent again, after a resync
    timeouts: int = 0  # nothing at all arrived in time
    late: int = 0  # answers to an earlier request, dropped
    corrupt: Counter = field(default_factory=Counter)  # broken frames, by FrameError code
    refused: Counter = field(default_factory=Counter)  # the device's ERROR replies, by code: it could not read us
    rejected: Counter = field(default_factory=Counter)  # well-framed replies that do not answer the request, by why

    def since(self, earlier: LinkCounts) -> LinkCounts:
        return LinkCounts(**{f.name: getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)})

    @classmethod
    def total(cls, counts) -> LinkCounts:
        """Several links' counts added up."""
        summed = cls()
        for each in counts:
            for f in fields(cls):
                setattr(summed, f.name, getattr(summed, f.name) + getattr(each, f.name))
        return summed

    @property
    def troubled(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name != "requests")

    def describe(self) -> str:
        """What arrived instead of valid answers, e.g. "2 corrupt frames (BAD_CRC), 1 timeout"; "" if nothing."""
        parts = [f"{plural(sum(counter.values()), noun)} ({_kinds(counter)})"
                 for noun, counter in (("corrupt frame", self.corrupt), ("ERROR reply", self.refused),
                                       ("wrong reply", self.rejected)) if counter]
        parts += [plural(count, noun) for noun, count in (("timeout", self.timeouts), ("late reply", self.late))
                  if count]
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {f.name: dict(v) if isinstance(v := getattr(self, f.name), Counter) else v for f in fields(self)}


def mismatch(request, reply, info: protocol.Info | None) -> tuple[protocol.ErrorCode, str] | None:
    """Why `reply` cannot be the answer to `request` (an error code and a short reason), or None.
    A RESULT must have the board's shape, as its INFO reported it; a burst, the runs asked for."""
    expected = ANSWERS[type(request)]
    if not isinstance(reply, expected):
        return protocol.ErrorCode.UNKNOWN_MESSAGE, f"{reply.TYPE.name} instead of {expected.TYPE.name}"
    if isinstance(reply, protocol.Result) and info is not None:
        rows = 1 if reply.exited else 1 + info.num_heads
        if (len(reply.logits), len(reply.logits[0])) != (rows, info.num_classes):
            return (protocol.ErrorCode.BAD_LENGTH, f"RESULT of {len(reply.logits)}x{len(reply.logits[0])} logits "
                    f"where INFO makes {rows}x{info.num_classes}")
    if isinstance(reply, protocol.ConformanceResult) and reply.kernel != request.vector[0]:
        return protocol.ErrorCode.BAD_VALUE, f"CONFORMANCE_RESULT of kernel {reply.kernel} for {request.vector[0]}"
    if isinstance(reply, (protocol.BurstResult, protocol.ProfileResult)) and reply.count != request.count:
        return protocol.ErrorCode.BAD_VALUE, f"{reply.TYPE.name} of {reply.count} runs for {request.count}"
    if isinstance(reply, protocol.TraceResult) and (reply.layer, reply.offset) != (request.layer, request.offset):
        return (protocol.ErrorCode.BAD_VALUE, f"TRACE_RESULT of layer {reply.layer} at {reply.offset} for layer "
                f"{request.layer} at {request.offset}")
    return None


class DeviceLink:
    def __init__(self, port: serial.SerialBase, name: str = "board", timeout: float = 5.0, tap: Tap | None = None):
        self.channel = Channel(port, name, protocol.MessageType, tap)
        self.name = name
        self.timeout = timeout
        self.info: protocol.Info | None = None  # the board's answer to HELLO: what its RESULTs must fit
        self.counts = LinkCounts()

    @property
    def port(self) -> serial.SerialBase:
        return self.channel.port

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are: for tests that put garbage on the line."""
        try:
            self.channel.send_raw(data)
        except ChannelLost as error:
            raise LinkLost(str(error)) from None

    def request(self, message, timeout: float | None = None):
        """Send one message and return the device's answer to it. ProtocolError when a frame
        arrives broken or the reply is not an answer to this request."""
        self.counts.requests += 1
        try:
            seq = self.channel.send(message)
        except ChannelLost as error:
            raise LinkLost(str(error)) from None
        reply = self.receive(seq, timeout)
        problem = mismatch(message, reply, self.info)
        if problem is not None:
            code, reason = problem
            self.counts.rejected[reason] += 1
            raise protocol.ProtocolError(code, f"{self.name}: reply to request {seq} is {reason}")
        if isinstance(reply, protocol.Info):
            self.info = reply
        return reply

    def receive(self, seq: int, timeout: float | None = None):
        """The reply with sequence number `seq`. A broken frame ends the wait at once (ProtocolError):
        the device answers once, so the answer is most likely lost, and a retry is quicker than a timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.counts.timeouts += 1
                raise LinkTimeout(f"{self.name}: no reply to request {seq} within "
                                  f"{self.timeout if timeout is None else timeout:.1f} s; check the board and its port")
            try:
                events = self.channel.read(remaining)
            except ChannelLost as error:
                raise LinkLost(str(error)) from None
            broken = None
            for event in events:
                if isinstance(event, protocol.FrameError):
                    self.counts.corrupt[event.code.name] += 1
                    broken = broken or event
                    continue
                if not may_answer(event, seq):
                    self.counts.late += 1
                    continue
                reply = self._parse(event)
                if isinstance(reply, protocol.ErrorReply):
                    if not refuses(reply, seq):
                        self.counts.late += 1
                        continue
                    self.counts.refused[reply.code.name] += 1
                    raise DeviceError(f"{self.name}: device refused request {seq}: {reply.code.name}", reply.code)
                return reply
            if broken is not None:
                raise protocol.ProtocolError(broken.code, f"{self.name}: a broken frame arrived while waiting for "
                                             f"the reply to request {seq} ({broken.detail})")

    def _parse(self, frame: protocol.Frame):
        try:
            return protocol.parse_message(frame)
        except protocol.ProtocolError as error:
            kind = protocol.MESSAGES[frame.type].TYPE.name if frame.type in protocol.MESSAGES else f"{frame.type:#04x}"
            self.counts.rejected[f"{kind} {error.code.name}"] += 1
            raise

    def exchange(self, message, retries: int, first_timeout: float | None = None,
                 recover: Callable[[], object] = lambda: None, alive: Callable[[], bool] = lambda: True):
        """`message` until it is answered: up to `retries` more attempts, each after a resync and
        `recover()` (e.g. the threshold set again, in case the board restarted). Returns the answer
        and the attempts it took. NoValidReply says what arrived instead; LinkLost that the port
        went away or the board is no longer `alive()`."""
        before = copy.deepcopy(self.counts)
        problem: HilError | None = None
        for attempt in range(1, retries + 2):
            try:
                return self.request(message, first_timeout if attempt == 1 else None), attempt
            except RECOVERABLE as error:
                problem = error
            if not alive():
                raise LinkLost(str(problem))
            if attempt <= retries:
                self.counts.retries += 1
                log.info("%s: %s unanswered (%s); resync and retry %d of %d", self.name, message.TYPE.name,
                         problem, attempt, retries)
                try:
                    self.resync()
                    recover()
                except RECOVERABLE as error:
                    problem = error
        arrived = self.counts.since(before).describe() or str(problem).removeprefix(f"{self.name}: ")
        raise NoValidReply(f"{self.name}: no valid answer to {message.TYPE.name} in {retries + 1} attempts: {arrived}")

    def resync(self) -> None:
        """A lone delimiter ends any half-received frame on the device; stale input is dropped."""
        try:
            self.channel.resync()
        except ChannelLost as error:
            raise LinkLost(str(error)) from None

    def hello(self) -> protocol.Info:
        return self.request(protocol.Hello())

    def set_threshold(self, tau_q15: int) -> int:
        return self.request(protocol.SetThreshold(tau_q15)).tau_q15

    def infer(self, sample: bytes) -> protocol.Result:
        return self.request(protocol.Infer(bytes(sample)))

    def infer_burst(self, sample: bytes, count: int) -> protocol.BurstResult:
        return self.request(protocol.InferBurst(count, bytes(sample)))

    def profile(self, sample: bytes, count: int, timeout: float | None = None) -> protocol.ProfileResult:
        return self.request(protocol.Profile(count, bytes(sample)), timeout)
