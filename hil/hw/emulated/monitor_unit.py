"""The emulated measurement unit: a process that does what a physical one does, on a pty.

    python -m hil.hw.emulated.monitor_unit --wire /dev/pts/N --kind mps2-an386 --clock-hz 25000000 --truth FILE
        [--protocol 1.1|1]

It reads the emulated board's GPIO edge records from the board's second UART (the
emulated wire to the unit's capture input), models an INA219 on the board's supply at
register level (hil/hw/ina219.py: calibration, LSBs, conversion windows, CNVR/OVF, noise),
and speaks monitor protocol v1.1 (docs/monitor.md; v1 with --protocol 1) to the host on a
pseudo-terminal whose path it prints as its first line. The host drives it exactly as it drives a physical unit.

What the board draws is its kind's modelled power profile (hil/hw/kinds.py: not a measurement): idle
power while the busy pin is low, active power while it is high. The true energy of every
busy window is written to the --truth file and never reported over the link, so a test
can hold the host's register-derived figures against it.

Time is the board's: edges carry the device's timer count (25 MHz of QEMU's icount time),
unwrapped to 64 bits. A sample is emitted once time has passed its window's end, which the
unit learns from the next edge, or, at FLUSH, by assuming the board idles for one more
conversion (it is idle: the host flushes only between requests).
In v1.1 conversions and edges are held until a batch is due (BATCH_CONVERSIONS of them, or FLUSH)
and then sent as SAMPLES, SAMPLE_RUN and EDGES frames (hil/hw/monitor_protocol.py batches them).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import termios
import tty
import numpy as np

from hil.hw import ina219
from hil.hw import protocol
from hil.hw import monitor_protocol as mp
from hil.hw.channel import Framing
from hil.hw.kinds import BOARD_KINDS, PowerProfile
from hil.hw.measurement import PIN_BUSY

WRAP = 1 << 32


NOISE_LSB = 0.7  # shunt ADC noise, in 10 uV steps (one sigma)
# v1.1: conversions held before a batch goes out (170 ms at 2.13 ms); a run of identical registers
# still growing at that point is held on (up to RUN_HOLD_MAX), so that it goes as one SAMPLE_RUN.
BATCH_CONVERSIONS = 2 * mp.SAMPLES_MAX
RUN_HOLD_MAX = 1 << 16
PROTOCOLS = {"1": mp.VERSION_1, "1.1": mp.VERSION_1_1}


class EmulatedUnit:
    def __init__(self, profile: PowerProfile, clock_hz: int, truth, seed: int, send,
                 version: int = mp.MONITOR_PROTOCOL_VERSION):
        self.profile = profile
        self.version = version
        self.held_conversions: list[mp.Conversion] = []  # v1.1: not sent yet
        self.held_edges: list[tuple[int, int, int]] = []
        self.clock_hz = clock_hz
        self.truth = truth
        self.send = send  # sends one monitor message to the host
        self.chip = ina219.Ina219(profile.shunt_ohms)
        self.rng = np.random.default_rng(seed)
        self.conversion_ticks = 0  # 0 until the host configures the chip
        self.now: int | None = None  # unwrapped time of the last edge
        self._raw_last = 0
        self._wraps = 0
        self.busy_since: int | None = None
        self.sample_start: int | None = None
        self.changes: list[tuple[int, float]] = []  # (time, power from then on), since sample_start

    def power(self) -> float:
        return self.profile.active_w if self.busy_since is not None else self.profile.idle_w

    def unwrap(self, raw: int) -> int:
        if self.now is not None and raw < self._raw_last:
            self._wraps += 1
        self._raw_last = raw
        return self._wraps * WRAP + raw

    def on_edge(self, edge: protocol.Edge) -> None:
        at = self.unwrap(edge.ticks)
        self.emit_samples_until(at)
        self.now = at
        if edge.pin == PIN_BUSY:
            if edge.level and self.busy_since is None:
                self.busy_since = at
            elif not edge.level and self.busy_since is not None:
                excess = (self.profile.active_w - self.profile.idle_w) * (at - self.busy_since) / self.clock_hz
                self._write_truth({"rise": self.busy_since, "fall": at, "excess_energy_j": excess})
                self.busy_since = None
        if self.sample_start is not None:
            self.changes.append((at, self.power()))
        if self.version == mp.VERSION_1:
            self.send(mp.MonitorEdge(edge.pin, edge.level, at))
        else:
            self.held_edges.append((edge.pin, edge.level, at))
            if len(self.held_edges) >= mp.EDGES_MAX:
                self.send_held(edges_only=True)

    def send_held(self, edges_only: bool = False) -> None:
        """v1.1: the held edges, and the held conversions (all of them, unless edges_only), in batches."""
        for message in mp.batch_edges(self.held_edges):
            self.send(message)
        self.held_edges = []
        if not edges_only:
            for message in mp.batch_conversions(self.held_conversions):
                self.send(message)
            self.held_conversions = []

    def _hold(self, conversion: mp.Conversion) -> None:
        held = self.held_conversions
        held.append(conversion)
        if len(held) < BATCH_CONVERSIONS or (held[-2][2:] == conversion[2:] and len(held) < RUN_HOLD_MAX):
            return
        for message in mp.batch_conversions(held[:-1]):  # the last may start a run: it waits
            self.send(message)
        self.held_conversions = [conversion]

    def _write_truth(self, entry: dict) -> None:
        # The ground truth is for tests. A full or failing results disk ends it, not the unit: a
        # real one would not notice, and the host reports the disk error itself.
        if self.truth is None:
            return
        try:
            self.truth.write(json.dumps(entry) + "\n")
            self.truth.flush()
        except OSError:
            try:
                self.truth.close()
            except OSError:
                pass  # the line it still holds cannot be written either
            self.truth = None

    def emit_samples_until(self, until: int) -> None:
        if not self.conversion_ticks:
            return
        if self.sample_start is None:  # the first time after CONFIGURE: tiling starts here
            self.sample_start, self.changes = until, [(until, self.power())]
            return
        while self.sample_start + self.conversion_ticks <= until:
            start, end = self.sample_start, self.sample_start + self.conversion_ticks
            energy, level = 0.0, self.changes[0][1]
            for (t0, p), (t1, _) in zip(self.changes, self.changes[1:] + [(end, 0.0)]):
                energy += p * (min(t1, end) - max(t0, start)) if t1 > start and t0 < end else 0.0
                if t0 < end:
                    level = p
            average_current = energy / (end - start) / self.profile.bus_v
            registers = self.chip.convert(average_current, self.profile.bus_v, rng=self.rng, noise_lsb=NOISE_LSB)
            conversion = mp.Conversion(start, end, registers.shunt, registers.bus, registers.power, registers.current)
            if self.version == mp.VERSION_1:
                self.send(mp.Sample(*conversion))
            else:
                self._hold(conversion)
            self.sample_start = end
            self.changes = [(end, level)] + [c for c in self.changes if c[0] > end]

    def on_request(self, message) -> object:
        if isinstance(message, mp.MonitorHello):
            return mp.MonitorInfo(self.version, self.clock_hz, "hil-emulated-unit")
        if isinstance(message, mp.Configure):
            self.send_held()  # measured under the old registers
            self.chip.write(ina219.CALIBRATION, message.calibration)
            # One triggered shunt+bus conversion first, so that POWER has a bus voltage to use
            # while the host's mode (shunt only, continuous) converts the shunt alone.
            self.chip.write(ina219.CONFIG, (message.config & ~0x7) | 0b011)
            self.chip.convert(self.power() / self.profile.bus_v, self.profile.bus_v)
            self.chip.write(ina219.CONFIG, message.config)
            if self.chip.config.conversion_time_s is None:
                raise protocol.ProtocolError(protocol.ErrorCode.BAD_VALUE, "CONFIGURE: that mode converts nothing")
            self.conversion_ticks = max(1, round(self.chip.config.conversion_time_s * self.clock_hz))
            self.sample_start, self.changes = None, []
            registers = self.chip.registers()
            return mp.Configured(registers.config, registers.calibration, self.conversion_ticks)
        if isinstance(message, mp.Flush):
            if self.now is not None:
                self.emit_samples_until(self.now + self.conversion_ticks)
            self.send_held()
            return mp.Flushed(self.sample_start or 0)
        raise protocol.ProtocolError(protocol.ErrorCode.UNKNOWN_MESSAGE, f"{type(message).__name__}")


def serve(wire_fd: int, host_fd: int, unit: EmulatedUnit, wire: Framing, host: Framing) -> None:
    """Forward edges from the wire and answer the host. `wire` and `host` frame the two ptys (the unit
    reads both with one select, so it frames bytes, not ports). When the board's wire closes (its emulator
    is gone) the unit still answers the host, as a physical unit clipped to a dead board does: what it
    holds is still to be flushed. It ends when the host's side fails after that."""
    replies: list[tuple[object, int]] = []  # (message, seq of the request it answers)
    reading = [wire_fd, host_fd]
    while True:
        readable, _, _ = select.select(reading, [], [])
        if wire_fd in readable:
            try:
                data = os.read(wire_fd, 4096)
            except OSError:
                data = b""  # the emulator is gone
            if not data:
                reading.remove(wire_fd)
            for event in wire.decode(data):
                if isinstance(event, protocol.Frame) and event.type == protocol.MessageType.EDGE:
                    unit.on_edge(protocol.Edge.from_payload(event.payload))
        if host_fd in readable:
            try:
                data = os.read(host_fd, 4096)
            except OSError:
                if wire_fd not in reading:
                    return  # neither the board nor the host is there any more
                continue  # nobody has the host side open yet, or any more
            for event in host.decode(data):
                if isinstance(event, protocol.FrameError):
                    replies.append((protocol.ErrorReply(event.code, protocol.SEQ_UNKNOWN), protocol.SEQ_UNKNOWN))
                    continue
                try:
                    replies.append((unit.on_request(mp.parse_monitor_message(event)), event.seq))
                except protocol.ProtocolError as error:
                    replies.append((protocol.ErrorReply(error.code, event.seq), event.seq))
        while replies:
            message, seq = replies.pop(0)
            unit.send(message, seq)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.hw.emulated.monitor_unit", description=__doc__.splitlines()[0])
    parser.add_argument("--wire", required=True, help="the board's edge-record UART (a pty path)")
    parser.add_argument("--kind", required=True, choices=sorted(BOARD_KINDS))
    parser.add_argument("--clock-hz", type=int, required=True, help="the board's timer clock")
    parser.add_argument("--truth", required=True, help="where the true energy of every busy window goes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="1.1", help="monitor protocol to speak")
    args = parser.parse_args(argv)

    # Both ptys in raw mode, as pyserial would set them: a cooked tty echoes and turns CR into LF.
    # At once (TCSANOW), not setraw's default TCSAFLUSH: that would discard what waits on the wire,
    # the pin levels the firmware wrote at reset before this process started.
    wire_fd = os.open(args.wire, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(wire_fd, termios.TCSANOW)
    host_fd, host_device = os.openpty()  # we keep the device side open, so reads never fail before the host opens it
    tty.setraw(host_device)
    wire, host = Framing("unit wire"), Framing("unit", mp.MonitorMessage)

    def send(message, reply_seq: int | None = None) -> None:
        """A reply goes with its request's seq; an unprompted EDGE or SAMPLE with the next of our own."""
        os.write(host_fd, host.encode(message, reply_seq)[1])

    with open(args.truth, "a", encoding="utf-8") as truth:
        unit = EmulatedUnit(BOARD_KINDS[args.kind].power, args.clock_hz, truth, args.seed, send,
                            PROTOCOLS[args.protocol])
        print(os.ttyname(host_device), flush=True)  # the host opens this, as it would /dev/ttyACM1
        serve(wire_fd, host_fd, unit, wire, host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
