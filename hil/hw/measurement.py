"""Latency and energy per inference, from what a measurement unit reported.

- Latency: the device holds its busy pin (0) high for each inference and raises its exit
  pin (1) when it answers from the early exit; the unit timestamps every edge. A busy
  window's length in the unit's clock is the inference's latency. It is cross-checked
  against the device's own cycle count: a difference above 1% (or one tick of the coarser
  clock, for short windows) means a misconfigured clock, and is reported as such.
- Energy: each INA219 sample is the average power over its conversion window, and the
  samples tile time. Outside busy windows the board draws idle power, so for any sample
  (P - P_idle) x T is exactly the energy above idle spent inside it, wherever in the
  sample the busy time falls. Summing that over the samples that overlap a busy window
  gives the window's energy above idle without any interpolation. A sample shared by two
  windows (a gap shorter than a conversion) is split by busy time. Idle power is the
  median of the samples that overlap no window.
- Burst: a window of a few conversions is dominated by quantization and noise, so for
  inferences shorter than MIN_WINDOW_CONVERSIONS conversions the lab also runs
  INFER_BURST (N back-to-back runs in one busy window, as MLPerf Tiny's energy mode does)
  and divides.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

PIN_BUSY, PIN_EXIT = 0, 1
CLOCK_TOLERANCE = 0.01
MIN_WINDOW_CONVERSIONS = 8


@dataclass(frozen=True)
class Edge:
    pin: int
    level: int
    at: int  # unit clock ticks


@dataclass(frozen=True)
class PowerSample:
    start: int  # unit clock ticks; the conversion window is [start, end)
    end: int
    power_w: float | None  # None: the INA219 flagged an overflow


@dataclass(frozen=True)
class BusyWindow:
    rise: int
    fall: int
    exited: bool  # the exit pin stayed high until the busy pin fell
    decided: int | None = None  # when the exit pin rose: stage 1's end (None: no exit pin seen)

    @property
    def ticks(self) -> int:
        return self.fall - self.rise

    @property
    def stage1_ticks(self) -> int | None:
        return None if self.decided is None else self.decided - self.rise


def busy_windows(edges: list[Edge]) -> list[BusyWindow]:
    """Busy windows (pin 0 high) with what pin 1 said inside: the firmware raises it at the exit
    decision of every inference, keeps it high when the early exit answers, drops it at once if not."""
    windows: list[BusyWindow] = []
    rise: int | None = None
    decided: int | None = None
    exit_high, exit_fell = False, None
    for edge in edges:
        if edge.pin == PIN_BUSY and edge.level == 1:
            rise, decided, exit_high, exit_fell = edge.at, None, False, None
        elif edge.pin == PIN_EXIT and rise is not None:
            exit_high = bool(edge.level)
            if edge.level and decided is None:
                decided = edge.at
            if not edge.level:
                exit_fell = edge.at
        elif edge.pin == PIN_BUSY and edge.level == 0 and rise is not None:
            # The firmware lowers both pins at the same tick when the exit answered.
            exited = exit_high or (exit_fell == edge.at and decided is not None and decided < edge.at)
            windows.append(BusyWindow(rise, edge.at, exited, decided))
            rise = None
    return windows


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def idle_power(samples: list[PowerSample], windows: list[BusyWindow]) -> float | None:
    """The median power of the samples that overlap no busy window."""
    idle, w = [], 0
    for sample in samples:
        while w < len(windows) and windows[w].fall <= sample.start:
            w += 1
        touches = w < len(windows) and windows[w].rise < sample.end
        if not touches and sample.power_w is not None:
            idle.append(sample.power_w)
    return statistics.median(idle) if idle else None


def window_energies(windows: list[BusyWindow], samples: list[PowerSample], idle_w: float,
                    clock_hz: int) -> list[float | None]:
    """Energy above idle in each window (J); None where samples do not cover it or overflowed."""
    energy = [0.0] * len(windows)
    covered = [0] * len(windows)
    valid = [True] * len(windows)
    first = 0
    for sample in samples:
        while first < len(windows) and windows[first].fall <= sample.start:
            first += 1
        touched = []
        w = first
        while w < len(windows) and windows[w].rise < sample.end:
            busy = _overlap(sample.start, sample.end, windows[w].rise, windows[w].fall)
            if busy:
                touched.append((w, busy))
            w += 1
        total_busy = sum(busy for _, busy in touched)
        for w, busy in touched:
            covered[w] += busy
            if sample.power_w is None:
                valid[w] = False
                continue
            excess = (sample.power_w - idle_w) * (sample.end - sample.start) / clock_hz
            energy[w] += excess * busy / total_busy
    return [e if ok and cover == window.ticks else None
            for e, ok, cover, window in zip(energy, valid, covered, windows)]


def clock_agrees(window_ticks: int, unit_clock_hz: int, device_cycles: int, device_clock_hz: int) -> bool:
    """Does the busy pin's time agree with the device's own count, within 1% or one tick?"""
    pin_s, device_s = window_ticks / unit_clock_hz, device_cycles / device_clock_hz
    tick_s = max(1 / unit_clock_hz, 1 / device_clock_hz)
    return abs(pin_s - device_s) <= max(CLOCK_TOLERANCE * device_s, tick_s)
