"""`hil run` on the emulated rack prints the same rows its report.html shows."""

import json
import shutil
from pathlib import Path

import pytest

from tests.support.labs import hil, write_lab
from tests.support.tables import SECTIONS, console_table, html_table


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
def test_hil_run_prints_the_rows_its_report_html_shows(tmp_path):
    result = hil("run", write_lab(tmp_path, samples=6), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(json.loads(result.stdout)["run_dir"])
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    for title in SECTIONS[:2]:
        rows = console_table(result.stderr, title)  # with --json the tables go to stderr
        assert len(rows) > 2 and rows == html_table(page, title), title
