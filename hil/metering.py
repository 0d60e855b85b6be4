"""Measuring one board's inferences with its measurement unit, after they were streamed.

The unit reports edges and samples on its own link, behind the device's answers, so the
board is measured once its samples are streamed: the monitor is flushed, the n-th busy
window is matched to the n-th inference sent, each match is checked (same exit path,
busy-pin time against the device's cycle count), and one Measurement per inference is
journaled. Then every (test set, exit path) whose windows are shorter than
MIN_WINDOW_CONVERSIONS conversions gets one INFER_BURST window for its energy.
"""

from __future__ import annotations

import math
import statistics

from hil import measurement
from hil.boards import Board
from hil.monitor import MonitorError, MonitorLink
from hil.records import Measurement, Record, RecordJournal
from hil.testsets import TestSet

MAX_BURST = 2000


def _measure(link: MonitorLink, windows: int, device_clock_hz: int, cycles: list[int],
             ) -> list[tuple[measurement.BusyWindow, float | None, float | None, bool]]:
    """Flush and return, per window: the window, its energy above idle, idle power, clock check."""
    edges, samples = link.flush(windows)
    busy = measurement.busy_windows(edges)[-windows:]
    idle = measurement.idle_power(samples, busy)
    energies = [None] * len(busy) if idle is None else measurement.window_energies(busy, samples, idle,
                                                                                    link.clock_hz)
    return [(window, energy, idle, measurement.clock_agrees(window.ticks, link.clock_hz, device_cycles,
                                                            device_clock_hz))
            for window, energy, device_cycles in zip(busy, energies, cycles)]


def measure_inferences(board: Board, sent: list[Record], journal: RecordJournal, device_clock_hz: int) -> list[str]:
    """Journal a Measurement per inference sent; returns problems (clock disagreements)."""
    link = board.monitor.link
    matched = _measure(link, len(sent), device_clock_hz, [r.cycles for r in sent])
    problems = []
    for record, (window, energy, idle, clock_ok) in zip(sent, matched):
        if window.exited != record.exited:
            raise MonitorError(f"{board.slot}: the exit pin disagrees with the device's answer for "
                               f"{record.testset}#{record.index}; check the unit's capture inputs")
        journal.append(Measurement(
            slot=record.slot, testset=record.testset, index=record.index, exited=record.exited, method="window",
            count=1, rise=window.rise, ticks=window.ticks, latency_s=window.ticks / link.clock_hz,
            stage1_s=None if window.stage1_ticks is None else window.stage1_ticks / link.clock_hz,
            device_latency_s=record.cycles / device_clock_hz, clock_ok=clock_ok, energy_j=energy, idle_w=idle))
        if not clock_ok:
            problems.append(f"{record.testset}#{record.index}")
    return problems


def burst_energy(board: Board, sent: list[Record], testsets: dict[str, TestSet], journal: RecordJournal,
                 device_clock_hz: int) -> None:
    """INFER_BURST per (test set, exit path) whose inferences are too short to meter one by one."""
    link = board.monitor.link
    shortest = measurement.MIN_WINDOW_CONVERSIONS * link.conversion_ticks / link.clock_hz
    groups: dict[tuple[str, bool], list[Record]] = {}
    for record in sent:
        groups.setdefault((record.testset, record.exited), []).append(record)
    for (testset, exited), records in sorted(groups.items()):
        typical_s = statistics.median(r.cycles for r in records) / device_clock_hz
        if typical_s >= shortest:
            continue
        first = records[0]
        count = min(MAX_BURST, math.ceil(shortest / typical_s))
        burst = board.link.infer_burst(testsets[testset].inputs[first.index].tobytes(), count)
        [(window, energy, idle, clock_ok)] = _measure(link, 1, device_clock_hz, [burst.total_cycles])
        journal.append(Measurement(
            slot=first.slot, testset=testset, index=first.index, exited=bool(burst.exited), method="burst",
            count=count, rise=window.rise, ticks=window.ticks, latency_s=window.ticks / link.clock_hz / count,
            stage1_s=None,
            device_latency_s=burst.total_cycles / count / device_clock_hz, clock_ok=clock_ok,
            energy_j=None if energy is None else energy / count, idle_w=idle))
