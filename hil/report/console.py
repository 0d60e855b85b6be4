"""What `hil run` shows: live progress per board; then, in report.html's order, the verdict, what changed
since the baseline or the last night, the boards that did not simply stream, the tables; or JSON.

The tables are Tables (hil/report/table.py); those report.html shows too are defined once, in
hil/report/run_tables.py.

rich honours NO_COLOR by itself. With --json the tables go to stderr and stdout carries
only the machine-readable summary.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from hil.hw.link import LinkCounts, plural
from hil.report import run_tables
from hil.report.changes import board_events_table, changes
from hil.report.profile import profile_table
from hil.report.run_tables import percent, recoveries_table
from hil.report.table import Column, Table, bad, by_board, to_rich
from hil.run.runner import RunOutcome
from hil.run.verdict import VerdictStatus
from hil.store.files import MetricsFile

MISMATCHES_SHOWN = 20


class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("–" if speed is None else f"{speed:,.0f} samples/s")


class LiveProgress:
    """One bar per board, with samples/s and ETA."""

    def __init__(self, console: Console):
        self._progress = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                                  RateColumn(), TimeRemainingColumn(), console=console, transient=False)
        self._tasks: dict[str, int] = {}
        self._lock = threading.Lock()

    def start(self, totals: dict[str, int]) -> None:
        self._progress.start()
        for slot, total in totals.items():
            self._tasks[slot] = self._progress.add_task(slot, total=total)

    def advance(self, slot: str, samples: int) -> None:
        with self._lock:
            self._progress.advance(self._tasks[slot], samples)

    def stop(self) -> None:
        self._progress.stop()


def summary_table(outcome: RunOutcome) -> Table:
    return run_tables.summary_table(outcome.summaries)


def performance_table(outcome: RunOutcome) -> Table:
    return run_tables.performance_table(outcome.performance)


def mismatch_table(outcome: RunOutcome) -> Table:
    ok = {True: "same", False: bad("differs")}
    rows = [[c.record.slot, c.record.testset, str(c.record.index), str(c.differing_bytes), str(c.max_steps),
             ok[c.exit_agrees], ok[c.class_agrees], ok[c.confidence_agrees]]
            for c in outcome.mismatches[:MISMATCHES_SHOWN]]
    return Table.of(f"Answers that differ from the {outcome.run.reference} host reference (first {MISMATCHES_SHOWN} of "
                    f"{len(outcome.mismatches)})",
                    [Column(name) for name in ("board", "test set", "sample", "differing bytes", "max steps", "exit",
                                               "class", "confidence")], rows)


def rules_table(outcome: RunOutcome) -> Table:
    baseline = outcome.run.baseline.id if outcome.run.baseline else "?"
    return run_tables.rules_table(outcome.rules, baseline, passes=False)


def _kinds(counter) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in counter.most_common()) or "–"


def link_table(outcome: RunOutcome) -> Table:
    """Boards whose link met anything but valid answers: what arrived, and the retries it cost."""
    counted = ("requests", "retries", "timeouts", "late replies")
    columns = [Column(name, numeric=name in counted) for name in (
        "board", *counted, "corrupt frames", "ERROR replies", "wrong replies")]
    rows = [[slot, str(c.requests), str(c.retries), str(c.timeouts), str(c.late), _kinds(c.corrupt),
             _kinds(c.refused), _kinds(c.rejected)] for slot, c in outcome.link.items() if c.troubled]
    return Table.of("Link: what arrived besides valid answers, and the retries it cost (this session)", columns,
                    rows)


def _link_note(outcome: RunOutcome) -> str:
    """For the verdict: a pass that took retries says so."""
    total = LinkCounts.total(outcome.link.values())
    if not total.troubled:
        return ""
    boards = sum(c.troubled for c in outcome.link.values())
    return f"; link: {plural(total.retries, 'retry')} on {plural(boards, 'board')} ({total.describe()})"


def verdict_lines(verdict, footer: str) -> Panel:
    style = {VerdictStatus.PASS: "green", VerdictStatus.FAIL: "red", VerdictStatus.ERROR: "yellow"}[verdict.status]
    lines = [f"[bold]{verdict.status.upper()}[/bold] (exit code {verdict.exit_code})"]
    lines += [f"- {reason}" for reason in verdict.reasons]
    lines.append(footer)
    return Panel("\n".join(lines), title="verdict", border_style=style)


def verdict_panel(outcome: RunOutcome, seconds: float | None) -> Panel:
    samples = sum(s.samples for s in outcome.summaries)
    metered = [s.unmeasured for s in outcome.summaries if s.unmeasured is not None]
    unmeasured = f" ({sum(metered)} unmeasured)" if metered else ""  # boards with a unit only
    timing = f" in {seconds:.0f} s" if seconds is not None else ""
    return verdict_lines(outcome.verdict,
                         f"{samples} records{unmeasured}{timing}{_link_note(outcome)}, reconciled against the "
                         f"{outcome.run.reference} host reference; results in {outcome.run_dir}")


def show(console: Console, outcome: RunOutcome, seconds: float | None) -> None:
    """report.html's order: the verdict, what changed since the baseline or the last night (and the rules that
    fail or were skipped, with their figures), the boards recovered, quarantined, failed or silent, then the
    tables."""
    console.print(verdict_panel(outcome, seconds))
    found = changes(outcome.run, outcome.run_dir, MetricsFile(outcome.summaries, outcome.performance, outcome.rules))
    console.print(escape(found.against))
    if found.table is not None and found.table.rows:
        console.print(to_rich(found.table))
    if outcome.rules:
        console.print(to_rich(rules_table(outcome)))
    events = board_events_table(outcome.run, outcome.summaries)
    if events.rows:
        console.print(to_rich(events))
    if outcome.run.recoveries:
        console.print(to_rich(recoveries_table(outcome.run.recoveries)))
    console.print(to_rich(summary_table(outcome)))
    if outcome.performance:
        console.print(to_rich(performance_table(outcome)))
    if outcome.mismatches:
        console.print(to_rich(mismatch_table(outcome)))
    if outcome.disagreements:
        console.print(f"[red]{len(outcome.disagreements)} samples answered differently by boards of one model[/red]")
    if any(c.troubled for c in outcome.link.values()):
        console.print(to_rich(link_table(outcome)))
    if outcome.profiles is not None:
        for profile in outcome.profiles.profiles:
            console.print(to_rich(profile_table(profile)))
        for failure in outcome.profiles.failures:
            console.print(f"[yellow]no profile: {escape(failure.reason)}[/yellow]")


def json_summary(outcome: RunOutcome) -> str:
    return json.dumps({
        "run_id": outcome.run_dir.name,
        "run_dir": str(outcome.run_dir),
        "verdict": asdict(outcome.verdict),
        "boards": {slot: board.to_json() for slot, board in outcome.run.boards.items()},
        "failures": [asdict(f) for f in outcome.failures],
        "recoveries": [r.to_json() for r in outcome.run.recoveries],
        "link": {slot: counts.to_dict() for slot, counts in outcome.link.items()},
        "summaries": [asdict(s) for s in outcome.summaries],
        "performance": [asdict(p) for p in outcome.performance],
        "mismatches": [{"slot": c.record.slot, "testset": c.record.testset, "index": c.record.index,
                        "differing_bytes": c.differing_bytes, "max_steps": c.max_steps,
                        "exit_agrees": c.exit_agrees, "class_agrees": c.class_agrees,
                        "confidence_agrees": c.confidence_agrees} for c in outcome.mismatches],
        "disagreements": [asdict(d) for d in outcome.disagreements],
        "baseline": asdict(outcome.run.baseline) if outcome.run.baseline else None,
        "rules": [{"slot": o.slot, "testset": o.testset, **asdict(o.result)} for o in outcome.rules],
        "profiles": [p.to_dict() for p in outcome.profiles.profiles] if outcome.profiles else [],
    }, indent=1, default=str)


def _marks(p) -> str:
    return ("◆" if p.pareto else "") + ("★" if p.recommended else "")


def _point_columns(names: list[str]) -> list[Column]:
    return [Column(name, numeric=name not in ("board", ""), no_wrap=name in ("board", "τ")) for name in names]


def sweep_table(outcome) -> Table:
    """One row per board and τ; ◆ marks the Pareto front, ★ the recommended τ."""
    constraint = ("" if outcome.max_accuracy_drop is None
                  else f"; ★ the cheapest τ within {outcome.max_accuracy_drop:g} points of τ = 1")
    rows = [[p.slot, p.tau, percent(p.accuracy), percent(p.exit_rate), f"{p.ece:.3f}", f"{p.nll:.3f}",
             f"{p.latency_ms:.3f}", f"{p.energy_uj:,.1f}", _marks(p)] for p in outcome.points]
    return Table.of("Threshold sweep (clean test set; energy above idle per inference)",
                    _point_columns(["board", "τ", "acc %", "exit %", "ECE", "NLL", "latency ms", "energy µJ", ""]),
                    rows, caption=f"◆ on the Pareto front of accuracy and energy{constraint}. Plot: "
                                  f"{outcome.sweep_dir / 'sweep.png'}",
                    sections=by_board([p.slot for p in outcome.points]))


def replay_table(predicted, measured) -> Table:
    """Replayed points, with the measured sweep's beside them when there is one."""
    by_key = {(p.slot, p.tau_q15): p for p in measured or []}
    title = "Threshold sweep replayed on the host from one full-path run" + (
        ", next to the measured sweep" if measured else "")
    columns = ["board", "τ", "acc %", "exit %", "ECE", "latency ms", "energy µJ", ""]
    if measured:
        columns[4:4] = ["acc % meas.", "exit % meas."]
        columns[-1:-1] = ["latency ms meas.", "Δ latency"]
    rows = []
    for p in predicted:
        row = [p.slot, p.tau, percent(p.accuracy), percent(p.exit_rate), f"{p.ece:.3f}", f"{p.latency_ms:.3f}",
               f"{p.energy_uj:,.1f}", _marks(p)]
        if measured:
            m = by_key.get((p.slot, p.tau_q15))
            row[4:4] = [percent(m.accuracy), percent(m.exit_rate)] if m else ["–", "–"]
            row[-1:-1] = ([f"{m.latency_ms:.3f}", f"{100 * (p.latency_ms / m.latency_ms - 1):+.2f}%"] if m
                          else ["–", "–"])
        rows.append(row)
    return Table.of(title, _point_columns(columns), rows, sections=by_board([p.slot for p in predicted]))
