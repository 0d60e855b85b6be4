"""A Linux host's I2C bus with an INA219 on it, and its GPIO chip, wired to an emulated board.

Test double, at the libraries' edge (the kernel's i2c-stub and gpio-sim cannot load here): `install()`
replaces smbus2.SMBus and gpiod.request_lines; everything else of the real packages (LineSettings,
EdgeEvent, the enums) is theirs. Both sides are fed by one `Bench`:
- the GPIO chip at `gpio_chip` is the board's edge wire (a pty of EDGE frames, stamped in device
  ticks); busy and exit go to the lines of HIL_FAKE_LINUX_UNIT_LINES ("busy,exit");
- the power is hil.hw.emulated.monitor_unit's EmulatedUnit (the kind's power profile integrated
  over each INA219 conversion, hil.hw.ina219's register model), which also writes the ground truth
  to HIL_FAKE_LINUX_UNIT_TRUTH.
Device time is put on CLOCK_MONOTONIC by one offset, fixed at the first edge, LAG_NS after it came (the
wire's bytes trail the pins): edge timestamps and conversion ends alike. A conversion's registers show
(CNVR) once the host's clock passes its end; while the wire is quiet, conversions are made up to the
mapped now, assuming no edge is still on the way by then (an edge that is counts as late).
HIL_FAKE_LINUX_UNIT_FAIL_AFTER=N: after N conversions the chip stops answering (EREMOTEIO), as an
unplugged one does.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
import tty

from hil.hw import ina219
from hil.hw import monitor_protocol as mp
from hil.hw import protocol
from hil.hw.emulated.monitor_unit import EmulatedUnit
from hil.hw.kinds import BOARD_KINDS

from tests.support.ptys import follow_edges

LAG_NS = 30_000_000  # how far the wire may trail the board's time
_bench: Bench | None = None
_bench_lock = threading.Lock()


class Bench:
    def __init__(self, kind: str, clock_hz: int, truth_path: str, lines: tuple[int, int], fail_after: int | None):
        self.profile = BOARD_KINDS[kind].power
        self.clock_hz, self.lines, self.fail_after = clock_hz, lines, fail_after
        self.lock = threading.Condition()
        # v1's one message per conversion and edge: the chip's registers and the pins change one at a time.
        self.unit = EmulatedUnit(self.profile, clock_hz, open(truth_path, "a", encoding="utf-8"), 0, self._sent,
                                 version=mp.VERSION_1)
        self.offset_ns: int | None = None
        self.pending: list[mp.Sample] = []
        self.latched: tuple[int, int, int, int] = (0, 0, 0, 0)  # shunt, bus, power, current
        self.ready = False
        self.conversions = 0
        self.events: list[tuple[int, int, int]] = []  # (line, level, timestamp_ns)
        self.late_edges = 0
        self.overwritten = self.overwritten_late = 0  # conversions the host never read (and of them, shown late)
        self.wire: str | None = None

    def ns(self, ticks: int) -> int:
        return self.offset_ns + ticks * 1_000_000_000 // self.clock_hz

    def _sent(self, message, seq=None) -> None:
        if isinstance(message, mp.Sample):
            self.pending.append(message)
        elif isinstance(message, mp.MonitorEdge):
            self.events.append((self.lines[message.pin], message.level, self.ns(message.at)))
            self.lock.notify_all()

    def attach(self, wire: str) -> None:
        if self.wire is not None:
            return
        self.wire = wire
        fd = os.open(wire, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        threading.Thread(target=self._read_wire, args=(fd,), daemon=True).start()

    def _read_wire(self, fd: int) -> None:
        follow_edges(fd, self._on_edge, "fake gpiochip")

    def _on_edge(self, edge: protocol.Edge) -> None:
        with self.lock:
            if self.offset_ns is None:
                self.offset_ns = time.monotonic_ns() + LAG_NS - edge.ticks * 1_000_000_000 // self.clock_hz
            sampled_to = self.unit.sample_start
            self.unit.on_edge(edge)
            if sampled_to is not None and self.unit.now < sampled_to:
                self.late_edges += 1

    def _advance(self) -> None:
        if self.offset_ns is not None and self.unit.conversion_ticks and self.unit.now is not None:
            until = (time.monotonic_ns() - self.offset_ns) * self.clock_hz // 1_000_000_000
            if until > self.unit.now:
                self.unit.emit_samples_until(until)
        now = time.monotonic_ns()
        while self.pending and self.ns(self.pending[0].end) <= now:
            sample = self.pending.pop(0)  # a newer conversion overwrites an unread one, as on the chip
            self.overwritten += self.ready
            self.overwritten_late += self.ready and self.ns(sample.end) < now - 1_000_000
            self.latched, self.ready = (sample.shunt, sample.bus, sample.power, sample.current), True
            self.conversions += 1

    def read(self, register: int) -> int:
        with self.lock:
            if self.fail_after is not None and self.conversions >= self.fail_after:
                raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))
            self._advance()
            if register in (ina219.CONFIG, ina219.CALIBRATION):
                registers = self.unit.chip.registers()
                return registers.config if register == ina219.CONFIG else registers.calibration
            shunt, bus, power, current = self.latched
            if register == ina219.BUS:
                return bus & ~ina219.CNVR | (ina219.CNVR if self.ready else 0)
            if register == ina219.POWER:
                self.ready = False  # reading POWER clears CNVR (SBOS448G §8.6.3.2)
                return power
            return {ina219.SHUNT: shunt, ina219.CURRENT: current}[register]

    def write(self, register: int, value: int) -> None:
        with self.lock:
            chip = self.unit.chip
            if register == ina219.CALIBRATION:
                chip.write(register, value)
            elif value & 0b100:  # a continuous mode: conversions tile time from the board's next edge on
                self.unit.on_request(mp.Configure(value, chip.registers().calibration))
            else:  # triggered: one conversion of what the board draws now, ready at once
                chip.write(register, value)
                registers = chip.convert(self.unit.power() / self.profile.bus_v, self.profile.bus_v)
                self.latched = (registers.shunt, registers.bus, registers.power, registers.current)
                self.ready = True


def bench() -> Bench:
    global _bench
    with _bench_lock:
        if _bench is None:
            env = os.environ
            fail_after = env.get("HIL_FAKE_LINUX_UNIT_FAIL_AFTER")
            busy, exit_line = (int(x) for x in env["HIL_FAKE_LINUX_UNIT_LINES"].split(","))
            _bench = Bench(env["HIL_FAKE_LINUX_UNIT_KIND"], int(env["HIL_FAKE_LINUX_UNIT_CLOCK_HZ"]),
                           env["HIL_FAKE_LINUX_UNIT_TRUTH"], (busy, exit_line),
                           None if fail_after is None else int(fail_after))
        return _bench


class FakeSMBus:
    """smbus2.SMBus's block reads and writes, on the bench's INA219 (big-endian words, as on the wire)."""

    ADDRESS = 0x40

    def __init__(self, bus=None, force: bool = False):
        self.bench = bench()

    def _check(self, address: int) -> None:
        if address != self.ADDRESS:
            raise OSError(errno.ENXIO, os.strerror(errno.ENXIO))

    def read_i2c_block_data(self, address: int, register: int, length: int, force=None) -> list[int]:
        self._check(address)
        word = self.bench.read(register)
        return [word >> 8 & 0xFF, word & 0xFF][:length]

    def write_i2c_block_data(self, address: int, register: int, data: list[int], force=None) -> None:
        self._check(address)
        self.bench.write(register, data[0] << 8 | data[1])

    def close(self) -> None:
        pass


class FakeLineRequest:
    """gpiod.LineRequest's edge reading, on the bench's wire."""

    def __init__(self, chip_path: str):
        self.bench = bench()
        self.bench.attach(chip_path)
        self.seqno = 0

    def wait_edge_events(self, timeout=None) -> bool:
        seconds = timeout.total_seconds() if hasattr(timeout, "total_seconds") else timeout
        with self.bench.lock:
            return self.bench.lock.wait_for(lambda: bool(self.bench.events), seconds)

    def read_edge_events(self, max_events=None):
        import gpiod
        with self.bench.lock:
            taken, self.bench.events = self.bench.events, []
        events = []
        for line, level, timestamp_ns in taken:
            self.seqno += 1
            kind = gpiod.EdgeEvent.Type.RISING_EDGE if level else gpiod.EdgeEvent.Type.FALLING_EDGE
            events.append(gpiod.EdgeEvent(kind.value, timestamp_ns, line, self.seqno, self.seqno))
        return events

    def release(self) -> None:
        bench = self.bench
        print(f"fake linux unit: {bench.late_edges} edges came after their time was sampled; {bench.conversions} "
              f"conversions, {bench.overwritten} never read ({bench.overwritten_late} shown late)", file=sys.stderr)


def install() -> None:
    import gpiod
    import smbus2

    smbus2.SMBus = FakeSMBus
    gpiod.request_lines = lambda path, consumer=None, config=None, **_: FakeLineRequest(path)
