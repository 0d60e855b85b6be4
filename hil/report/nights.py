"""What report.html and the console compare a run with, read from the results folder: the lab's earlier
finished runs in the catalog (the last one, and the last few nights for the trends) and its newest sweep.

Readers only: nothing here writes. `hil history` (hil/report/history.py) lists the same catalog as a table;
this module reads the runs' metrics.json behind it, as the report needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hil.errors import BadInput
from hil.run.assess import PathPerformance
from hil.store import files, results
from hil.store.files import MetricsFile, RunFile, SweepFile

NIGHTS = 10  # the runs the trends show, tonight's included


@dataclass(frozen=True)
class Night:
    """One finished run of the lab, as the catalog has it, and its metrics.json (None: it has none)."""

    id: str
    started: str
    status: str  # the verdict's
    path: Path
    metrics: MetricsFile | None


@dataclass(frozen=True)
class Nights:
    """The lab's recent finished runs, oldest first, and those whose files could not be read (id: why)."""

    nights: list[Night]
    unreadable: dict[str, str]


def _earlier_finished(run: RunFile, results_dir: Path) -> list[dict]:
    """Catalog rows of the run's lab that finished and started no later than it, oldest first; not the run."""
    return [row for row in results.list_runs(results_dir, run.lab.name)
            if row["started"] <= run.started and row["finished"] is not None
            and row["id"] != run.id]


def _night(row: dict) -> Night | str:
    """The catalog row's run with its metrics, or why it cannot be read (its folder pruned, a broken file)."""
    path = Path(row["path"])
    if not (path / results.RUN_JSON).is_file():
        return f"{path} is gone"
    try:
        return Night(row["id"], row["started"], row["status"], path, files.read_metrics(path))
    except BadInput as error:
        return str(error)


def earlier_nights(run: RunFile, results_dir: Path, count: int = NIGHTS - 1) -> Nights:
    """The last `count` finished runs of the run's lab before it, with their metrics. A run that cannot be
    read is left out and named, never a crash of the report."""
    rows = _earlier_finished(run, results_dir)
    nights, unreadable = [], {}
    for row in rows[max(0, len(rows) - count):]:
        night = _night(row)
        if isinstance(night, Night):
            nights.append(night)
        else:
            unreadable[row["id"]] = night
    return Nights(nights, unreadable)


def tonight(run: RunFile, run_dir: Path, metrics: MetricsFile) -> Night:
    return Night(run.id, run.started, str(run.verdict.status), Path(run_dir), metrics)


def last_finished(run: RunFile, results_dir: Path) -> Night | None:
    """The lab's last finished run before this one that can be read and has its metrics.json, or None."""
    for row in reversed(_earlier_finished(run, results_dir)):
        night = _night(row)
        if isinstance(night, Night) and night.metrics is not None:
            return night
    return None


def newest_sweep(lab: str, results_dir: Path) -> tuple[Path, SweepFile] | None:
    """The lab's newest sweep in the results folder (a folder with sweep.json), or None."""
    found = []
    for sweep_json in Path(results_dir).glob(f"*/{files.SWEEP_JSON}"):
        try:
            sweep = files.read_sweep(sweep_json.parent)
        except BadInput:  # a broken sweep is `hil sweep`'s to report, not tonight's run's
            continue
        if sweep.provenance.lab.name == lab:
            found.append((sweep.provenance.started, sweep_json.parent.name, sweep_json.parent, sweep))
    if not found:
        return None
    *_, path, sweep = max(found, key=lambda item: item[:2])
    return path, sweep


def path_means(performance: list[PathPerformance], figure: str) -> dict[tuple[str, str], float]:
    """One figure (`latency_ms_p50`, `energy_uj`) per board and exit path ("exit", "full"): the test sets'
    values averaged, weighted by their inferences; NaN values (unmeasured) left out."""
    totals: dict[tuple[str, str], list[float]] = {}
    for p in performance:
        value = getattr(p, figure)
        if value is not None and value == value and p.inferences:  # value == value: not NaN
            total = totals.setdefault((p.slot, "exit" if p.exited else "full"), [0.0, 0])
            total[0] += value * p.inferences
            total[1] += p.inferences
    return {key: weighted / inferences for key, (weighted, inferences) in totals.items()}
