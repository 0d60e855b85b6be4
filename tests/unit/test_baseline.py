"""Baselines that cannot lie, in-process on FakeBoards: `hil baseline set` takes only a finished run that
passed with every sample (unless --force, which the catalog records), every rule is reported for every
board and test set with its status, and a comparison that cannot be made fails with its reason."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from hil.cli import main
from hil.run.runner import execute
from hil.store import results
from hil.testing.fake_board import Faults
from tests.support.labs import BAD_INPUT, BOARDS, PASS, REGRESSION, write_lab

SAMPLES = 4  # per test set; three sets per board (clean, shift-s2, ood)
COMPARED_RULES = ("accuracy", "latency", "energy", "ece", "nll", "brier", "auroc")  # against the baseline
EVERY_RULE = {"numerics", *COMPARED_RULES}


class Quiet:
    def start(self, totals):
        pass

    def advance(self, slot, samples):
        pass


def run(lab: Path, baseline: str | None = None):
    return execute(lab, None, Quiet(), baseline)


def rules_by_board_set(outcome) -> dict[tuple[str, str], dict[str, object]]:
    found: dict[tuple[str, str], dict[str, object]] = {}
    for o in outcome.rules:
        found.setdefault((o.slot, o.testset), {})[o.result.rule] = o.result
    return found


def test_an_error_run_without_samples_is_no_baseline_unless_forced_and_then_fails_every_comparison(
        fake_rack, tmp_path, capsys):
    """The issue's silent pass: a baseline with an error verdict and 0 samples passed the next run."""
    lab = write_lab(tmp_path, samples=SAMPLES)
    for slot in BOARDS:  # both boards report other firmware: set aside before a sample is asked
        fake_rack.faults[slot] = Faults(firmware_sha256=b"\x99" * 32)
    broken = run(lab)
    assert broken.verdict.status == "error" and broken.run.samples == 0

    assert main(["baseline", "set", str(broken.run_dir)]) == BAD_INPUT
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "cannot be a baseline" in error
    assert "verdict is error" in error and f"answered 0 of its {2 * 3 * SAMPLES} expected samples" in error
    assert "--force" in error
    assert results.baselines(tmp_path / "results") == {}

    assert main(["baseline", "set", str(broken.run_dir), "--force"]) == PASS
    assert "forced" in capsys.readouterr().out
    entry = results.baselines(tmp_path / "results")[f"test-{tmp_path.name}"]
    assert entry.id == broken.run_dir.name and "verdict is error" in entry.forced and "@" in entry.set_by

    fake_rack.faults.clear()
    judged = run(lab, baseline="baseline")
    assert judged.verdict.exit_code == REGRESSION, judged.verdict.reasons
    by_board_set = rules_by_board_set(judged)
    assert len(by_board_set) == 2 * 3
    for key, rules in by_board_set.items():
        assert set(rules) == EVERY_RULE, key
        for name in COMPARED_RULES:
            assert rules[name].status == "fail" and "no sample answered by both runs" in rules[name].message
    assert any("cannot compare" in reason for reason in judged.verdict.reasons)


def test_every_rule_is_listed_for_every_board_and_test_set_and_a_skip_says_why(fake_rack, tmp_path, capsys):
    lab = write_lab(tmp_path, samples=SAMPLES)
    baseline = run(lab)
    assert baseline.verdict.exit_code == PASS
    assert main(["baseline", "set", str(baseline.run_dir)]) == PASS
    assert main(["run", str(lab), "--baseline", "baseline", "--json"]) == PASS
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.is_dir() and p != baseline.run_dir]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    found: dict[tuple[str, str], dict[str, dict]] = {}
    for outcome in metrics["rules"]:
        found.setdefault((outcome["slot"], outcome["testset"]), {})[outcome["result"]["rule"]] = outcome["result"]
    assert len(found) == 2 * 3 and all(set(rules) == EVERY_RULE for rules in found.values())
    for (slot, testset), rules in found.items():
        if testset == "ood":  # no labels: accuracy and the uncertainty metrics are skipped, saying so
            assert all(rules[r]["status"] == "skip" and "OOD" in rules[r]["message"]
                       for r in ("accuracy", "ece", "nll", "brier", "auroc")), rules
        else:
            assert rules["accuracy"]["status"] == "pass" and "McNemar" in rules["accuracy"]["message"]
    # junit.xml has a case per rule (numerics is the reconciliation case), a skip with its reason.
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    for slot, testset in found:
        for rule in COMPARED_RULES:
            assert (f"{slot}.{testset}", rule) in cases, (slot, testset, rule)
    skipped = cases[("an386-digits.ood", "accuracy")].find("skipped")
    assert skipped is not None and "OOD" in skipped.get("message")


def without_ood(lab: Path) -> Path:
    """The same lab (name, results folder, boards) without its OOD test sets."""
    data = yaml.safe_load(lab.read_text())
    for model in data["models"].values():
        model["testsets"] = [path for path in model["testsets"] if not path.endswith("ood.npz")]
    smaller = lab.with_name("no-ood.yaml")
    smaller.write_text(yaml.safe_dump(data, sort_keys=False))
    return smaller


def test_a_test_set_the_baseline_lacks_fails_its_rules(fake_rack, tmp_path):
    lab = write_lab(tmp_path, samples=SAMPLES)
    baseline = run(without_ood(lab))
    assert baseline.verdict.exit_code == PASS
    judged = run(lab, baseline=str(baseline.run_dir))
    assert judged.verdict.exit_code == REGRESSION
    for (slot, testset), rules in rules_by_board_set(judged).items():
        statuses = {rules[name].status for name in COMPARED_RULES}
        if testset == "ood":
            assert statuses == {"fail"} and "the baseline has no test set 'ood'" in rules["latency"].message
        else:
            assert "fail" not in statuses, (slot, testset)


def test_a_baseline_made_on_another_model_fails_that_models_rules(fake_rack, tmp_path):
    lab = write_lab(tmp_path, samples=SAMPLES)
    baseline = run(lab)
    run_json = baseline.run_dir / "run.json"
    data = json.loads(run_json.read_text())
    data["models"]["qute-digits"]["sha256"] = "0" * 64  # as if the baseline ran an earlier model
    run_json.write_text(json.dumps(data))
    judged = run(lab, baseline=str(baseline.run_dir))
    assert judged.verdict.exit_code == REGRESSION
    for (slot, _testset), rules in rules_by_board_set(judged).items():
        statuses = {rules[name].status for name in COMPARED_RULES}
        if slot == "an386-digits":  # the qute-digits board
            assert statuses == {"fail"} and "made on model qute-digits sha256 000000000000" in rules["energy"].message
        else:
            assert "fail" not in statuses


def test_baseline_show_and_history_name_the_baseline(fake_rack, tmp_path, capsys):
    lab = write_lab(tmp_path, samples=SAMPLES)
    first, second = run(lab), run(lab)
    assert main(["baseline", "show", str(lab)]) == BAD_INPUT
    assert "has no baseline" in capsys.readouterr().err
    assert main(["baseline", "set", str(first.run_dir)]) == PASS
    capsys.readouterr()
    assert main(["baseline", "show", str(lab)]) == PASS
    shown = capsys.readouterr().out
    assert first.run_dir.name in shown and "pass" in shown and f"{2 * 3 * SAMPLES} of {2 * 3 * SAMPLES}" in shown
    assert first.run.git.revision[:10] in shown and "forced" in shown and "@" in shown
    for board in first.run.boards.values():
        assert board.image_sha256 in shown and board.model_sha256 in shown
    assert main(["history", "--results", str(tmp_path / "results")]) == PASS
    listing = capsys.readouterr().out.splitlines()
    marks = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in listing if line.count("│") > 2}
    assert (marks[first.run_dir.name], marks[second.run_dir.name]) == ("baseline", "")
