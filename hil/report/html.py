"""One self-contained HTML page per run, what a person opens after a nightly run: verdict,
provenance, per board × test set figures, latency and energy per exit path, regression rules,
three plots. `write_report(run_dir)` reads run.json, metrics.json (hil/store/files.py) and
measurements.parquet. The tables the console shows too are the same definitions
(hil/report/run_tables.py), rendered to HTML.

Everything is inline (plots are base64 PNGs from matplotlib's Agg canvas, one <style> block),
so the file opens offline, from a CI artifact or a mail, and prints. Not inline SVG: matplotlib's
carries namespace URLs and document-wide ids that clash between plots. Every string from the
run files is escaped."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TypeGuard

import numpy as np
import pyarrow.parquet as pq
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hil.report import run_tables
from hil.report.run_tables import number
from hil.report.table import Cell, Column, Table, to_html
from hil.run import records
from hil.run.assess import BoardSetSummary, PathPerformance
from hil.run.records import MeasurementMethod
from hil.run.verdict import VerdictStatus
from hil.store import files, results
from hil.store.files import BoardProvenance, RunFile

__all__ = ["REPORT_HTML", "write_report"]

REPORT_HTML = "report.html"
PATHS = ("exit", "full")
PATH_COLOURS = {"exit": "#4c72b0", "full": "#dd8452"}
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;max-width:1200px;margin:1.5em auto;
 padding:0 1em}
h1{margin:0 0 .3em;font-size:1.6em} h2{margin-top:1.8em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
table{border-collapse:collapse;margin:.4em 0 1em} th,td{padding:.2em .6em;border-bottom:1px solid #d0d7de;
 text-align:left;vertical-align:top} th{background:#f6f8fa} td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,Menlo,Consolas,monospace} .muted,figcaption{color:#57606a}
.verdict{border-left:8px solid var(--c);background:#f6f8fa;padding:.6em 1em;margin:.6em 0}
.badge{background:var(--c);color:#fff;font-weight:700;padding:.1em .6em;border-radius:4px;letter-spacing:.05em}
.pass{--c:#1a7f37} .fail{--c:#cf222e} .error{--c:#9a6700} .other{--c:#57606a}
.bad{color:#cf222e;font-weight:600} .warn{color:#9a6700;font-weight:600} tr.section td{border-top:2px solid #8c959f}
dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:.4em 0} dt{color:#57606a} dd{margin:0}
figure{margin:1em 0;break-inside:avoid} figure img{max-width:100%;height:auto}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
@media print{body{margin:0;max-width:none;font-size:11px} h2{break-after:avoid} tr{break-inside:avoid}}
"""


class Raw(str):
    """HTML built here from escaped parts; every plain str is escaped on output."""


def _h(value: object) -> Raw:
    return value if isinstance(value, Raw) else Raw(html.escape(str(value)))


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value: object, spec: str, scale: float = 1.0) -> str:
    # NaN arrives from the JSON files (no accuracy on an OOD set, no full-path cycles): a dash, not "nan".
    return format(value * scale, spec) if _finite(value) else "–"


def _sha(value: object) -> Raw:  # short, the whole hash on hover
    return Raw(f'<code title="{_h(value)}">{_h(str(value)[:12])}</code>') if value else Raw("–")


def _figure(plot_id: str, caption: str, figure: Figure | None) -> Raw:
    if figure is None:  # a run without measurements (every board failed, or interrupted) still gets its section
        body = '<p class="muted">no data in this run</p>'
    else:
        buffer = io.BytesIO()
        FigureCanvasAgg(figure).print_png(buffer)  # no pyplot: no global backend state, no display needed
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        # Drawn at 150 dpi, shown at CSS 96 px per inch: sharp on paper and on high-density screens.
        width = round(figure.get_figwidth() * 96)
        body = f'<img alt="{_h(caption)}" width="{width}" src="data:image/png;base64,{data}">'
    return Raw(f'<figure id="{plot_id}">{body}<figcaption>{_h(caption)}</figcaption></figure>')


def _panels(count: int, width: float = 3.4, height: float = 2.8) -> tuple[Figure, list]:
    """Small multiples, at most four a row, each with its own axis: boards differ tenfold in latency."""
    columns = max(1, min(4, count))
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns, height * rows), dpi=150, layout="constrained")
    axes = list(figure.subplots(rows, columns, squeeze=False).flat)
    for spare in axes[count:]:
        spare.set_visible(False)
    return figure, axes[:count]


def latency_plot(measurements: list[dict]) -> Figure | None:
    groups: dict[tuple[str, str], list[float]] = {}
    for m in measurements:
        # Burst windows repeat one sample N times: only the one-inference windows make the distribution.
        if m.get("method") == MeasurementMethod.WINDOW and _finite(m.get("latency_s")):
            groups.setdefault((str(m["slot"]), "exit" if m["exited"] else "full"), []).append(1e3 * m["latency_s"])
    if not groups:
        return None
    # One histogram per board and path: the exit and full paths are far apart while each is narrow (on the
    # emulated rack, microseconds wide), so a shared axis would squash every distribution into a line.
    keys = sorted(groups, key=lambda k: (k[0], PATHS.index(k[1])))
    figure, axes = _panels(len(keys), width=3.0, height=2.3)
    for ax, (slot, path) in zip(axes, keys):
        values = groups[(slot, path)]
        ax.hist(values, bins=min(30, max(5, len(values) // 3)), color=PATH_COLOURS[path])
        for quantile, style in zip(np.percentile(values, [50, 99]), ("-", "--")):  # as the tables compute them
            ax.axvline(quantile, color="#1f2328", lw=1, ls=style)
        ax.set_title(f"{slot} · {path} (n={len(values)})", fontsize=9)
        ax.set_xlabel("ms (line: p50, dashed: p99)", fontsize=8)
        ax.ticklabel_format(axis="x", useOffset=False)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(4))
    return figure


def energy_plot(performance: list[PathPerformance]) -> Figure | None:
    # One bar per board and path: the test sets' figures averaged, weighted by their inferences.
    totals: dict[tuple[str, str], list[float]] = {}
    for p in performance:
        if _finite(p.energy_uj) and p.inferences:
            total = totals.setdefault((p.slot, "exit" if p.exited else "full"), [0.0, 0])
            total[0] += p.energy_uj * p.inferences
            total[1] += p.inferences
    if not totals:
        return None
    slots = sorted({slot for slot, _ in totals})
    figure = Figure(figsize=(max(5.0, 1.6 * len(slots) + 2), 3.4), dpi=150, layout="constrained")
    ax = figure.subplots()
    for offset, path in zip((-0.2, 0.2), PATHS):
        heights = [totals[(s, path)][0] / totals[(s, path)][1] if (s, path) in totals else math.nan for s in slots]
        bars = ax.bar([i + offset for i in range(len(slots))], heights, 0.4, label=path, color=PATH_COLOURS[path])
        ax.bar_label(bars, labels=[_num(h, ",.0f") if _finite(h) else "" for h in heights], fontsize=8)
    ax.set_xticks(range(len(slots)), slots)
    ax.set_ylabel("energy above idle per inference (µJ)")
    figure.legend(loc="outside upper center", ncols=2, fontsize=8)  # outside: never over a bar
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.12)
    return figure


def accuracy_plot(summaries: list[BoardSetSummary]) -> Figure | None:
    by_slot: dict[str, list[BoardSetSummary]] = {}
    for s in summaries:
        by_slot.setdefault(s.slot, []).append(s)
    if not by_slot:
        return None
    figure, axes = _panels(len(by_slot), width=3.6)
    for ax, (slot, rows) in zip(axes, by_slot.items()):
        for offset, key, colour in ((-0.2, "accuracy", "#55a868"), (0.2, "exit_rate", "#8172b3")):
            values = [getattr(r, key) if _finite(getattr(r, key)) else math.nan for r in rows]
            bars = ax.bar([i + offset for i in range(len(rows))], values, 0.4, color=colour,
                          label=key.replace("_", " "))
            # An OOD set has no labels, so no accuracy: say so rather than draw an empty gap.
            ax.bar_label(bars, labels=[_num(v, ".0%") if _finite(v) else "n/a" for v in values], fontsize=7)
        ax.set_xticks(range(len(rows)), [r.testset for r in rows], fontsize=8)
        ax.set_ylim(0, 1.15)
        ax.set_title(slot, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=2, fontsize=8)
    return figure


def _header(run: RunFile) -> Raw:
    verdict = run.verdict
    css = verdict.status if verdict.status in (VerdictStatus.PASS, VerdictStatus.FAIL, VerdictStatus.ERROR) else "other"
    reasons = "".join(f"<li>{_h(r)}</li>" for r in verdict.reasons)
    revision = Raw(f"{_sha(run.git.revision)}{' (dirty tree)' if run.git.dirty else ''}")
    facts = [("run id", Raw(f"<code>{_h(run.id)}</code>")), ("git revision", revision),
             ("started", run.started), ("finished", run.finished or "–"),
             ("samples", "–" if run.samples is None else run.samples),
             ("threshold τ", "–" if run.threshold is None else run.threshold.value)]
    if run.baseline is not None:
        facts.append(("baseline", Raw(f"<code>{_h(run.baseline.id)}</code> at revision "
                                      f"{_sha(run.baseline.git and run.baseline.git.revision)}")))
    exit_code = "–" if verdict.exit_code is None else verdict.exit_code
    return Raw(f"<h1>Lab {_h(run.lab.name)}</h1>"
               f'<div class="verdict {css}"><span class="badge">{_h(verdict.status.upper())}</span> '
               f"exit code {_h(exit_code)}{f'<ul>{reasons}</ul>' if reasons else ''}</div>"
               "<dl>" + "".join(f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in facts) + "</dl>")


def _where(board: BoardProvenance) -> str:
    details = board.details
    if board.emulated:
        return f"emulated (QEMU {details.get('qemu_machine', '?')})"
    return f"probe {details.get('probe', '?')} ({details.get('target', '?')})"


def _short(sha256: str | None) -> Cell:
    return Cell(sha256[:12], hover=sha256) if sha256 else Cell("–")


def provenance_tables(run: RunFile) -> list[Table]:
    """The boards a run used and the test sets it streamed; hashes short, whole on hover."""
    boards = [[slot, b.kind, b.model, _where(b), _short(b.image_sha256), _short(b.model_sha256),
               number(b.reported.clock_hz, ".1f", 1e-6) + " MHz"] for slot, b in run.boards.items()]
    sets = [[model, name, str(t.samples), _short(t.sha256)]
            for model, named in run.testsets.items() for name, t in named.items()]
    return [Table.of("Boards", [Column(n) for n in ("board", "kind", "model", "connection", "firmware image",
                                                   "model sha256", "clock")], boards),
            Table.of("Test sets", [Column("model"), Column("test set"), Column("samples", numeric=True),
                                   Column("sha256")], sets)]


def write_report(run_dir: Path) -> Path:
    """Write run_dir/report.html from the run's files and return its path."""
    run_dir = Path(run_dir)
    # An interrupted or failed run may lack metrics or measurements: the page then says less, but exists.
    run = files.read_run(run_dir)
    metrics = files.read_metrics(run_dir) or files.MetricsFile([], [], [])
    measured_path = run_dir / records.MEASUREMENTS_PARQUET
    measurements = pq.read_table(measured_path).to_pylist() if measured_path.is_file() else []
    # Boards that failed need no table of their own: the verdict's reasons name each one, its stage and why.
    parts = [_header(run), Raw("<h2>Provenance</h2>"),
             *(Raw(to_html(table, heading="h3")) for table in provenance_tables(run)),
             Raw(to_html(run_tables.summary_table(metrics.summaries))),
             Raw(to_html(run_tables.performance_table(metrics.performance))),
             Raw("<h2>Plots</h2>"),
             _figure("plot-latency", "Latency per inference, per board and exit path: histograms of the "
                     "one-inference busy-pin windows, each on its own axis.", latency_plot(measurements)),
             _figure("plot-energy", "Energy above idle per inference, per board and exit path (mean over the test "
                     "sets, weighted by inferences).", energy_plot(metrics.performance)),
             _figure("plot-accuracy", "Accuracy and exit rate per test set, per board (OOD sets have no labels, "
                     "so no accuracy).", accuracy_plot(metrics.summaries))]
    if metrics.rules:  # after the plots: a failing rule is already named in the verdict's reasons at the top
        baseline = run.baseline.id if run.baseline else "?"
        parts.append(Raw(to_html(run_tables.rules_table(metrics.rules, baseline))))
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_h(run.lab.name)} {_h(run.id)}: {_h(run.verdict.status)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(_h(p) for p in parts) + "\n</body></html>\n")
    path = run_dir / REPORT_HTML
    results.write_text(path, page)
    return path
