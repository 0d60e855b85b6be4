"""`hil history --plot FILE.png`: metrics of metrics.json run after run, one line per board × test set (× exit path
for latency and energy: solid the early exit, dashed the full path), the baseline run marked."""

from __future__ import annotations

import math
from pathlib import Path

from hil.errors import BadInput
from hil.report.trends import METRICS, ExitPath, History

MAX_LABELS = 25  # run ids along x; with more runs, every n-th is labelled


def plot(history: History, names: list[str], path: Path) -> Path:
    """One panel per metric, the runs in catalog order along x (labelled by run id)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(2, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(7 * columns, 4.5 * rows), constrained_layout=True,
                                squeeze=False)
    positions = list(range(len(history.runs)))
    colours: dict[tuple[str, str], str] = {}  # a board × test set has one colour in every panel, both its paths
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, name in zip(axes.flat, names):
        for series, values in history.values(name).items():
            colour = colours.setdefault((series.board, series.testset), cycle[len(colours) % len(cycle)])
            axis.plot(positions, [math.nan if v is None else v for v in values], marker="o", color=colour,
                      linestyle="--" if series.path == ExitPath.FULL else "-", label=series.label)
        for position, run in zip(positions, history.runs):
            if run.baseline:
                axis.axvline(position, color="grey", linestyle=":", linewidth=1)
                axis.annotate(run.baseline, (position, 1), xycoords=("data", "axes fraction"), fontsize=7,
                              color="grey", rotation=90, va="top", ha="right")
        axis.set_title(f"{name}: {METRICS[name].meaning}", fontsize=9)
        every = max(1, len(positions) // MAX_LABELS)  # a year of nights would be a black smear of run ids
        axis.set_xticks(positions[::every], [run.id for run in history.runs][::every], rotation=45, ha="right",
                        fontsize=7)
        axis.grid(alpha=0.3)
        if axis.has_data():
            axis.legend(fontsize=7)
    for unused in list(axes.flat)[len(names):]:
        unused.remove()
    try:
        figure.savefig(path, dpi=100)
    except OSError as error:
        raise BadInput(f"--plot {path}: cannot write it ({error.strerror or error}); name a file in a writable "
                       "folder") from None
    finally:
        plt.close(figure)
    return path
