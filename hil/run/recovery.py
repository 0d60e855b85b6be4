"""The recovery ladder: what is tried, in order, on a board that stopped answering mid-run.

1. resync: a lone delimiter and HELLO again (the link already resynced before each retry; this is
   one more, after the retries, for a board that was only slow);
2. reset: the reset line, through the probe (an emulated board: QEMU's system reset);
3. reflash: the board brought up anew, the verified image flashed again;
4. power-cycle: where there is a way (an emulated board restarts its emulator; a physical one runs the
   lab's power_cycle.command, else the step is skipped and says so);
5. quarantine: none worked: the board is set aside for the rest of the run.
A board that fails again on the same sample climbs on from the step above the one that brought it back,
so a board that answers HELLO but never that sample ends in quarantine, not in a loop; and a board
taken up the ladder MAX_CLIMBS times in one session is quarantined too: it is not to be trusted tonight.
After every step the board must pass the identity check (HELLO names the manifest's image and model,
the threshold is set again) before it counts as back. Each step has its own time limit: the board's
request and boot timeouts, the flasher's, the power-cycle command's. What was tried, how long each
took, and which step worked (or that none did) goes to run.json (`recoveries`); a reflash that worked
keeps its flash report, whose `failed_attempts` show a flash error that a retry got past. A step that needs a
new emulator runs on the main thread (`on_main`): QEMU dies with the thread that started it
(hil/hw/children.py), and the board's streaming thread ends before the rack does.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Callable

from hil.hw.board import Board
from hil.run.rack import check_identity, failure_reason


class RecoveryStep(StrEnum):
    RESYNC = "resync"
    RESET = "reset"
    REFLASH = "reflash"
    POWER_CYCLE = "power-cycle"
    QUARANTINE = "quarantine"


MAX_CLIMBS = 10  # per board and session
LADDER = (RecoveryStep.RESYNC, RecoveryStep.RESET, RecoveryStep.REFLASH, RecoveryStep.POWER_CYCLE)
# Steps after which the board started again: its unit starts again too, so that it reads the board as it
# is now (an emulated board's new wire, the device's window count from 0).
NEW_BOARD = frozenset({RecoveryStep.RESET, RecoveryStep.REFLASH, RecoveryStep.POWER_CYCLE})


@dataclass(frozen=True)
class StepOutcome:
    step: RecoveryStep
    ok: bool
    seconds: float
    detail: str  # what went wrong, or "" when the board came back
    flash: dict | None = None  # a reflash that worked: its FlashReport (attempts, and why earlier ones failed)


@dataclass(frozen=True)
class Recovery:
    """One board's trip up the ladder (run.json `recoveries[]`)."""

    slot: str
    testset: str
    index: int  # the sample it failed on: asked again once the board is back
    error: str  # why it stopped
    steps: list[StepOutcome]
    recovered_by: RecoveryStep | None  # None: quarantined for the rest of the run

    def to_json(self) -> dict:
        return asdict(self)


OnMain = Callable[[Callable[[], None]], None]


def _do(board: Board, step: RecoveryStep, on_main: OnMain) -> None:
    if step is RecoveryStep.RESYNC:
        board.link.resync()
    elif step is RecoveryStep.RESET:
        board.reset()
    elif step is RecoveryStep.REFLASH:
        on_main(board.reflash)
    elif step is RecoveryStep.POWER_CYCLE:
        on_main(board.power_cycle)


def climb(board: Board, testset: str, index: int, error: Exception, tau_q15: int, retries: int,
          on_main: OnMain, above: RecoveryStep | None = None) -> Recovery:
    """Take the board up the ladder until a step brings it back; the Recovery says which, or that none did.
    `above`: the step that brought it back last time, when it failed again on the same sample: that step
    did not help, so the climb starts at the next."""
    steps = []
    for step in LADDER[LADDER.index(above) + 1 if above is not None else 0:]:
        started = time.monotonic()
        try:
            _do(board, step, on_main)
            check_identity(board, tau_q15, retries, booting=step is not RecoveryStep.RESYNC)
        except Exception as failure:  # noqa: BLE001 - whatever it is, the next step may still help
            steps.append(StepOutcome(step, False, round(time.monotonic() - started, 3),
                                     failure_reason(board.slot, failure)))
            continue
        flashed = board.flash_report.to_dict() if step is RecoveryStep.REFLASH and board.flash_report else None
        steps.append(StepOutcome(step, True, round(time.monotonic() - started, 3), "", flashed))
        return Recovery(board.slot, testset, index, failure_reason(board.slot, error), steps, step)
    steps.append(StepOutcome(RecoveryStep.QUARANTINE, True, 0.0, "set aside for the rest of the run"))
    return Recovery(board.slot, testset, index, failure_reason(board.slot, error), steps, None)
