"""junit.xml as CI tools read it: valid against the JUnit schema in tests/data/junit.xsd (strict: timestamp,
hostname, times, properties, a type on every failure and error), with the run's
provenance as properties and each case's real time; a board × test set that never answered is an error.
First from a run built here, then from a whole run of FakeBoards (hil.testing.fake_board)."""

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from hil.report import junit
from hil.report.run_files import write_run_files
from hil.run.assess import BoardSetSummary
from hil.run.baseline import RuleOutcome
from hil.run.rack import BoardFailure, FailureStage
from hil.run.runner import execute
from hil.run.session import NoProgress
from hil.run.verdict import Verdict, VerdictStatus
from hil.stats.regression import RuleResult, RuleStatus
from hil.store.files import (BoardProvenance, GitRevision, LabRef, ModelRef, QuarantinedBoard, ReportedIdentity,
                             RunFile, RunStatus, Session, TestSetRef, Threshold, read_run)
from hil.testing.fake_board import Faults
from tests.support.labs import write_lab

DATA = Path(__file__).parents[1] / "data"
SCHEMA = xmlschema.XMLSchema(DATA / "junit.xsd")
IMAGE, MODEL = "ab" * 32, "cd" * 32


def board(slot: str) -> BoardProvenance:
    return BoardProvenance(slot, "mps2-an386", "qute-digits", True, {}, {"image_sha256": IMAGE, "model_sha256": MODEL},
                           "manifest.json", ReportedIdentity(IMAGE, MODEL, "mps2-an386", "qute-1.0", 25_000_000))


def a_run() -> RunFile:
    """Two sessions (the second a resume) that streamed boards a and b; c quarantined, never brought up."""
    return RunFile(
        id="20260101-000000-abcd", status=RunStatus.FINISHED, started="2026-01-01T00:00:00Z",
        lab=LabRef("nightly", "/labs.yaml", "00" * 32), git=GitRevision("f" * 40, False), software={"hil": "1.2"},
        host="rack-host", threshold=Threshold(0.9, 29491), models={"qute-digits": ModelRef("models/d", "11" * 32)},
        testsets={"qute-digits": {"clean": TestSetRef("clean.npz", "22" * 32, 12),
                                  "ood": TestSetRef("ood.npz", "33" * 32, 12)}},
        boards={"a": board("a"), "b": board("b")},
        sessions=[Session("2026-01-01T00:00:00Z", ["a", "b"], "2026-01-01T00:00:40Z",
                          streamed={"a": {"clean": 10.5, "ood": 4.25}, "b": {"clean": 2.0}}),
                  Session("2026-01-01T00:01:00Z", ["a"], "2026-01-01T00:01:30Z", streamed={"a": {"clean": 1.5}})],
        verdict=Verdict(VerdictStatus.FAIL, 1, ["a/ood: 2 of 12 answers differ from the host reference"]),
        finished="2026-01-01T00:02:05Z", samples=36,
        quarantined=[QuarantinedBoard("c", "USB cable loose", "2025-12-31T00:00:00Z", "hil board quarantine", False)])


def summary(slot: str, testset: str, samples: int, exact: int, unmeasured: int | None = 0) -> BoardSetSummary:
    return BoardSetSummary(slot, "qute-digits", testset, "clean", samples, 12, math.nan, math.nan, None, exact, 0,
                           math.nan, math.nan, unmeasured, {"the unit failed": unmeasured} if unmeasured else {})


SUMMARIES = [summary("a", "clean", 12, 12), summary("a", "ood", 12, 10, unmeasured=3),
             summary("b", "clean", 5, 5), summary("b", "ood", 0, 0), summary("c", "clean", 0, 0)]
FAILURES = [BoardFailure("b", FailureStage.STREAM, "b: stopped answering at clean#5"),
            BoardFailure("d", FailureStage.BRING_UP, "d: QEMU did not start")]
RULES = [RuleOutcome("a", "clean", RuleResult("accuracy", RuleStatus.PASS, {}, "accuracy: no change")),
         RuleOutcome("a", "clean", RuleResult("latency", RuleStatus.FAIL, {}, "latency: 5% slower")),
         RuleOutcome("a", "ood", RuleResult("energy", RuleStatus.SKIP, {}, "energy: not measured"))]


@pytest.fixture
def written(tmp_path) -> ET.Element:
    path = tmp_path / junit.JUNIT_XML
    junit.write(path, a_run(), SUMMARIES, FAILURES, RULES, rules_seconds=0.75)
    SCHEMA.validate(path)  # raises, naming the element and the rule, if it is not valid
    return ET.parse(path).getroot().find("testsuite")


def by_name(suite: ET.Element) -> dict[tuple[str, str], ET.Element]:
    return {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}


def test_the_suite_has_its_time_timestamp_hostname_and_counts(written):
    assert written.get("timestamp") == "2026-01-01T00:00:00"  # UTC, without a zone as the Ant schema wants
    assert written.get("time") == "125.000" and written.get("hostname") == "rack-host"
    assert [written.get(k) for k in ("tests", "failures", "errors", "skipped")] == ["14", "2", "5", "3"]


def test_the_properties_name_the_lab_the_checkout_and_every_hash(written):
    found = {p.get("name"): p.get("value") for p in written.find("properties")}
    assert found["lab"] == "nightly" and found["run.id"] == "20260101-000000-abcd"
    assert found["git.revision"] == "f" * 40 and found["git.dirty"] == "false"
    assert found["model.qute-digits.sha256"] == "11" * 32 and found["testset.qute-digits.ood.sha256"] == "33" * 32
    for slot in ("a", "b"):
        assert found[f"board.{slot}.firmware_sha256"] == IMAGE and found[f"board.{slot}.model_sha256"] == MODEL
    assert "board.c.firmware_sha256" not in found  # never brought up: no image of its own to name


def test_each_case_has_its_real_time(written):
    cases = by_name(written)
    # Streamed in two sessions (a resume): the seconds add up; the measurement judges the same stream.
    assert cases[("a.clean", "reconciliation")].get("time") == "12.000"
    assert cases[("a.ood", "measurement")].get("time") == "4.250"
    assert cases[("b", "stream")].get("time") == "2.000"  # failed while streaming: its stream's time
    assert cases[("d", "bring-up")].get("time") == "0.000" and cases[("c", "quarantine")].get("time") == "0.000"
    assert {cases[("a.clean", rule)].get("time") for rule in ("accuracy", "latency")} == {"0.250"}


def test_every_failure_and_error_has_a_type_and_a_message(written):
    typed = {(c.get("classname"), c.get("name")): (c[0].tag, c[0].get("type")) for c in written.iter("testcase")
             if len(c) and c[0].tag in ("failure", "error")}
    assert typed == {("a.ood", "reconciliation"): ("failure", "mismatch"),
                     ("a.ood", "measurement"): ("error", "unmeasured"),
                     ("b.clean", "reconciliation"): ("error", "unanswered"),
                     ("b.ood", "reconciliation"): ("error", "never-answered"),
                     ("a.clean", "latency"): ("failure", "regression"),
                     ("b", "stream"): ("error", "stream"), ("d", "bring-up"): ("error", "bring-up")}
    assert all(e.get("message") for e in written.iter() if e.tag in ("failure", "error", "skipped"))


def test_a_test_set_never_answered_is_an_error_and_nothing_of_it_is_measured(written):
    cases = by_name(written)
    (error,) = cases[("b.ood", "reconciliation")]
    assert error.tag == "error" and error.get("message") == "never answered: none of 12 samples"
    (skipped,) = cases[("b.ood", "measurement")]
    assert skipped.tag == "skipped" and "never answered" in skipped.get("message")
    assert ("c.clean", "reconciliation") not in cases  # quarantined: its one case is the skipped `c.quarantine`


def test_the_verdict_is_the_suite_output(written):
    assert written.find("system-out").text.splitlines() == [
        "fail (exit code 1)", "- a/ood: 2 of 12 answers differ from the host reference"]


def test_a_case_without_its_type_or_time_is_refused_by_the_schema(tmp_path):
    """The schema check can fail: junit.xml as hil wrote it before, no type, time, timestamp or hostname."""
    path = tmp_path / junit.JUNIT_XML
    path.write_text('<testsuites><testsuite name="hil.lab" tests="1" failures="1" errors="0" skipped="0">'
                    '<testcase classname="a.clean" name="reconciliation"><failure message="2 differ">2 differ'
                    '</failure></testcase></testsuite></testsuites>')
    assert not SCHEMA.is_valid(path)
    errors = [str(e.reason) for e in SCHEMA.iter_errors(path)]
    assert any("timestamp" in e for e in errors) and any("type" in e for e in errors), errors


def test_a_run_of_fake_boards_writes_its_streaming_times_and_a_valid_junit_xml(fake_rack, tmp_path):
    lab_path = write_lab(tmp_path, samples=3, request_timeout_s=0.2, retries=1)
    # It answers the health check's INFER, then is gone for good: not one sample of its test sets is answered.
    fake_rack.faults["an500-mnist1d"] = Faults(gone_after=1, stays_gone=True)
    outcome = execute(lab_path, None, NoProgress())
    (path, _report) = write_run_files(outcome)
    SCHEMA.validate(path)
    (session,) = read_run(outcome.run_dir).sessions
    assert set(session.streamed["an386-digits"]) == {"clean", "shift-s2", "ood"}
    assert all(seconds > 0 for seconds in session.streamed["an386-digits"].values())
    cases = by_name(ET.parse(path).getroot().find("testsuite"))
    clean = cases[("an386-digits.clean", "reconciliation")]
    assert not len(clean) and float(clean.get("time")) == pytest.approx(session.streamed["an386-digits"]["clean"],
                                                                        abs=5e-4)
    (never,) = cases[("an500-mnist1d.clean", "reconciliation")]
    assert (never.tag, never.get("type")) == ("error", "never-answered")
