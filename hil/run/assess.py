"""Metrics per board and test set, computed from what the devices answered.

Probabilities come from the device's own int8 outputs through the integer decision spec
(the exit's softmax when it answered, else the heads' ensemble), so device metrics are
exactly what the device would have reported.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from hil.model import decisions
from hil.stats import metrics
from hil.model.card import ModelCard
from hil.run.reconcile import Disagreement, SampleCheck
from hil.run.records import Measurement, MeasurementMethod, Record
from hil.model.testsets import TestSet, TestSetKind


@dataclass(frozen=True)
class BoardSetSummary:
    slot: str
    model: str
    testset: str
    kind: TestSetKind
    samples: int  # answered
    expected: int  # in the test set
    accuracy: float  # nan for OOD sets
    exit_rate: float
    uncertainty: metrics.UncertaintyReport | None  # None for OOD sets and empty results
    exact: int  # samples reconciled exactly
    max_steps: int  # the largest output difference, in quantization steps
    exit_cycles_mean: float  # nan when no sample exited
    full_cycles_mean: float  # nan when every sample exited
    unmeasured: int | None = None  # answers without a measurement of their own; None: the board has no unit
    unmeasured_reasons: dict[str, int] = field(default_factory=dict)  # why -> how many answers

    @property
    def mismatched(self) -> int:
        return self.samples - self.exact

    @property
    def complete(self) -> bool:
        return self.samples == self.expected


@dataclass
class Assessment:
    """A run's journal judged against the host reference, per board and test set."""

    records: list[Record]
    measurements: list[Measurement]
    summaries: list[BoardSetSummary]
    performance: list[PathPerformance]
    mismatches: list[SampleCheck]
    disagreements: list[Disagreement]


def device_probabilities(card: ModelCard, exited: np.ndarray, exit_logits: np.ndarray,
                         head_logits: list[np.ndarray]) -> np.ndarray:
    """(N, L): the class probabilities the device's own int8 outputs give through the decision spec: the
    exit's softmax where it exited, else the heads' ensemble, each group in one batch. `exit_logits`:
    those of the samples that exited; `head_logits`: per head, those of the samples that did not; both
    in sample order. The one place they are computed, for a run's metrics and a replay at any τ."""
    probabilities = np.zeros((len(exited), len(card.labels)))
    if exited.any():
        probabilities[exited] = decisions.softmax_q15(exit_logits, card.exit_lut)[0] / decisions.Q15_ONE
    if not exited.all():
        probabilities[~exited] = decisions.ensemble(head_logits, card.head_luts).probabilities(len(card.head_outputs))
    return probabilities


def answered_probabilities(card: ModelCard, records: list[Record]) -> np.ndarray:
    """`device_probabilities` of the answers the device gave, as journaled."""
    exited = np.array([r.exited for r in records], dtype=bool)
    exit_logits = np.array([r.exit_logits for r in records if r.exited], np.int8)
    head_logits = [np.array([r.head_logits[h] for r in records if not r.exited], np.int8)
                   for h in range(len(card.head_outputs))]
    return device_probabilities(card, exited, exit_logits, head_logits)


def _mean(values: list[int]) -> float:
    return float(np.mean(values)) if values else math.nan


def summarize(card: ModelCard, testset: TestSet, slot: str, checks: list[SampleCheck]) -> BoardSetSummary:
    checks = sorted(checks, key=lambda c: c.record.index)
    records = [c.record for c in checks]
    labels = testset.labels[[r.index for r in records]]
    predicted = np.array([r.predicted for r in records], dtype=np.int64)
    uncertainty = None
    if records and testset.kind != TestSetKind.OOD:
        uncertainty = metrics.summarize(labels, answered_probabilities(card, records), len(card.labels))
    return BoardSetSummary(
        slot=slot,
        model=card.name,
        testset=testset.name,
        kind=testset.kind,
        samples=len(records),
        expected=len(testset),
        accuracy=float(np.mean(predicted == labels)) if records and testset.kind != TestSetKind.OOD else math.nan,
        exit_rate=float(np.mean([r.exited for r in records])) if records else math.nan,
        uncertainty=uncertainty,
        exact=sum(c.exact for c in checks),
        max_steps=max((c.max_steps for c in checks), default=0),
        exit_cycles_mean=_mean([r.cycles for r in records if r.exited]),
        full_cycles_mean=_mean([r.cycles for r in records if not r.exited]),
    )


NOT_MEASURED = "no window was taken: the board's unit was not read (it failed, or the run stopped first)"


def with_unmeasured(summary: BoardSetSummary, records: list[Record], measurements: list[Measurement],
                    ) -> BoardSetSummary:
    """The summary of a board that has a measurement unit, with its answers that have no window of their
    own and why (the latest reason journaled for each; a later session may have measured it since)."""
    measured = {m.index for m in measurements if m.method == MeasurementMethod.WINDOW}
    why = {m.index: m.reason for m in measurements if m.method == MeasurementMethod.UNMEASURED}
    reasons = Counter(why.get(r.index) or NOT_MEASURED for r in records if r.index not in measured)
    return replace(summary, unmeasured=sum(reasons.values()), unmeasured_reasons=dict(reasons.most_common()))


@dataclass(frozen=True)
class PathPerformance:
    """Latency and energy of one board, test set and exit path (exit: the early exit answered)."""

    slot: str
    testset: str
    exited: bool
    inferences: int  # measured one by one
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_p99: float
    energy_uj: float  # per inference, above idle; nan when unmeasurable
    energy_method: MeasurementMethod  # WINDOW: the mean of the inferences' own windows; BURST: one INFER_BURST window
    clock_ok: bool  # every busy-pin time agreed with the device's cycles
    unmeasured: int  # answers of this board and test set that have no measurement


def summarize_performance(measurements: list[Measurement], records: list[Record]) -> list[PathPerformance]:
    groups: dict[tuple[str, str, bool], list[Measurement]] = {}
    bursts: dict[tuple[str, str, bool], Measurement] = {}
    for m in measurements:
        if m.method == MeasurementMethod.BURST:
            bursts[(m.slot, m.testset, m.exited)] = m
        elif m.method == MeasurementMethod.WINDOW:
            groups.setdefault((m.slot, m.testset, m.exited), []).append(m)
    answered: dict[tuple[str, str], int] = {}
    for r in records:
        answered[(r.slot, r.testset)] = answered.get((r.slot, r.testset), 0) + 1
    measured: dict[tuple[str, str], int] = {}
    for (slot, testset, _exited), group in groups.items():
        measured[(slot, testset)] = measured.get((slot, testset), 0) + len(group)
    rows = []
    for key, group in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1], not item[0][2])):
        slot, testset, _exited = key
        latency_ms = np.array([m.latency_s for m in group]) * 1e3
        energies = [m.energy_j for m in group if m.energy_j is not None]
        if key in bursts and bursts[key].energy_j is not None:
            energy, method = bursts[key].energy_j, MeasurementMethod.BURST
        else:
            energy, method = (float(np.mean(energies)) if energies else math.nan), MeasurementMethod.WINDOW
        rows.append(PathPerformance(
            slot=slot, testset=testset, exited=key[2], inferences=len(group),
            latency_ms_p50=float(np.percentile(latency_ms, 50)), latency_ms_p95=float(np.percentile(latency_ms, 95)),
            latency_ms_p99=float(np.percentile(latency_ms, 99)), energy_uj=energy * 1e6, energy_method=method,
            clock_ok=all(m.clock_ok for m in group),
            unmeasured=answered.get((slot, testset), 0) - measured[(slot, testset)],
        ))
    return rows


@dataclass(frozen=True)
class SweepPoint:
    """One board at one threshold τ of a sweep (measured, or replayed on the host): its clean test set's figures."""

    slot: str
    tau: str
    tau_q15: int
    accuracy: float  # the clean test set
    exit_rate: float
    ece: float
    nll: float
    brier: float
    failure_auroc: float
    latency_ms: float  # mean per inference, busy pin
    energy_uj: float  # per inference above idle, exit paths weighted by their share
    pareto: bool = False
    recommended: bool = False
