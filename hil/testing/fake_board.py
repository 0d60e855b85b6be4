"""A board faked at its lowest level, for tests that must not wait for QEMU: protocol v2 bytes on a serial port.

`FakeFirmware` is the device side of the wire. It takes the bytes the host writes, cut anywhere,
and answers HELLO, SET_THRESHOLD, INFER, INFER_BURST and CONFORMANCE as firmware/src/main.c does (TRACE and
PROFILE it refuses, as an image built before them does: tests/emulated/test_divergence.py traces real images):
the same ERROR replies for broken or wrong frames, the threshold clamped to 1.0, window ordinals counted
from boot. Its outputs are the host reference's on the model's stages (hil.model.reference): the one
its manifest's rounding mode matches, LiteRT's or TFLM's, as the firmware's would be. Its decisions come
from the integer spec (hil.model.decisions). It has no kernels: a CONFORMANCE vector of the committed suite is
answered with that vector's expected output, any other with BAD_VALUE. So a correct host pipeline sees an
exact board. Its cycle counts are deterministic (`Timing`).
Each busy window raises edges on a wire, in the firmware's order (busy pin, then exit pin).
`InProcessPort` is the host's end: a pyserial port (serial.SerialBase) whose far end is Python.
`FakeBoard` is the one Board subclass: bring-up opens that port instead of starting QEMU.
`FakeMonitor` is its measurement unit at the monitor-protocol level: the emulated unit's own model
(hil.hw.emulated.monitor_unit.EmulatedUnit: INA219 registers, conversion windows, noise) runs
in-process on the fake wire.

It misbehaves on request (`Faults`): replies dropped or broken on the wire, a restart, other
hashes in HELLO, wrong outputs, a board that hangs or goes away. The host's error paths can be
tested this way too. It is a test double: nothing in a lab run uses it (docs/testing.md).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Callable

import numpy as np
import serial

from hil.firmware.build import FirmwareManifest
from hil.firmware.conformance import read_suite
from hil.hw import monitor_protocol as mp
from hil.hw import protocol
from hil.hw.board import Board, BoardError
from hil.hw.emulated.monitor_unit import EmulatedUnit
from hil.hw.flasher import Flasher, FlashReport, check_image
from hil.hw.kinds import BOARD_KINDS
from hil.hw.measurement import PIN_BUSY, PIN_EXIT
from hil.hw.link import DeviceLink
from hil.hw.monitor import Monitor, ProtocolMonitor
from hil.lab.load import BoardSpec, RunSettings
from hil.model import decisions
from hil.model.card import ModelCard, load_model
from hil.model.reference import Reference, StageRunner

CLOCK_HZ = 25_000_000  # what the emulated boards' timers count at (docs/firmware.md)
IDLE_S = 0.01  # device time between two requests: several INA219 conversions, as on a real bench
REQUESTS = (protocol.Hello, protocol.SetThreshold, protocol.Infer, protocol.InferBurst, protocol.Conformance)


@dataclass(frozen=True)
class Timing:
    """Deterministic cycle counts: one figure per stage, as a real board's differ only by exit path."""

    stage1_cycles: int  # to the exit decision
    stage2_cycles: int
    answer_cycles: int = 200  # from the exit decision to the early exit's answer

    @classmethod
    def of(cls, card: ModelCard) -> Timing:
        """A few cycles per multiply-accumulate, like an int8 kernel on a Cortex-M without SIMD."""
        return cls(4 * card.stages["stage1"].macs + 20_000, 4 * card.stages["stage2"].macs + 20_000)


@dataclass(frozen=True)
class Faults:
    """How the fake misbehaves. Sets of RESULT ordinals count every INFER the device ran, from 1."""

    drop_results: frozenset[int] = frozenset()  # ran, but the reply never reaches the host
    corrupt_results: frozenset[int] = frozenset()  # the reply arrives with one CRC bit flipped
    wrong_logits: frozenset[int] = frozenset()  # one exit logit off by one step: a firmware bug
    restart_before: frozenset[int] = frozenset()  # reboots on this INFER, losing it: τ back to 1.0, windows to 0
    hang_after: int | None = None  # after this many INFERs it answers nothing more (alive, silent)
    # After this many INFERs it stops dead, the edges of its last one still on their wire (an emulator stopped
    # mid-run): it answers nothing more and that window never reaches the unit. Its first boot only.
    freezes_after: int | None = None
    gone_after: int | None = None  # after this many INFERs the board is gone (its port and process die)
    stays_gone: bool = False  # once gone, no reset, reflash or power cycle brings it back (a dead board)
    firmware_sha256: bytes | None = None  # what HELLO reports instead of the manifest's image hash
    wrong_conformance: frozenset[str] = frozenset()  # conformance vectors (by name) answered one step off at [0]


class HostOutputs:
    """The host reference's int8 outputs for one sample at a time, cached per input: the reference an image's
    rounding mode matches (the manifest's `rounding`), as the firmware's kernels compute it."""

    def __init__(self, card: ModelCard, rounding: Reference):
        self.card = card
        self._stage1 = StageRunner(card, "stage1", rounding)
        self._stage2 = StageRunner(card, "stage2", rounding)
        self._cache: dict[bytes, tuple[np.ndarray, list[np.ndarray]]] = {}

    def __call__(self, sample: bytes) -> tuple[np.ndarray, list[np.ndarray]]:
        """(exit logits (1, L), [head logits (1, L)] ...) of one input tensor's bytes."""
        if sample not in self._cache:
            batch = np.frombuffer(sample, dtype=np.int8).reshape((1, *self.card.input.shape[1:]))
            first = self._stage1(batch)
            second = self._stage2(first["feature"])
            self._cache[sample] = (first[self.card.exit_output], [second[h] for h in self.card.head_outputs])
        return self._cache[sample]


class FakeFirmware:
    """The device end of a board's UART, answering as the QUTE firmware does."""

    def __init__(self, card: ModelCard, manifest: FirmwareManifest, faults: Faults = Faults(),
                 timing: Timing | None = None, clock_hz: int = CLOCK_HZ, board: str = "fake", flashed: bytes = b""):
        self.card, self.manifest, self.faults = card, manifest, faults
        self.flashed = flashed  # the image in its flash (FakeFlasher)
        self.timing = timing or Timing.of(card)
        self.clock_hz = clock_hz
        self.board = board
        self.outputs = HostOutputs(card, manifest.rounding)
        self.input_size = int(np.prod(card.input.shape[1:]))
        self.send: Callable[[bytes], None] = lambda data: None  # to the host: set by whoever opens the port
        self.hang_up: Callable[[], None] = lambda: None  # what the board going away does to its port
        self.wire: Callable[[protocol.Edge], None] | None = None  # the GPIO edges, to a measurement unit
        self.now = 0  # the device's timer, in ticks since boot
        self.gone = False
        self.requests: list[protocol.Message] = []  # every request it could read, in order
        self.ran = 0  # INFERs run, counted across restarts
        self.restarted: set[int] = set()  # the INFER ordinals it rebooted on
        self._boot()

    def _boot(self) -> None:
        self.tau_q15 = decisions.Q15_ONE  # pure QUTE until the host sets a threshold
        self.windows = 0
        self._decoder = protocol.FrameDecoder()
        self._edge(PIN_BUSY, 0)  # the pins' levels at reset: the first bytes on the wire
        self._edge(PIN_EXIT, 0)

    def _silent(self, after: int | None) -> bool:
        return after is not None and self.ran >= after

    def _edge(self, pin: int, level: int) -> None:
        if self.wire is not None and not self._silent(self.faults.freezes_after):
            self.wire(protocol.Edge(pin, level, self.now & 0xFFFFFFFF))

    def receive(self, data: bytes) -> None:
        """Bytes from the host, as a UART delivers them; answers go to `send`."""
        if self.gone or self._silent(self.faults.hang_after) or self._silent(self.faults.freezes_after):
            return
        for event in self._decoder.feed(data):
            if isinstance(event, protocol.FrameError):  # nothing in a dropped frame can be trusted
                self.send(protocol.encode_message(protocol.ErrorReply(event.code, protocol.SEQ_UNKNOWN),
                                                  protocol.SEQ_UNKNOWN))
                continue
            try:
                request = protocol.parse_message(event, self.input_size)
                if not isinstance(request, REQUESTS):
                    raise protocol.ProtocolError(protocol.ErrorCode.UNKNOWN_MESSAGE, request.TYPE.name)
            except protocol.ProtocolError as error:
                self.send(protocol.encode_message(protocol.ErrorReply(error.code, event.seq), event.seq))
                continue
            self.requests.append(request)
            reply = self._answer(request, event.seq)
            if reply:
                self.send(reply)

    def _answer(self, request, seq: int) -> bytes:
        if isinstance(request, protocol.Hello):
            # What it reports is the hash of the bytes flashed into it, as the firmware hashes its own flash.
            firmware = self.faults.firmware_sha256 or hashlib.sha256(self.flashed).digest()
            return protocol.encode_message(protocol.Info(
                protocol.PROTOCOL_VERSION, self.clock_hz, protocol.MAX_PAYLOAD, self.input_size, len(self.card.labels),
                len(self.card.head_outputs), self.tau_q15, self.windows, bytes.fromhex(self.manifest.model_sha256),
                firmware, self.board, f"qute-fw/2 {self.card.name} (fake)"), seq)
        if isinstance(request, protocol.SetThreshold):
            self.tau_q15 = min(request.tau_q15, decisions.Q15_ONE)
            return protocol.encode_message(protocol.ThresholdSet(self.tau_q15), seq)
        if isinstance(request, protocol.InferBurst):
            return protocol.encode_message(self._burst(request), seq)
        if isinstance(request, protocol.Conformance):
            return self._conformance(request, seq)
        if self.ran + 1 in self.faults.restart_before - self.restarted:
            self.restarted.add(self.ran + 1)  # the request is lost in the reboot: the host hears nothing
            self._boot()
            return b""
        self.ran += 1
        ordinal = self.ran
        result = self._infer(request.sample, wrong=ordinal in self.faults.wrong_logits)
        if self.faults.gone_after is not None and ordinal >= self.faults.gone_after:
            self.gone = True
            self.hang_up()
            return b""
        if ordinal in self.faults.drop_results:
            return b""
        wire = protocol.encode_message(result, seq)
        return flip_crc(wire) if ordinal in self.faults.corrupt_results else wire

    def _decide(self, sample: bytes) -> tuple[bool, int, int, list[np.ndarray]]:
        exit_logits, heads = self.outputs(sample)
        cascade = decisions.cascade(exit_logits, self.card.exit_lut, decisions.ensemble(heads, self.card.head_luts),
                                    self.tau_q15)
        rows = [exit_logits[0]] + ([] if cascade.exited[0] else [h[0] for h in heads])
        return bool(cascade.exited[0]), int(cascade.predicted[0]), int(cascade.confidence_q15[0]), rows

    def _infer(self, sample: bytes, wrong: bool) -> protocol.Result:
        exited, predicted, confidence, rows = self._decide(sample)
        self.now += round(IDLE_S * self.clock_hz)
        start = self.now
        self._edge(PIN_BUSY, 1)
        self.now += self.timing.stage1_cycles
        self._edge(PIN_EXIT, 1)  # stage 1 has decided; as in qute.c, the pin falls at once if stage 2 must run
        if not exited:
            self._edge(PIN_EXIT, 0)
        self.now += self.timing.stage2_cycles if not exited else self.timing.answer_cycles
        if exited:
            self._edge(PIN_EXIT, 0)  # the same tick as the busy pin: the early exit answered
        self._edge(PIN_BUSY, 0)
        self.windows += 1
        logits = [tuple(int(v) for v in row) for row in rows]
        if wrong:  # one quantization step off, the way a rounding bug shows
            first = logits[0][0]
            logits[0] = (first + 1 if first < 127 else first - 1,) + logits[0][1:]
        return protocol.Result(exited, predicted, confidence, self.now - start, self.windows, tuple(logits))

    def _conformance(self, request: protocol.Conformance, seq: int) -> bytes:
        """The suite's expected output (no busy window: as in main.c, conformance is not an inference)."""
        vector = _suite_answers().get(request.vector)
        if vector is None:
            return protocol.encode_message(protocol.ErrorReply(protocol.ErrorCode.BAD_VALUE, seq), seq)
        output = bytearray(vector.expected_by(self.manifest.rounding))  # its image's rounding mode, as the firmware
        if vector.name in self.faults.wrong_conformance and output:
            output[0] = (output[0] + 1) & 0xFF  # one step off, the way a rounding bug shows
        return protocol.encode_message(protocol.ConformanceResult(vector.kernel, bytes(output)), seq)

    def _burst(self, request: protocol.InferBurst) -> protocol.BurstResult:
        exited, predicted, confidence, _rows = self._decide(request.sample)
        self.now += round(IDLE_S * self.clock_hz)
        start = self.now
        self._edge(PIN_BUSY, 1)  # one window for all runs: no exit pin
        self.now += request.count * (self.timing.stage1_cycles + (self.timing.answer_cycles if exited
                                                                  else self.timing.stage2_cycles))
        self._edge(PIN_BUSY, 0)
        self.windows += 1
        return protocol.BurstResult(request.count, self.now - start, self.windows, exited, predicted, confidence)


_SUITE: dict = {}


def _suite_answers() -> dict:
    """The committed suite's vectors by payload, read once."""
    if not _SUITE:
        _SUITE.update({vector.payload: vector for vector in read_suite().vectors})
    return _SUITE


class InProcessPort(serial.SerialBase):
    """The host's end of a serial line whose far end is a Python callable (`on_write` gets every
    write); the far end answers through `deliver`. Reads wait for data up to the port's timeout,
    as pyserial's do; a closed port raises as a vanished device does."""

    def __init__(self, on_write: Callable[[bytes], None], name: str = "fake"):
        self._on_write = on_write
        self._buffer = bytearray()
        self._ready = threading.Condition()
        super().__init__(port=f"fake://{name}")

    def open(self) -> None:
        self.is_open = True

    def close(self) -> None:
        with self._ready:
            self.is_open = False
            self._ready.notify_all()

    def _reconfigure_port(self, *args, **kwargs) -> None:
        pass  # no line settings: bytes go through as they are

    def deliver(self, data: bytes) -> None:
        with self._ready:
            self._buffer += data
            self._ready.notify_all()

    @property
    def in_waiting(self) -> int:
        if not self.is_open:
            raise serial.PortNotOpenError()
        return len(self._buffer)

    def read(self, size: int = 1) -> bytes:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        with self._ready:
            while self.is_open and len(self._buffer) < size:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._ready.wait(remaining)
            if not self.is_open:
                raise serial.PortNotOpenError()
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            return data

    def write(self, data: bytes) -> int:
        if not self.is_open:
            raise serial.PortNotOpenError()
        self._on_write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def reset_input_buffer(self) -> None:
        with self._ready:
            self._buffer.clear()

    def reset_output_buffer(self) -> None:
        pass


class FakeMonitor(ProtocolMonitor):
    """The emulated unit's model (EmulatedUnit) in-process on a FakeFirmware's wire; its ground truth
    goes to <slot>.truth.jsonl, as the emulated unit's does."""

    def __init__(self, slot: str, kind: str, firmware: FakeFirmware, traces_dir: Path):
        self.profile = BOARD_KINDS[kind].power
        super().__init__(slot, self.profile.shunt_ohms, self.profile.max_current_a, traces_dir)
        self.firmware = firmware
        self.unit: EmulatedUnit | None = None
        self._port: InProcessPort | None = None
        self._decoder = protocol.FrameDecoder()
        self._seq = 0
        self._lock = threading.Lock()  # the wire and the host's requests may come from two threads
        self._truth = None

    @property
    def truth_path(self) -> Path:
        return self.traces_dir / f"{self.slot}.truth.jsonl"

    def _send(self, message, reply_seq: int | None = None) -> None:
        if reply_seq is None:
            self._seq = (self._seq + 1) % protocol.SEQ_UNKNOWN
        self._port.deliver(protocol.encode_message(message, self._seq if reply_seq is None else reply_seq))

    def _on_edge(self, edge: protocol.Edge) -> None:
        with self._lock:
            self.unit.on_edge(edge)

    def _on_request(self, data: bytes) -> None:
        with self._lock:
            for event in self._decoder.feed(data):
                if isinstance(event, protocol.FrameError):
                    self._send(protocol.ErrorReply(event.code, protocol.SEQ_UNKNOWN), protocol.SEQ_UNKNOWN)
                    continue
                try:
                    reply = self.unit.on_request(mp.parse_monitor_message(event))
                except protocol.ProtocolError as error:
                    reply = protocol.ErrorReply(error.code, event.seq)
                self._send(reply, event.seq)

    def _open_port(self) -> serial.SerialBase:
        self._truth = open(self.truth_path, "a", encoding="utf-8")
        self.unit = EmulatedUnit(self.profile, self.firmware.clock_hz, self._truth, 0, self._send)
        self._port = InProcessPort(self._on_request, f"{self.slot}-monitor")
        self.firmware.wire = self._on_edge
        return self._port

    def stop(self) -> None:
        super().stop()
        self.firmware.wire = None
        if self._truth is not None:
            self._truth.close()
            self._truth = None


class FakeFlashMethod(StrEnum):
    IN_PROCESS = "in-process"  # the image kept in memory: not a way the product flashes a board


class FakeFlasher(Flasher):
    """Keeps the verified image in memory; the FakeFirmware then runs (and HELLO hashes) exactly those bytes."""

    def __init__(self):
        self.flashed = b""

    def flash(self, manifest: FirmwareManifest) -> FlashReport:
        self.flashed = check_image(manifest.bin, manifest.image_sha256)
        return FlashReport(method=FakeFlashMethod.IN_PROCESS, target="fake", image=manifest.bin.name,
                           image_sha256=manifest.image_sha256, bytes=len(self.flashed),
                           base_address=manifest.load_address, verified=True, seconds=0.0, attempts=1)


class FakeBoard(Board):
    """A board whose image goes into a FakeFlasher and whose port is an InProcessPort to a FakeFirmware."""

    def __init__(self, spec: BoardSpec, manifest: FirmwareManifest, run: RunSettings, faults: Faults = Faults(),
                 card: ModelCard | None = None, metered: bool = True, timing: Timing | None = None):
        super().__init__(spec, manifest, run, FakeFlasher())
        self.faults, self.card, self.metered, self.timing = faults, card, metered, timing
        self.firmware: FakeFirmware | None = None
        self.died = False  # its firmware was gone once (Faults.gone_after)
        self.booted: list[FakeFirmware] = []  # every firmware it ran, kept after shut-down for a test to look at

    def _open_port(self) -> serial.SerialBase:
        if self.faults.stays_gone and self.died:
            raise BoardError(f"{self.slot}: the board does not answer on its port; it is dead")
        card = self.card or load_model(self.manifest.model)
        faults = self.faults if not self.booted else replace(self.faults, freezes_after=None)
        self.firmware = FakeFirmware(card, self.manifest, faults, self.timing, board=self.spec.kind,
                                     flashed=self.flasher.flashed)
        self.booted.append(self.firmware)
        port = InProcessPort(self.firmware.receive, self.slot)
        self.firmware.send, self.firmware.hang_up = port.deliver, port.close
        return port

    def alive(self) -> bool:
        return self.firmware is not None and not self.firmware.gone

    def reset(self) -> None:
        """The firmware starts again on a new port, with the image as flashed (its faults count anew)."""
        self.died = self.died or (self.firmware is not None and self.firmware.gone)
        self._stop()
        self.link = DeviceLink(self._open_port(), name=self.slot, timeout=self.run.request_timeout_s)

    def power_cycle(self) -> None:
        self.reset()

    def _make_monitor(self, traces_dir: Path) -> Monitor | None:
        return FakeMonitor(self.slot, self.spec.kind, self.firmware, traces_dir) if self.metered else None

    def identity(self) -> dict:
        return {**super().identity(), "fake": True}

    def _stop(self) -> None:
        if self.link is not None:
            self.link.port.close()
        self.firmware = None


@dataclass
class FakeRack:
    """What a test's make_board hands out: a FakeBoard per slot, each with its own faults; every board
    made is kept (`boards`), so a test can look at what its firmware was asked."""

    faults: dict[str, Faults] = field(default_factory=dict)
    timing: dict[str, Timing] = field(default_factory=dict)
    metered: bool = True
    boards: list[FakeBoard] = field(default_factory=list)

    def make_board(self, spec: BoardSpec, manifest: FirmwareManifest, run: RunSettings) -> FakeBoard:
        board = FakeBoard(spec, manifest, run, self.faults.get(spec.slot, Faults()), metered=self.metered,
                          timing=self.timing.get(spec.slot))
        self.boards.append(board)
        return board


def flip_crc(wire: bytes) -> bytes:
    """One frame's wire bytes with one CRC bit flipped: a frame that arrives broken."""
    raw = bytearray(protocol.cobs_decode(wire[:-1]))
    raw[-1] ^= 0x01
    return protocol.cobs_encode(bytes(raw)) + protocol.DELIMITER

