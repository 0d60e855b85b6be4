"""`hil history`: past runs from the catalog, and one metric's trend over them."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.table import Table

from hil.store import results
from hil.errors import BadInput


def runs_table(results_dir: Path) -> Table:
    runs = results.list_runs(results_dir)
    if not runs:
        raise BadInput(f"{results_dir}: no runs in its catalog; run `hil run labs.yaml` first")
    table = Table(title=f"Runs in {results_dir}", title_justify="left")
    for column in ("run", "lab", "started", "verdict", "exit", "boards", "samples", "git"):
        table.add_column(column)
    for run in runs:
        table.add_row(run["id"], run["lab"], run["started"], run["status"], str(run["exit_code"]), str(run["boards"]),
                      str(run["samples"]), (run["git_revision"] or "")[:10])
    return table


def metric_trend(results_dir: Path, metric: str, board: str | None, testset: str | None) -> Table:
    """A per board and test set figure of metrics.json (e.g. accuracy), run after run."""
    if not board or not testset:
        raise BadInput("hil history --metric needs --board and --testset (a slot and a test set name)")
    table = Table(title=f"{metric} of {board}/{testset}", title_justify="left")
    for column in ("run", "started", "verdict", metric):
        table.add_column(column, justify="right" if column == metric else "left")
    found = False
    for run in results.list_runs(results_dir):
        path = Path(run["path"]) / results.METRICS_JSON
        summaries = json.loads(path.read_text())["summaries"] if path.exists() else []
        row = next((s for s in summaries if s["slot"] == board and s["testset"] == testset), None)
        if row is None:
            continue
        value = row.get(metric, (row.get("uncertainty") or {}).get(metric))
        if value is None and metric not in row and metric not in (row.get("uncertainty") or {}):
            known = sorted(k for k, v in {**row, **(row.get("uncertainty") or {})}.items() if isinstance(v, (int, float)))
            raise BadInput(f"hil history: no metric {metric!r}; known: {', '.join(known)}")
        found = True
        shown = "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"
        table.add_row(run["id"], run["started"], run["status"], shown)
    if not found:
        raise BadInput(f"{results_dir}: no run has board {board!r} with test set {testset!r}")
    return table
