"""Host-reference evaluation of a model on its test sets (`hil model eval`).

Three configurations, all computed from the reference's int8 outputs with the integer
decision spec, exactly as a device answers:
- QUTE: the K-head ensemble (the exit is never taken, tau >= 1);
- single head: the base network's own final exit (softmax by the same spec);
- cascade: exit at the first early exit when its confidence >= tau, else the ensemble.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.model import decisions
from hil.stats import metrics
from hil.model.card import ModelCard
from hil.model.reference import DEFAULT_REFERENCE, Reference, ReferenceOutputs, run_reference
from hil.model.testsets import TestSet, TestSetKind

CASCADE_THRESHOLDS = ("0.5", "0.6", "0.7", "0.8", "0.9", "0.95", "1.0")
CONFIGS = ("qute", "single_head")


@dataclass(frozen=True)
class Answers:
    """One configuration's answers on one test set: probabilities for the metrics."""

    probabilities: np.ndarray  # (N, L), from Q15 integers
    predicted: np.ndarray
    confidence: np.ndarray


@dataclass(frozen=True)
class CascadePoint:
    threshold: str
    threshold_q15: int
    accuracy: float
    exit_rate: float
    macs_saved: float  # share of the full path's MACs not spent, over the test set


@dataclass(frozen=True)
class SetEvaluation:
    testset: TestSet
    answers: dict[str, Answers]  # per configuration
    reports: dict[str, metrics.UncertaintyReport]  # empty for an OOD set (it has no labels)
    cascade: list[CascadePoint]


@dataclass(frozen=True)
class ModelEvaluation:
    card: ModelCard
    sets: list[SetEvaluation]
    ood_auroc: dict[str, float]  # per configuration: clean vs ood confidence
    accuracy_drop_auprc: dict[str, dict[str, float]]  # shifted set -> configuration -> AUPRC
    reference: Reference = DEFAULT_REFERENCE  # the host interpreter the outputs came from


def answers(card: ModelCard, outputs: ReferenceOutputs) -> dict[str, Answers]:
    """The QUTE ensemble's and the single head's answers from int8 outputs."""
    ensemble = decisions.ensemble(list(outputs.heads), card.head_luts)
    single_q15, _ = decisions.softmax_q15(outputs.single_head, card.softmax_lut[card.single_head_output])
    single_predicted = decisions.argmax_lowest(outputs.single_head)
    return {
        "qute": Answers(ensemble.probabilities(len(card.head_outputs)), ensemble.predicted,
                        ensemble.confidence_q15 / decisions.Q15_ONE),
        "single_head": Answers(single_q15 / decisions.Q15_ONE, single_predicted,
                               single_q15.max(axis=1) / decisions.Q15_ONE),
    }


def cascade_sweep(card: ModelCard, outputs: ReferenceOutputs, labels: np.ndarray) -> list[CascadePoint]:
    ensemble = decisions.ensemble(list(outputs.heads), card.head_luts)
    stage2_share = card.stages["stage2"].macs / card.full_path_macs
    points = []
    for threshold in CASCADE_THRESHOLDS:
        tau_q15 = decisions.threshold_q15(threshold)
        answer = decisions.cascade(outputs.exit, card.exit_lut, ensemble, tau_q15)
        exit_rate = float(answer.exited.mean())
        accuracy = float(np.mean(answer.predicted == labels)) if (labels >= 0).all() else float("nan")
        points.append(CascadePoint(threshold, tau_q15, accuracy, exit_rate, exit_rate * stage2_share))
    return points


def evaluate_set(card: ModelCard, testset: TestSet, reference: Reference = DEFAULT_REFERENCE) -> SetEvaluation:
    outputs = run_reference(card, testset.inputs, reference=reference)
    per_config = answers(card, outputs)
    reports = {}
    if testset.kind != TestSetKind.OOD:
        classes = len(card.labels)
        reports = {name: metrics.summarize(testset.labels, a.probabilities, classes) for name, a in per_config.items()}
    return SetEvaluation(testset, per_config, reports, cascade_sweep(card, outputs, testset.labels))


def evaluate_model(card: ModelCard, testsets: list[TestSet],
                   reference: Reference = DEFAULT_REFERENCE) -> ModelEvaluation:
    sets = [evaluate_set(card, t, reference) for t in testsets]
    clean = next(s for s in sets if s.testset.kind == TestSetKind.CLEAN)
    ood_auroc, drops = {}, {}
    for evaluation in sets:
        if evaluation.testset.kind == TestSetKind.OOD:
            ood_auroc = {
                name: metrics.ood_auroc(clean.answers[name].confidence, evaluation.answers[name].confidence)
                for name in CONFIGS
            }
        if evaluation.testset.kind == TestSetKind.SHIFTED:
            drops[evaluation.testset.name] = {
                name: _drop_auprc(clean, evaluation, name) for name in CONFIGS
            }
    return ModelEvaluation(card, sets, ood_auroc, drops, reference)


def _drop_auprc(clean: SetEvaluation, shifted: SetEvaluation, config: str) -> float:
    """The paper's accuracy-drop AUPRC on the stream clean set, then shifted set."""
    streams = [clean, shifted]
    correct = np.concatenate([s.answers[config].predicted == s.testset.labels for s in streams])
    confidence = np.concatenate([s.answers[config].confidence for s in streams])
    return metrics.accuracy_drop_auprc(correct, confidence, n_clean=len(clean.testset))
