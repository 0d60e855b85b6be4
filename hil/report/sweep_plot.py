"""sweep.png: a sweep's points drawn against τ (`hil sweep`), beside its sweep.json; report.html draws
the same figure for the lab's newest sweep."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hil.run.sweep import SweepPoint

SWEEP_PNG = "sweep.png"


def figure(points: list[SweepPoint]) -> Figure:
    """Accuracy, exit rate and energy against τ, one line per board. No pyplot: no global backend state."""
    drawn = Figure(figsize=(13, 4), dpi=110, layout="constrained")
    axes = drawn.subplots(1, 3)
    for slot in dict.fromkeys(p.slot for p in points):
        mine = sorted((p for p in points if p.slot == slot), key=lambda p: Decimal(p.tau))
        taus = [float(p.tau) for p in mine]
        for axis, values in zip(axes, ([100 * p.accuracy for p in mine], [100 * p.exit_rate for p in mine],
                                       [p.energy_uj for p in mine])):
            axis.plot(taus, values, marker="o", label=slot)
    for axis, label in zip(axes, ("accuracy % (clean)", "exit rate % (clean)", "energy per inference µJ")):
        axis.set_xlabel("threshold τ")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return drawn


def plot(points: list[SweepPoint], path: Path) -> Path:
    FigureCanvasAgg(figure(points)).print_png(path)
    return path
