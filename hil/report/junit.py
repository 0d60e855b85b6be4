"""junit.xml for CI: one test case per board × test set × check.

Every run has the reconciliation case (device against host reference) and, for a board
with a measurement unit, the measurement case (every answer has its own latency and energy
row; an <error> with the count of unmeasured answers and why otherwise); a run with a
baseline adds one case per regression rule (hil/stats/regression.py). A board that failed to
come up, identify, pass its health check, stream or be measured is an <error> case of its own; a
board in quarantine, not brought up, is one <skipped> case (`<slot>.quarantine`) in place of its test
sets'. CI systems show these as tests, so a nightly failure names the board, the test set and the rule.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from hil.store import results

if TYPE_CHECKING:  # types only: hil.run.baseline brings in scipy.stats, which writing XML does not need
    from hil.run.baseline import RuleOutcome
    from hil.run.rack import BoardFailure
    from hil.run.assess import BoardSetSummary
    from hil.store.files import QuarantinedBoard

JUNIT_XML = "junit.xml"


def write(path: Path, lab_name: str, summaries: list[BoardSetSummary], failures: list[BoardFailure],
          rules: list[RuleOutcome], quarantined: list[QuarantinedBoard] = ()) -> None:
    from hil.run.verdict import reasons_text  # its module imports hil.run.baseline, and so scipy.stats

    suite = ET.Element("testsuite", name=f"hil.{lab_name}")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def case(classname: str, name: str, outcome: str = "pass", message: str = "") -> None:
        element = ET.SubElement(suite, "testcase", classname=classname, name=name)
        counts["tests"] += 1
        if outcome != "pass":
            tag = {"fail": "failure", "error": "error", "skip": "skipped"}[outcome]
            ET.SubElement(element, tag, message=message).text = message
            counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[tag]] += 1

    # A board set aside by its quarantine is a <skipped> case, with why, in place of its test sets' cases.
    set_aside = {q.slot: q for q in quarantined if not q.brought_up}
    for q in set_aside.values():
        case(q.slot, "quarantine", "skip", f"quarantined since {q.since} by {q.by}: {q.reason}; not brought up")
    for s in summaries:
        if s.slot in set_aside:
            continue
        if not s.complete:
            message = f"{s.expected - s.samples} of {s.expected} samples not answered"
            case(f"{s.slot}.{s.testset}", "reconciliation", "error", message)
        else:
            case(f"{s.slot}.{s.testset}", "reconciliation", "fail" if s.mismatched else "pass",
                 f"{s.mismatched} of {s.samples} answers differ from the host reference")
        if s.unmeasured is not None:
            case(f"{s.slot}.{s.testset}", "measurement", "error" if s.unmeasured else "pass",
                 f"{s.unmeasured} of {s.samples} answered samples unmeasured"
                 + (f" ({reasons_text(s.unmeasured_reasons)})" if s.unmeasured else ""))
    for o in rules:
        if not o.result.repeats_reconciliation:  # the reconciliation case above says it
            case(f"{o.slot}.{o.testset}", o.result.rule, o.result.status, o.result.message)
    for f in failures:
        case(f.slot, f.stage, "error", f.reason)
    for key, value in counts.items():
        suite.set(key, str(value))
    root = ET.Element("testsuites")
    root.append(suite)
    # Through a temporary file, like every results file: a full disk leaves no half report for CI to read.
    results.write_text(path, ET.tostring(root, encoding="unicode", xml_declaration=True))
