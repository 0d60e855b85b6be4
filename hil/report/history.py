"""`hil history`: past runs from the catalog, and one metric's trend over them; `hil baseline show`."""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from pathlib import Path

from hil.errors import BadInput, UsageError
from hil.report.table import Column, Table, warn
from hil.run.assess import BoardSetSummary
from hil.stats.metrics import UncertaintyReport
from hil.store import files, results


def runs_table(results_dir: Path) -> Table:
    """Every run of the catalog; the baseline of its lab marked (and `forced` where it was set unfit)."""
    runs = results.list_runs(results_dir)
    if not runs:
        raise BadInput(f"{results_dir}: no runs in its catalog; run `hil run labs.yaml` first")
    baselines = results.baselines(results_dir)

    def mark(run: dict) -> str:
        entry = baselines.get(run["lab"])
        return "" if entry is None or entry.id != run["id"] else "baseline (forced)" if entry.forced else "baseline"

    rows = [[run["id"], run["lab"], run["started"], run["status"], str(run["exit_code"]), str(run["boards"]),
             str(run["samples"]), (run["git_revision"] or "")[:10], mark(run)] for run in runs]
    return Table.of(f"Runs in {results_dir}", [Column(name) for name in (
        "run", "lab", "started", "verdict", "exit", "boards", "samples", "git", "baseline")], rows)


def baseline_table(results_dir: Path, lab: str) -> Table:
    """`hil baseline show`: what the lab's baseline is, and what it was made on."""
    entry = results.baselines(results_dir).get(lab)
    if entry is None:
        raise BadInput(f"{results_dir}: lab {lab!r} has no baseline; set one with `hil baseline set results/<run-id>`")
    run = files.read_run(entry.path)
    metrics = files.read_metrics(entry.path)
    expected = sum(s.expected for s in metrics.summaries) if metrics is not None else None
    git = run.git.revision + (" (dirty)" if run.git.dirty else "")
    rows = [["run", entry.id], ["folder", str(entry.path)],
            ["set", f"{entry.set_at} by {entry.set_by or 'unknown (set before hil recorded it)'}"],
            ["forced", warn(f"yes: {entry.forced}") if entry.forced else "no"],
            ["verdict", run.verdict.status if run.verdict.status == "pass" else warn(run.verdict.status)],
            ["samples", f"{run.samples or 0}" + ("" if expected is None else f" of {expected}")],
            ["git revision", git], ["started", run.started], ["finished", run.finished or "–"]]
    rows += [[f"model {name}", f"sha256 {model.sha256}"] for name, model in sorted(run.models.items())]
    rows += [[f"board {slot}", f"{board.kind}/{board.model}: firmware sha256 {board.image_sha256}, "
              f"model sha256 {board.model_sha256}"] for slot, board in sorted(run.boards.items())]
    return Table.of(f"Baseline of lab {lab}", [Column("what"), Column("value")], rows)


def _figures(summary: BoardSetSummary) -> dict[str, float | int | None]:
    """The figures of one board and test set by name: its own and its uncertainty metrics (None where it has
    none, as an OOD set)."""
    own = {name: value for name, value in asdict(summary).items()
           if value is None or isinstance(value, (int, float)) and not isinstance(value, bool)}
    own.pop("uncertainty", None)
    uncertainty = summary.uncertainty
    return {**own, **{f.name: None if uncertainty is None else getattr(uncertainty, f.name)
                      for f in fields(UncertaintyReport)}}


def metric_trend(results_dir: Path, metric: str, board: str | None, testset: str | None) -> Table:
    """A per board and test set figure of metrics.json (e.g. accuracy), run after run."""
    if not board or not testset:
        raise UsageError("hil history --metric needs --board and --testset (a slot and a test set name)")
    rows = []
    for run in results.list_runs(results_dir):
        metrics = files.read_metrics(Path(run["path"]))
        summaries = metrics.summaries if metrics is not None else []
        row = next((s for s in summaries if s.slot == board and s.testset == testset), None)
        if row is None:
            continue
        figures = _figures(row)
        if metric not in figures:
            raise BadInput(f"hil history: no metric {metric!r}; known: {', '.join(sorted(figures))}")
        value = figures[metric]
        shown = "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"
        rows.append([run["id"], run["started"], run["status"], shown])
    if not rows:
        raise BadInput(f"{results_dir}: no run has board {board!r} with test set {testset!r}")
    return Table.of(f"{metric} of {board}/{testset}",
                    [Column("run"), Column("started"), Column("verdict"), Column(metric, numeric=True)], rows)
