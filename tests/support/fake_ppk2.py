"""A Nordic PPK2 on a pseudo-terminal, clipped to an emulated board's pins and supply.

    python -m tests.support.fake_ppk2 --wire /dev/pts/N --kind nucleo-l432kc --clock-hz 80000000 --truth FILE
        [--stall-after SAMPLES]

Test double, at the device's own edge: it speaks the PPK2's serial protocol as ppk2-api sends it, on a
pty whose path it prints as its first line, so the host's unmodified ppk2-api and pyserial talk to it.
- Commands: GET_META_DATA is answered with calibration metadata of its own (resistors, gains, offsets
  that are not ppk2-api's defaults, so a host that ignored them would be off); SET_POWER_MODE,
  REGULATOR_SET, DEVICE_RUNNING_SET, AVERAGE_START and AVERAGE_STOP are obeyed. Any other byte is
  reported on stderr as a command this double does not know.
- Measuring, it streams a 4-byte sample every 10 us of host time, as the device does: the 14-bit ADC
  code and range of the current (inverted through the same calibration, auto-ranged to the lowest range
  that holds it, with one LSB of noise), the 6-bit counter, and the board's busy and exit pins on
  digital inputs D0 and D1, read at the start of each sample.
- The board is the one on --wire: its EDGE frames (device ticks) go through hil.hw.emulated.monitor_unit's
  EmulatedUnit, which unwraps them and writes the true energy of every busy window to --truth. What the
  board draws is its kind's power profile (busy: active power, else idle), as a current at the profile's
  bus voltage, integrated exactly over each sample.
- Device time goes onto host time by an offset, set at a busy edge LAG_NS after it came (the firmware
  sends a window's edges once it has closed, so they trail the pins), and moved on only at the start of
  a window that would otherwise be late: between windows, never inside one, so windows keep their length.
--stall-after N: after N samples it stops streaming and answers nothing, its port still open, as a hung
PPK2 does.
"""

from __future__ import annotations

import argparse
import bisect
import os
import sys
import threading
import time

import numpy as np

from hil.hw import monitor_protocol as mp
from hil.hw.emulated.monitor_unit import EmulatedUnit
from hil.hw.kinds import BOARD_KINDS
from hil.hw.measurement import PIN_BUSY, PIN_EXIT
from tests.support.ptys import follow_edges, raw_pty

SAMPLE_NS = 10_000
LAG_NS = 30_000_000
CHUNK_NS = 5_000_000  # streamed every 5 ms: 500 samples
ADC_MULT = 1.8 / 163840  # volts per ADC count (the device's, as ppk2-api has it)
CODE_MAX = (1 << 14) - 1
BUSY_CHANNEL, EXIT_CHANNEL = 0, 1
# This PPK2's calibration, sent as its metadata: per range, shunt R, gains GS and GI, offset O (counts),
# S (A per V of vdd), I (A) and the user gain UG; ppk2-api reads them all (PPK2_API._parse_metadata).
CALIBRATION = {
    "R": (1003.33, 101.78, 10.19, 0.956, 0.044),
    "GS": (0.0, 11.3, 2.0, 0.25, 0.0),
    "GI": (1.0, 0.99, 0.995, 0.98, 0.98),
    "O": (112.0, 75.0, 64.0, 74.0, 92.0),
    "S": (1.8e-8, 1.8e-8, 2.0e-8, 5.0e-8, 0.0),
    "I": (0.0, 1.0e-7, 2.0e-7, 0.0, 0.0),
    "UG": (1.0, 1.0, 1.0, 1.0, 1.0),
}
COMMAND_LENGTHS = {0x19: 1, 0x11: 2, 0x0D: 3, 0x0C: 2, 0x06: 1, 0x07: 1, 0x20: 1, 0x15: 1, 0x16: 1}
GET_META_DATA, SET_POWER_MODE, REGULATOR_SET, DEVICE_RUNNING_SET = 0x19, 0x11, 0x0D, 0x0C
AVERAGE_START, AVERAGE_STOP = 0x06, 0x07
SOURCE_MODE = 2


def metadata() -> bytes:
    lines = ["Calibrated: 1"] + [f"{key}{r}: {values[r]:.9g}" for key, values in CALIBRATION.items()
                                 for r in range(5)]
    return ("\n".join(lines + ["HW: 9173", "mode: 2", "IA: 56", "END"]) + "\n").encode()


def current_at(r: int, adc: float, vdd_v: float) -> float:
    """ppk2-api's get_adc_result for range r, before its spike filter (amperes)."""
    c = {key: values[r] for key, values in CALIBRATION.items()}
    x = (adc - c["O"]) * (ADC_MULT / c["R"])
    return c["UG"] * (x * (c["GS"] * x + c["GI"]) + c["S"] * vdd_v + c["I"])


def adc_for(r: int, amperes: np.ndarray, vdd_v: float) -> np.ndarray:
    """The ADC value (x4, as ppk2-api scales the code) that reads as `amperes` in range r."""
    c = {key: values[r] for key, values in CALIBRATION.items()}
    constant = c["S"] * vdd_v + c["I"] - amperes / c["UG"]
    if c["GS"] == 0:
        x = -constant / c["GI"]
    else:
        x = (-c["GI"] + np.sqrt(c["GI"] ** 2 - 4 * c["GS"] * constant)) / (2 * c["GS"])
    return x * c["R"] / ADC_MULT + c["O"]


class FakePpk2:
    def __init__(self, kind: str, clock_hz: int, truth_path: str, stall_after: int | None):
        self.profile = BOARD_KINDS[kind].power
        self.clock_hz, self.stall_after = clock_hz, stall_after
        self.lock = threading.Lock()
        self.unit = EmulatedUnit(self.profile, clock_hz, open(truth_path, "a", encoding="utf-8"), 0, self._sent,
                                 version=mp.VERSION_1)
        self.rng = np.random.default_rng(7)
        self.offset_ns: int | None = None
        self.changes: list[int] = []  # host ns at which the pins changed; levels[i] from changes[i] on
        self.levels: list[tuple[int, int]] = []  # (busy, exit)
        self.pins = [0, 0]
        self.late_edges = 0
        self.vdd_mv, self.mode, self.dut_on = 3300, SOURCE_MODE, False
        self.measuring_since: int | None = None  # host ns of AVERAGE_START
        self.sent = 0  # samples streamed since then
        self.full_scale = [current_at(r, CODE_MAX * 4, self.vdd_mv / 1000) for r in range(5)]
        self.master, self._slave, self.path = raw_pty()

    def _sent(self, message, seq=None) -> None:
        """EmulatedUnit's edges, unwrapped, in device ticks: onto host time."""
        if not isinstance(message, mp.MonitorEdge):
            return
        now = time.monotonic_ns()
        at_ns = None if self.offset_ns is None else self.offset_ns + message.at * 1_000_000_000 // self.clock_hz
        starts_window = message.pin == PIN_BUSY and message.level == 1
        if at_ns is None or starts_window and at_ns < now + LAG_NS // 2:
            self.offset_ns = now + LAG_NS - message.at * 1_000_000_000 // self.clock_hz
            at_ns = now + LAG_NS
        elif at_ns < now:
            self.late_edges += 1  # its samples are gone: it shows from the next one on
        self.pins[message.pin == PIN_EXIT] = message.level
        with self.lock:
            self.changes.append(at_ns)
            self.levels.append((self.pins[0], self.pins[1]))

    def read_wire(self, wire: str) -> None:
        follow_edges(os.open(wire, os.O_RDWR | os.O_NOCTTY), self.unit.on_edge, "fake ppk2 wire")

    def serve_commands(self) -> None:
        pending = b""
        while True:
            try:
                data = os.read(self.master, 256)
            except OSError:
                return
            pending += data
            while pending:
                length = COMMAND_LENGTHS.get(pending[0])
                if length is None:
                    print(f"fake ppk2: a command this double does not know: {pending[0]:#04x}", file=sys.stderr)
                    pending = pending[1:]
                    continue
                if len(pending) < length:
                    break
                self._command(pending[:length])
                pending = pending[length:]

    def _command(self, command: bytes) -> None:
        opcode = command[0]
        if opcode == GET_META_DATA:
            os.write(self.master, metadata())
        elif opcode == SET_POWER_MODE:
            self.mode = command[1]
        elif opcode == REGULATOR_SET:
            self.vdd_mv = (command[1] - 3) * 256 + command[2] + 800 - 32  # ppk2-api's _convert_source_voltage
            self.full_scale = [current_at(r, CODE_MAX * 4, self.vdd_mv / 1000) for r in range(5)]
        elif opcode == DEVICE_RUNNING_SET:
            self.dut_on = bool(command[1])
        elif opcode == AVERAGE_START:
            self.measuring_since, self.sent = time.monotonic_ns(), 0
        elif opcode == AVERAGE_STOP:
            self.measuring_since = None

    def stream(self) -> None:
        while True:
            time.sleep(CHUNK_NS / 1e9)
            since = self.measuring_since
            if since is None:
                continue
            due = (time.monotonic_ns() - since) // SAMPLE_NS
            if self.stall_after is not None:
                if self.sent >= self.stall_after:
                    continue
                due = min(due, self.stall_after)
            if due > self.sent:
                os.write(self.master, self.samples(since, self.sent, due).tobytes())
                self.sent = due

    def samples(self, since: int, first: int, end: int) -> np.ndarray:
        starts = since + np.arange(first, end + 1, dtype=np.int64) * SAMPLE_NS  # the samples' edges
        with self.lock:
            lo = bisect.bisect_right(self.changes, int(starts[0])) - 1
            hi = bisect.bisect_left(self.changes, int(starts[-1]))
            times = self.changes[max(lo, 0):hi]
            levels = self.levels[max(lo, 0):hi]
        if lo < 0:
            times, levels = [starts[0]] + times, [(0, 0)] + levels
        # Busy time up to each sample edge: the integral of the busy level, piecewise linear.
        knots = np.array([max(t, int(starts[0])) for t in times] + [int(starts[-1])], dtype=np.int64)
        busy = np.array([level[0] for level in levels], dtype=np.float64)
        cumulative = np.concatenate([[0.0], np.cumsum(np.diff(knots) * busy)])
        busy_ns = np.diff(np.interp(starts, knots, cumulative))
        profile = self.profile
        power = profile.idle_w + (profile.active_w - profile.idle_w) * busy_ns / SAMPLE_NS
        amperes = power / profile.bus_v
        if self.mode == SOURCE_MODE and not self.dut_on:
            amperes = np.zeros_like(amperes)  # the board is not powered
        at = np.searchsorted(knots[:-1], starts[:-1], side="right") - 1  # the pins at each sample's start
        pins = np.array(levels, dtype=np.uint32)[np.maximum(at, 0)]
        ranges = np.full(len(amperes), 4, dtype=np.uint32)
        for r in reversed(range(4)):
            ranges[amperes <= 0.9 * self.full_scale[r]] = r
        codes = np.zeros(len(amperes))
        for r in range(5):
            chosen = ranges == r
            if chosen.any():
                codes[chosen] = adc_for(r, amperes[chosen], self.vdd_mv / 1000) / 4
        codes = np.clip(np.rint(codes + self.rng.normal(0, 1, len(codes))), 0, CODE_MAX).astype(np.uint32)
        counter = (np.arange(first, end, dtype=np.uint32) & 0x3F)
        logic = pins[:, 0] << BUSY_CHANNEL | pins[:, 1] << EXIT_CHANNEL
        return (codes | ranges << 14 | counter << 18 | logic << 24).astype("<u4")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wire", required=True)
    parser.add_argument("--kind", required=True, choices=sorted(BOARD_KINDS))
    parser.add_argument("--clock-hz", type=int, required=True)
    parser.add_argument("--truth", required=True)
    parser.add_argument("--stall-after", type=int)
    args = parser.parse_args(argv)
    fake = FakePpk2(args.kind, args.clock_hz, args.truth, args.stall_after)
    threading.Thread(target=fake.read_wire, args=(args.wire,), daemon=True).start()
    threading.Thread(target=fake.stream, daemon=True).start()
    print(fake.path, flush=True)
    try:
        fake.serve_commands()
    finally:
        print(f"fake ppk2: {fake.late_edges} edges came after their samples were sent; {fake.sent} samples",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
