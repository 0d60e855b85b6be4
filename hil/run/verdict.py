"""The verdict of a run, and its exit code.

- fail (1): a device answer differs from the host reference (each board's first differing samples are
  traced to their first diverging layer, hil/run/divergence.py: a line each), a board's kernels differ from it
  on a conformance vector (hil/run/conformance.py: a finding about the image or its toolchain, even when every
  test-set answer agrees), boards of the same model disagree, a board answered a sample differently when it
  was asked again to measure it
  (so one of its two answers differs from the host reference), or a regression rule fails
  against the baseline, a baseline the run cannot be compared with included (hil/run/baseline.py).
  A regression outranks an infrastructure problem: it is what the lab is for.
- error (2): a board, probe, emulator or measurement unit failed, samples are missing, or
  answers of a board with a measurement unit have no measurement (`hil run --resume`
  measures them).
- pass (0): every sample of every board answered, every answer is exact, and every answer
  of a board with a unit is measured.

A board in quarantine (hil/run/health.py) is not brought up and not judged: the verdict names it (a pass
lists it too) and the rest decide the exit code; only a run whose every board is quarantined is an error (2).
The run whose health check quarantines a board has that board's failed check among its failures (2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from hil.run.baseline import RuleOutcome
from hil.errors import EXIT_INFRASTRUCTURE, EXIT_PASS, EXIT_REGRESSION
from hil.run.rack import REGRESSION_STAGES, BoardFailure, FailureStage
from hil.stats.regression import RuleStatus
from hil.run.reconcile import Disagreement
from hil.run.assess import BoardSetSummary
from hil.model.reference import DEFAULT_REFERENCE, Reference
from hil.run.divergence import TraceFinding

REASONS_SHOWN = 2  # why samples are unmeasured: the commonest reasons, in a verdict line


class VerdictStatus(StrEnum):
    """A run's verdict (run.json `verdict.status`, the catalog's status)."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    RUNNING = "running"  # in run.json while the run goes on
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: `hil run --resume` goes on


@dataclass(frozen=True)
class QuarantineNote:
    """A quarantined board, as the verdict names it (hil/run/health.py)."""

    slot: str
    line: str
    judged: bool  # quarantined by this run's own check (its failure counts), or set aside before it (not judged)


@dataclass(frozen=True)
class Verdict:
    status: VerdictStatus
    exit_code: int | None  # None while the run goes on
    reasons: list[str] = field(default_factory=list)


def decide(summaries: list[BoardSetSummary], disagreements: list[Disagreement],
           failures: list[BoardFailure], rules: list[RuleOutcome] = (),
           quarantined: list[QuarantineNote] = (), reference: Reference = DEFAULT_REFERENCE,
           layer_traces: list[TraceFinding] = ()) -> Verdict:
    regressions = []
    for s in summaries:
        if s.mismatched:
            regressions.append(f"{s.slot}/{s.testset}: {s.mismatched} of {s.samples} answers differ from the host "
                               f"reference ({reference}) (up to {s.max_steps} quantization steps)")
            # Where the first differing samples went wrong, each traced layer by layer (hil/run/divergence.py).
            regressions += [t.line() for t in layer_traces if (t.slot, t.testset) == (s.slot, s.testset)]
    if disagreements:
        regressions.append(f"{len(disagreements)} samples answered differently by boards of the same model")
    regressions += failed_rule_lines(rules)
    regressions += [f.reason for f in failures if f.stage in REGRESSION_STAGES]
    problems = [f"{f.slot}: {f.stage} failed: {f.reason}" for f in failures if f.stage not in REGRESSION_STAGES]
    # A board set aside by its quarantine is reported, not judged: what is missing of it is no failure of the run.
    set_aside = {q.slot for q in quarantined if not q.judged}
    # A board whose kernels differ streams all the same: what it left unanswered is still a problem of its own.
    failed_slots = {f.slot for f in failures if f.stage != FailureStage.CONFORMANCE} | set_aside
    problems += [f"{s.slot}/{s.testset}: {s.expected - s.samples} of {s.expected} samples not answered"
                 for s in summaries if not s.complete and s.slot not in failed_slots]
    problems += unmeasured_lines([s for s in summaries if s.slot not in set_aside])
    if summaries and {s.slot for s in summaries} <= set_aside:
        problems.append("every board of the lab is quarantined: nothing was judged; `hil board list` shows why")
    notes = [q.line for q in quarantined]
    if regressions:
        return Verdict(VerdictStatus.FAIL, EXIT_REGRESSION, regressions + problems + notes)
    if problems:
        return Verdict(VerdictStatus.ERROR, EXIT_INFRASTRUCTURE, problems + notes)
    return Verdict(VerdictStatus.PASS, EXIT_PASS, notes)


def failed_rule_lines(rules: list[RuleOutcome]) -> list[str]:
    """One line per failed rule, except that the rules of a board and test set that failed for one same
    reason (runs that do not compare: every rule says so) share a line."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for o in rules:
        if o.result.status == RuleStatus.FAIL and not o.result.repeats_reconciliation:
            why = o.result.message.split(": ", 1)[-1]  # the message is `rule: why`
            grouped.setdefault((o.slot, o.testset, why), []).append(o.result.rule)
    return [f"{slot}/{testset}: {', '.join(names)}: {why}" for (slot, testset, why), names in grouped.items()]


def reasons_text(reasons: dict[str, int]) -> str:
    """`N: why; M: why` for the commonest reasons, and how many others."""
    ranked = sorted(reasons.items(), key=lambda item: -item[1])
    text = "; ".join(f"{count}: {why}" for why, count in ranked[:REASONS_SHOWN])
    return text + (f"; {len(ranked) - REASONS_SHOWN} other reasons" if len(ranked) > REASONS_SHOWN else "")


def unmeasured_lines(summaries: list[BoardSetSummary]) -> list[str]:
    """One line per board whose unit left answers without a measurement, with how many and why."""
    boards: dict[str, list[BoardSetSummary]] = {}
    for s in summaries:
        if s.unmeasured is not None:  # a board with a unit
            boards.setdefault(s.slot, []).append(s)
    lines = []
    for slot, mine in boards.items():
        reasons: dict[str, int] = {}
        for s in mine:
            for why, count in s.unmeasured_reasons.items():
                reasons[why] = reasons.get(why, 0) + count
        if reasons:
            lines.append(f"{slot}: {sum(reasons.values())} of {sum(s.samples for s in mine)} answered samples "
                         f"unmeasured ({reasons_text(reasons)}); `hil run --resume` measures them")
    return lines
