"""Measuring one board's inferences with its measurement unit, after they were streamed.

The unit reports edges and samples on its own link, behind the device's answers, so the
board is measured once its samples are streamed. Windows are matched to answers by
identity, not by position: the firmware numbers every busy window it raises (protocol v2:
RESULT.window, BURST_RESULT.window, INFO.windows), and the unit's windows since the last
flush are the device's windows base+1, base+2, … in order. So when a reply was lost and
the request was retried, the lost reply's window is simply left unclaimed and every other
window stays with its own answer. When the unit reports another number of windows than the
device ran, or the device's count went back (it restarted), which window is whose is
unknown: those answers are journaled as unmeasured, with the reason, never matched to a
neighbour's window. Each match is checked (same exit path, busy-pin time against the
device's cycle count). Then every (test set, exit path) whose windows are shorter than
MIN_WINDOW_CONVERSIONS conversions gets one INFER_BURST window for its energy.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable

from hil.hw import measurement
from hil.hw import protocol
from hil.hw.monitor import MonitorError, MonitorLink
from hil.run.rack import BoardFailure, FailureStage
from hil.run.records import Measurement, MeasurementMethod, Record, RecordJournal
from hil.model.testsets import TestSet

MAX_BURST = 2000


@dataclass(frozen=True)
class Answer:
    """An answer the host accepted, and the busy window the device says it ran in."""

    record: Record
    window: int  # the device's ordinal (RESULT.window)
    unmeasured: str | None = None  # why this answer may not claim its window, if it may not


@dataclass(frozen=True)
class Metered:
    """A busy window matched to its answer, with what the unit's samples say of it."""

    window: measurement.BusyWindow
    energy_j: float | None
    idle_w: float | None
    clock_ok: bool


@dataclass(frozen=True)
class Unmatched:
    """Why the windows since the last flush cannot be given to their answers."""

    reason: str
    restarted: bool  # the device's count went back: the board's doing, not the unit's


def align(base: int, ordinals: list[int], found: int) -> list[int] | Unmatched:
    """Which of the `found` windows the unit reported since the last flush is each answer's:
    positions into them, or why that cannot be known. `base` is the device's count at the last
    flush, `ordinals` the windows of the answers since, in the order they came."""
    for before, ordinal in zip([base] + ordinals, ordinals):
        if ordinal <= before:
            return Unmatched(f"the board restarted (its window count went back from {before} to {ordinal}), "
                             "so which busy window is whose is unknown", restarted=True)
    ran = ordinals[-1] - base
    if found != ran:
        return Unmatched(f"the unit reported {found} busy windows where the device ran {ran} "
                         f"(windows {base + 1}..{ordinals[-1]}), so which is whose is unknown", restarted=False)
    return [ordinal - base - 1 for ordinal in ordinals]


class Meter:
    """A board's measurement unit, read in the device's own numbering of its busy windows."""

    def __init__(self, link: MonitorLink, device_clock_hz: int, base: int):
        """`base`: the device's window count now (INFO.windows), before the windows to come."""
        self.link = link
        self.device_clock_hz = device_clock_hz
        self.base = base

    def take(self, ordinals: list[int], cycles: list[int]) -> list[Metered] | Unmatched:
        """Flush the unit and give each answer (its window ordinal and device cycles) its own
        window; or the reason none can be given. Windows no answer claims are left alone."""
        base, self.base = self.base, ordinals[-1]  # after the flush, the device's next window is the unit's next
        increasing = all(b > a for a, b in zip([base] + ordinals, ordinals))
        edges, samples = self.link.flush(ordinals[-1] - base if increasing else len(ordinals))
        busy = measurement.busy_windows(edges)
        positions = align(base, ordinals, len(busy))
        if isinstance(positions, Unmatched):
            return positions
        idle = measurement.idle_power(samples, busy)
        energies = [None] * len(busy) if idle is None else measurement.window_energies(busy, samples, idle,
                                                                                        self.link.clock_hz)
        return [Metered(busy[p], energies[p], idle, measurement.clock_agrees(
            busy[p].ticks, self.link.clock_hz, device_cycles, self.device_clock_hz))
            for p, device_cycles in zip(positions, cycles)]

    def unmeasured(self, answer: Answer, reason: str) -> Measurement:
        return unmeasured(answer, reason, self.device_clock_hz)


def unmeasured(answer: Answer, reason: str, device_clock_hz: int) -> Measurement:
    """An answer journaled without a measurement, with why; its latency is the device's own count."""
    record = answer.record
    return Measurement(
        slot=record.slot, testset=record.testset, index=record.index, exited=record.exited,
        method=MeasurementMethod.UNMEASURED, count=1, rise=None, ticks=None, latency_s=None, stage1_s=None,
        device_latency_s=record.cycles / device_clock_hz, clock_ok=None, energy_j=None, idle_w=None,
        window=answer.window, reason=reason)


def exit_pulse_missed(window: measurement.BusyWindow, exited: bool, pins_sampled: bool) -> bool:
    """A unit that reads the pins off its samples (a PPK2) misses a pulse shorter than a sample, as the
    exit pin's is when the early exit answers at once: a window with no exit pin at all then says nothing
    of the exit path. One whose exit pin rose and fell before the end still disagrees."""
    return pins_sampled and exited and not window.exited and window.decided is None


def measure_inferences(slot: str, meter: Meter, answers: list[Answer], journal: RecordJournal,
                       unmatched: list[Answer] | None = None) -> list[BoardFailure]:
    """Journal a Measurement per answer of board `slot`: its own window's, or why it has none; returns
    the problems. Given `unmatched`, answers whose windows cannot be told apart go there instead, not
    journaled: before a recovery, whose board is then asked them again (hil/run/stream.py)."""
    if not answers:
        return []
    link = meter.link
    try:
        taken = meter.take([a.window for a in answers], [a.record.cycles for a in answers])
    except MonitorError as error:
        for answer in answers:
            journal.append(meter.unmeasured(answer, str(error)))
        return [BoardFailure(slot, FailureStage.MONITOR, f"{error}; the answers are kept, unmeasured")]
    if isinstance(taken, Unmatched) and unmatched is not None:
        unmatched += answers
        return []
    if isinstance(taken, Unmatched):
        for answer in answers:
            journal.append(meter.unmeasured(answer, taken.reason))
        return [BoardFailure(slot, FailureStage.STREAM if taken.restarted else FailureStage.MONITOR,
                             f"{slot}: {taken.reason}; the {len(answers)} answers are kept, unmeasured")]
    late, wrong_pin = [], []
    for answer, metered in zip(answers, taken):
        record, window = answer.record, metered.window
        where = f"{record.testset}#{record.index}"
        if answer.unmeasured is not None:
            journal.append(meter.unmeasured(answer, answer.unmeasured))
        elif window.exited != record.exited and not exit_pulse_missed(window, record.exited, link.pins_sampled):
            wrong_pin.append(where)
            journal.append(meter.unmeasured(answer, "the exit pin disagrees with the device's answer"))
        else:
            journal.append(Measurement(
                slot=record.slot, testset=record.testset, index=record.index, exited=record.exited,
                method=MeasurementMethod.WINDOW, count=1, rise=window.rise, ticks=window.ticks,
                latency_s=window.ticks / link.clock_hz,
                stage1_s=None if window.stage1_ticks is None else window.stage1_ticks / link.clock_hz,
                device_latency_s=record.cycles / meter.device_clock_hz, clock_ok=metered.clock_ok,
                energy_j=metered.energy_j, idle_w=metered.idle_w, window=answer.window))
            if not metered.clock_ok:
                late.append(where)
    failures = []
    if wrong_pin:
        failures.append(BoardFailure(slot, FailureStage.MONITOR,
                                     f"{slot}: the exit pin disagrees with the device's answer for {len(wrong_pin)} "
                                     f"inferences (first {wrong_pin[0]}), left unmeasured; check the unit's capture "
                                     "inputs"))
    if late:
        failures.append(BoardFailure(slot, FailureStage.CLOCK,
                                     f"{slot}: busy-pin time and device cycles differ by more than 1% on {len(late)} "
                                     f"inferences (first {late[0]}); check the board's clock setting"))
    return failures


def burst_energy(slot: str, meter: Meter, records: list[Record], testsets: dict[str, TestSet],
                 journal: RecordJournal, burst: Callable[[bytes, int], protocol.BurstResult]) -> list[BoardFailure]:
    """INFER_BURST per (test set, exit path) whose inferences are too short to meter one by one.
    `burst(sample, count)` asks the board for one (with the stream's retries)."""
    link = meter.link
    shortest = measurement.MIN_WINDOW_CONVERSIONS * link.conversion_ticks / link.clock_hz
    groups: dict[tuple[str, bool], list[Record]] = {}
    for record in records:
        groups.setdefault((record.testset, record.exited), []).append(record)
    failures = []
    for (testset, exited), group in sorted(groups.items()):
        typical_s = statistics.median(r.cycles for r in group) / meter.device_clock_hz
        if typical_s >= shortest:
            continue
        first = group[0]
        count = min(MAX_BURST, math.ceil(shortest / typical_s))
        result = burst(testsets[testset].inputs[first.index].tobytes(), count)
        taken = meter.take([result.window], [result.total_cycles])
        if isinstance(taken, Unmatched):
            failures.append(BoardFailure(slot, FailureStage.MONITOR, f"{slot}: the energy burst of {testset}#"
                                         f"{first.index} is unmeasured: {taken.reason}"))
            continue
        [metered] = taken
        window = metered.window
        journal.append(Measurement(
            slot=first.slot, testset=testset, index=first.index, exited=bool(result.exited),
            method=MeasurementMethod.BURST, count=count, rise=window.rise, ticks=window.ticks,
            latency_s=window.ticks / link.clock_hz / count,
            stage1_s=None, device_latency_s=result.total_cycles / count / meter.device_clock_hz,
            clock_ok=metered.clock_ok, energy_j=None if metered.energy_j is None else metered.energy_j / count,
            idle_w=metered.idle_w, window=result.window))
    return failures
