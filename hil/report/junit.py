"""junit.xml for CI: one test case per board × test set × check.

Every run has the reconciliation case (device against host reference) and, for a board
with a measurement unit, the measurement case (every answer has its own latency and energy
row; an <error> with the count of unmeasured answers and why otherwise); a run with a
baseline adds one case per regression rule (hil/stats/regression.py). A board that failed to
come up, identify, pass its health check, stream or be measured is an <error> case of its own; a
board in quarantine, not brought up, is one <skipped> case (`<slot>.quarantine`) in place of its test
sets'. A board × test set that never answered is an <error> (`never-answered`), never a pass.
CI systems show these as tests, so a nightly failure names the board, the test set and the rule.

As CI tools read it (the Ant JUnit format; tests/data/junit.xsd is its strict schema): the suite has
`timestamp` (run.json `started`, UTC, without a zone as the Ant schema wants), `time` (started to
finished), `hostname` (the host that ran it) and <properties>: the lab, the git revision, and every
model's, test set's and board's firmware and model hashes. Each case has a `time`: the wall-clock
seconds its board streamed that test set (run.json `sessions[].streamed`, summed over the sessions)
for the reconciliation and measurement cases, which both judge that stream; a rule's share of the
rule evaluation; the board's streaming time for a failure while streaming; 0 for what was not run
(a quarantined board, one that failed before it streamed). Every <failure> and <error> has a `type`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from calendar import timegm
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from time import strptime
from typing import TYPE_CHECKING

from hil.store import results

if TYPE_CHECKING:  # types only: hil.run.baseline brings in scipy.stats, which writing XML does not need
    from hil.run.baseline import RuleOutcome
    from hil.run.rack import BoardFailure
    from hil.run.assess import BoardSetSummary
    from hil.store.files import RunFile

JUNIT_XML = "junit.xml"


class Outcome(StrEnum):
    """A test case's outcome: its child element (none for a pass)."""

    PASS = "pass"
    FAILURE = "failure"
    ERROR = "error"
    SKIPPED = "skipped"


class CaseType(StrEnum):
    """The `type` of a <failure> or <error> (a board's failure has its stage, run/rack FailureStage); a
    <skipped> has none (the Ant schema allows it a message only)."""

    MISMATCH = "mismatch"  # answers differ from the host reference
    UNANSWERED = "unanswered"  # some samples were not answered
    NEVER_ANSWERED = "never-answered"  # not one sample of the test set was answered
    UNMEASURED = "unmeasured"  # answers without a measurement of their own
    REGRESSION = "regression"  # a rule against the baseline failed


@dataclass(frozen=True)
class Case:
    classname: str
    name: str
    seconds: float
    outcome: Outcome = Outcome.PASS
    type: str = ""  # of a failure or an error
    message: str = ""


def _epoch(timestamp: str) -> int:
    return timegm(strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))


def streamed_seconds(run: RunFile) -> dict[tuple[str, str], float]:
    """(slot, test set) -> wall-clock seconds streamed, over every session of the run."""
    seconds: dict[tuple[str, str], float] = {}
    for session in run.sessions:
        for slot, sets in (session.streamed or {}).items():
            for testset, spent in sets.items():
                seconds[(slot, testset)] = seconds.get((slot, testset), 0.0) + spent
    return seconds


def properties(run: RunFile) -> dict[str, str]:
    """What the run was: the lab, the checkout, the models, test sets and the boards' images."""
    found = {"run.id": run.id, "lab": run.lab.name, "lab.file": run.lab.file, "lab.sha256": run.lab.sha256,
             "git.revision": run.git.revision, "git.dirty": str(run.git.dirty).lower(),
             "hil.version": (run.software or {}).get("hil") or "unknown"}
    if run.threshold is not None:
        found["threshold"] = f"{run.threshold.value:g}"
    if run.baseline is not None:
        found["baseline"] = run.baseline.id
    for name, model in sorted(run.models.items()):
        found[f"model.{name}.sha256"] = model.sha256
    for model, sets in sorted(run.testsets.items()):
        for name, testset in sorted(sets.items()):
            found[f"testset.{model}.{name}.sha256"] = testset.sha256
    for slot, board in sorted(run.boards.items()):
        found[f"board.{slot}.kind"] = board.kind
        found[f"board.{slot}.firmware_sha256"] = str(board.image_sha256)
        found[f"board.{slot}.model_sha256"] = str(board.model_sha256)
        found[f"board.{slot}.firmware_id"] = board.reported.firmware_id
    return found


def cases(run: RunFile, summaries: list[BoardSetSummary], failures: list[BoardFailure], rules: list[RuleOutcome],
          rules_seconds: float = 0.0) -> list[Case]:
    from hil.run.rack import REGRESSION_STAGES, FailureStage
    from hil.run.verdict import reasons_text  # its module imports hil.run.baseline, and so scipy.stats
    from hil.stats.regression import RuleStatus

    while_streaming = (FailureStage.STREAM, FailureStage.MONITOR, FailureStage.CLOCK, FailureStage.RERUN)
    streamed = streamed_seconds(run)
    found: list[Case] = []
    # A board set aside by its quarantine is a <skipped> case, with why, in place of its test sets' cases.
    set_aside = {q.slot: q for q in run.quarantined if not q.brought_up}
    for q in set_aside.values():
        found.append(Case(q.slot, "quarantine", 0.0, Outcome.SKIPPED,
                          message=f"quarantined since {q.since} by {q.by}: {q.reason}; not brought up"))
    for s in summaries:
        if s.slot in set_aside:
            continue
        where, seconds = f"{s.slot}.{s.testset}", streamed.get((s.slot, s.testset), 0.0)
        if s.samples == 0:
            found.append(Case(where, "reconciliation", seconds, Outcome.ERROR, CaseType.NEVER_ANSWERED,
                              f"never answered: none of {s.expected} samples"))
        elif not s.complete:
            found.append(Case(where, "reconciliation", seconds, Outcome.ERROR, CaseType.UNANSWERED,
                              f"{s.expected - s.samples} of {s.expected} samples not answered"))
        elif s.mismatched:
            found.append(Case(where, "reconciliation", seconds, Outcome.FAILURE, CaseType.MISMATCH,
                              f"{s.mismatched} of {s.samples} answers differ from the host reference"))
        else:
            found.append(Case(where, "reconciliation", seconds))
        if s.unmeasured is None:  # no unit: nothing to measure
            continue
        if s.samples == 0:
            found.append(Case(where, "measurement", seconds, Outcome.SKIPPED,
                              message="never answered: nothing to measure"))
        elif s.unmeasured:
            found.append(Case(where, "measurement", seconds, Outcome.ERROR, CaseType.UNMEASURED,
                              f"{s.unmeasured} of {s.samples} answered samples unmeasured "
                              f"({reasons_text(s.unmeasured_reasons)})"))
        else:
            found.append(Case(where, "measurement", seconds))
    shown = [o for o in rules if not o.result.repeats_reconciliation]  # the reconciliation case above says it
    for o in shown:
        outcome, kind = {RuleStatus.PASS: (Outcome.PASS, ""), RuleStatus.FAIL: (Outcome.FAILURE, CaseType.REGRESSION),
                         RuleStatus.SKIP: (Outcome.SKIPPED, "")}[o.result.status]
        found.append(Case(f"{o.slot}.{o.testset}", o.result.rule, rules_seconds / len(shown), outcome, kind,
                          "" if outcome == Outcome.PASS else o.result.message))
    for f in failures:
        seconds = sum(t for (slot, _), t in streamed.items() if slot == f.slot) if f.stage in while_streaming else 0.0
        # A rerun that answered differently and a conformance mismatch are regressions (the verdict's exit 1),
        # the rest the board's error.
        found.append(Case(f.slot, str(f.stage), seconds,
                          Outcome.FAILURE if f.stage in REGRESSION_STAGES else Outcome.ERROR, str(f.stage), f.reason))
    return found


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def write(path: Path, run: RunFile, summaries: list[BoardSetSummary], failures: list[BoardFailure],
          rules: list[RuleOutcome], rules_seconds: float = 0.0) -> None:
    """junit.xml of a judged run: `run` its run.json (verdict set), `rules_seconds` how long the rules took."""
    found = cases(run, summaries, failures, rules, rules_seconds)
    counted = {outcome: sum(c.outcome == outcome for c in found) for outcome in Outcome}
    finished = run.finished or results.utc_now()
    suite = ET.Element("testsuite", {
        "name": f"hil.{run.lab.name}", "package": "hil", "id": "0", "tests": str(len(found)),
        "failures": str(counted[Outcome.FAILURE]), "errors": str(counted[Outcome.ERROR]),
        "skipped": str(counted[Outcome.SKIPPED]), "time": _seconds(_epoch(finished) - _epoch(run.started)),
        "timestamp": run.started.removesuffix("Z"), "hostname": run.host or "localhost"})
    listed = ET.SubElement(suite, "properties")
    for name, value in properties(run).items():
        ET.SubElement(listed, "property", name=name, value=value)
    for case in found:
        element = ET.SubElement(suite, "testcase", classname=case.classname, name=case.name,
                                time=_seconds(case.seconds))
        if case.outcome != Outcome.PASS:
            typed = {"type": case.type} if case.type else {}
            ET.SubElement(element, str(case.outcome), typed, message=case.message).text = case.message
    # The verdict as the console gives it, for CI pages that show a suite's output.
    ET.SubElement(suite, "system-out").text = "\n".join(
        [f"{run.verdict.status} (exit code {run.verdict.exit_code})"] + [f"- {r}" for r in run.verdict.reasons])
    ET.SubElement(suite, "system-err")
    root = ET.Element("testsuites")
    root.append(suite)
    # Through a temporary file, like every results file: a full disk leaves no half report for CI to read.
    results.write_text(path, ET.tostring(root, encoding="unicode", xml_declaration=True))
