"""Streaming test sets to one board, sample by sample, each answer journaled at once.

A bad frame or a timeout is retried after a resync (and the threshold is set again, in
case the board restarted). A board that still fails, or whose emulator or port is gone,
stops streaming with a BoardFailure; the other boards go on. Once a board's samples are
streamed, its measurement unit measures them (hil/metering.py); a unit that fails leaves
the answers kept and reconciled, only unmeasured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from hil import metering, protocol
from hil.boards import Board, BoardError
from hil.errors import HilError
from hil.link import DeviceError, LinkLost, LinkTimeout
from hil.rack import BoardFailure
from hil.records import Record, RecordJournal
from hil.testsets import TestSet


@dataclass(frozen=True)
class Job:
    """Samples of one test set that a board still has to answer."""

    testset: TestSet
    indices: list[int]


def ask(board: Board, sample: bytes, tau_q15: int, retries: int) -> tuple[protocol.Result, int]:
    """One inference, retried after a resync; returns the result and the attempts it took."""
    problem: Exception | None = None
    lost = False
    for attempt in range(1, retries + 2):
        try:
            return board.link.infer(sample), attempt
        except (LinkTimeout, DeviceError, protocol.ProtocolError, LinkLost) as error:
            problem, lost = error, isinstance(error, LinkLost) or not board.alive()
            if lost:
                break
            try:
                board.link.resync()
                board.link.set_threshold(tau_q15)
            except HilError as resync_error:
                problem, lost = resync_error, isinstance(resync_error, LinkLost)
    state = "is gone" if lost else f"gave no valid answer in {retries + 1} attempts"
    detail = str(problem).removeprefix(f"{board.slot}: ")
    raise BoardError(f"{board.slot}: board {state} ({detail}); check it, then `hil run --resume`")


def stream_board(board: Board, model: str, jobs: list[Job], journals: tuple[RecordJournal, RecordJournal],
                 tau_q15: int, retries: int, clock_hz: int, advance: Callable[[str, int], None]) -> list[BoardFailure]:
    """Stream every job, journaling each answer; then measure them with the board's unit, if it has one.
    `journals`: (records, measurements); `clock_hz`: the device's cycle counter, from its INFO."""
    journal, measurements = journals
    sent: list[Record] = []
    try:
        for job in jobs:
            for index in job.indices:
                result, attempts = ask(board, job.testset.inputs[index].tobytes(), tau_q15, retries)
                record = Record(
                    slot=board.slot, model=model, testset=job.testset.name, index=index,
                    label=int(job.testset.labels[index]), tau_q15=tau_q15, exited=result.exited,
                    predicted=result.predicted, confidence_q15=result.confidence_q15, cycles=result.cycles,
                    exit_logits=list(result.logits[0]), head_logits=[list(row) for row in result.logits[1:]],
                    attempts=attempts,
                )
                journal.append(record)
                sent.append(record)
                advance(board.slot, 1)
    except (HilError, OSError) as error:  # OSError: the journal could not be written
        return [BoardFailure(board.slot, "stream", str(error))]
    if board.monitor is None or not sent:
        return []
    try:
        late = metering.measure_inferences(board, sent, measurements, clock_hz)
        metering.burst_energy(board, sent, {job.testset.name: job.testset for job in jobs}, measurements, clock_hz)
    except HilError as error:
        return [BoardFailure(board.slot, "monitor", f"{error}; the answers are kept, unmeasured")]
    if late:
        return [BoardFailure(board.slot, "clock", f"{board.slot}: busy-pin time and device cycles differ by more "
                             f"than 1% on {len(late)} inferences (first {late[0]}); check the board's clock setting")]
    return []
