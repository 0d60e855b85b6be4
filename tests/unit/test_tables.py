"""One table model (hil/report/table.py): the console and report.html show the same rows of a run,
because both render the one definition (hil/report/run_tables.py); Markdown renders it too."""

import math
from pathlib import Path

from rich.console import Console

from hil.report import console as run_console
from hil.report.html import write_report
from hil.report.table import Column, Table, bad, to_html, to_markdown, to_rich, warn
from hil.run.assess import BoardSetSummary, PathPerformance
from hil.run.baseline import RuleOutcome
from hil.run.records import MeasurementMethod
from hil.run.runner import RunOutcome
from hil.run.verdict import Verdict, VerdictStatus
from hil.stats.metrics import UncertaintyReport
from hil.stats.regression import RuleResult, RuleStatus
from hil.store.files import (BaselineRef, GitRevision, LabRef, MetricsFile, RunFile, RunStatus, TestSetRef,
                             Threshold)

from tests.support.tables import SECTIONS, console_table, html_table

CHANGES = "Changes against baseline"


def a_run(run_dir: Path) -> RunFile:
    return RunFile(id=run_dir.name, status=RunStatus.FINISHED, started="2026-01-01T00:00:00Z",
                   lab=LabRef("lab", "/labs.yaml", "00" * 32), git=GitRevision("f" * 40, False), software={},
                   host="vm", threshold=Threshold(0.9, 29491), models={},
                   testsets={"qute-digits": {"clean": TestSetRef("clean.npz", "22" * 32, 12)}},
                   verdict=Verdict(VerdictStatus.FAIL, 1, ["a regression"]),
                   baseline=BaselineRef("before", "/results/before", GitRevision("e" * 40, False)),
                   finished="2026-01-01T00:01:00Z", samples=46)


def some_metrics() -> MetricsFile:
    """Two boards, every kind of cell: a dash for NaN, incomplete (warn), differing (bad), a section per board."""
    u = UncertaintyReport(0.9, 0.89, 0.3, 0.01, 0.0234, 0.95, 0.004, 12)
    summaries = [
        BoardSetSummary("an386-digits", "qute-digits", "clean", "clean", 12, 12, 0.9, 0.75, u, 12, 0, 675_000.5,
                        1_699_000.25, 0, {}),
        BoardSetSummary("an386-digits", "qute-digits", "ood", "ood", 10, 12, math.nan, 0.5, None, 8, 3, 675_100.0,
                        math.nan, 2, {"the unit failed": 2}),
        BoardSetSummary("an500-mnist1d", "qute-mnist1d", "clean", "clean", 12, 12, 0.8333, 0.5, u, 12, 0, 210_000.0,
                        520_000.0, None)]
    performance = [
        PathPerformance("an386-digits", "clean", True, 9, 27.02552, 27.1, 27.2, 597.53, MeasurementMethod.BURST, True,
                        0),
        PathPerformance("an386-digits", "clean", False, 3, 68.0, 68.1, 68.2, math.nan, MeasurementMethod.WINDOW,
                        False, 2),
        PathPerformance("an500-mnist1d", "clean", True, 6, 2.11, 2.113, 2.115, 1486.8, MeasurementMethod.BURST, True,
                        0)]
    rules = [
        RuleOutcome("an386-digits", "clean", RuleResult("accuracy", RuleStatus.PASS, {}, "accuracy: no change")),
        RuleOutcome("an386-digits", "clean", RuleResult("latency", RuleStatus.FAIL, {}, "latency: 5% slower")),
        RuleOutcome("an500-mnist1d", "clean", RuleResult("energy", RuleStatus.SKIP, {}, "energy: not measured"))]
    return MetricsFile(summaries, performance, rules)


def shown(outcome: RunOutcome) -> str:
    console = Console(record=True, width=250, color_system=None, file=open("/dev/null", "w"))
    run_console.show(console, outcome, None)
    return console.export_text()


def test_the_console_and_the_html_report_show_the_same_rows_of_a_run(tmp_path):
    run_dir = tmp_path / "20260101-000000-abcd"
    run_dir.mkdir()
    run, metrics = a_run(run_dir), some_metrics()
    run.write(run_dir)
    metrics.write(run_dir)  # the page reads the files back; the console shows what the run has in memory
    outcome = RunOutcome(run_dir, run, metrics.summaries, metrics.performance, [], [], [], metrics.rules,
                         run.verdict, {})
    page, text = write_report(run_dir).read_text(encoding="utf-8"), shown(outcome)
    for title in SECTIONS[:2]:
        assert console_table(text, title) == html_table(page, title), title
    summary = html_table(page, SECTIONS[0])
    assert summary[2] == ["an386-digits", "ood", "10/12", "–", "50.0", "–", "2 differ", "675,100", "–"]
    assert summary[1][5] == "0.023" and summary[1][7:] == ["675,000", "1,699,000"]
    # The page's tables end with every rule, the console lists those that fail or were skipped: the same rows.
    rules_page, rules_console = html_table(page, SECTIONS[2]), console_table(text, SECTIONS[2])
    assert rules_page[1:] == [["an386-digits", "clean", "latency", "fail", "5% slower"],
                              ["an500-mnist1d", "clean", "energy", "skip", "not measured"],
                              ["an386-digits", "clean", "accuracy", "pass", "no change"]]
    assert rules_console == rules_page[:3]
    # What changed comes first on both, the same rows: a board and test set a row, a rule a column.
    assert console_table(text, CHANGES) == html_table(page, CHANGES)
    assert html_table(page, CHANGES)[0][:5] == ["board", "test set", "accuracy", "latency", "energy"]
    assert text.index("FAIL (exit code 1)") < text.index(CHANGES) < text.index(SECTIONS[0]), "not the page's order"


def test_a_table_renders_alike_to_rich_markdown_and_html():
    table = Table.of("Boards <b>", [Column("board"), "count", Column("state")],
                     [["a", "1", bad("broken")], ["b", "20", warn("3/4")], ["c", "+300", "ok"]],
                     caption="a caption", sections=frozenset({2}))
    assert [c.numeric for c in table.columns] == [False, True, False]  # by content, as docs/ tables were
    console = Console(record=True, width=80, color_system="truecolor", file=open("/dev/null", "w"))
    console.print(to_rich(table))
    text = console.export_text()
    assert console_table(text, "Boards <b>") == [["board", "count", "state"], ["a", "1", "broken"],
                                                  ["b", "20", "3/4"], ["c", "+300", "ok"]]
    assert "├" in text and "a caption" in text  # a section rule before row c
    markdown = to_markdown(table)
    assert markdown.splitlines()[:4] == ["**Boards <b>**", "", "| board | count | state |", "|---|---|---|"]
    assert "| b | 20 | 3/4 |" in markdown
    page = to_html(table)
    assert page.startswith("<h2>Boards &lt;b&gt;</h2>") and '<span class="bad">broken</span>' in page
    assert '<td class=n>20</td>' in page and '<tr class="section"><td>c</td>' in page
    assert html_table(page, "Boards <b>") == console_table(text, "Boards <b>")


def test_a_test_set_never_answered_reads_so_on_the_console_and_the_page_never_exact(tmp_path):
    run_dir = tmp_path / "20260101-000000-abcd"
    run_dir.mkdir()
    run, metrics = a_run(run_dir), some_metrics()
    never = BoardSetSummary("an500-mnist1d", "qute-mnist1d", "ood", "ood", 0, 360, math.nan, math.nan, None, 0, 0,
                            math.nan, math.nan, 0, {})
    metrics = MetricsFile(metrics.summaries + [never], metrics.performance, metrics.rules)
    run.write(run_dir)
    metrics.write(run_dir)
    outcome = RunOutcome(run_dir, run, metrics.summaries, metrics.performance, [], [], [], metrics.rules,
                         run.verdict, {})
    page, text = write_report(run_dir).read_text(encoding="utf-8"), shown(outcome)
    for rows in (html_table(page, SECTIONS[0]), console_table(text, SECTIONS[0])):
        assert rows[-1][:3] == ["an500-mnist1d", "ood", "no answers (of 360)"] and rows[-1][6] == "never answered"
        assert "exact" in rows[1]  # a board × test set that answered every sample exactly still says so
