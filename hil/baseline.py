"""A run against its baseline run: the regression rules (hil/regression.py) per board and
test set, on the very samples both runs answered.

Samples are paired by (board slot, test set, index). Accuracy uses each run's own labels,
so a relabelled test set shows up as a regression. Latency pairs the busy windows of the
same samples; energy pairs per-inference energies where both runs metered them one by one,
and otherwise compares the burst figures of each exit path. The uncertainty metrics come
from each run's device outputs. The baseline is judged with today's lab and host reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hil import records, regression, results
from hil.errors import BadInput
from hil.summary import BoardSetSummary


@dataclass(frozen=True)
class RuleOutcome:
    """One rule on one board and test set: a test case in junit.xml."""

    slot: str
    testset: str
    result: regression.RuleResult


def resolve_run(reference: str, results_dir: Path, lab_name: str, exclude: Path | None = None) -> Path:
    """A run directory from a path, a run id in the results folder, `baseline` (the one set
    with `hil baseline set`) or `latest-pass` (the newest passing run of this lab)."""
    if reference in ("baseline", "latest-pass"):
        found = (results.get_baseline(results_dir, lab_name) if reference == "baseline"
                 else results.latest_pass(results_dir, lab_name, exclude))
        if found is None:
            raise BadInput(f"{results_dir}: no {reference} run of lab {lab_name!r}; "
                           "run `hil baseline set <run>` or give a run directory")
        return found
    path = Path(reference)
    if not (path / results.RUN_JSON).is_file():
        path = Path(results_dir) / reference
    if not (path / results.RUN_JSON).is_file():
        raise BadInput(f"{reference}: not a run (no {results.RUN_JSON}); give results/<run-id> or `latest-pass`")
    return path


def _paired(current: dict, baseline: dict) -> list[tuple]:
    keys = sorted(set(current) & set(baseline))
    return [(baseline[k], current[k]) for k in keys]


def _energy_arrays(current: list[records.Measurement], baseline: list[records.Measurement]) -> tuple:
    """Per-inference energies paired by sample where both runs metered windows, else by exit path (bursts)."""
    windows = _paired({m.index: m.energy_j for m in current if m.method == "window" and m.energy_j is not None},
                      {m.index: m.energy_j for m in baseline if m.method == "window" and m.energy_j is not None})
    pairs = windows or _paired(
        {m.exited: m.energy_j for m in current if m.method == "burst" and m.energy_j is not None},
        {m.exited: m.energy_j for m in baseline if m.method == "burst" and m.energy_j is not None})
    return np.array([b for b, _ in pairs]), np.array([c for _, c in pairs])


def compare(current_dir: Path, baseline_dir: Path, current: list[BoardSetSummary],
            baseline: list[BoardSetSummary], policy: regression.RegressionPolicy) -> list[RuleOutcome]:
    now = {r.key: r for r in records.read_records(current_dir)}
    then = {r.key: r for r in records.read_records(baseline_dir)}
    now_m, then_m = records.read_measurements(current_dir), records.read_measurements(baseline_dir)
    baseline_by = {(s.slot, s.testset): s for s in baseline}
    outcomes = []
    for summary in current:
        slot, testset = summary.slot, summary.testset
        rules = [regression.numerics_rule(summary.mismatched, summary.samples)]
        before = baseline_by.get((slot, testset))
        pairs = _paired({k[2]: r for k, r in now.items() if k[:2] == (slot, testset)},
                        {k[2]: r for k, r in then.items() if k[:2] == (slot, testset)})
        if before is not None and pairs and summary.kind != "ood":
            rules.append(regression.accuracy_rule(np.array([b.predicted == b.label for b, _ in pairs]),
                                                  np.array([c.predicted == c.label for _, c in pairs]), policy))
        mine = [m for m in now_m if (m.slot, m.testset) == (slot, testset)]
        theirs = [m for m in then_m if (m.slot, m.testset) == (slot, testset)]
        latency = _paired({m.index: m.latency_s for m in mine if m.method == "window"},
                          {m.index: m.latency_s for m in theirs if m.method == "window"})
        rules.append(regression.relative_change_rule("latency", np.array([b for b, _ in latency]),
                                                     np.array([c for _, c in latency]), policy.latency_tolerance,
                                                     policy))
        base_energy, current_energy = _energy_arrays(mine, theirs)
        rules.append(regression.relative_change_rule("energy", base_energy, current_energy, policy.energy_tolerance,
                                                     policy))
        if before is not None and before.uncertainty is not None and summary.uncertainty is not None:
            rules += regression.uncertainty_rules(before.uncertainty, summary.uncertainty, policy)
        outcomes += [RuleOutcome(slot, testset, rule) for rule in rules]
    return outcomes
