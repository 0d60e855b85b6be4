"""`hil sweep`: the early-exit threshold τ swept on the devices, set over the link, no reflash.

The rack comes up once. For each τ (and always τ = 1, the pure QUTE reference) every
board streams its test sets and is measured, exactly as in `hil run`, into its own run
directory results/<sweep-id>/tau-<τ>/, reconciled against the host reference at that τ.
Each board's clean test set gives the sweep's figures: accuracy, exit rate, uncertainty
metrics, and latency and energy per inference (each exit path's measured energy weighted
by how often it was taken). A point is on the Pareto front when no other τ of the board
is at least as accurate for at most the energy, and better in one. With a constraint
(`--max-accuracy-drop` points against τ = 1) the cheapest τ that keeps it is recommended.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from hil.model import decisions
from hil.stats import metrics
from hil.run import health, records
from hil.store import files, results
from hil.errors import BadInput
from hil.lab.load import Lab
from hil.run.profile import ProfileFile, SampleChoice, profile_rack
from hil.run.rack import BoardFailure, Rack, reserve
from hil.run.session import Progress, assess, board_identities, host_references, pending_jobs, provenance, stream_boards
from hil.run.assess import Assessment, SweepPoint, device_probabilities, summarize_performance
from hil.run.recovery import Recovery
from hil.run.verdict import Verdict, decide
from hil.model.testsets import TestSetKind

REFERENCE = Decimal("1.0")
ENERGY_RESOLUTION = 0.005  # relative: energies closer than this are one figure, within the INA219's noise


def parse_thresholds(text: str) -> list[Decimal]:
    """`START:STOP[:STEP]` (default step 0.05), inclusive, in decimal steps; τ = 1 is added."""
    parts = text.split(":")
    try:
        start, stop, step = (Decimal(p) for p in (parts + ["0.05"])[:3]) if len(parts) in (2, 3) else (None,) * 3
    except InvalidOperation:
        start = None
    if start is None or not (0 <= start <= stop <= 1) or step <= 0:
        raise BadInput(f"--threshold {text}: give START:STOP[:STEP] with 0 <= START <= STOP <= 1 and STEP > 0, "
                       "e.g. 0.5:0.95:0.05")
    count = int((stop - start) / step) + 1
    if count > 101:
        raise BadInput(f"--threshold {text}: {count} thresholds; use a larger step (at most 101 points)")
    taus = [start + i * step for i in range(count)]
    return taus + ([REFERENCE] if REFERENCE not in taus else [])


def parse_window(text: str) -> tuple[Decimal, Decimal]:
    try:
        low, high = (Decimal(part) for part in text.split(":"))
    except (ValueError, InvalidOperation):
        low = high = Decimal(-1)
    if not 0 <= low <= high <= 1:
        raise BadInput(f"--window {text}: give W0:W1 with 0 <= W0 <= W1 <= 1, e.g. 0.3:0.9")
    return low, high


def load_points(sweep_dir: Path) -> list[SweepPoint]:
    return files.read_sweep(sweep_dir).points


def _point(slot: str, tau: Decimal, tau_q15: int, now: Assessment) -> SweepPoint:
    summary = next(s for s in now.summaries if s.slot == slot and s.kind == TestSetKind.CLEAN)
    latency = [m.latency_s for m in now.measurements
               if (m.slot, m.testset, m.method) == (slot, summary.testset, "window")]
    energy = {p.exited: p.energy_uj for p in now.performance if (p.slot, p.testset) == (slot, summary.testset)}
    share = {True: summary.exit_rate, False: 1 - summary.exit_rate}
    energy_uj = sum(share[path] * value for path, value in energy.items() if share[path]) if energy else math.nan
    u = summary.uncertainty
    return SweepPoint(slot, str(tau), tau_q15, summary.accuracy, summary.exit_rate,
                      u.ece if u else math.nan, u.nll if u else math.nan, u.brier if u else math.nan,
                      u.failure_auroc if u else math.nan,
                      1e3 * float(np.mean(latency)) if latency else math.nan, energy_uj)


def judge_points(points: list[SweepPoint], max_accuracy_drop: float | None) -> list[SweepPoint]:
    """Mark each board's Pareto front (accuracy up, energy down) and, under the constraint, the cheapest τ."""
    judged = []
    for slot in dict.fromkeys(p.slot for p in points):
        mine = [p for p in points if p.slot == slot]
        reference = next(p for p in mine if p.tau_q15 == decisions.Q15_ONE)
        allowed = [p for p in mine if max_accuracy_drop is not None
                   and p.accuracy >= reference.accuracy - max_accuracy_drop / 100 - 1e-12]
        # Energies within ENERGY_RESOLUTION count as equal (INA219 noise); then the higher τ, the safer, wins.
        floor = min((p.energy_uj for p in allowed), default=math.nan)
        cheapest = [p for p in allowed if p.energy_uj <= floor * (1 + ENERGY_RESOLUTION)]
        best = max(cheapest, key=lambda p: p.tau_q15, default=None)
        for p in mine:
            dominated = any(q.accuracy >= p.accuracy and q.energy_uj <= p.energy_uj * (1 + ENERGY_RESOLUTION)
                            and (q.accuracy > p.accuracy or q.energy_uj < p.energy_uj * (1 - ENERGY_RESOLUTION)
                                 or q.tau_q15 > p.tau_q15) for q in mine if q is not p)
            judged.append(SweepPoint(**{**asdict(p), "pareto": not dominated, "recommended": p is best}))
    return judged


@dataclass
class SweepOutcome:
    sweep_dir: Path
    points: list[SweepPoint]
    failures: list[BoardFailure]
    verdict: Verdict
    max_accuracy_drop: float | None
    recoveries: list[Recovery]
    profiles: ProfileFile  # each board's per-layer profile at bring-up: its stage-1 and stage-2 cycles


def run_sweep(lab: Lab, taus: list[Decimal], progress: Progress, max_accuracy_drop: float | None,
              wait_s: float = 0.0) -> SweepOutcome:
    """`wait_s`: how long to queue for boards another run holds (`hil sweep --wait`), as `hil run` does.
    Quarantined boards are left out, as by `hil run`; a board that fails mid-sweep is taken up the recovery
    ladder, and what it tried is kept in sweep.json (`recoveries`)."""
    points, failures, summaries, disagreements = [], [], [], []
    aside = health.set_aside(lab)
    jobs = {slot: board_jobs for slot, board_jobs in pending_jobs(lab, {}).items()
            if slot not in {q.slot for q in aside}}
    references = host_references(lab)
    recoveries: list[Recovery] = []
    with reserve(lab, list(jobs), wait_s) as lab:  # the whole rack or a refusal, before the sweep's folder is made
        sweep_dir = results.new_run_dir(lab.results_dir)
        made_by = provenance(lab, sweep_dir)
        with Rack(lab, list(jobs), decisions.threshold_q15(str(taus[0])), sweep_dir / "traces") as rack:
            failures += rack.failures
            made_by.boards = board_identities(rack)
            # What each stage costs on each board, from one profile of its first sample (profile.json).
            profiles = ProfileFile(*profile_rack(rack, SampleChoice(), 1))
            profiles.write(sweep_dir)
            try:
                for tau in taus:
                    tau_q15 = decisions.threshold_q15(str(tau))
                    point_dir = sweep_dir / f"tau-{tau}"
                    point_dir.mkdir()
                    for board in rack.ready:
                        board.link.set_threshold(tau_q15)  # over the link: the image stays as flashed
                    failures += stream_boards(rack, jobs, point_dir, tau_q15, progress)
                    now = assess(lab, point_dir, references)
                    summaries += now.summaries
                    disagreements += now.disagreements
                    points += [_point(board.slot, tau, tau_q15, now) for board in rack.ready]
            finally:
                recoveries = rack.recoveries
    points = judge_points(points, max_accuracy_drop)
    verdict = decide(summaries, disagreements, failures, quarantined=health.quarantine_notes(aside, lab.file),
                     reference=lab.run.reference)
    files.SweepFile(files.SweepProvenance.of(made_by), [str(t) for t in taus], max_accuracy_drop, points, failures,
                    verdict, recoveries, aside).write(sweep_dir)
    return SweepOutcome(sweep_dir, points, failures, verdict, max_accuracy_drop, recoveries, profiles)


def _replayed(slot: str, label: str, tau_q15: int, exited: np.ndarray, predicted: np.ndarray,
              probabilities: np.ndarray, labels: np.ndarray, stage1_s: np.ndarray, full_s: np.ndarray,
              full_energy_j: float) -> SweepPoint:
    report = metrics.summarize(labels, probabilities, probabilities.shape[1])
    latency_s = np.where(exited, stage1_s, full_s)
    # Energy above idle scales with busy time when power is steady within an inference (the
    # emulated rack's model; on hardware stage 2 may draw differently): so does the prediction.
    energy_j = full_energy_j * latency_s / full_s
    return SweepPoint(slot, label, tau_q15, float(np.mean(predicted == labels)), float(np.mean(exited)), report.ece,
                      report.nll, report.brier, report.failure_auroc, 1e3 * float(np.mean(latency_s)),
                      1e6 * float(np.mean(energy_j)))


def replay(lab: Lab, run_dir: Path, taus: list[Decimal], window: tuple[Decimal, Decimal] | None = None,
           ) -> list[SweepPoint]:
    """The whole sweep predicted on the host from one full-path run (τ = 1), as T-RECX does.

    Every sample of such a run carries its exit's and its heads' int8 outputs, so the integer
    decision spec gives exactly what the device would answer at any τ (and for a window
    cascade: defer to stage 2 only when w0 <= confidence <= w1). The exit pin's time in
    each busy window is stage 1's, so an exit's latency is known too, not modelled."""
    everything = records.read_records(run_dir)
    if not everything or any(r.tau_q15 < decisions.Q15_ONE or r.exited for r in everything):
        raise BadInput(f"{run_dir}: not a full-path run; replay needs one made at threshold 1.0 "
                       "(run.threshold: 1.0 in the lab file)")
    measured = {(m.slot, m.testset, m.index): m for m in records.read_measurements(run_dir)
                if m.method == records.MeasurementMethod.WINDOW}
    performance = summarize_performance(list(measured.values()), everything)
    points = []
    for board in lab.boards:
        model = lab.models[board.model]
        clean = next(t for t in model.testsets if t.kind == TestSetKind.CLEAN)
        rows = sorted((r for r in everything if (r.slot, r.testset) == (board.slot, clean.name)), key=lambda r: r.index)
        timing = [measured.get((board.slot, clean.name, r.index)) for r in rows]
        if not rows or any(m is None or m.stage1_s is None for m in timing):
            continue  # a board this run did not measure
        card = model.card
        exit_logits = np.array([r.exit_logits for r in rows], np.int8)
        head_logits = [np.array([r.head_logits[h] for r in rows], np.int8) for h in range(len(card.head_outputs))]
        heads = decisions.ensemble(head_logits, card.head_luts)
        exit_lut = card.exit_lut
        labels = np.array([r.label for r in rows])
        stage1_s = np.array([m.stage1_s for m in timing])
        full_s = np.array([m.latency_s for m in timing])
        full_energy = next((p.energy_uj / 1e6 for p in performance
                            if (p.slot, p.testset, p.exited) == (board.slot, clean.name, False)), math.nan)
        confidence = decisions.exit_confidence_q15(exit_logits, exit_lut)
        exit_predicted = decisions.argmax_lowest(exit_logits.astype(np.int64))
        cases = []
        for tau in taus:
            tau_q15 = decisions.threshold_q15(str(tau))
            cases.append((str(tau), tau_q15, decisions.takes_exit(confidence, tau_q15)))
        if window is not None:
            low, high = (decisions.threshold_q15(str(w)) for w in window)
            cases.append((f"[{window[0]},{window[1]}]", -1, (confidence < low) | (confidence > high)))
        for label, tau_q15, exited in cases:
            predicted = np.where(exited, exit_predicted, heads.predicted)
            probabilities = device_probabilities(card, exited, exit_logits[exited],
                                                 [h[~exited] for h in head_logits])
            points.append(_replayed(board.slot, label, tau_q15, exited, predicted, probabilities, labels, stage1_s,
                                    full_s, full_energy))
    if not points:
        raise BadInput(f"{run_dir}: no board of this lab was measured in that run (no exit-pin times)")
    return points
