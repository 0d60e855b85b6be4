"""Each board's health history and quarantine, in the results folder's catalog (results/catalog.sqlite).

Before a run every board it brings up is checked (hil/run/health.py): one `health` row per check, and one
more when the recovery ladder gives up on a board mid-run. A board that failed its last `quarantine_after`
runs in a row is quarantined: one `quarantine` row per (lab, slot)
while it lasts, written by the run (`by` = the run id) or by a person (`hil board quarantine`), deleted by
`hil board release` (a `releases` row keeps when, and the last check it forgave). A quarantined board is
not brought up until then. Boards are keyed by lab and slot, the name a rack gives its place; each row also
keeps what sat there (the probe's unique id, the kind), so a board swapped in a slot shows in its history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import groupby
from dataclasses import dataclass
from pathlib import Path

from hil.store.results import CATALOG, on_disk, utc_now


@dataclass(frozen=True)
class HealthCheck:
    """One board's health check before one run (or one session of it)."""

    run_id: str
    time: str
    lab: str
    slot: str
    kind: str
    probe: str | None  # the probe's unique id; None for an emulated board
    ok: bool
    reason: str | None  # why it failed, one line
    counts: bool = True  # whether a failure counts towards quarantine: not when the image may be what is wrong


@dataclass(frozen=True)
class Quarantine:
    """A board set aside until it is released."""

    lab: str
    slot: str
    since: str
    reason: str
    by: str  # the run that quarantined it, or "hil board quarantine"


MANUAL = "hil board quarantine"


@contextmanager
def _catalog(results_dir: Path, write: bool) -> Iterator[sqlite3.Connection]:
    path = Path(results_dir) / CATALOG
    if write:
        with on_disk(path):
            Path(results_dir).mkdir(parents=True, exist_ok=True)
    with on_disk(path), sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        db.execute("""CREATE TABLE IF NOT EXISTS health (
            run_id TEXT, time TEXT, lab TEXT, slot TEXT, kind TEXT, probe TEXT, ok INTEGER, reason TEXT,
            counts INTEGER)""")
        columns = {row["name"] for row in db.execute("PRAGMA table_info(health)")}
        if "counts" not in columns:  # a catalog from before failures could be not held against a board
            db.execute("ALTER TABLE health ADD COLUMN counts INTEGER DEFAULT 1")
        db.execute("""CREATE TABLE IF NOT EXISTS quarantine (
            lab TEXT, slot TEXT, since TEXT, reason TEXT, by TEXT, PRIMARY KEY (lab, slot))""")
        db.execute("CREATE TABLE IF NOT EXISTS releases (lab TEXT, slot TEXT, time TEXT, last_check INTEGER)")
        yield db


def record_check(results_dir: Path, check: HealthCheck) -> None:
    with _catalog(results_dir, write=True) as db:
        db.execute("INSERT INTO health VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (check.run_id, check.time, check.lab, check.slot, check.kind, check.probe, int(check.ok),
                    check.reason, int(check.counts)))


def history(results_dir: Path, lab: str, slot: str, since_release: bool = False) -> list[HealthCheck]:
    """Every check of one board, oldest first; with `since_release`, only those after it was last released."""
    if not (Path(results_dir) / CATALOG).exists():
        return []
    with _catalog(results_dir, write=False) as db:
        after = 0
        if since_release:
            row = db.execute("SELECT MAX(last_check) AS last FROM releases WHERE lab = ? AND slot = ?",
                             (lab, slot)).fetchone()
            after = row["last"] or 0
        rows = db.execute("SELECT * FROM health WHERE lab = ? AND slot = ? AND rowid > ? ORDER BY rowid",
                          (lab, slot, after)).fetchall()
    return [HealthCheck(r["run_id"], r["time"], r["lab"], r["slot"], r["kind"], r["probe"], bool(r["ok"]),
                        r["reason"], bool(r["counts"])) for r in rows]


def failures_in_a_row(checks: list[HealthCheck]) -> int:
    """How many of the latest runs (nights) the board failed, back to the last one it passed. A run counts as
    failed when any of its checks failed and counts: its check before streaming, or a recovery ladder that gave
    up on it mid-run (a board that passes every evening and dies every night is not healthy). A failure that
    does not count (the image may be what was wrong) neither adds to the streak nor ends it."""
    count = 0
    for run_checks in reversed([list(group) for _, group in groupby(checks, key=lambda c: c.run_id)]):
        if any(not c.ok and c.counts for c in run_checks):
            count += 1
        elif all(c.ok for c in run_checks):
            break
    return count


def quarantined(results_dir: Path, lab: str) -> dict[str, Quarantine]:
    """The lab's quarantined boards, by slot."""
    if not (Path(results_dir) / CATALOG).exists():
        return {}
    with _catalog(results_dir, write=False) as db:
        rows = db.execute("SELECT * FROM quarantine WHERE lab = ?", (lab,)).fetchall()
    return {r["slot"]: Quarantine(r["lab"], r["slot"], r["since"], r["reason"], r["by"]) for r in rows}


def quarantine(results_dir: Path, lab: str, slot: str, reason: str, by: str = MANUAL) -> Quarantine:
    entry = Quarantine(lab, slot, utc_now(), reason, by)
    with _catalog(results_dir, write=True) as db:
        db.execute("INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?)",
                   (entry.lab, entry.slot, entry.since, entry.reason, entry.by))
    return entry


def release(results_dir: Path, lab: str, slot: str) -> Quarantine | None:
    """Ends the board's quarantine; returns what it was, or None when it was not quarantined. The checks up to
    now are marked as forgiven: a released board gets `quarantine_after` fresh chances."""
    current = quarantined(results_dir, lab).get(slot)
    if current is None:
        return None
    with _catalog(results_dir, write=True) as db:
        last = db.execute("SELECT MAX(rowid) AS last FROM health WHERE lab = ? AND slot = ?", (lab, slot)).fetchone()
        db.execute("DELETE FROM quarantine WHERE lab = ? AND slot = ?", (lab, slot))
        db.execute("INSERT INTO releases VALUES (?, ?, ?, ?)", (lab, slot, utc_now(), last["last"] or 0))
    return current
