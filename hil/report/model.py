"""Model card and host evaluation as tables (hil/report/table.py), rendered for the terminal
(rich) or Markdown: the terminal and docs/models.md always show the same figures.
"""

from __future__ import annotations

import math
from collections import Counter

from hil.hw.kinds import smallest_kind
from hil.model.evaluation import CONFIGS, ModelEvaluation
from hil.model.card import ModelCard
from hil.model.reference import Reference
from hil.report.table import Table
from hil.model.testsets import TestSetKind

CONFIG_TITLES = {"qute": "QUTE ensemble", "single_head": "single head"}
REFERENCE_TITLES = {Reference.LITERT: "LiteRT reference kernels", Reference.TFLM: "TFLM reference kernels"}


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


def _num(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def card_tables(card: ModelCard) -> list[Table]:
    heads = ", ".join(card.head_outputs)
    rows = [
        ["model", card.name],
        ["model.json sha256", card.sha256],
        ["input", f"int8 {list(card.input.shape)}, scale {card.input.scale:.6g}, zero point {card.input.zero_point}"],
        ["labels", " ".join(card.labels)],
        ["early exit (cascade stage)", f"{card.exit_output} in stage1, after block 1"],
        ["QUTE heads", f"{heads} in stage2 (depthwise weights copied from the early exits)"],
        ["single-head baseline", f"{card.single_head_output} in baseline.tflite (not deployed)"],
        ["deployed parameters", f"{card.deployed_parameters:,}"],
        ["MACs, exit path / full path", f"{card.stages['stage1'].macs:,} / {card.full_path_macs:,}"],
    ]
    weights = card.stages["stage1"].weight_bytes + card.stages["stage2"].weight_bytes
    arena = max(card.stages["stage1"].peak_activation_bytes, card.stages["stage2"].peak_activation_bytes)
    small = smallest_kind()  # the paper's small MCU, which every model must fit with room to spare
    rows.append([f"fits {small.mcu}",
                 f"weights {weights / 1024:.1f} KiB of {small.flash.size // 1024} KiB flash, "
                 f"largest layer activations {arena / 1024:.1f} KiB of {small.ram.size // 1024} KiB RAM"])
    if "float_test_accuracy" in card.training:
        rows.append(["trained", f"seed {card.training['seed']}, {card.training['epochs']} epochs "
                                f"(base frozen for the last {card.training['frozen_base_epochs']}), "
                                f"TensorFlow {card.training['tensorflow']}"])
    summary = Table.of(f"Model card: {card.name}", ["field", "value"], rows)

    stage_rows = []
    for stage in card.stages.values():
        ops = Counter(stage.ops)
        stage_rows.append([
            stage.name, stage.path.name, stage.sha256[:16],
            " → ".join(f"{t.name}{list(t.shape[1:])}" for t in stage.inputs),
            ", ".join(f"{t.name}{list(t.shape[1:])}" for t in stage.outputs),
            ", ".join(f"{op}×{n}" for op, n in ops.items()),
            f"{stage.macs:,}", f"{stage.parameters:,}", f"{stage.weight_bytes:,}",
        ])
    columns = ["stage", "file", "sha256", "input", "outputs", "ops", "MACs", "params", "weight bytes"]
    stages = Table.of("Stages", columns, stage_rows)
    return [summary, stages]


def evaluation_tables(evaluation: ModelEvaluation) -> list[Table]:
    card = evaluation.card
    rows = []
    for result in evaluation.sets:
        for config, report in result.reports.items():
            rows.append([
                result.testset.name, str(len(result.testset)), CONFIG_TITLES[config],
                _pct(report.accuracy), _num(report.weighted_f1), _num(report.nll), _num(report.brier, 4),
                _num(report.ece), _num(report.failure_auroc), _num(report.aurc, 4),
            ])
    uncertainty = Table.of(
        f"{card.name}: host reference (int8, {REFERENCE_TITLES[evaluation.reference]}), QUTE vs single head",
        ["test set", "n", "configuration", "acc %", "F1 (weighted)", "NLL", "Brier", "ECE (15 bins)",
         "failure AUROC", "AURC"],
        rows,
    )

    detection_rows = []
    for config in CONFIGS:
        row = [CONFIG_TITLES[config], _num(evaluation.ood_auroc.get(config, float("nan")))]
        row += [_num(by_config[config]) for by_config in evaluation.accuracy_drop_auprc.values()]
        detection_rows.append(row)
    detection = Table.of(
        f"{card.name}: OOD and accuracy-drop detection (confidence as the score)",
        ["configuration", "OOD AUROC (clean vs ood)"]
        + [f"acc-drop AUPRC clean→{name}" for name in evaluation.accuracy_drop_auprc],
        detection_rows,
    )

    cascade_rows = []
    for index, threshold in enumerate(p.threshold for p in evaluation.sets[0].cascade):
        row = [threshold]
        for result in evaluation.sets:
            point = result.cascade[index]
            accuracy = "" if math.isnan(point.accuracy) else f"acc {_pct(point.accuracy)} · "
            row.append(f"{accuracy}exit {_pct(point.exit_rate)}")
        clean = next(r for r in evaluation.sets if r.testset.kind == TestSetKind.CLEAN)
        row.append(_pct(clean.cascade[index].macs_saved))
        cascade_rows.append(row)
    cascade = Table.of(
        f"{card.name}: cascade (exit 1 when its confidence ≥ τ, else the QUTE ensemble), % of samples",
        ["τ"] + [r.testset.name for r in evaluation.sets] + ["MACs saved % (clean)"],
        cascade_rows,
    )

    tables = [uncertainty, detection, cascade]
    floats = card.training.get("float_test_accuracy")
    if floats:
        clean = next(r for r in evaluation.sets if r.testset.kind == TestSetKind.CLEAN)
        int8 = {"qute_ensemble": clean.reports["qute"].accuracy, "single_head": clean.reports["single_head"].accuracy}
        tables.append(Table.of(
            f"{card.name}: int8 against float accuracy on the clean test set",
            ["configuration", "float acc %", "int8 acc %", "difference (points)"],
            [[CONFIG_TITLES["qute" if key == "qute_ensemble" else key], _pct(floats[key]), _pct(int8[key]),
              f"{100 * (int8[key] - floats[key]):+.1f}"] for key in int8],
        ))
    return tables
