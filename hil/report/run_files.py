"""The files a judged run leaves for people and CI beside its results: junit.xml and report.html.

The command line writes them once `hil run`'s pipeline has returned its outcome (the pipeline never
imports presentation), inside the run's recorded end: a crash while writing them ends the run with
an error in run.json and traceback.txt, as any other crash does.
"""

from __future__ import annotations

from pathlib import Path

from hil.report import html as htmlreport
from hil.report import junit
from hil.run.runner import RunOutcome


def write_run_files(outcome: RunOutcome) -> list[Path]:
    """junit.xml from the outcome, then report.html from the run's files (run.json, metrics.json, ...)."""
    junit_path = outcome.run_dir / junit.JUNIT_XML
    junit.write(junit_path, outcome.run, outcome.summaries, outcome.failures, outcome.rules, outcome.rules_seconds)
    return [junit_path, htmlreport.write_report(outcome.run_dir)]
