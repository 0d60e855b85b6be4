"""run.json, metrics.json and sweep.json through their dataclasses (hil/store/files.py): written and
read back unchanged, field names on disk as earlier runs have them, older files without the later
fields still load, and a malformed file is one line naming the file, the line and the field."""

import json
import math
from pathlib import Path

import pytest

from hil.errors import EXIT_BAD_INPUT, BadInput
from hil.model.reference import Reference
from hil.run.assess import BoardSetSummary, PathPerformance, SweepPoint
from hil.run.baseline import RuleOutcome
from hil.run.rack import BoardFailure, FailureStage
from hil.run.records import MeasurementMethod
from hil.run.verdict import Verdict, VerdictStatus
from hil.stats.metrics import UncertaintyReport
from hil.stats.regression import RuleResult, RuleStatus
from hil.store import files
from hil.store.files import (BaselineRef, BoardProvenance, GitRevision, LabRef, MetricsFile, ModelRef,
                             QuarantinedBoard, ReportedIdentity, RunFile, RunStatus, Session, SweepFile,
                             SweepProvenance, TestSetRef, Threshold)

IDENTITY = {"slot": "an386-digits", "kind": "mps2-an386", "model": "qute-digits", "emulated": True,
            "qemu_machine": "mps2-an386", "icount_shift": 4, "qemu_pid": 4242}
FIRMWARE = {"board": "mps2-an386", "model": "qute-digits", "image_sha256": "ab" * 32, "model_sha256": "cd" * 32}


def a_run(**changes) -> RunFile:
    run = RunFile(
        id="20260101-000000-abcd", status=RunStatus.FINISHED, started="2026-01-01T00:00:00Z",
        lab=LabRef("lab", "/labs/labs.yaml", "00" * 32), git=GitRevision("f" * 40, False),
        software={"hil": "0.1.0", "pyocd": None}, host="vm", threshold=Threshold(0.9, 29491),
        models={"qute-digits": ModelRef("fixtures/models/qute-digits", "11" * 32)},
        testsets={"qute-digits": {"clean": TestSetRef("clean.npz", "22" * 32, 12),
                                  "ood": TestSetRef("ood.npz", "33" * 32, 12)}},
        boards={"an386-digits": BoardProvenance.of(IDENTITY, FIRMWARE, "/fw/manifest.json",
                                                   ReportedIdentity("ab" * 32, "cd" * 32, "mps2-an386", "qute 1",
                                                                    25_000_000))},
        sessions=[Session("2026-01-01T00:00:01Z", ["an386-digits"], "2026-01-01T00:00:09Z",
                          {"an386-digits": {"requests": 30, "retries": 1}})],
        failures=[BoardFailure("an500-mnist1d", FailureStage.BRING_UP, "an500-mnist1d: no QEMU")],
        verdict=Verdict(VerdictStatus.ERROR, 2, ["an500-mnist1d: bring-up failed: no QEMU"]),
        baseline=BaselineRef("20251231-000000-beef", "/results/20251231-000000-beef", GitRevision("e" * 40, True)),
        finished="2026-01-01T00:00:10Z", samples=24,
        quarantined=[QuarantinedBoard("an500-mnist1d", "failed its health check 3 runs in a row, last: no QEMU",
                                      "2025-12-31T00:00:00Z", "20251231-000000-beef", brought_up=False)])
    for key, value in changes.items():
        setattr(run, key, value)
    return run


def some_metrics() -> MetricsFile:
    uncertainty = UncertaintyReport(0.9, 0.89, 0.3, 0.01, 0.02, 0.95, 0.004, 12)
    summaries = [BoardSetSummary("an386-digits", "qute-digits", "clean", "clean", 12, 12, 0.9, 0.75, uncertainty,
                                 12, 0, 675_000.5, 1_699_000.25, 0, {}),
                 BoardSetSummary("an386-digits", "qute-digits", "ood", "ood", 10, 12, math.nan, 0.5, None, 9, 3,
                                 675_100.0, math.nan, 2, {"the unit failed": 2})]
    performance = [PathPerformance("an386-digits", "clean", True, 9, 27.0, 27.1, 27.2, 597.5,
                                   MeasurementMethod.BURST, True, 0),
                   PathPerformance("an386-digits", "clean", False, 3, 68.0, 68.1, 68.2, math.nan,
                                   MeasurementMethod.WINDOW, False, 0)]
    rules = [RuleOutcome("an386-digits", "clean", RuleResult("latency", RuleStatus.FAIL, {"ci_low": 0.05, "p": None},
                                                             "latency: slower"))]
    return MetricsFile(summaries, performance, rules)


def same(a, b) -> bool:
    """Equal, NaN equal to NaN, and dict keys in the same order (the order on disk)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b or (isinstance(a, str) and isinstance(b, str) and str(a) == str(b))


def test_run_json_is_written_and_read_back_unchanged(tmp_path):
    run = a_run()
    run.write(tmp_path)
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert list(on_disk) == ["id", "status", "started", "lab", "git", "software", "host", "threshold", "reference",
                             "models", "testsets", "boards", "sessions", "failures", "verdict", "baseline", "finished",
                             "samples", "quarantined"]
    # The board's identity is flat, as Board.identity() gives it, then its image and HELLO.
    assert list(on_disk["boards"]["an386-digits"]) == [*IDENTITY, "firmware", "manifest", "reported"]
    assert on_disk["failures"] == [{"slot": "an500-mnist1d", "stage": "bring-up", "reason": "an500-mnist1d: no QEMU"}]
    assert on_disk["verdict"]["status"] == "error" and on_disk["status"] == "finished"
    again = files.read_run(tmp_path)
    assert again == run
    assert isinstance(again.status, RunStatus) and isinstance(again.failures[0].stage, FailureStage)
    assert isinstance(again.verdict.status, VerdictStatus)


def test_a_run_that_is_still_going_leaves_out_what_it_does_not_have_yet(tmp_path):
    run = a_run(status=RunStatus.RUNNING, boards={}, sessions=[], failures=[], baseline=None, finished=None,
                samples=None, verdict=Verdict(VerdictStatus.RUNNING, None, []))
    run.write(tmp_path)
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert "finished" not in on_disk and "samples" not in on_disk and "baseline" not in on_disk
    assert on_disk["verdict"] == {"status": "running", "exit_code": None, "reasons": []}
    assert files.read_run(tmp_path) == run


def test_an_older_run_json_without_the_later_fields_still_loads(tmp_path):
    """No host, software or threshold, no link counts in its session, no emulated flag on its board."""
    data = a_run().to_json()
    for key in ("software", "host", "threshold", "baseline"):
        del data[key]
    del data["sessions"][0]["link"]
    del data["boards"]["an386-digits"]["emulated"]
    (tmp_path / "run.json").write_text(json.dumps(data, indent=1))
    run = files.read_run(tmp_path)
    assert run.threshold is None and run.host is None and run.baseline is None
    assert run.sessions[0].link is None and run.boards["an386-digits"].emulated is False
    assert run.lab.name == "lab" and run.verdict.exit_code == 2


def test_metrics_json_is_written_and_read_back_unchanged_with_its_nan(tmp_path):
    metrics = some_metrics()
    metrics.write(tmp_path)
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" in text  # "no figure", as earlier runs wrote it
    on_disk = json.loads(text)
    assert on_disk["performance"][0]["energy_method"] == "burst"
    assert on_disk["rules"][0]["result"]["status"] == "fail"
    again = files.read_metrics(tmp_path)
    assert same(again.to_json(), metrics.to_json())
    assert again.summaries[0] == metrics.summaries[0] and again.performance[0] == metrics.performance[0]
    assert again.performance[1].energy_method is MeasurementMethod.WINDOW
    assert files.read_metrics(tmp_path / "elsewhere") is None  # a run that ended before its metrics


def test_sweep_json_is_written_and_read_back(tmp_path):
    points = [SweepPoint("an386-digits", "0.9", 29491, 0.9, 0.8, 0.02, 0.3, 0.01, 0.95, 27.5, 610.0, True, True),
              SweepPoint("an386-digits", "1.0", 32768, 0.92, 0.0, 0.02, 0.3, 0.01, 0.95, 68.0, 1500.0, True, False)]
    sweep = SweepFile(SweepProvenance.of(a_run()), ["0.9", "1.0"], 1.0, points, [],
                      Verdict(VerdictStatus.PASS, 0, []))
    sweep.write(tmp_path)
    on_disk = json.loads((tmp_path / "sweep.json").read_text())
    assert list(on_disk) == ["provenance", "thresholds", "max_accuracy_drop", "points", "failures", "verdict",
                             "recoveries", "quarantined"]
    assert list(on_disk["provenance"]) == ["id", "started", "lab", "git", "software", "host", "models", "testsets",
                                           "boards"]
    assert files.read_sweep(tmp_path) == sweep


def rewrite(path: Path, change) -> str:
    data = json.loads(path.read_text())
    change(data)
    text = json.dumps(data, indent=1)
    path.write_text(text)
    return text


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


@pytest.mark.parametrize("name, change, key, message", [
    ("a failure's stage", lambda run: run["failures"][0].update(stage="lunch"), '"stage": "lunch"',
     "failures.0.stage: must be one of bring-up, identity, health, monitor, stream, clock, "
     "rerun, conformance, not \"lunch\""),
    ("the status", lambda run: run.update(status="done"), '"status": "done"',
     "status: must be one of running, finished, interrupted"),
    ("the clock a string", lambda run: run["boards"]["an386-digits"]["reported"].update(clock_hz="25 MHz"),
     '"clock_hz"', "boards.an386-digits.reported.clock_hz: must be a whole number"),
    ("a session without its start", lambda run: run["sessions"][0].pop("started"), '"sessions"',
     "sessions.0: started is missing"),
])
def test_a_malformed_run_json_names_its_file_line_and_field(tmp_path, name, change, key, message):
    a_run().write(tmp_path)
    path = tmp_path / "run.json"
    text = rewrite(path, change)
    with pytest.raises(BadInput) as raised:
        files.read_run(tmp_path)
    assert raised.value.exit_code == EXIT_BAD_INPUT
    assert str(raised.value).startswith(f"{path}:{line_of(text, key)}: {message}"), str(raised.value)
    assert "\n" not in str(raised.value) and str(raised.value).endswith("restore it from a copy or start a new run")


def test_a_malformed_metrics_json_names_its_file_line_and_field(tmp_path):
    some_metrics().write(tmp_path)
    path = tmp_path / "metrics.json"
    text = rewrite(path, lambda m: m["performance"][1].update(energy_method="guess"))
    with pytest.raises(BadInput, match=rf"^{path}:{line_of(text, 'guess')}: performance.1.energy_method: must be "
                                       "one of window, burst, unmeasured"):
        files.read_metrics(tmp_path)
    rewrite(path, lambda m: m.pop("summaries"))
    with pytest.raises(BadInput, match=rf"^{path}:1: metrics: summaries is missing"):
        files.read_metrics(tmp_path)


def test_a_folder_without_the_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="not a run directory"):
        files.read_run(tmp_path)
    with pytest.raises(BadInput, match="not a sweep"):
        files.read_sweep(tmp_path)


def test_run_json_names_its_reference_and_a_run_from_before_the_choice_reads_as_litert(tmp_path):
    a_run(reference=Reference.TFLM).write(tmp_path)
    assert files.read_run(tmp_path).reference is Reference.TFLM
    data = json.loads((tmp_path / "run.json").read_text())
    del data["reference"]
    (tmp_path / "run.json").write_text(json.dumps(data))
    assert files.read_run(tmp_path).reference is Reference.LITERT
    data["reference"] = "tensorflow"
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(BadInput, match="reference"):
        files.read_run(tmp_path)
