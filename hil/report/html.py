"""One self-contained HTML page per run, what a person opens after a nightly run: verdict,
provenance, per board × test set figures, latency and energy per exit path, regression rules,
three plots. `write_report(run_dir)` reads run.json, metrics.json and measurements.parquet.

Everything is inline (plots are base64 PNGs from matplotlib's Agg canvas, one <style> block),
so the file opens offline, from a CI artifact or a mail, and prints. Not inline SVG: matplotlib's
carries namespace URLs and document-wide ids that clash between plots. Every string from the
run files is escaped."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeGuard

import numpy as np
import pyarrow.parquet as pq
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hil.run import records
from hil.store import results

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
.bad{color:#cf222e;font-weight:600} .warn{color:#9a6700;font-weight:600}
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


def _cls(css: str, text: object) -> Raw:
    return Raw(f'<span class="{css}">{_h(text)}</span>')


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Iterable[int] = ()) -> Raw:
    numeric = set(numeric)
    head = "".join(f"<th>{_h(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{_h(c)}</td>'
                                    for i, c in enumerate(row)) + "</tr>\n" for row in rows)
    return Raw(f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>")


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
        if m.get("method") == "window" and _finite(m.get("latency_s")):
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


def energy_plot(performance: list[dict]) -> Figure | None:
    # One bar per board and path: the test sets' figures averaged, weighted by their inferences.
    totals: dict[tuple[str, str], list[float]] = {}
    for p in performance:
        if _finite(p.get("energy_uj")) and p.get("inferences"):
            total = totals.setdefault((str(p["slot"]), "exit" if p["exited"] else "full"), [0.0, 0])
            total[0] += p["energy_uj"] * p["inferences"]
            total[1] += p["inferences"]
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


def accuracy_plot(summaries: list[dict]) -> Figure | None:
    by_slot: dict[str, list[dict]] = {}
    for s in summaries:
        by_slot.setdefault(str(s["slot"]), []).append(s)
    if not by_slot:
        return None
    figure, axes = _panels(len(by_slot), width=3.6)
    for ax, (slot, rows) in zip(axes, by_slot.items()):
        for offset, key, colour in ((-0.2, "accuracy", "#55a868"), (0.2, "exit_rate", "#8172b3")):
            values = [r.get(key) if _finite(r.get(key)) else math.nan for r in rows]
            bars = ax.bar([i + offset for i in range(len(rows))], values, 0.4, color=colour,
                          label=key.replace("_", " "))
            # An OOD set has no labels, so no accuracy: say so rather than draw an empty gap.
            ax.bar_label(bars, labels=[_num(v, ".0%") if _finite(v) else "n/a" for v in values], fontsize=7)
        ax.set_xticks(range(len(rows)), [str(r["testset"]) for r in rows], fontsize=8)
        ax.set_ylim(0, 1.15)
        ax.set_title(slot, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=2, fontsize=8)
    return figure


def _header(run: dict, run_id: str) -> Raw:
    verdict = run.get("verdict") or {"status": run.get("status", "unknown"), "exit_code": "–", "reasons": []}
    status = str(verdict.get("status", "unknown"))
    css = status if status in ("pass", "fail", "error") else "other"
    reasons = "".join(f"<li>{_h(r)}</li>" for r in verdict.get("reasons") or [])
    git = run.get("git") or {}
    revision = Raw(f"{_sha(git.get('revision'))}{' (dirty tree)' if git.get('dirty') else ''}")
    facts = [("run id", Raw(f"<code>{_h(run_id)}</code>")), ("git revision", revision),
             ("started", run.get("started", "–")), ("finished", run.get("finished", "–")),
             ("samples", run.get("samples", "–")), ("threshold τ", (run.get("threshold") or {}).get("value", "–"))]
    if baseline := run.get("baseline"):
        facts.append(("baseline", Raw(f"<code>{_h(baseline.get('id', '?'))}</code> at revision "
                                      f"{_sha((baseline.get('git') or {}).get('revision'))}")))
    return Raw(f"<h1>Lab {_h((run.get('lab') or {}).get('name', '?'))}</h1>"
               f'<div class="verdict {css}"><span class="badge">{_h(status.upper())}</span> '
               f"exit code {_h(verdict.get('exit_code', '–'))}{f'<ul>{reasons}</ul>' if reasons else ''}</div>"
               "<dl>" + "".join(f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in facts) + "</dl>")


def _provenance(run: dict) -> Raw:
    boards = []
    for slot, b in (run.get("boards") or {}).items():
        where = f"emulated (QEMU {b.get('qemu_machine', '?')})" if b.get("emulated") else \
            f"probe {b.get('probe', '?')} ({b.get('target', '?')})"
        fw, clock = b.get("firmware") or {}, (b.get("reported") or {}).get("clock_hz")
        boards.append([slot, b.get("kind", "–"), b.get("model", "–"), where, _sha(fw.get("image_sha256")),
                       _sha(fw.get("model_sha256")), _num(clock, ".1f", 1e-6) + " MHz" if clock else "–"])
    sets = [[model, name, t.get("samples", "–"), _sha(t.get("sha256"))]
            for model, named in (run.get("testsets") or {}).items() for name, t in named.items()]
    return Raw(_table(["board", "kind", "model", "connection", "firmware image", "model sha256", "clock"], boards)
               + _table(["model", "test set", "samples", "sha256"], sets, numeric=[2]))


def _summary_rows(summaries: list[dict]) -> Iterable[list[object]]:
    for s in summaries:
        differ = (s.get("samples") or 0) - (s.get("exact") or 0)
        answered = s.get("samples", 0) if s.get("samples") == s.get("expected") else \
            _cls("warn", f"{s.get('samples')}/{s.get('expected')}")
        yield [s["slot"], s["testset"], answered, _num(s.get("accuracy"), ".1f", 100),
               _num(s.get("exit_rate"), ".1f", 100), _num((s.get("uncertainty") or {}).get("ece"), ".3f"),
               "exact" if not differ else _cls("bad", f"{differ} differ"),
               _num(s.get("exit_cycles_mean"), ",.0f"), _num(s.get("full_cycles_mean"), ",.0f")]


def _performance_rows(performance: list[dict]) -> Iterable[list[object]]:
    for p in performance:
        yield [p["slot"], p["testset"], "exit" if p.get("exited") else "full", p.get("inferences", "–"),
               *(_num(p.get(f"latency_ms_p{q}"), ".3f") for q in (50, 95, 99)), _num(p.get("energy_uj"), ",.1f"),
               p.get("energy_method", "–"), "ok" if p.get("clock_ok") else _cls("bad", "off"),
               p.get("unmeasured", 0) or "–"]


def _rules(rules: list[dict]) -> Raw:
    order = {"fail": 0, "skip": 1, "pass": 2}  # what needs a look first
    ranked = sorted(rules, key=lambda r: order.get(r["result"].get("status"), -1))  # stable: run order otherwise
    counts = {s: sum(r["result"].get("status") == s for r in rules) for s in order}
    rows = [[r["slot"], r["testset"], r["result"].get("rule", "?"),
             _cls({"fail": "bad", "skip": "warn"}.get(r["result"].get("status"), ""), r["result"].get("status")),
             r["result"].get("message", "")] for r in ranked]
    return Raw(f"<p>{counts['pass']} pass, {counts['fail']} fail, {counts['skip']} skipped.</p>"
               + _table(["board", "test set", "rule", "status", "message"], rows))


def write_report(run_dir: Path) -> Path:
    """Write run_dir/report.html from the run's files and return its path."""
    run_dir = Path(run_dir)
    # An interrupted or failed run may lack metrics or measurements: the page then says less, but exists.
    run = results.read_run(run_dir)  # json reads the NaN the run files hold
    metrics_path, measured_path = run_dir / results.METRICS_JSON, run_dir / records.MEASUREMENTS_PARQUET
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    measurements = pq.read_table(measured_path).to_pylist() if measured_path.is_file() else []
    run_id = str(run.get("id") or run_dir.name)
    summaries, performance = metrics.get("summaries") or [], metrics.get("performance") or []
    rules = metrics.get("rules") or []
    # Boards that failed need no table of their own: the verdict's reasons name each one, its stage and why.
    parts = [_header(run, run_id), Raw("<h2>Provenance</h2>"), _provenance(run),
             Raw("<h2>Per board and test set</h2>"),
             _table(["board", "test set", "answered", "acc %", "exit %", "ECE", "reconciled", "cycles exit",
                     "cycles full"], _summary_rows(summaries), numeric=[2, 3, 4, 5, 7, 8]),
             Raw('<p class="muted">reconciled: every output byte and decision of the device against the host '
                 "reference.</p><h2>Latency and energy per exit path</h2>"),
             _table(["board", "test set", "path", "inferences", "p50 ms", "p95 ms", "p99 ms", "energy µJ", "method",
                     "clock", "unmeasured"], _performance_rows(performance), numeric=[3, 4, 5, 6, 7, 10]),
             Raw('<p class="muted">Latency from the busy pin; energy above idle power from the INA219 samples of '
                 "the busy window (burst: one INFER_BURST window where inferences are shorter than 8 "
                 "conversions).</p><h2>Plots</h2>"),
             _figure("plot-latency", "Latency per inference, per board and exit path: histograms of the "
                     "one-inference busy-pin windows, each on its own axis.", latency_plot(measurements)),
             _figure("plot-energy", "Energy above idle per inference, per board and exit path (mean over the test "
                     "sets, weighted by inferences).", energy_plot(performance)),
             _figure("plot-accuracy", "Accuracy and exit rate per test set, per board (OOD sets have no labels, "
                     "so no accuracy).", accuracy_plot(summaries))]
    if rules:  # after the plots: a failing rule is already named in the verdict's reasons at the top
        baseline = (run.get("baseline") or {}).get("id", "?")
        parts += [Raw(f"<h2>Regression rules against baseline {_h(baseline)}</h2>"), _rules(rules)]
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_h((run.get('lab') or {}).get('name', '?'))} {_h(run_id)}: "
            f"{_h((run.get('verdict') or {}).get('status', run.get('status', '?')))}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(_h(p) for p in parts) + "\n</body></html>\n")
    path = run_dir / REPORT_HTML
    results.write_text(path, page)
    return path
