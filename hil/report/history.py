"""`hil history`'s tables: the runs of the catalog, the headline figures or any one metric of metrics.json over
them (hil/report/trends.py reads them); `hil baseline show`."""

from __future__ import annotations

from pathlib import Path

from hil.errors import BadInput
from hil.report import trends
from hil.report.table import Column, Table, warn
from hil.report.trends import ExitPath, Series
from hil.store import files, results


def runs_table(results_dir: Path, lab: str | None = None, last: int | None = None) -> Table:
    """The catalog's runs (of one lab, the newest `last`); the baseline of its lab marked (and `forced` where it
    was set unfit)."""
    marks = trends.baseline_marks(results_dir)
    rows = [[run["id"], run["lab"], run["started"], run["status"], str(run["exit_code"]), str(run["boards"]),
             str(run["samples"]), (run["git_revision"] or "")[:10], marks.get(run["id"], "")]
            for run in trends.lab_runs(results_dir, lab, last)]
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
    rows += [[f"board {slot}", f"{board.kind}/{board.model}: firmware sha256 {board.image_sha256} "
              f"({board.rounding or 'unrecorded'} rounding), model sha256 {board.model_sha256}"]
             for slot, board in sorted(run.boards.items())]
    return Table.of(f"Baseline of lab {lab}", [Column("what"), Column("value")], rows)


def _shown(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def headline_table(history: trends.History) -> Table:
    """`hil history` without --metric: the headline figures of every board × test set, run after run; latency
    and energy per exit path."""
    columns: list[tuple[str, ExitPath | None]] = []
    values: dict[tuple[str, ExitPath | None], dict[Series, list[float | None]]] = {}
    for name in trends.HEADLINE:
        by_series = history.values(name)
        paths = [None] if trends.METRICS[name].source != trends.Source.PATH else list(ExitPath)
        for path in paths:
            columns.append((name, path))
            values[name, path] = {Series(s.board, s.testset): v for s, v in by_series.items() if s.path == path}
    sets = sorted({series for by_series in values.values() for series in by_series})
    rows = [[run.id, series.board, series.testset,
             *(_shown(values[column].get(series, [None] * len(history.runs))[index]) for column in columns),
             run.baseline]
            for index, run in enumerate(history.runs) for series in sets]
    if not rows:
        raise BadInput("hil history: no run has figures of that board and test set together")
    names = [name if path is None else f"{name} ({path})" for name, path in columns]
    return Table.of("Headline metrics per board × test set", ["run", "board", "test set", *[
        Column(name, numeric=True) for name in names], "baseline"], rows,
        caption="– : no such figure (an OOD set has no accuracy; a path no sample took has no latency)")


def metric_table(history: trends.History, name: str) -> Table:
    """One metric of metrics.json, run after run, per board × test set (× exit path for latency and energy)."""
    by_series = history.values(name)
    rows = [[run.id, run.started, run.status, series.board, series.testset, series.path or "", _shown(values[index]),
             run.baseline]
            for index, run in enumerate(history.runs) for series, values in by_series.items()]
    if not rows:
        raise BadInput(f"hil history: no run has {name} of that board and test set together")
    return Table.of(f"{name}: {trends.METRICS[name].meaning}", [
        "run", Column("started"), "verdict", "board", "test set", "path", Column(name, numeric=True), "baseline"], rows)
