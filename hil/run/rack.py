"""The rack: every board of a lab locked, brought up, identified and set, then always shut down.

A run first takes every lock of its rack at once (`reserve`), before any board is touched
or anything is written; a run that cannot have them all has none. Then, per board: verify
the image, put it on the board, HELLO. A board is used only if its HELLO reports exactly
the firmware and model sha256 of its manifest; otherwise it is set aside with the reason,
and the others go on. A run then checks every board once its unit is up (`pre_run_check`: the
health check of hil/run/health.py) and sets aside those that fail it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from joblib import Parallel, delayed

from hil.hw import protocol
from hil.hw.board import Board, BoardError
from hil.hw.factory import lock_name, make_board
from hil.errors import HilError
from hil.lab.load import Lab
from hil.hw.link import LinkCounts, LinkLost, NoValidReply
from hil.hw.locks import Lock
from hil.run import places


class FailureStage(StrEnum):
    """Where a board failed (run.json `failures[].stage`, a junit.xml case name)."""

    BRING_UP = "bring-up"  # the image could not be put on, or the board not started
    IDENTITY = "identity"  # HELLO did not name the manifest's image and model
    HEALTH = "health"  # it failed its health check: the known question unanswered, or answered wrong (run/health)
    MONITOR = "monitor"  # its measurement unit failed: the answers are kept, unmeasured
    STREAM = "stream"  # it stopped answering
    CLOCK = "clock"  # busy-pin time and device cycles disagree
    # A board that answered a sample differently when it was asked again to measure it: one of
    # its two answers differs from the host reference, so this is a regression.
    RERUN = "rerun"
    # Its kernels differ from the host reference on a conformance vector (hil/run/conformance.py): a finding
    # about the image, its sources or its toolchain, so a regression too; the board streams all the same.
    CONFORMANCE = "conformance"


@dataclass(frozen=True)
class BoardFailure:
    slot: str
    stage: FailureStage
    reason: str


RERUN = FailureStage.RERUN
REGRESSION_STAGES = (FailureStage.RERUN, FailureStage.CONFORMANCE)  # failures that are findings, exit 1


def failure_reason(slot: str, error: Exception) -> str:
    """One line for a board's failure. An error nobody foresaw (not a HilError) is still that board's
    alone, and keeps its type so that it can be found and fixed."""
    return str(error) if isinstance(error, HilError) else f"{slot}: unexpected {type(error).__name__}: {error}"


def answered(board: Board, message, retries: int, first_timeout: float | None = None, tau_q15: int | None = None,
             fix: str = "check the board and its port"):
    """`message`, retried after a resync like every request (one corrupt frame must not cost a board);
    with `tau_q15`, the threshold is set again before each retry, in case the board restarted.
    Returns the answer and the attempts it took; BoardError names what arrived instead, then `fix`."""
    recover = (lambda: None) if tau_q15 is None else (lambda: board.link.set_threshold(tau_q15))
    try:
        return board.link.exchange(message, retries, first_timeout=first_timeout, recover=recover, alive=board.alive)
    except LinkLost as error:
        detail = str(error).removeprefix(f"{board.slot}: ")
        raise BoardError(f"{board.slot}: board is gone ({detail}); {fix}") from None
    except NoValidReply as error:
        raise BoardError(f"{error}; {fix}") from None


def check_identity(board: Board, tau_q15: int, retries: int, booting: bool = True) -> protocol.Info:
    """HELLO must name the manifest's image and model; then the threshold is set. `booting`: the board has
    just started, so its first answer may take the boot timeout (it boots and hashes its image)."""
    first_timeout = board.run.boot_timeout_s if booting else None
    info, _ = answered(board, protocol.Hello(), retries, first_timeout=first_timeout)
    expected = (board.manifest.image_sha256, board.manifest.model_sha256)
    reported = (info.firmware_sha256.hex(), info.model_sha256.hex())
    if reported != expected:
        raise BoardError(f"{board.slot}: board reports firmware {reported[0][:12]}… and model {reported[1][:12]}…, "
                         f"but its manifest says {expected[0][:12]}… and {expected[1][:12]}…; reflash the board")
    if answered(board, protocol.SetThreshold(tau_q15), retries)[0].tau_q15 != tau_q15:
        raise BoardError(f"{board.slot}: the board did not take threshold {tau_q15}")
    return info


log = logging.getLogger(__name__)
WAIT_POLL_S = 0.2  # how often a waiting run tries the rack again: a flock has no timeout to block with


@contextmanager
def reserve(lab: Lab, slots: list[str], wait_s: float = 0.0,
            on_wait: Callable[[str], None] = log.warning) -> Iterator[Lab]:
    """Hold these boards, all or none, and give the lab they are in: its boards on labgrid places acquired and
    resolved into physical boards (hil/run/places.py), with the same `wait_s` and `on_wait`; then the locks
    of these boards, all or none. They are taken without waiting, in one fixed
    (sorted) order: of two runs that want the same boards, the one that locks the first of them
    gets them all, and the other is refused (BoardError, naming the board and its holder) with
    whatever it had taken given back. With `wait_s`, a refused run tries again until that many
    seconds have passed, holding nothing meanwhile (so two waiting runs never deadlock), and says
    once through `on_wait` who holds the board it waits for; then it is refused as without waiting."""
    with places.held(lab, slots, wait_s, on_wait) as lab:
        with _locked(lab, slots, wait_s, on_wait):
            yield lab


@contextmanager
def _locked(lab: Lab, slots: list[str], wait_s: float, on_wait: Callable[[str], None]) -> Iterator[None]:
    claims = sorted((lock_name(spec, lab.file), spec.slot) for spec in lab.boards if spec.slot in slots)
    deadline = time.monotonic() + wait_s
    said: set[str] = set()  # holders already named: once each, not every poll
    while True:
        held, busy = _take_all(claims)
        if busy is None:
            break
        slot, holder, path = busy
        if time.monotonic() >= deadline:
            waited = f" after waiting {format_duration(wait_s)}" if wait_s else ""
            raise BoardError(f"{slot}: board is in use by {holder} (lock {path}){waited}; wait for that run to end"
                             + (" or give a longer --wait" if wait_s else ""))
        if holder not in said:
            said.add(holder)
            on_wait(f"{slot}: board is in use by {holder} (lock {path}); waiting for it, "
                    f"up to {format_duration(max(0.0, deadline - time.monotonic()))} more")
        time.sleep(min(WAIT_POLL_S, max(0.0, deadline - time.monotonic())))
    try:
        yield
    finally:
        for lock in reversed(held):
            lock.release()


def _take_all(claims: list[tuple[str, str]]) -> tuple[list[Lock], tuple[str, str, Path] | None]:
    """All these locks, held; or none held and (slot, holder, lock path) of the first one taken."""
    held: list[Lock] = []
    try:
        for name, slot in claims:
            lock = Lock(name)
            holder = lock.try_acquire(f"pid {os.getpid()} ({slot})")
            if holder is not None:
                for taken in reversed(held):
                    taken.release()
                return [], (slot, holder, lock.path)
            held.append(lock)
    except BaseException:
        for taken in reversed(held):
            taken.release()
        raise
    return held, None


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """'30s', '10m', '2h' in seconds; ValueError naming the accepted forms."""
    number, unit = text[:-1], text[-1:]
    if unit not in DURATION_UNITS or not number.isdigit():
        raise ValueError(f"{text!r} is not a duration; give a whole number and s, m or h, e.g. 30s, 10m, 2h")
    return float(int(number) * DURATION_UNITS[unit])


def format_duration(seconds: float) -> str:
    """The shortest exact one of 2h, 10m, 30s; whole seconds otherwise."""
    whole = round(seconds)
    for unit, size in sorted(DURATION_UNITS.items(), key=lambda item: -item[1]):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


class Rack:
    """Use as a context manager: boards come up on entry and are shut down on exit. The caller
    holds their locks (`reserve`) for as long as the rack is up."""

    def __init__(self, lab: Lab, slots: list[str], tau_q15: int, traces_dir: Path,
                 pre_run_check: Callable[[list[Board]], list[BoardFailure]] | None = None):
        """`pre_run_check`: given the identified boards, their units started, it returns their failures; a board
        with a `health` failure is set aside (a run's health check, hil/run/health.py)."""
        self.lab = lab
        self.pre_run_check = pre_run_check
        self.tau_q15 = tau_q15
        self.traces_dir = traces_dir
        specs = [b for b in lab.boards if b.slot in slots]
        self.boards = [make_board(s, lab.firmware[(s.kind, s.model)], lab.run) for s in specs]
        self.ready: list[Board] = []
        self.failures: list[BoardFailure] = []
        self.infos: dict[str, protocol.Info] = {}
        self.link_counts: dict[str, LinkCounts] = {}  # every started board's, kept after it is shut down
        self.recoveries: list = []  # hil.run.recovery.Recovery: each board's trips up the ladder, in order

    def __enter__(self) -> "Rack":
        try:
            self._bring_up()
        except BaseException:
            self.shut_down()
            raise
        return self

    def _bring_up(self) -> None:
        # Emulators start from this (the main) thread, which they are tied to (their parent-death
        # signal follows the thread that started them). Physical boards flash one after another
        # here, each in its own pyOCD process: a rack of many probes would gain from flashing
        # in parallel.
        started = []
        for board in self.boards:
            try:
                board.bring_up()
                started.append(board)
                self.link_counts[board.slot] = board.link.counts
            except Exception as error:  # noqa: BLE001 - whatever it is, it is this board's failure alone
                self.failures.append(BoardFailure(board.slot, FailureStage.BRING_UP, failure_reason(board.slot, error)))
                board.shut_down()
        # HELLO takes a while on a fresh pty; ask every board at once.
        outcomes = Parallel(n_jobs=max(1, len(started)), backend="threading")(
            delayed(self._identify)(board) for board in started)
        for board, outcome in zip(started, outcomes):
            if isinstance(outcome, protocol.Info):
                self.infos[board.slot] = outcome
                self.ready.append(board)
            else:
                self.failures.append(BoardFailure(board.slot, FailureStage.IDENTITY, outcome))
                board.shut_down()
        # A board whose measurement unit fails still streams, unmeasured: its answers count.
        for board in self.ready:
            try:
                board.start_monitor(self.traces_dir)
            except Exception as error:  # noqa: BLE001 - as above
                board.unit_failure = failure_reason(board.slot, error)
                self.failures.append(BoardFailure(board.slot, FailureStage.MONITOR, board.unit_failure))
        if self.pre_run_check is not None:
            checked = self.pre_run_check(list(self.ready))
            self.failures += checked
            unhealthy = {f.slot for f in checked if f.stage == FailureStage.HEALTH}
            for board in [b for b in self.ready if b.slot in unhealthy]:
                self.ready.remove(board)
                board.shut_down()

    def _identify(self, board: Board) -> protocol.Info | str:
        try:
            return check_identity(board, self.tau_q15, self.lab.run.retries)
        except Exception as error:  # noqa: BLE001 - as above: the other boards go on
            return failure_reason(board.slot, error)

    def shut_down(self) -> None:
        for board in self.boards:
            board.shut_down()

    def __exit__(self, *exc) -> None:
        self.shut_down()
