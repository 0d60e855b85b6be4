"""The host reference: a model's stages run on the host with reference kernels, in batches.

Its per-sample int8 outputs are what every device answer is reconciled against. Two references
(docs/decisions.md "Which reference"): LiteRT's BUILTIN_REF kernels, or TFLM's own interpreter; they
differ by one step on some FULLY_CONNECTED outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from hil.model.litert import reference_interpreter
from hil.model.card import ModelCard
from hil.model.tflm import TflmStage

DEFAULT_BATCH = 256


class Reference(StrEnum):
    """Which host interpreter the device's answers are checked against."""

    LITERT = "litert"  # LiteRT, BUILTIN_REF kernels: requantizes FULLY_CONNECTED in double, one rounding
    TFLM = "tflm"  # TFLM's reference kernels (tflite-micro): the integer, doubly-rounded requantization


DEFAULT_REFERENCE = Reference.LITERT


@dataclass(frozen=True)
class ReferenceOutputs:
    """int8 outputs per sample: (N, classes) each."""

    exit: np.ndarray
    heads: tuple[np.ndarray, ...]
    single_head: np.ndarray

    def __len__(self) -> int:
        return len(self.exit)


class StageRunner:
    """One stage's interpreter, fed batches through its signature (names from model.json)."""

    def __init__(self, card: ModelCard, stage: str, reference: Reference = DEFAULT_REFERENCE):
        self.stage = card.stages[stage]
        if reference is Reference.TFLM:
            self._runner = TflmStage(self.stage.path)
        else:
            self._runner = reference_interpreter(self.stage.path).get_signature_runner()
        self._input_name = self.stage.inputs[0].name

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        # The signature runner resizes the batch dimension when the batch size changes.
        return self._runner(**{self._input_name: np.ascontiguousarray(batch, dtype=np.int8)})


def run_reference(card: ModelCard, inputs: np.ndarray, batch_size: int = DEFAULT_BATCH,
                  reference: Reference = DEFAULT_REFERENCE) -> ReferenceOutputs:
    """Run stage 1, stage 2 and the single-head baseline on every input, in the chosen reference."""
    stage1, stage2, baseline = (StageRunner(card, s, reference) for s in ("stage1", "stage2", "baseline"))
    collected: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(inputs), batch_size):
        first = stage1(inputs[start : start + batch_size])
        feature = first["feature"]
        for outputs in (first, stage2(feature), baseline(feature)):
            for name, values in outputs.items():
                if name != "feature":
                    collected.setdefault(name, []).append(values)
    joined = {name: np.concatenate(parts) for name, parts in collected.items()}
    return ReferenceOutputs(
        exit=joined[card.exit_output],
        heads=tuple(joined[name] for name in card.head_outputs),
        single_head=joined[card.single_head_output],
    )
