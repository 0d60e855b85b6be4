"""Streaming test sets to one board, sample by sample, each answer journaled at once.

A bad frame, a reply that does not answer the request, or a timeout is retried after a
resync (and the threshold is set again, in case the board restarted). A board that still
fails, or whose emulator or port is gone, is taken up the recovery ladder (hil/run/recovery.py):
what it answered so far is measured, then resync, reset, reflash, power-cycle until one brings
it back, and it goes on from the sample it failed on (that one was not journaled: nothing is lost
or asked twice). Answers whose windows the unit could not tell apart then (a board that stopped dead
with its last edges still on their wire, as a frozen emulator does) are first asked again, for their
windows only, as a resume asks them. If none does, or its thread meets any other error, it stops streaming with a
BoardFailure; the other boards go on. Then its measurement unit
measures what it answered (hil/run/metering.py), matching each answer to its busy window by the
device's window ordinal; a unit that fails leaves the answers kept and reconciled, only
unmeasured, with the reason journaled. Samples answered in an earlier session but never
measured (the run was killed first) are asked again, for their windows only: the answer
is not journaled twice, and a different answer the second time is a finding.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from hil.run import metering
from hil.hw import protocol
from hil.hw.board import Board, BoardError
from hil.hw.monitor import MonitorError
from hil.run.rack import RERUN, BoardFailure, FailureStage, answered, failure_reason
from hil.run.recovery import MAX_CLIMBS, NEW_BOARD, OnMain, Recovery, climb
from hil.run.records import Record, RecordJournal
from hil.model.testsets import TestSet

ANSWERED_DIFFERENTLY = "answered differently when asked again to be measured; it is not measured"
WINDOW_LOST = ("its busy window was lost when the board stopped answering, and the board was not asked it again; "
               "it is not measured")


@dataclass(frozen=True)
class Job:
    """Samples of one test set a board is to be asked: those it has not answered yet, and those
    it answered in an earlier session but that were never measured (`kept`: the answers
    journaled then, by index), which it is asked again only for their busy windows."""

    testset: TestSet
    indices: list[int]
    kept: dict[int, Record] = field(default_factory=dict)

    def unanswered(self) -> Job:
        """Only the samples not answered yet: for a board that cannot be measured now."""
        return Job(self.testset, [i for i in self.indices if i not in self.kept])


def retried(board: Board, message, tau_q15: int, retries: int):
    """One request while streaming: `rack.answered`, the threshold set again before each retry."""
    return answered(board, message, retries, tau_q15=tau_q15, fix="check it, then `hil run --resume`")


def ask(board: Board, sample: bytes, tau_q15: int, retries: int) -> tuple[protocol.Result, int]:
    """One inference, retried after a resync; returns the result and the attempts it took."""
    return retried(board, protocol.Infer(sample), tau_q15, retries)


def _answer(record: Record) -> tuple:
    """What the device answered, without how it was asked (attempts) or how long it took (cycles)."""
    return (record.tau_q15, record.exited, record.predicted, record.confidence_q15, record.exit_logits,
            record.head_logits)


@dataclass(frozen=True)
class Journals:
    """Where a board's answers and their measurements are journaled as they arrive (run/records)."""

    records: RecordJournal
    measurements: RecordJournal


@dataclass(frozen=True)
class BoardContext:
    """What is in force on one board while it streams: the threshold set on it, the clock of its cycle
    counter (from its INFO), how often a request is retried after a resync, the journals its answers
    go to, and whether its unit (if it has one) then measures them: a run and a sweep do, a
    verification checks answers only. How long one answer may take is its link's own (set at
    bring-up from the lab)."""

    tau_q15: int
    clock_hz: int
    retries: int
    journals: Journals
    measure: bool = True
    on_main: OnMain | None = None  # runs a recovery step on the main thread; None: no recovery ladder
    recoveries: list[Recovery] = field(default_factory=list)  # every board's trips up the ladder, appended
    # (slot, test set) -> wall-clock seconds spent streaming it (its recoveries too), added to; junit.xml's times
    streamed: dict[tuple[str, str], float] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)  # set on Ctrl-C: stop at the next sample


def _meter(board: Board, context: BoardContext) -> metering.Meter | None:
    """The board's unit read in the device's numbering from now on, if it has one and is to measure."""
    if board.monitor is None or not context.measure:
        return None
    # The device's window count now: the unit's next busy window is the device's count + 1.
    info, _ = retried(board, protocol.Hello(), context.tau_q15, context.retries)
    return metering.Meter(board.monitor.link, context.clock_hz, info.windows)


def _why(board: Board, error: BoardError) -> str:
    """The error's text without the slot it starts with: it follows a sentence that names the board."""
    return str(error).removeprefix(f"{board.slot}: ")


def _recover(board: Board, testset: str, index: int, error: BoardError, context: BoardContext, measured: bool,
             ) -> tuple[metering.Meter | None, list[BoardFailure]]:
    """Up the ladder; then, back, the meter to go on with (its unit started again where the board is new).
    BoardError if no step brought it back."""
    own = [r for r in context.recoveries if r.slot == board.slot]
    again = own[-1].recovered_by if own and (own[-1].testset, own[-1].index) == (testset, index) else None
    if len(own) >= MAX_CLIMBS:
        raise BoardError(f"{board.slot}: stopped answering at {testset}#{index} for the {len(own) + 1}th time this "
                         f"session: quarantined for the rest of the run; {_why(board, error)}")
    recovery = climb(board, testset, index, error, context.tau_q15, context.retries, context.on_main, again)
    context.recoveries.append(recovery)
    if recovery.recovered_by is None:
        raise BoardError(f"{board.slot}: stopped answering at {testset}#{index} and no step of the recovery ladder "
                         f"brought it back (resync, reset, reflash, power-cycle; run.json `recoveries`): quarantined "
                         f"for the rest of the run; {_why(board, error)}")
    if not measured:
        return None, []
    try:
        if recovery.recovered_by in NEW_BOARD:
            board.restart_monitor()
        return _meter(board, context), []
    except MonitorError as failure:
        board.unit_failure = str(failure)
        return None, [BoardFailure(board.slot, FailureStage.MONITOR, f"{failure}; the answers after "
                                   f"{testset}#{index} are kept, unmeasured")]


def stream_board(board: Board, jobs: list[Job], context: BoardContext, advance: Callable[[str, int], None],
                 ) -> list[BoardFailure]:
    """Stream every job, journaling each new answer; then measure the answers with the board's unit, if it
    has one. `advance(slot, samples)` is told of every answer."""
    tau_q15, retries = context.tau_q15, context.retries
    journal, measurements = context.journals.records, context.journals.measurements
    meter: metering.Meter | None = None
    answers: list[metering.Answer] = []  # since the board last came back: what the meter measures next
    everything: list[metering.Answer] = []
    # Answered before a recovery, but whose windows the unit could not tell apart then (the board stopped with
    # its last edges still on their wire): asked again, for their windows only, once the board is back.
    again: list[metering.Answer] = []
    testsets = {job.testset.name: job.testset for job in jobs}
    failures: list[BoardFailure] = []
    broke_off = False
    try:
        meter = _meter(board, context)
        for job in jobs:
            position = 0
            key = (board.slot, job.testset.name)
            began, before = time.monotonic(), context.streamed.get(key, 0.0)
            while (again or position < len(job.indices)) and not context.stopping.is_set():
                redo = again[0] if again else None
                testset, index = (testsets[redo.record.testset], redo.record.index) if redo else (
                    job.testset, job.indices[position])
                try:
                    result, attempts = ask(board, testset.inputs[index].tobytes(), tau_q15, retries)
                except BoardError as error:
                    if context.on_main is None:
                        raise
                    if meter is not None:  # measured now, by the unit as it is, before the board changes
                        failures += metering.measure_inferences(board.slot, meter, answers, measurements, again)
                    answers = []
                    meter, more = _recover(board, testset.name, index, error, context, meter is not None)
                    failures += more
                    if meter is None:  # no unit to measure them with now: kept, unmeasured with its reason
                        answers, again = again, []
                    continue  # the same sample again
                record = Record(
                    slot=board.slot, model=board.spec.model, testset=testset.name, index=index,
                    label=int(testset.labels[index]), tau_q15=tau_q15, exited=result.exited,
                    predicted=result.predicted, confidence_q15=result.confidence_q15, cycles=result.cycles,
                    exit_logits=list(result.logits[0]), head_logits=[list(row) for row in result.logits[1:]],
                    attempts=attempts,
                )
                earlier = again.pop(0).record if redo is not None else job.kept.get(index)  # journaled already
                if earlier is None:
                    journal.append(record)
                differs = earlier is not None and _answer(earlier) != _answer(record)
                answer = metering.Answer(record, result.window, ANSWERED_DIFFERENTLY if differs else None)
                answers.append(answer)
                if redo is not None:
                    everything[everything.index(redo)] = answer
                    continue
                everything.append(answer)
                advance(board.slot, 1)
                position += 1
                context.streamed[key] = before + time.monotonic() - began  # up to its latest answer
    except KeyboardInterrupt:  # the run is stopping and refused this board a recovery step: measure, ask no more
        broke_off = True
    except Exception as error:  # noqa: BLE001 - a dead board, a full disk or a bug: this board's failure alone
        failures.append(BoardFailure(board.slot, FailureStage.STREAM, failure_reason(board.slot, error)))
        broke_off = True
    broke_off = broke_off or context.stopping.is_set()  # interrupted: measure what was answered, ask no more
    for answer in again:  # never asked again: kept, unmeasured, with why
        measurements.append(metering.unmeasured(answer, WINDOW_LOST, context.clock_hz))
    differ = [a.record for a in everything if a.unmeasured == ANSWERED_DIFFERENTLY]
    if differ:
        failures.append(BoardFailure(board.slot, RERUN, f"{board.slot}: {len(differ)} samples answered differently "
                                     f"when asked again to be measured (first {differ[0].testset}#{differ[0].index}):"
                                     " the device is not deterministic, and one of each two answers differs from "
                                     "the host reference"))
    if meter is None:
        if context.measure and board.unit_failure is not None:  # its unit is gone: each answer says why
            for answer in answers:
                measurements.append(metering.unmeasured(answer, board.unit_failure, context.clock_hz))
        return failures
    # What was answered is measured even when the stream broke off: nothing measured is lost. Then the
    # device may have run a request it never answered, so its windows may not add up: the rows say so,
    # and the stream's failure is the one to report.
    try:
        measured = metering.measure_inferences(board.slot, meter, answers, measurements)
    except Exception as error:  # noqa: BLE001 - as above
        return failures + [BoardFailure(board.slot, FailureStage.MONITOR,
                                        f"{failure_reason(board.slot, error)}; the answers are kept, unmeasured")]
    if broke_off:
        return failures + [f for f in measured if f.stage == FailureStage.CLOCK]
    failures += measured
    if any(f.stage != FailureStage.CLOCK for f in measured):  # the board or its unit is not to be trusted for bursts
        return failures
    try:
        failures += metering.burst_energy(
            board.slot, meter, [a.record for a in everything if a.unmeasured is None],
            {job.testset.name: job.testset for job in jobs}, measurements,
            lambda sample, count: retried(board, protocol.InferBurst(count, sample), tau_q15, retries)[0])
    except MonitorError as error:
        failures.append(BoardFailure(board.slot, FailureStage.MONITOR,
                                     f"{error}; the answers are kept, without burst energy"))
    except Exception as error:  # noqa: BLE001 - as above
        failures.append(BoardFailure(board.slot, FailureStage.STREAM, failure_reason(board.slot, error)))
    return failures
