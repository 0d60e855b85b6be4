"""The figures of metrics.json run after run, for `hil history`: which metrics there are, and each one's values
per board × test set (× exit path, for latency and energy) over a lab's runs, read from each run's own file."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from hil.errors import BadInput, UsageError
from hil.run.assess import BoardSetSummary, PathPerformance
from hil.store import files, results


class Source(StrEnum):
    """Where in metrics.json a metric is: a board × test set summary, its uncertainty report, or one exit path's
    performance (latency and energy are measured per path: an early exit and a full inference differ tenfold)."""

    SUMMARY = "summaries"
    UNCERTAINTY = "summaries.uncertainty"
    PATH = "performance"


class ExitPath(StrEnum):
    EXIT = "exit"  # the early exit answered
    FULL = "full"  # the sample went through both stages


@dataclass(frozen=True)
class Metric:
    name: str  # the field's name in metrics.json
    source: Source
    meaning: str  # for the plot's axis and the docs


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("accuracy", Source.SUMMARY, "accuracy (none for an OOD set)"),
    Metric("exit_rate", Source.SUMMARY, "share of samples that exited early"),
    Metric("samples", Source.SUMMARY, "samples answered"),
    Metric("expected", Source.SUMMARY, "samples in the test set"),
    Metric("exact", Source.SUMMARY, "samples reconciled exactly"),
    Metric("max_steps", Source.SUMMARY, "largest output difference, quantization steps"),
    Metric("exit_cycles_mean", Source.SUMMARY, "mean cycles of an early exit"),
    Metric("full_cycles_mean", Source.SUMMARY, "mean cycles of a full inference"),
    Metric("unmeasured", Source.SUMMARY, "answers without a measurement"),
    Metric("weighted_f1", Source.UNCERTAINTY, "weighted F1"),
    Metric("nll", Source.UNCERTAINTY, "negative log-likelihood"),
    Metric("brier", Source.UNCERTAINTY, "Brier score"),
    Metric("ece", Source.UNCERTAINTY, "expected calibration error"),
    Metric("failure_auroc", Source.UNCERTAINTY, "AUROC of confidence against failure"),
    Metric("aurc", Source.UNCERTAINTY, "area under the risk-coverage curve"),
    Metric("latency_ms_p50", Source.PATH, "latency p50, ms"),
    Metric("latency_ms_p95", Source.PATH, "latency p95, ms"),
    Metric("latency_ms_p99", Source.PATH, "latency p99, ms"),
    Metric("energy_uj", Source.PATH, "energy per inference above idle, µJ"),
    Metric("inferences", Source.PATH, "inferences measured one by one"),
)}

# What `hil history` shows and plots without --metric: the lab's headline figures.
HEADLINE = ("accuracy", "exit_rate", "ece", "latency_ms_p50", "energy_uj")


def metric(name: str) -> Metric:
    """The metric of that name; any other is a usage error listing every one there is."""
    if name not in METRICS:
        raise UsageError(f"hil history: no metric {name!r} in metrics.json; known: {', '.join(METRICS)}")
    return METRICS[name]


@dataclass(frozen=True, order=True)
class Series:
    """One line of a trend: a board and test set, and for latency and energy one exit path."""

    board: str
    testset: str
    path: ExitPath | None = None

    @property
    def label(self) -> str:
        return "/".join(part for part in (self.board, self.testset, self.path) if part)


@dataclass(frozen=True)
class RunPoint:
    """A run of the history: one point of every series."""

    id: str
    started: str
    status: str  # the verdict's
    baseline: str  # "baseline", "baseline (forced)" or "": how `hil history` marks it


@dataclass(frozen=True)
class History:
    """The runs that have a metrics.json, oldest first, each with its figures (filtered to a board and a test
    set when `hil history` was given them)."""

    runs: list[RunPoint]
    metrics: list[files.MetricsFile]

    def values(self, name: str) -> dict[Series, list[float | None]]:
        """Per series, one value per run (None: that run has no such figure: not measured, an OOD set, nan)."""
        wanted = metric(name)
        found: dict[Series, dict[int, float | None]] = {}
        for index, metrics in enumerate(self.metrics):
            for series, value in _figures(metrics, wanted):
                found.setdefault(series, {})[index] = value
        return {series: [by_run.get(index) for index in range(len(self.runs))]
                for series, by_run in sorted(found.items())}


def _number(value: float | int | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _figures(metrics: files.MetricsFile, wanted: Metric) -> list[tuple[Series, float | None]]:
    if wanted.source == Source.PATH:
        return [(Series(p.slot, p.testset, ExitPath.EXIT if p.exited else ExitPath.FULL),
                 _number(getattr(p, wanted.name))) for p in metrics.performance]
    if wanted.source == Source.UNCERTAINTY:
        return [(Series(s.slot, s.testset), None if s.uncertainty is None else _number(
            getattr(s.uncertainty, wanted.name))) for s in metrics.summaries]
    return [(Series(s.slot, s.testset), _number(getattr(s, wanted.name))) for s in metrics.summaries]


def baseline_marks(results_dir: Path) -> dict[str, str]:
    """By run id, how the runs table marks a lab's baseline (`forced` where it was set though unfit)."""
    return {entry.id: "baseline (forced)" if entry.forced else "baseline"
            for entry in results.baselines(results_dir).values()}


def lab_runs(results_dir: Path, lab: str | None, last: int | None) -> list[dict]:
    """The catalog's runs, oldest first: of one lab (None: every lab of the folder), the newest `last` of them."""
    runs = results.list_runs(results_dir, lab)
    if not runs:
        of = "" if lab is None else f" of lab {lab!r}"
        raise BadInput(f"{results_dir}: no runs{of} in its catalog; run `hil run labs.yaml` first")
    return runs[-last:] if last else runs


def load_history(results_dir: Path, lab: str | None, board: str | None, testset: str | None,
                 last: int | None) -> History:
    """The runs' metrics.json (runs without one, interrupted or ended before it, are left out), kept to
    `board` and `testset` where given; a board or test set no run has is bad input naming those there are."""
    marks = baseline_marks(results_dir)
    runs, kept = [], []
    boards, testsets = set(), set()
    for run in lab_runs(results_dir, lab, last):
        metrics = files.read_metrics(Path(run["path"]))
        if metrics is None:
            continue
        boards |= {s.slot for s in metrics.summaries}
        testsets |= {s.testset for s in metrics.summaries}
        runs.append(RunPoint(run["id"], run["started"], run["status"], marks.get(run["id"], "")))
        kept.append(files.MetricsFile([s for s in metrics.summaries if _wanted(s, board, testset)],
                                      [p for p in metrics.performance if _wanted(p, board, testset)], []))
    for given, option, known in ((board, "--board", boards), (testset, "--testset", testsets)):
        if given is not None and given not in known:
            raise BadInput(f"{results_dir}: no run has {option} {given!r}; its runs have: "
                           f"{', '.join(sorted(known)) or 'none (no run has a metrics.json)'}")
    return History(runs, kept)


def _wanted(row: BoardSetSummary | PathPerformance, board: str | None, testset: str | None) -> bool:
    return (board is None or row.slot == board) and (testset is None or row.testset == testset)
