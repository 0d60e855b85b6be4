"""The verdict of a run, and its exit code.

- fail (1): a device answer differs from the host reference, boards of the same model
  disagree, or a regression rule fails against the baseline. A regression outranks an
  infrastructure problem: it is what the lab is for.
- error (2): a board, probe or emulator failed, or samples are missing.
- pass (0): every sample of every board answered, and every answer is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hil.baseline import RuleOutcome
from hil.errors import EXIT_INFRASTRUCTURE, EXIT_PASS, EXIT_REGRESSION
from hil.rack import BoardFailure
from hil.reconcile import Disagreement
from hil.summary import BoardSetSummary


@dataclass(frozen=True)
class Verdict:
    status: str  # pass | fail | error
    exit_code: int
    reasons: list[str] = field(default_factory=list)


def decide(summaries: list[BoardSetSummary], disagreements: list[Disagreement],
           failures: list[BoardFailure], rules: list[RuleOutcome] = ()) -> Verdict:
    regressions = [
        f"{s.slot}/{s.testset}: {s.mismatched} of {s.samples} answers differ from the host reference "
        f"(up to {s.max_steps} quantization steps)"
        for s in summaries if s.mismatched
    ]
    if disagreements:
        regressions.append(f"{len(disagreements)} samples answered differently by boards of the same model")
    regressions += [f"{o.slot}/{o.testset}: {o.result.message}" for o in rules
                    if o.result.status == "fail" and not o.result.repeats_reconciliation]
    problems = [f"{f.slot}: {f.stage} failed: {f.reason}" for f in failures]
    failed_slots = {f.slot for f in failures}
    problems += [f"{s.slot}/{s.testset}: {s.expected - s.samples} of {s.expected} samples not answered"
                 for s in summaries if not s.complete and s.slot not in failed_slots]
    if regressions:
        return Verdict("fail", EXIT_REGRESSION, regressions + problems)
    if problems:
        return Verdict("error", EXIT_INFRASTRUCTURE, problems)
    return Verdict("pass", EXIT_PASS, [])
