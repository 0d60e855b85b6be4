"""`hil prune`: which of a lab's run folders go, and their removal with their catalog rows.

A run is kept when any rule given keeps it: it is one of the newest `keep`, or it started less than
`older_than` seconds ago. Whatever the rules, a baseline (of any lab of the folder) is kept, and so is a run
that is running or interrupted (`hil run --resume` can still finish it) unless the unfinished are included.
Only folders of the catalog are touched, and only inside the results folder: sweeps are not in the catalog,
and the boards' health history keeps its rows (it is the boards' record, not the runs').
"""

from __future__ import annotations

import calendar
import shutil
import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from hil.run.verdict import VerdictStatus
from hil.store.results import CATALOG, baselines, list_runs, on_disk

UNFINISHED = frozenset({VerdictStatus.RUNNING, VerdictStatus.INTERRUPTED})


class Kept(StrEnum):
    """Why a run older than the rules allow stays."""

    BASELINE = "a baseline"
    UNFINISHED = "unfinished (hil run --resume can finish it); --include-unfinished removes it"
    OUTSIDE = "its folder is not inside the results folder"


@dataclass(frozen=True)
class Retention:
    keep: int | None  # the newest this many runs stay
    older_than_s: float | None  # runs that started less than this long ago stay
    include_unfinished: bool = False


@dataclass(frozen=True)
class Candidate:
    """A run the rules would remove; `kept` says why it stays anyway."""

    id: str
    started: str
    status: str  # the verdict's
    path: Path
    kept: Kept | None


def _started_s(started: str) -> float:
    return calendar.timegm(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ"))


def candidates(results_dir: Path, lab: str, rules: Retention, now: float | None = None) -> list[Candidate]:
    """The lab's runs the rules do not keep, oldest first, each with why it stays regardless (None: it goes)."""
    runs = list_runs(results_dir, lab)
    now = time.time() if now is None else now
    protected = {entry.id for entry in baselines(results_dir).values()}
    folder = Path(results_dir).resolve()
    found = []
    for position, run in enumerate(runs):
        newest = rules.keep is not None and position >= len(runs) - rules.keep
        recent = rules.older_than_s is not None and now - _started_s(run["started"]) < rules.older_than_s
        if newest or recent:
            continue
        path = Path(run["path"])
        if run["id"] in protected:
            kept = Kept.BASELINE
        elif run["status"] in UNFINISHED and not rules.include_unfinished:
            kept = Kept.UNFINISHED
        elif path.resolve().parent != folder:
            kept = Kept.OUTSIDE
        else:
            kept = None
        found.append(Candidate(run["id"], run["started"], run["status"], path, kept))
    return found


def remove(results_dir: Path, run: Candidate) -> None:
    """The run's folder, then its catalog row: a removal cut short leaves the row, and the next prune ends it."""
    with on_disk(run.path):
        if run.path.exists():
            shutil.rmtree(run.path)
    catalog = Path(results_dir) / CATALOG
    with on_disk(catalog), sqlite3.connect(catalog) as db:
        db.execute("DELETE FROM runs WHERE id = ?", (run.id,))
