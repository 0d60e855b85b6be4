"""Streaming test sets to one board, sample by sample, each answer journaled at once.

A bad frame, a reply that does not answer the request, or a timeout is retried after a
resync (and the threshold is set again, in case the board restarted). A board that still
fails, whose emulator or port is gone, or whose thread meets any other error, stops
streaming with a BoardFailure; the other boards go on. Once a board's samples are
streamed, its measurement unit measures them (hil/metering.py); a unit that fails leaves
the answers kept and reconciled, only unmeasured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from hil import metering, protocol
from hil.boards import Board, BoardError
from hil.link import LinkLost, NoValidReply
from hil.rack import BoardFailure, failure_reason
from hil.records import Record, RecordJournal
from hil.testsets import TestSet


@dataclass(frozen=True)
class Job:
    """Samples of one test set that a board still has to answer."""

    testset: TestSet
    indices: list[int]


def ask(board: Board, sample: bytes, tau_q15: int, retries: int) -> tuple[protocol.Result, int]:
    """One inference, retried after a resync; returns the result and the attempts it took."""
    try:
        return board.link.exchange(protocol.Infer(sample), retries, recover=lambda: board.link.set_threshold(tau_q15),
                                   alive=board.alive)
    except LinkLost as error:
        detail = str(error).removeprefix(f"{board.slot}: ")
        raise BoardError(f"{board.slot}: board is gone ({detail}); check it, then `hil run --resume`") from None
    except NoValidReply as error:
        raise BoardError(f"{error}; check it, then `hil run --resume`") from None


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
    except Exception as error:  # noqa: BLE001 - a dead board, a full disk or a bug: this board's failure alone
        return [BoardFailure(board.slot, "stream", failure_reason(board.slot, error))]
    if board.monitor is None or not sent:
        return []
    try:
        late = metering.measure_inferences(board, sent, measurements, clock_hz)
        metering.burst_energy(board, sent, {job.testset.name: job.testset for job in jobs}, measurements, clock_hz)
    except Exception as error:  # noqa: BLE001 - as above
        return [BoardFailure(board.slot, "monitor", f"{failure_reason(board.slot, error)}; the answers are kept, "
                             "unmeasured")]
    if late:
        return [BoardFailure(board.slot, "clock", f"{board.slot}: busy-pin time and device cycles differ by more "
                             f"than 1% on {len(late)} inferences (first {late[0]}); check the board's clock setting")]
    return []
