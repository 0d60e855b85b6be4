"""What changed since the baseline or the last night: the tables report.html opens with, after the verdict,
and the console shows first too.

Against the run's baseline when it has one: rule by rule, the change and (latency, energy) its bootstrap CI,
as the rules computed them (hil/run/baseline.py); both runs' figures are in the rules table at the end. Without a baseline: the headline figures of
metrics.json (accuracy, latency p50 and energy per exit path) against the lab's last finished run in the
catalog, without CIs (only the rules compute them, on the samples both runs answered). Then the boards:
recovered, quarantined, failed, or never answered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from hil.report.run_tables import DASH, number
from hil.report.table import Cell, Column, Table, bad, by_board, warn
from hil.report.nights import last_finished, path_means
from hil.run.assess import BoardSetSummary
from hil.run.baseline import COMPARED_RULES, RuleOutcome
from hil.stats.regression import RuleResult, RuleStatus
from hil.store.files import MetricsFile, RunFile


@dataclass(frozen=True)
class Changes:
    against: str  # one sentence: what the run was compared with, or why with nothing
    table: Table | None  # None: nothing to compare with


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _relative(value: object) -> str:
    return _signed(value, "+.2%") if _finite(value) else DASH


def _signed(value: float, spec: str) -> str:
    """With its sign; a change that rounds to nothing reads +0, never -0."""
    shown = format(value, spec)
    return shown if value > 0 or shown.lstrip("-+").strip("0.%") else f"+{shown.lstrip('-+')}"


# How each rule's change reads: latency and energy are relative changes with a bootstrap CI, accuracy a change
# in points (McNemar), the uncertainty metrics absolute changes.
CHANGE_TEXT = {"accuracy": lambda d: _signed(100 * d, "+.1f") + " pts", "latency": _relative, "energy": _relative}


def _change_cell(result: RuleResult) -> Cell:
    figures = result.figures
    if not _finite(figures.get("delta")):
        # Skipped (an OOD set has no accuracy, a board without a unit no energy), or the runs do not compare.
        return bad("cannot compare") if result.status == RuleStatus.FAIL else Cell(DASH)
    text = CHANGE_TEXT.get(result.rule, lambda d: _signed(d, "+.4f"))(figures["delta"])
    if _finite(figures.get("ci_low")) and _finite(figures.get("ci_high")):
        text += f" [{_signed(figures['ci_low'], '+.1%')}, {_signed(figures['ci_high'], '+.1%')}]"
    return bad(text) if result.status == RuleStatus.FAIL else Cell(text)


def rule_changes_table(rules: list[RuleOutcome], baseline: str) -> Table:
    """One row per board and test set, one column per compared rule (numerics is the run's own, in the
    verdict): the change against the baseline and, for latency and energy, its bootstrap CI; a failing rule
    in red."""
    compared = [o for o in rules if not o.result.repeats_reconciliation]
    counts = {status: sum(o.result.status == status for o in compared) for status in RuleStatus}
    cells: dict[tuple[str, str], dict[str, Cell]] = {}
    for o in compared:
        cells.setdefault((o.slot, o.testset), {})[o.result.rule] = _change_cell(o.result)
    rows = [[slot, testset, *(by_rule.get(rule, Cell(DASH)) for rule in COMPARED_RULES)]
            for (slot, testset), by_rule in cells.items()]
    title = (f"Changes against baseline {baseline}: of the rules {counts[RuleStatus.FAIL]} failed, "
             f"{counts[RuleStatus.PASS]} passed, {counts[RuleStatus.SKIP]} skipped")
    return Table.of(title, [Column("board"), Column("test set"), *(Column(rule, numeric=True)
                                                                   for rule in COMPARED_RULES)], rows,
                    caption="latency (busy pin) and energy: relative change of the mean on the samples both runs "
                            "answered, [its paired bootstrap CI at the lab's regression.confidence]; accuracy: "
                            "change in points (McNemar); ece, nll, brier, auroc: absolute change; – skipped "
                            "(why: the regression rules at the end)",
                    sections=by_board([row[0] for row in rows]))


def headline_table(before: MetricsFile, now: MetricsFile, before_id: str) -> Table:
    """metrics.json's headline figures of both runs where both have them: accuracy per board and test set,
    latency p50 and energy per board and exit path."""
    then = {(s.slot, s.testset): s for s in before.summaries}
    rows: list[list[Cell | str]] = []
    for s in now.summaries:
        old = then.get((s.slot, s.testset))
        if old is not None and _finite(s.accuracy) and _finite(old.accuracy):
            rows.append([s.slot, s.testset, "accuracy %", number(old.accuracy, ".1f", 100),
                         number(s.accuracy, ".1f", 100), f"{100 * (s.accuracy - old.accuracy):+.1f} pts"])
    for figure, label, spec in (("latency_ms_p50", "latency p50 ms", ".3f"), ("energy_uj", "energy µJ", ",.1f")):
        old_means, new_means = path_means(before.performance, figure), path_means(now.performance, figure)
        for (slot, path), value in sorted(new_means.items()):
            if (slot, path) in old_means:
                old = old_means[(slot, path)]
                rows.append([slot, f"{path} path (all sets)", label, number(old, spec), number(value, spec),
                             _relative(value / old - 1 if old else math.nan)])
    rows.sort(key=lambda row: row[0])
    return Table.of(f"Changes against the last finished run {before_id}",
                    [Column("board"), Column("test set"), Column("figure"), Column("then", numeric=True),
                     Column("now", numeric=True), Column("change", numeric=True)], rows,
                    caption="no CI: the run has no baseline, and only the regression rules compute one (set one "
                            "with `hil baseline set`)", sections=by_board([str(row[0]) for row in rows]))


def changes(run: RunFile, run_dir: Path, metrics: MetricsFile) -> Changes:
    """Against the run's baseline (its rules) when it has one, else the lab's last finished run."""
    if run.baseline is not None:
        revision = run.baseline.git.revision[:12] if run.baseline.git else "unknown"
        return Changes(f"Compared with the baseline {run.baseline.id} (revision {revision}), rule by rule on the "
                       "samples both runs answered.", rule_changes_table(metrics.rules, run.baseline.id))
    before = last_finished(run, Path(run_dir).parent)
    if before is None or before.metrics is None:
        return Changes(f"Nothing to compare with: no baseline, and no earlier finished run of lab {run.lab.name} "
                       f"with a readable metrics.json in {Path(run_dir).parent}.", None)
    return Changes(f"No baseline: compared with the last finished run of lab {run.lab.name}, {before.id} "
                   f"(verdict {before.status}).", headline_table(before.metrics, metrics, before.id))


def board_events_table(run: RunFile, summaries: list[BoardSetSummary]) -> Table:
    """Boards the run did not simply stream: recovered mid-run, quarantined, failed, or that never answered a
    test set (never "exact": nothing answered is nothing reconciled)."""
    rows: list[list[Cell | str]] = []
    for r in run.recoveries:
        where = f"at {r.testset}#{r.index} ({r.error})"
        rows.append([r.slot, warn(f"recovered by {r.recovered_by}"), where] if r.recovered_by is not None
                    else [r.slot, bad("quarantined mid-run"), f"{where}: every step of the ladder failed"])
    for q in run.quarantined:
        state = "quarantined by this run's health check" if q.brought_up else "quarantined: not brought up"
        rows.append([q.slot, bad(state), f"{q.reason} (since {q.since}, by {q.by}; `hil board release`)"])
    rows += [[f.slot, bad(f"failed ({f.stage})"), f.reason] for f in run.failures]
    rows += [[s.slot, bad("never answered"), f"{s.testset}: 0 of {s.expected} samples"]
             for s in summaries if s.samples == 0]
    rows.sort(key=lambda row: row[0])
    return Table.of("Boards recovered, quarantined, failed or silent", [Column("board"), Column("what"),
                    Column("detail")], rows, sections=by_board([str(row[0]) for row in rows]))
