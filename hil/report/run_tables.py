"""The tables of a run that both the console (`hil run`) and report.html show, defined once.

Each takes the pipeline's own records (in a finished run: what metrics.json holds) and gives
a Table (hil/report/table.py); the console and the page only render it.
"""

from __future__ import annotations

import math

from hil.hw.link import plural
from hil.report.table import Cell, Column, Table, bad, by_board, warn
from hil.run.assess import BoardSetSummary, PathPerformance
from hil.run.baseline import RuleOutcome
from hil.run.recovery import Recovery, StepOutcome
from hil.stats.regression import RuleStatus

DASH = "–"  # no figure: NaN in the files (no accuracy on an OOD set, no full path on a board that always exited)


def number(value: float | None, spec: str, scale: float = 1.0) -> str:
    return format(value * scale, spec) if value is not None and math.isfinite(value) else DASH


def percent(value: float | None) -> str:
    return number(value, ".1f", 100)


def reconciled(s: BoardSetSummary) -> Cell:
    """Nothing answered is nothing reconciled: never "exact" (0 of 0 differ)."""
    if s.samples == 0:
        return bad("never answered")
    return Cell("exact") if not s.mismatched else bad(f"{s.mismatched} differ")


def answered(s: BoardSetSummary) -> Cell:
    if s.samples == 0:
        return bad(f"no answers (of {s.expected})")
    return Cell(str(s.samples)) if s.complete else warn(f"{s.samples}/{s.expected}")


def summary_table(summaries: list[BoardSetSummary]) -> Table:
    columns = [Column("board"), Column("test set")] + [Column(name, numeric=True) for name in (
        "answered", "acc %", "exit %", "ECE", "reconciled", "cycles exit", "cycles full")]
    rows = [[s.slot, s.testset, answered(s), percent(s.accuracy), percent(s.exit_rate),
             number(s.uncertainty and s.uncertainty.ece, ".3f"), reconciled(s),
             number(s.exit_cycles_mean, ",.0f"), number(s.full_cycles_mean, ",.0f")] for s in summaries]
    return Table.of("Per board and test set", columns, rows,
                    caption="reconciled: every output byte and decision of the device against the host reference",
                    sections=by_board([s.slot for s in summaries]))


def performance_table(performance: list[PathPerformance]) -> Table:
    text = ("board", "test set", "path", "method")
    columns = [Column(name, numeric=name not in text) for name in (
        "board", "test set", "path", "inferences", "p50 ms", "p95 ms", "p99 ms", "energy µJ", "method", "clock",
        "unmeasured")]
    rows = [[p.slot, p.testset, "exit" if p.exited else "full", str(p.inferences),
             number(p.latency_ms_p50, ".3f"), number(p.latency_ms_p95, ".3f"), number(p.latency_ms_p99, ".3f"),
             number(p.energy_uj, ",.1f"), str(p.energy_method), "ok" if p.clock_ok else bad("off"),
             # Answers of the board and test set without a window, whichever path they took: the verdict says why.
             warn(p.unmeasured) if p.unmeasured else DASH] for p in performance]
    return Table.of("Latency (busy pin) and energy per inference, per exit path", columns, rows,
                    caption="energy above idle power, from the unit's samples aligned to the busy window; burst: one "
                            "INFER_BURST window where inferences are shorter than 8 of its samples",
                    sections=by_board([p.slot for p in performance]))


RULE_ORDER = {RuleStatus.FAIL: 0, RuleStatus.SKIP: 1, RuleStatus.PASS: 2}  # what needs a look first


def _status(status: RuleStatus) -> Cell:
    return bad(status) if status == RuleStatus.FAIL else warn(status) if status == RuleStatus.SKIP else Cell(str(status))


def rules_table(rules: list[RuleOutcome], baseline: str, passes: bool = True) -> Table:
    """Every rule, failures first (stable: run order otherwise); without `passes`, the failures and skips."""
    counts = {status: sum(o.result.status == status for o in rules) for status in RuleStatus}
    title = (f"Regression rules against baseline {baseline}: {counts[RuleStatus.PASS]} pass, "
             f"{counts[RuleStatus.FAIL]} fail, {counts[RuleStatus.SKIP]} skipped"
             + ("" if passes else " (failures and skips listed)"))
    shown = sorted((o for o in rules if passes or o.result.status != RuleStatus.PASS),
                   key=lambda o: RULE_ORDER[o.result.status])
    rows = [[o.slot, o.testset, o.result.rule, _status(o.result.status),
             o.result.message.split(": ", 1)[-1]] for o in shown]
    return Table.of(title, [Column(name) for name in ("board", "test set", "rule", "status", "figures")], rows)


def recoveries_table(recoveries: list[Recovery]) -> Table:
    """Boards taken up the recovery ladder (a run's or a sweep's): where each failed, what was tried, what
    brought it back."""
    rows = [[r.slot, f"{r.testset}#{r.index}", ", ".join(_step_text(s) for s in r.steps),
             str(r.recovered_by) if r.recovered_by is not None else bad("none: quarantined")]
            for r in recoveries]
    return Table.of("Recovery ladder (`recoveries` in run.json or sweep.json)",
                    [Column("board"), Column("failed at"), Column("steps"), Column("brought back by")], rows)


def _step_text(step: StepOutcome) -> str:
    retried = len(step.flash["failed_attempts"]) if step.flash else 0
    after = f" after {plural(retried, 'failed flash attempt')}" if retried else ""
    return f"{step.step} {'ok' if step.ok else 'failed'}{after} ({step.seconds:.1f} s)"
