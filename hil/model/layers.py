"""A model's layers as the firmware runs them: stage 1's operators, then stage 2's, numbered across
both stages in that order (hil/firmware/codegen.py calls `model_layer_done` with the same numbers).
Per-layer figures (a device profile, a trace against LiteRT's intermediate tensors) are read
against this table: its op, output shape and MACs, and the output tensor's index in its stage's
LiteRT interpreter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.model.card import ModelCard, operator_macs
from hil.model.litert import reference_interpreter

STAGES = ("stage1", "stage2")


@dataclass(frozen=True)
class Layer:
    index: int  # across both stages, as the firmware numbers it
    stage: str
    op_index: int  # within its stage's .tflite
    op: str  # the TFLite builtin: CONV_2D, DEPTHWISE_CONV_2D, ...
    output_shape: tuple[int, ...]
    output_tensor: int  # the output's tensor index in its stage's interpreter
    macs: int

    @property
    def output_bytes(self) -> int:
        return int(np.prod(self.output_shape))  # int8


def model_layers(card: ModelCard) -> list[Layer]:
    """Every layer of both stages, in the firmware's order."""
    layers: list[Layer] = []
    for stage in STAGES:
        interpreter = reference_interpreter(card.stages[stage].path)
        interpreter.allocate_tensors()
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        ops = interpreter._get_ops_details()  # noqa: SLF001 - LiteRT's only op listing (as hil/model/card.py)
        for op_index, op in enumerate(ops):
            output = int(op["outputs"][0])
            layers.append(Layer(index=len(layers), stage=stage, op_index=op_index, op=op["op_name"],
                                output_shape=tuple(int(d) for d in tensors[output]["shape"]),
                                output_tensor=output, macs=operator_macs(op, tensors)))
    return layers
