"""What `hil run` shows: live progress per board, summary tables, the verdict; or JSON.

rich honours NO_COLOR by itself. With --json the tables go to stderr and stdout carries
only the machine-readable summary.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from dataclasses import asdict

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from hil.hw.link import LinkCounts, plural
from hil.run.runner import RunOutcome

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


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.1f}"


def _cycles(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:,.0f}"


def _sections_by_board(table: Table, rows: list) -> Iterator:
    """The rows in order, with a rule drawn in the table where the board changes."""
    previous = None
    for row in rows:
        if previous is not None and row.slot != previous:
            table.add_section()
        previous = row.slot
        yield row


def summary_table(outcome: RunOutcome) -> Table:
    table = Table(title="Per board and test set", title_justify="left",
                  caption="reconciled: every output byte and decision of the device against the host reference",
                  caption_justify="left")
    for column in ("board", "test set", "answered", "acc %", "exit %", "ECE", "reconciled", "cycles exit",
                   "cycles full"):
        table.add_column(column, justify="left" if column in ("board", "test set") else "right")
    for s in _sections_by_board(table, outcome.summaries):
        reconciled = "exact" if not s.mismatched else f"[red]{s.mismatched} differ[/red]"
        answered = f"{s.samples}" if s.complete else f"[yellow]{s.samples}/{s.expected}[/yellow]"
        ece = "–" if s.uncertainty is None else f"{s.uncertainty.ece:.3f}"
        table.add_row(s.slot, s.testset, answered, _pct(s.accuracy), _pct(s.exit_rate), ece, reconciled,
                      _cycles(s.exit_cycles_mean), _cycles(s.full_cycles_mean))
    return table


def performance_table(outcome: RunOutcome) -> Table:
    table = Table(title="Latency (busy pin) and energy per inference, per exit path", title_justify="left",
                  caption="energy above idle power, from INA219 samples aligned to the busy window; burst: one "
                          "INFER_BURST window where inferences are shorter than 8 conversions",
                  caption_justify="left")
    for column in ("board", "test set", "path", "inferences", "p50 ms", "p95 ms", "p99 ms", "energy µJ", "method",
                   "clock", "unmeasured"):
        table.add_column(column, justify="left" if column in ("board", "test set", "path", "method") else "right")
    for p in _sections_by_board(table, outcome.performance):
        energy = "–" if math.isnan(p.energy_uj) else f"{p.energy_uj:,.1f}"
        # Answers of the board and test set without a window, whichever path they took: the verdict says why.
        unmeasured = f"[yellow]{p.unmeasured}[/yellow]" if p.unmeasured else "–"
        table.add_row(p.slot, p.testset, "exit" if p.exited else "full", str(p.inferences),
                      f"{p.latency_ms_p50:.3f}", f"{p.latency_ms_p95:.3f}", f"{p.latency_ms_p99:.3f}", energy,
                      p.energy_method, "ok" if p.clock_ok else "[red]off[/red]", unmeasured)
    return table


def mismatch_table(outcome: RunOutcome) -> Table:
    table = Table(title=f"Answers that differ from the host reference (first {MISMATCHES_SHOWN} of "
                        f"{len(outcome.mismatches)})", title_justify="left")
    for column in ("board", "test set", "sample", "differing bytes", "max steps", "exit", "class", "confidence"):
        table.add_column(column)
    ok = {True: "same", False: "[red]differs[/red]"}
    for check in outcome.mismatches[:MISMATCHES_SHOWN]:
        r = check.record
        table.add_row(r.slot, r.testset, str(r.index), str(check.differing_bytes), str(check.max_steps),
                      ok[check.exit_agrees], ok[check.class_agrees], ok[check.confidence_agrees])
    return table


def rules_table(outcome: RunOutcome) -> Table:
    baseline = outcome.run.get("baseline", {}).get("id", "?")
    counts = {status: sum(o.result.status == status for o in outcome.rules) for status in ("pass", "fail", "skip")}
    table = Table(title=f"Against baseline {baseline}: {counts['pass']} rules pass, {counts['fail']} fail, "
                        f"{counts['skip']} skipped (failures and skips listed)", title_justify="left")
    for column in ("board", "test set", "rule", "status", "figures"):
        table.add_column(column)
    style = {"fail": "[red]fail[/red]", "skip": "[yellow]skip[/yellow]"}
    for o in outcome.rules:
        if o.result.status != "pass":
            table.add_row(o.slot, o.testset, o.result.rule, style[o.result.status],
                          o.result.message.split(": ", 1)[-1])
    return table


def _kinds(counter) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in counter.most_common()) or "–"


def link_table(outcome: RunOutcome) -> Table:
    """Boards whose link met anything but valid answers: what arrived, and the retries it cost."""
    table = Table(title="Link: what arrived besides valid answers, and the retries it cost (this session)",
                  title_justify="left")
    for column in ("board", "requests", "retries", "timeouts", "late replies", "corrupt frames", "ERROR replies",
                   "wrong replies"):
        table.add_column(column, justify="right" if column in ("requests", "retries", "timeouts", "late replies")
                         else "left")
    for slot, c in outcome.link.items():
        if c.troubled:
            table.add_row(slot, str(c.requests), str(c.retries), str(c.timeouts), str(c.late), _kinds(c.corrupt),
                          _kinds(c.refused), _kinds(c.rejected))
    return table


def _link_note(outcome: RunOutcome) -> str:
    """For the verdict: a pass that took retries says so."""
    total = LinkCounts.total(outcome.link.values())
    if not total.troubled:
        return ""
    boards = sum(c.troubled for c in outcome.link.values())
    return f"; link: {plural(total.retries, 'retry')} on {plural(boards, 'board')} ({total.describe()})"


def verdict_lines(verdict, footer: str) -> Panel:
    style = {"pass": "green", "fail": "red", "error": "yellow"}[verdict.status]
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
                         f"{samples} records{unmeasured}{timing}{_link_note(outcome)}; results in {outcome.run_dir}")


def show(console: Console, outcome: RunOutcome, seconds: float | None) -> None:
    console.print(summary_table(outcome))
    if outcome.performance:
        console.print(performance_table(outcome))
    if outcome.rules:
        console.print(rules_table(outcome))
    if outcome.mismatches:
        console.print(mismatch_table(outcome))
    if outcome.disagreements:
        console.print(f"[red]{len(outcome.disagreements)} samples answered differently by boards of one model[/red]")
    if outcome.failures:
        failures = Table(title="Boards that failed", title_justify="left")
        for column in ("board", "stage", "reason"):
            failures.add_column(column)
        for failure in outcome.failures:
            failures.add_row(failure.slot, failure.stage, failure.reason)
        console.print(failures)
    if any(c.troubled for c in outcome.link.values()):
        console.print(link_table(outcome))
    console.print(verdict_panel(outcome, seconds))


def json_summary(outcome: RunOutcome) -> str:
    return json.dumps({
        "run_id": outcome.run_dir.name,
        "run_dir": str(outcome.run_dir),
        "verdict": asdict(outcome.verdict),
        "boards": outcome.run["boards"],
        "failures": [asdict(f) for f in outcome.failures],
        "link": {slot: counts.to_dict() for slot, counts in outcome.link.items()},
        "summaries": [asdict(s) for s in outcome.summaries],
        "performance": [asdict(p) for p in outcome.performance],
        "mismatches": [{"slot": c.record.slot, "testset": c.record.testset, "index": c.record.index,
                        "differing_bytes": c.differing_bytes, "max_steps": c.max_steps,
                        "exit_agrees": c.exit_agrees, "class_agrees": c.class_agrees,
                        "confidence_agrees": c.confidence_agrees} for c in outcome.mismatches],
        "disagreements": [asdict(d) for d in outcome.disagreements],
        "baseline": outcome.run.get("baseline"),
        "rules": [{"slot": o.slot, "testset": o.testset, **asdict(o.result)} for o in outcome.rules],
    }, indent=1, default=str)


def sweep_table(outcome) -> Table:
    """One row per board and τ; ◆ marks the Pareto front, ★ the recommended τ."""
    constraint = ("" if outcome.max_accuracy_drop is None
                  else f"; ★ the cheapest τ within {outcome.max_accuracy_drop:g} points of τ = 1")
    table = Table(title="Threshold sweep (clean test set; energy above idle per inference)", title_justify="left",
                  caption=f"◆ on the Pareto front of accuracy and energy{constraint}. Plot: "
                          f"{outcome.sweep_dir / 'sweep.png'}", caption_justify="left")
    for column in ("board", "τ", "acc %", "exit %", "ECE", "NLL", "latency ms", "energy µJ", ""):
        table.add_column(column, justify="left" if column in ("board", "") else "right", no_wrap=column in ("board", "τ"))
    for p in _sections_by_board(table, outcome.points):
        marks = ("◆" if p.pareto else "") + ("★" if p.recommended else "")
        table.add_row(p.slot, p.tau, _pct(p.accuracy), _pct(p.exit_rate), f"{p.ece:.3f}", f"{p.nll:.3f}",
                      f"{p.latency_ms:.3f}", f"{p.energy_uj:,.1f}", marks)
    return table


def replay_table(predicted, measured) -> Table:
    """Replayed points, with the measured sweep's beside them when there is one."""
    by_key = {(p.slot, p.tau_q15): p for p in measured or []}
    title = "Threshold sweep replayed on the host from one full-path run" + (
        ", next to the measured sweep" if measured else "")
    table = Table(title=title, title_justify="left")
    columns = ["board", "τ", "acc %", "exit %", "ECE", "latency ms", "energy µJ", ""]
    if measured:
        columns[4:4] = ["acc % meas.", "exit % meas."]
        columns[-1:-1] = ["latency ms meas.", "Δ latency"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("board", "") else "right", no_wrap=column in ("board", "τ"))
    for p in _sections_by_board(table, predicted):
        marks = ("◆" if p.pareto else "") + ("★" if p.recommended else "")
        row = [p.slot, p.tau, _pct(p.accuracy), _pct(p.exit_rate), f"{p.ece:.3f}", f"{p.latency_ms:.3f}",
               f"{p.energy_uj:,.1f}", marks]
        if measured:
            m = by_key.get((p.slot, p.tau_q15))
            row[4:4] = [_pct(m.accuracy), _pct(m.exit_rate)] if m else ["–", "–"]
            row[-1:-1] = ([f"{m.latency_ms:.3f}", f"{100 * (p.latency_ms / m.latency_ms - 1):+.2f}%"] if m
                          else ["–", "–"])
        table.add_row(*row)
    return table
