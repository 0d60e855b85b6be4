"""A run against its baseline run: the regression rules (hil/stats/regression.py) per board and
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

from hil.run import records
from hil.stats import regression
from hil.store import results
from hil.errors import BadInput
from hil.run.assess import Assessment, BoardSetSummary
from hil.run.records import MeasurementMethod
from hil.model.testsets import TestSetKind


# The rules that compare a run with its baseline (numerics is the run's own), in the order reported.
UNCERTAINTY_RULES = ("ece", "nll", "brier", "auroc")
COMPARED_RULES = ("accuracy", "latency", "energy", *UNCERTAINTY_RULES)


@dataclass(frozen=True)
class RunInputs:
    """What a run was made on (its run.json): each model's sha256, and the names of its test sets."""

    model_sha256: dict[str, str]
    testsets: dict[str, frozenset[str]]  # model -> test set names

    @classmethod
    def of(cls, models: dict, testsets: dict) -> RunInputs:
        """From run.json's `models` (name -> ModelRef) and `testsets` (model -> name -> TestSetRef)."""
        return cls({name: m.sha256 for name, m in models.items()},
                   {model: frozenset(sets) for model, sets in testsets.items()})


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
    def energies(measurements: list[records.Measurement], method: MeasurementMethod, key: str) -> dict:
        return {getattr(m, key): m.energy_j for m in measurements if m.method == method and m.energy_j is not None}

    windows = _paired(energies(current, MeasurementMethod.WINDOW, "index"),
                      energies(baseline, MeasurementMethod.WINDOW, "index"))
    pairs = windows or _paired(energies(current, MeasurementMethod.BURST, "exited"),
                               energies(baseline, MeasurementMethod.BURST, "exited"))
    return np.array([b for b, _ in pairs]), np.array([c for _, c in pairs])


def _by_board_set(items: list) -> dict[tuple[str, str], list]:
    grouped: dict[tuple[str, str], list] = {}
    for item in items:
        grouped.setdefault((item.slot, item.testset), []).append(item)
    return grouped


def _why_not_comparable(summary: BoardSetSummary, pairs: list[tuple], now: RunInputs, then: RunInputs,
                        baseline_answered: int) -> str | None:
    """Why this board and test set cannot be compared with the baseline at all, or None."""
    model = summary.model
    if model not in then.model_sha256:
        return f"the baseline has no model {model}; set a baseline that ran it (`hil baseline set`)"
    if then.model_sha256[model] != now.model_sha256.get(model):
        return (f"the baseline was made on model {model} sha256 {then.model_sha256[model][:12]}, this run on "
                f"{str(now.model_sha256.get(model))[:12]}; set a baseline made on this model (`hil baseline set`)")
    if summary.testset not in then.testsets.get(model, ()):
        return f"the baseline has no test set {summary.testset!r} of {model}; set a baseline that ran it"
    if not pairs:
        return (f"no sample answered by both runs (the baseline answered {baseline_answered} of "
                f"{summary.expected}); set a baseline that answered them")
    return None


def _comparisons(summary: BoardSetSummary, before: BoardSetSummary | None, pairs: list[tuple],
                 mine: list[records.Measurement], theirs: list[records.Measurement],
                 policy: regression.RegressionPolicy) -> list[regression.RuleResult]:
    """COMPARED_RULES on the samples both runs answered, each with its status."""
    rules = []
    if summary.kind == TestSetKind.OOD:
        rules.append(regression.skipped("accuracy", "an OOD test set has no class to be right about"))
    else:
        rules.append(regression.accuracy_rule(np.array([b.predicted == b.label for b, _ in pairs]),
                                              np.array([c.predicted == c.label for _, c in pairs]), policy))
    latency = _paired({m.index: m.latency_s for m in mine if m.method == MeasurementMethod.WINDOW},
                      {m.index: m.latency_s for m in theirs if m.method == MeasurementMethod.WINDOW})
    rules.append(regression.relative_change_rule("latency", np.array([b for b, _ in latency]),
                                                 np.array([c for _, c in latency]), policy.latency_tolerance,
                                                 policy))
    base_energy, current_energy = _energy_arrays(mine, theirs)
    rules.append(regression.relative_change_rule("energy", base_energy, current_energy, policy.energy_tolerance,
                                                 policy))
    if summary.kind == TestSetKind.OOD:
        rules += [regression.skipped(rule, "an OOD test set has no labels to calibrate against")
                  for rule in UNCERTAINTY_RULES]
    elif before is None or before.uncertainty is None or summary.uncertainty is None:
        rules += [regression.skipped(rule, "no uncertainty metrics in one of the runs") for rule in UNCERTAINTY_RULES]
    else:
        rules += regression.uncertainty_rules(before.uncertainty, summary.uncertainty, policy)
    return rules


def compare(now: Assessment, then: Assessment, policy: regression.RegressionPolicy, inputs_now: RunInputs,
            inputs_then: RunInputs, conformance: dict[str, str] | None = None) -> list[RuleOutcome]:
    """Every rule for every board and test set of `now`, against the baseline run `then`: numerics, then
    COMPARED_RULES, each pass, fail or skipped with why. `conformance`: per board whose kernels differ on a
    conformance vector, the line naming it; its numerics rules fail with it."""
    conformance = conformance or {}
    records_now, records_then = _by_board_set(now.records), _by_board_set(then.records)
    measured_now, measured_then = _by_board_set(now.measurements), _by_board_set(then.measurements)
    baseline_by = {(s.slot, s.testset): s for s in then.summaries}
    outcomes = []
    for summary in now.summaries:
        key = (summary.slot, summary.testset)
        rules = [regression.numerics_rule(summary.mismatched, summary.samples, conformance.get(summary.slot))]
        before = baseline_by.get(key)
        pairs = _paired({r.index: r for r in records_now.get(key, [])},
                        {r.index: r for r in records_then.get(key, [])})
        why = _why_not_comparable(summary, pairs, inputs_now, inputs_then, 0 if before is None else before.samples)
        if summary.samples == 0:  # the verdict already says why this run has none (a failure, a quarantine)
            rules += [regression.skipped(rule, "this run answered no sample of it") for rule in COMPARED_RULES]
        elif why is not None:
            rules += [regression.not_comparable(rule, why) for rule in COMPARED_RULES]
        else:
            rules += _comparisons(summary, before, pairs, measured_now.get(key, []), measured_then.get(key, []),
                                  policy)
        outcomes += [RuleOutcome(summary.slot, summary.testset, rule) for rule in rules]
    return outcomes
