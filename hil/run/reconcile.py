"""Device answers against the host reference, sample by sample, and across boards.

A correct firmware shows no difference at all: the device's int8 outputs equal LiteRT's
reference kernels byte for byte, and its exit decision, class and confidence equal the
integer decision spec at the threshold it ran with. Any difference is a finding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.model import decisions
from hil.model.card import ModelCard
from hil.run.records import Record
from hil.model.reference import ReferenceOutputs


@dataclass(frozen=True)
class SampleCheck:
    record: Record
    differing_bytes: int  # int8 outputs that differ from the reference
    max_steps: int  # the largest difference, in quantization steps
    exit_agrees: bool
    class_agrees: bool
    confidence_agrees: bool

    @property
    def exact(self) -> bool:
        return self.differing_bytes == 0 and self.exit_agrees and self.class_agrees and self.confidence_agrees


def check_samples(card: ModelCard, reference: ReferenceOutputs, records: list[Record]) -> list[SampleCheck]:
    """Reconcile records of one model and test set against the reference of that test set."""
    ensemble = decisions.ensemble(list(reference.heads), card.head_luts)
    specs: dict[int, decisions.CascadeDecisions] = {}
    checks = []
    for record in records:
        if record.tau_q15 not in specs:
            specs[record.tau_q15] = decisions.cascade(reference.exit, card.exit_lut, ensemble, record.tau_q15)
        spec, i = specs[record.tau_q15], record.index
        expected = [reference.exit[i]] + ([h[i] for h in reference.heads] if record.head_logits else [])
        got = [record.exit_logits] + list(record.head_logits)
        if len(got) != len(expected) or any(len(g) != len(e) for g, e in zip(got, expected)):
            differing, steps = sum(len(e) for e in expected), 255  # the wrong outputs came back
        else:
            delta = np.abs(np.concatenate([np.asarray(g, int) - np.asarray(e, int) for g, e in zip(got, expected)]))
            differing, steps = int(np.count_nonzero(delta)), int(delta.max(initial=0))
        checks.append(SampleCheck(
            record=record,
            differing_bytes=differing,
            max_steps=steps,
            exit_agrees=record.exited == bool(spec.exited[i]),
            class_agrees=record.predicted == int(spec.predicted[i]),
            confidence_agrees=record.confidence_q15 == int(spec.confidence_q15[i]),
        ))
    return checks


@dataclass(frozen=True)
class Disagreement:
    """Two boards of the same model gave different answers to the same sample."""

    model: str
    testset: str
    index: int
    slots: tuple[str, ...]


def cross_board(records: list[Record]) -> list[Disagreement]:
    """Boards that ran the same model, sample and threshold must answer identically."""
    answers: dict[tuple, dict[tuple, list[str]]] = {}
    for r in records:
        answer = (r.exited, r.predicted, r.confidence_q15, tuple(r.exit_logits), tuple(map(tuple, r.head_logits)))
        answers.setdefault((r.model, r.testset, r.index, r.tau_q15), {}).setdefault(answer, []).append(r.slot)
    return [
        Disagreement(model, testset, index, tuple(sorted(slot for slots in by_answer.values() for slot in slots)))
        for (model, testset, index, _tau), by_answer in sorted(answers.items())
        if len(by_answer) > 1
    ]
