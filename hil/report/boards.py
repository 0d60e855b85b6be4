"""`hil board list|health`: a lab's boards with their state and last health check, and one board's history."""

from __future__ import annotations

from hil.errors import BadInput
from hil.lab.load import Lab
from hil.report.table import Cell, Column, Table, bad, warn
from hil.store import health

IN_SERVICE, QUARANTINED = "in service", "quarantined"


def boards_table(lab: Lab) -> Table:
    """Every board of the lab: in service or quarantined (since when, by whom, why), its last check, and how
    many checks in a row it has failed (since its last release) out of the lab's `run.quarantine_after`."""
    out = health.quarantined(lab.results_dir, lab.name)
    rows = []
    for spec in lab.boards:
        checks = health.history(lab.results_dir, lab.name, spec.slot)
        last = checks[-1] if checks else None
        streak = health.failures_in_a_row(health.history(lab.results_dir, lab.name, spec.slot, since_release=True))
        q = out.get(spec.slot)
        state = bad(f"{QUARANTINED} since {q.since} by {q.by}: {q.reason}") if q else Cell(IN_SERVICE)
        shown = "never checked" if last is None else f"{last.time} {'ok' if last.ok else 'FAILED'} ({last.run_id})"
        rows.append([Cell(spec.slot), Cell(spec.kind), state, warn(shown) if last and not last.ok else Cell(shown),
                     Cell(f"{streak} of {lab.run.quarantine_after}")])
    return Table.of(f"Boards of lab {lab.name} ({lab.results_dir})",
                    [Column("slot", no_wrap=True), Column("kind"), Column("state"), Column("last health check"),
                     Column("failed in a row", numeric=True)], rows)


def health_table(lab: Lab, slot: str) -> Table:
    """One board's every health check, oldest first."""
    checks = health.history(lab.results_dir, lab.name, slot)
    if not checks:
        raise BadInput(f"{lab.file}: board {slot!r} has no health check in {lab.results_dir}; `hil run "
                       f"{lab.file}` checks every board before it streams")
    rows = [[Cell(c.time), Cell(c.run_id), Cell(c.kind), Cell(c.probe or "emulated"),
             Cell("ok") if c.ok else bad("FAILED"), Cell(c.reason or "")] for c in checks]
    return Table.of(f"Health of {slot} (lab {lab.name})", [Column("time", no_wrap=True), Column("run"),
                    Column("kind"), Column("probe"), Column("check"), Column("reason")], rows)
