"""One self-contained HTML page per run, what a person opens after a nightly run, in the order they read it:
the verdict; what changed since the baseline or the last night (rule by rule, the deltas with their CIs;
boards recovered, quarantined or silent: hil/report/changes.py); trends over the lab's recent nights
(hil/report/nights.py); reliability diagrams per model from the device's own answers; the lab's newest
sweep; this run's latency, energy and accuracy plots; the tables last. `write_report(run_dir)` reads
run.json, metrics.json (hil/store/files.py), records.parquet and measurements.parquet, and the catalog
and earlier runs of the results folder. The tables the console shows too are the same definitions
(hil/report/run_tables.py, hil/report/changes.py), rendered to HTML.

Everything is inline (plots are base64 PNGs from matplotlib's Agg canvas, one <style> block),
so the file opens offline, from a CI artifact or a mail, and prints. Not inline SVG: matplotlib's
carries namespace URLs and document-wide ids that clash between plots. Every string from the
run files is escaped."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import numpy as np
import pyarrow.parquet as pq
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hil.model.decisions import Q15_ONE
from hil.report import run_tables, sweep_plot
from hil.report.changes import board_events_table, changes
from hil.report.run_tables import number
from hil.report.table import Cell, Column, Table, to_html
from hil.report.nights import Night, Nights, earlier_nights, newest_sweep, path_means, tonight
from hil.report.profile import profile_table
from hil.run import records
from hil.run.assess import BoardSetSummary, PathPerformance
from hil.run.profile import ProfileFile
from hil.run.records import MeasurementMethod
from hil.run.verdict import VerdictStatus
from hil.store import files, results
from hil.store.files import BoardProvenance, MetricsFile, RunFile

__all__ = ["REPORT_HTML", "write_report"]

REPORT_HTML = "report.html"
PATHS = ("exit", "full")
PATH_COLOURS = {"exit": "#4c72b0", "full": "#dd8452"}
RELIABILITY_BINS = 15  # as the ECE of metrics.json (hil/stats/metrics.summarize), so the legend's ECE is its
# The page's sections in reading order: (id, heading). The verdict has the page's h1 instead.
SECTIONS = (("verdict", ""), ("changes", "What changed"), ("trends", "Trends over recent nights"),
            ("reliability", "Reliability: confidence against accuracy, per model"), ("sweep", "Threshold sweep"),
            ("plots", "This run's plots"), ("tables", "Tables"))
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
.against{font-weight:600} dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:.4em 0} dt{color:#57606a} dd{margin:0}
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
    means = path_means(performance, "energy_uj")
    if not means:
        return None
    slots = sorted({slot for slot, _ in means})
    figure = Figure(figsize=(max(5.0, 1.6 * len(slots) + 2), 3.4), dpi=150, layout="constrained")
    ax = figure.subplots()
    for offset, path in zip((-0.2, 0.2), PATHS):
        heights = [means.get((s, path), math.nan) for s in slots]
        bars = ax.bar([i + offset for i in range(len(slots))], heights, 0.4, label=path, color=PATH_COLOURS[path])
        ax.bar_label(bars, labels=[_num(h, ",.0f") if _finite(h) else "" for h in heights], fontsize=8)
    ax.set_xticks(range(len(slots)), slots)
    ax.set_ylabel("energy above idle per inference (µJ)")
    figure.legend(loc="outside upper center", ncols=2, fontsize=8)  # outside: never over a bar
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.12)
    return figure


def trend_plot(nights: list[Night]) -> Figure | None:
    """Accuracy per board and labelled test set, latency p50 and energy per board and exit path, night by night
    (the x axis: each run's start, UTC; a failed night's label in red)."""
    measured = [n for n in nights if n.metrics is not None]
    if not measured:
        return None
    figure = Figure(figsize=(12, 3.6), dpi=150, layout="constrained")
    axes = figure.subplots(1, 3)
    x = range(len(measured))
    series: list[dict[str, list[float]]] = [{}, {}, {}]
    for i, night in enumerate(measured):
        for s in night.metrics.summaries:
            if _finite(s.accuracy):
                series[0].setdefault(f"{s.slot} {s.testset}", [math.nan] * len(measured))[i] = 100 * s.accuracy
        for panel, figure_name in ((1, "latency_ms_p50"), (2, "energy_uj")):
            for (slot, path), value in path_means(night.metrics.performance, figure_name).items():
                series[panel].setdefault(f"{slot} {path}", [math.nan] * len(measured))[i] = value
    labels = [f"{n.started[5:10]} {n.started[11:16]}" for n in measured]
    for ax, lines, title in zip(axes, series, ("accuracy % (labelled sets)", "latency p50 ms (busy pin)",
                                               "energy µJ per inference")):
        for name, values in sorted(lines.items()):
            ax.plot(x, values, marker="o", ms=3, lw=1.2, label=name)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
        for tick, night in zip(ax.get_xticklabels(), measured):
            if night.status != VerdictStatus.PASS:
                tick.set_color("#cf222e")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
        if lines:
            ax.legend(fontsize=6, loc="best")
    return figure


@dataclass(frozen=True)
class ReliabilityCurve:
    """One test set of one model: per confidence bin, its mean confidence, accuracy and size."""

    testset: str
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray
    ece: float


def reliability_curves(answers: list[dict], bins: int = RELIABILITY_BINS) -> dict[str, list[ReliabilityCurve]]:
    """By model, then labelled test set: the device's answers (predicted class, confidence_q15, label) binned
    by confidence into equal-width bins, right-closed as hil/stats/metrics.ece bins them."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for a in answers:
        if a["label"] >= 0:  # an OOD sample has no class to be right about
            grouped.setdefault((a["model"], a["testset"]), []).append(a)
    curves: dict[str, list[ReliabilityCurve]] = {}
    for (model, testset), rows in sorted(grouped.items()):
        confidence = np.array([r["confidence_q15"] for r in rows], dtype=np.float64) / Q15_ONE
        correct = np.array([r["predicted"] == r["label"] for r in rows], dtype=np.float64)
        index = np.clip(np.searchsorted(np.arange(bins + 1) / bins, confidence, side="left") - 1, 0, bins - 1)
        counts = np.bincount(index, minlength=bins)
        conf_sum = np.bincount(index, weights=confidence, minlength=bins)
        correct_sum = np.bincount(index, weights=correct, minlength=bins)
        filled = counts > 0
        curves.setdefault(model, []).append(ReliabilityCurve(
            testset, conf_sum[filled] / counts[filled], correct_sum[filled] / counts[filled], counts[filled],
            float(np.sum(np.abs(correct_sum - conf_sum)) / len(rows))))
    return curves


def reliability_plot(curves: dict[str, list[ReliabilityCurve]]) -> Figure | None:
    if not curves:
        return None
    figure, axes = _panels(len(curves), width=3.6, height=3.4)
    for ax, (model, sets) in zip(axes, curves.items()):
        ax.plot([0, 1], [0, 1], color="#8c959f", lw=1, ls="--", label="perfectly calibrated")
        for curve in sets:
            ax.plot(curve.confidence, curve.accuracy, lw=1.2, label=f"{curve.testset} (ECE {curve.ece:.3f})")
            ax.scatter(curve.confidence, curve.accuracy, s=8 + 60 * curve.counts / curve.counts.max(), zorder=3)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_aspect("equal")
        ax.set_title(f"{model} (n={sum(int(c.counts.sum()) for c in sets)})", fontsize=9)
        ax.set_xlabel("device confidence (bin mean)", fontsize=8)
        ax.set_ylabel("accuracy in the bin", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left")
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
             ("threshold τ", "–" if run.threshold is None else run.threshold.value),
             ("reconciled against", f"the {run.reference} host reference")]
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
    boards = [[slot, b.kind, b.model, _where(b), _short(b.image_sha256), b.rounding or "–", _short(b.model_sha256),
               number(b.reported.clock_hz, ".1f", 1e-6) + " MHz"] for slot, b in run.boards.items()]
    sets = [[model, name, str(t.samples), _short(t.sha256)]
            for model, named in run.testsets.items() for name, t in named.items()]
    return [Table.of("Boards", [Column(n) for n in ("board", "kind", "model", "connection", "firmware image",
                                                   "rounding", "model sha256", "clock")], boards),
            Table.of("Test sets", [Column("model"), Column("test set"), Column("samples", numeric=True),
                                   Column("sha256")], sets)]


def _section(section_id: str, *parts: Raw | str) -> Raw:
    heading = dict(SECTIONS)[section_id]
    title = f"<h2>{_h(heading)}</h2>" if heading else ""
    return Raw(f'<section id="{section_id}">{title}' + "".join(_h(p) for p in parts) + "</section>")


def _note(text: str) -> Raw:
    return Raw(f'<p class="muted">{_h(text)}</p>')


def _changes_section(run: RunFile, run_dir: Path, metrics: MetricsFile) -> Raw:
    found = changes(run, run_dir, metrics)
    events = board_events_table(run, metrics.summaries)
    parts: list[Raw | str] = [Raw(f'<p class="against">{_h(found.against)}</p>')]
    if found.table is not None:
        parts.append(Raw(to_html(found.table, heading="h3")))
    parts.append(Raw(to_html(events, heading="h3")) if events.rows
                 else _note("Every board was brought up and answered: none recovered, quarantined or silent."))
    return _section("changes", *parts)


def _trends_section(run: RunFile, run_dir: Path, metrics: MetricsFile) -> Raw:
    earlier: Nights = earlier_nights(run, run_dir.parent)
    nights = [*earlier.nights, tonight(run, run_dir, metrics)]
    caption = (f"The last {len(nights)} finished runs of lab {run.lab.name} in the catalog, this one last "
               "(latency and energy: the test sets' figures averaged, weighted by inferences; a failed night's "
               "date in red).")
    parts: list[Raw | str] = [_figure("plot-trends", caption, trend_plot(nights))]
    if len(nights) == 1:
        parts.append(_note(f"No earlier finished run of lab {run.lab.name} in {run_dir.parent}: one point each."))
    if earlier.unreadable:
        parts.append(_note("Left out: " + "; ".join(f"{id_}: {why}" for id_, why in earlier.unreadable.items())))
    return _section("trends", *parts)


def _answers(run_dir: Path) -> list[dict]:
    """The device's answers: records.parquet once the run has ended, else its journal so far."""
    parquet = run_dir / records.PARQUET
    wanted = ["model", "testset", "label", "predicted", "confidence_q15"]
    if parquet.is_file():
        return pq.read_table(parquet, columns=wanted).to_pylist()
    return [{name: getattr(r, name) for name in wanted} for r in records.read_records(run_dir)]


def _sweep_section(run: RunFile, run_dir: Path) -> Raw:
    found = newest_sweep(run.lab.name, run_dir.parent)
    if found is None:
        return _section("sweep", _note(f"No sweep of lab {run.lab.name} in {run_dir.parent} (`hil sweep`)."))
    sweep_dir, sweep = found
    caption = (f"The lab's newest sweep, {sweep_dir.name} (started {sweep.provenance.started}, verdict "
               f"{sweep.verdict.status}): accuracy, exit rate and energy against τ, per board.")
    return _section("sweep", _figure("plot-sweep", caption, sweep_plot.figure(sweep.points) if sweep.points else None))


def write_report(run_dir: Path) -> Path:
    """Write run_dir/report.html from the run's files and return its path."""
    run_dir = Path(run_dir)
    # An interrupted or failed run may lack metrics or measurements: the page then says less, but exists.
    run = files.read_run(run_dir)
    metrics = files.read_metrics(run_dir) or files.MetricsFile([], [], [])
    measured_path = run_dir / records.MEASUREMENTS_PARQUET
    measurements = pq.read_table(measured_path).to_pylist() if measured_path.is_file() else []
    tables = [*(Raw(to_html(table, heading="h3")) for table in provenance_tables(run)),
              Raw(to_html(run_tables.summary_table(metrics.summaries), heading="h3")),
              Raw(to_html(run_tables.performance_table(metrics.performance), heading="h3"))]
    if metrics.rules:
        baseline = run.baseline.id if run.baseline else "?"
        tables.append(Raw(to_html(run_tables.rules_table(metrics.rules, baseline), heading="h3")))
    if run.recoveries:
        tables.append(Raw(to_html(run_tables.recoveries_table(run.recoveries), heading="h3")))
    profiles = ProfileFile.read(run_dir)  # `hil run --profile`
    if profiles is not None:
        tables += [Raw(to_html(profile_table(p), heading="h3")) for p in profiles.profiles]
        tables += [_note(f"No profile: {f.reason}") for f in profiles.failures]
    parts = [
        _section("verdict", _header(run)),
        _changes_section(run, run_dir, metrics),
        _trends_section(run, run_dir, metrics),
        _section("reliability", _figure(
            "plot-reliability", f"Per model, per labelled test set: the device's answers binned by their confidence "
            f"({RELIABILITY_BINS} equal bins, as the ECE of the tables; marker size: answers in the bin) against the "
            "share right. On the diagonal, a confidence means what it says.", reliability_plot(reliability_curves(_answers(run_dir))))),
        _sweep_section(run, run_dir),
        _section("plots",
                 _figure("plot-latency", "Latency per inference, per board and exit path: histograms of the "
                         "one-inference busy-pin windows, each on its own axis.", latency_plot(measurements)),
                 _figure("plot-energy", "Energy above idle per inference, per board and exit path (mean over the "
                         "test sets, weighted by inferences).", energy_plot(metrics.performance)),
                 _figure("plot-accuracy", "Accuracy and exit rate per test set, per board (OOD sets have no labels, "
                         "so no accuracy).", accuracy_plot(metrics.summaries))),
        _section("tables", *tables)]
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_h(run.lab.name)} {_h(run.id)}: {_h(run.verdict.status)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(_h(p) for p in parts) + "\n</body></html>\n")
    path = run_dir / REPORT_HTML
    results.write_text(path, page)
    return path
