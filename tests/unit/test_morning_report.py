"""The morning report (report.html, and the console in its order) on real runs of fake boards: the verdict
first, then what changed since the baseline (rule by rule, deltas and CIs) or the last night (headline
figures), the boards recovered, quarantined or silent, trends, reliability, the lab's sweep, tables last."""

import json
import re
import time
from html.parser import HTMLParser

import numpy as np
from rich.console import Console

from hil.lab.load import load_lab
from hil.model.card import load_model
from hil.model.decisions import Q15_ONE
from hil.report import console as run_console
from hil.report.html import RELIABILITY_BINS, SECTIONS, reliability_curves, write_report
from hil.run.sweep import parse_thresholds, run_sweep
from hil.stats.metrics import ece
from hil.testing.fake_board import Faults, Timing
from tests.support.labs import INFRASTRUCTURE, PASS, REGRESSION, write_lab
from tests.support.tables import console_table, html_table
from tests.unit.test_pipeline import SAMPLES, Quiet, run

CHANGES, BOARDS_TABLE = "Changes against", "Boards recovered, quarantined, failed or silent"


class Sections(HTMLParser):
    """The page's <section> ids in document order, and the <img> of each <figure> by its id."""

    def __init__(self, text: str):
        super().__init__()
        self.order, self.images, self._figure = [], {}, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.order.append(attrs["id"])
        elif tag == "figure":
            self._figure = attrs["id"]
        elif tag == "img" and self._figure:
            self.images[self._figure] = attrs["src"]

    def handle_endtag(self, tag):
        self._figure = None if tag == "figure" else self._figure


def next_second() -> None:
    """Runs are stamped to the second: the next one starts in a later one, so the catalog orders them."""
    now = int(time.time())
    time.sleep(now + 1.05 - time.time())


def console_text(outcome) -> str:
    console = Console(record=True, width=250, color_system=None, file=open("/dev/null", "w"))
    run_console.show(console, outcome, None)
    return console.export_text()


def test_the_report_opens_with_what_changed_then_trends_reliability_sweep_and_tables_last(fake_rack, tmp_path):
    lab = write_lab(tmp_path, samples=SAMPLES)
    lab.write_text(lab.read_text() + "regression:\n  bootstrap_resamples: 200\n")
    first = run(lab)
    assert first.verdict.exit_code == PASS, first.verdict.reasons
    page = write_report(first.run_dir).read_text(encoding="utf-8")
    assert "Nothing to compare with: no baseline, and no earlier finished run" in page
    assert "No earlier finished run of lab" in page and "No sweep of lab" in page

    next_second()
    second = run(lab)  # no baseline: against the last finished run, figure by figure
    page = write_report(second.run_dir).read_text(encoding="utf-8")
    assert f"compared with the last finished run of lab {first.run.lab.name}, {first.run_dir.name}" in page
    rows = html_table(page, CHANGES)
    assert rows[0] == ["board", "test set", "figure", "then", "now", "change"]
    figures = {(row[0], row[1], row[2]): row[3:] for row in rows[1:]}
    clean = next(s for s in first.summaries if s.slot == "an386-digits" and s.testset == "clean")
    assert figures[("an386-digits", "clean", "accuracy %")] == [f"{100 * clean.accuracy:.1f}"] * 2 + ["+0.0 pts"]
    assert figures[("an386-digits", "exit path (all sets)", "latency p50 ms")][2] == "+0.00%"  # the same fakes
    assert "no CI" in page

    sweep = run_sweep(load_lab(lab), parse_thresholds("0.5:0.9:0.4"), Quiet(), None)
    next_second()
    normal = Timing.of(load_model("qute-digits"))
    fake_rack.timing["an386-digits"] = Timing(normal.stage1_cycles * 3 // 2, normal.stage2_cycles * 3 // 2)
    third = run(lab, baseline=str(first.run_dir))
    assert third.verdict.exit_code == REGRESSION
    page = write_report(third.run_dir).read_text(encoding="utf-8")
    sections = Sections(page)
    assert sections.order == [section for section, _heading in SECTIONS]
    assert sections.order[:6] == ["verdict", "changes", "trends", "reliability", "sweep", "plots"]
    for plot in ("plot-trends", "plot-reliability", "plot-sweep"):
        assert sections.images[plot].startswith("data:image/png;base64,"), plot
    assert f"The lab&#x27;s newest sweep, {sweep.sweep_dir.name}" in page
    assert f"The last 3 finished runs of lab {third.run.lab.name}" in page

    assert f"Compared with the baseline {first.run_dir.name}" in page
    failed = sum(o.result.status == "fail" for o in third.rules)
    assert failed == 6  # latency and energy of an386-digits, on each of its three sets
    rows = html_table(page, f"Changes against baseline {first.run_dir.name}: of the rules {failed} failed")
    assert rows[0] == ["board", "test set", "accuracy", "latency", "energy", "ece", "nll", "brier", "auroc"]
    by_set = {(row[0], row[1]): dict(zip(rows[0][2:], row[2:])) for row in rows[1:]}
    latency = next(o.result for o in third.rules if (o.slot, o.testset, o.result.rule) == (
        "an386-digits", "clean", "latency"))
    f = latency.figures
    assert latency.status == "fail" and 0.4 < f["delta"] < 0.6  # 1.5 times the cycles
    slower = by_set[("an386-digits", "clean")]["latency"]
    assert slower == f"{f['delta']:+.2%} [{f['ci_low']:+.1%}, {f['ci_high']:+.1%}]"
    assert f'<span class="bad">{slower}' in page  # a failure in red
    assert by_set[("an500-mnist1d", "clean")]["latency"].startswith("+0.00% [")  # the other board unchanged
    assert by_set[("an386-digits", "ood")]["accuracy"] == "–"  # skipped: no labels

    text = console_text(third)
    assert text.index("FAIL (exit code 1)") < text.index("Compared with the baseline") < text.index(
        "Per board and test set"), "the console does not follow the page's order"
    assert console_table(text, CHANGES) == rows
    assert text.index("Changes against") < text.index("Regression rules against baseline") < text.index(
        "Per board and test set")


def test_a_board_that_died_reads_quarantined_and_its_unanswered_sets_never_answered(fake_rack, tmp_path):
    fake_rack.faults["an386-digits"] = Faults(gone_after=1 + 5, stays_gone=True)  # health check, then 5 INFERs
    outcome = run(write_lab(tmp_path, samples=SAMPLES))
    assert outcome.verdict.exit_code == INFRASTRUCTURE
    page = write_report(outcome.run_dir).read_text(encoding="utf-8")
    text = console_text(outcome)
    for rows in (html_table(page, BOARDS_TABLE), console_table(text, BOARDS_TABLE)):
        events = {(row[0], row[1]) for row in rows[1:]}
        assert {("an386-digits", "quarantined mid-run"), ("an386-digits", "failed (stream)"),
                ("an386-digits", "never answered")} <= events, rows
        silent = [row[2] for row in rows[1:] if row[1] == "never answered"]
        assert silent == [f"{name}: 0 of {SAMPLES} samples" for name in ("shift-s2", "ood")], silent
        assert not any(row[0] == "an500-mnist1d" for row in rows[1:])  # the healthy board is not listed
    summary = html_table(page, "Per board and test set")
    assert [row[6] for row in summary[1:] if row[0] == "an386-digits"][1:] == ["never answered"] * 2
    assert text.index(BOARDS_TABLE) < text.index("Per board and test set")


def test_a_reliability_curve_bins_the_devices_confidence_as_the_ece_does():
    """Confidence 0.5 and 0.875, in bins of their own: four answers right of six; the ECE as metrics.json's over
    the same answers. The OOD answer (label -1) has no class to be right about."""
    answers = [{"model": "m", "testset": "clean", "confidence_q15": q15, "predicted": 0, "label": label}
               for q15, label in ((Q15_ONE // 2, 0), (Q15_ONE // 2, 1), *((7 * Q15_ONE // 8, 0),) * 3,
                                  (7 * Q15_ONE // 8, 1))]
    answers.append({"model": "m", "testset": "ood", "confidence_q15": Q15_ONE, "predicted": 3, "label": -1})
    (curve,) = reliability_curves(answers)["m"]
    assert curve.testset == "clean" and curve.counts.tolist() == [2, 4]
    assert curve.confidence.tolist() == [0.5, 0.875] and curve.accuracy.tolist() == [0.5, 0.75]
    confidence = np.array([a["confidence_q15"] / Q15_ONE for a in answers[:-1]])
    probs = np.stack([confidence, 1 - confidence], axis=1)  # class 0 predicted, at the device's confidence
    labels = np.array([a["label"] for a in answers[:-1]])
    assert curve.ece == ece(labels, probs, bins=RELIABILITY_BINS) == (0 + abs(3 - 3.5)) / 6


def test_trends_leave_out_a_run_whose_metrics_are_broken_and_name_it(fake_rack, tmp_path):
    lab = write_lab(tmp_path, samples=SAMPLES)
    broken = run(lab)
    (broken.run_dir / "metrics.json").write_text("{")
    next_second()
    outcome = run(lab)
    page = write_report(outcome.run_dir).read_text(encoding="utf-8")
    assert re.search(rf"Left out: {broken.run_dir.name}: [^<]*metrics.json:1: not valid JSON", page)
    assert "Nothing to compare with" in page  # the broken run is not the last finished one with figures
    assert json.loads((outcome.run_dir / "run.json").read_text())["verdict"]["status"] == "pass"
