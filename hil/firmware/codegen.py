"""Turn a model's .tflite stages into C for the firmware (`hil firmware generate`).

Output per model, in firmware/generated/<model>/:
- model.h: sizes and the two stage functions the runtime calls;
- model.c: weights as const arrays, Prepare-time quantization parameters computed here
  (hil/firmware/quantization.py), a static tensor arena sized and laid out here, the layer call
  sequence, the softmax tables and the model's sha256.
Stage 1's feature map stays in the arena for stage 2; stage inputs and outputs are the
caller's buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from hil import REPO_ROOT
from hil.firmware import quantization
from hil.errors import BadInput
from hil.model.card import ModelCard

GENERATED_DIR = REPO_ROOT / "firmware" / "generated"  # a checkout's only (hil.assets)
ACTIVATION_NAMES = {code: name for name, code in quantization.ACTIVATIONS.items()}
PADDING_NAMES = {code: name for name, code in quantization.PADDINGS.items()}
ALIGN = 4
# The DSP kernels' static scratch in int16 entries and their rescale table's channels, the defines
# of firmware/src/kernels.h (tests/unit/test_kernels_dsp.py holds them equal): a layer past them
# would run the portable kernel on a DSP core, so the generator refuses it instead.
K_DSP_SCRATCH_Q15 = 1152
K_DSP_MAX_CHANNELS = 64

OP_NAMES = {
    schema.BuiltinOperator.CONV_2D: "CONV_2D",
    schema.BuiltinOperator.DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D",
    schema.BuiltinOperator.FULLY_CONNECTED: "FULLY_CONNECTED",
    schema.BuiltinOperator.AVERAGE_POOL_2D: "AVERAGE_POOL_2D",
    schema.BuiltinOperator.RESHAPE: "RESHAPE",
}


def read_tflite(path: Path) -> schema.ModelT:
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(Path(path).read_bytes(), 0))


@dataclass
class Activation:
    """A tensor the kernels read or write at run time: in the arena or a caller's buffer."""

    key: str
    size: int
    binding: str | None = None  # a C expression for a caller's buffer; None means arena
    first: int | None = None  # step that writes it (None: written before stage 1, by the caller)
    last: int = -1  # last step that reads it
    offset: int = -1


@dataclass
class Plan:
    """The call sequence of both stages and everything it needs."""

    constants: list[str] = field(default_factory=list)  # C definitions of weights and parameters
    # stage -> (C call with {source} and {target} left open, key read, key written)
    calls: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    tensors: dict[str, Activation] = field(default_factory=dict)


def c_multipliers(name: str, multipliers: list[tuple[int, int]]) -> str:
    entries = ", ".join(f"{{{multiplier}, {shift}}}" for multiplier, shift in multipliers)
    return f"static const qmul_t {name}[{len(multipliers)}] = {{{entries}}};\n"


def c_struct(c_type: str, name: str, fields: dict) -> str:
    body = ",\n".join(f"    .{key} = {int(value)}" for key, value in fields.items())
    return f"static const {c_type} {name} = {{\n{body},\n}};\n"


def c_array(c_type: str, name: str, values, per_line: int = 16) -> str:
    values = [int(v) for v in np.asarray(values).ravel()]
    lines = [", ".join(str(v) for v in values[i : i + per_line]) for i in range(0, len(values), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {c_type} {name}[{len(values)}] = {{\n    {body}\n}};\n"


class StageTranslator:
    """Translates one stage's operators into kernel calls."""

    def __init__(self, plan: Plan, stage: str, model: schema.ModelT, bindings: dict[int, tuple[str, str | None]]):
        self.plan, self.stage, self.model = plan, stage, model
        self.graph = model.subgraphs[0]
        self.bindings = bindings  # tensor index -> (activation key, C buffer or None for arena)
        plan.calls[stage] = []

    def tensor(self, index: int):
        return self.graph.tensors[index]

    def constant(self, index: int, dtype) -> np.ndarray:
        tensor = self.tensor(index)
        data = self.model.buffers[tensor.buffer].data
        if data is None:
            raise BadInput(f"{self.stage}: tensor {tensor.name.decode()} should be constant but has no data")
        return np.frombuffer(bytes(bytearray(data)), dtype=dtype).reshape(tuple(tensor.shape))

    def quant(self, index: int) -> tuple[list[float], int]:
        q = self.tensor(index).quantization
        return [float(s) for s in q.scale], int(q.zeroPoint[0])

    def activation_key(self, index: int) -> str:
        if index in self.bindings:
            key, binding = self.bindings[index]
        else:
            key, binding = f"{self.stage}_t{index}", None
        if key not in self.plan.tensors:
            size = int(np.prod(self.tensor(index).shape))
            self.plan.tensors[key] = Activation(key, size, binding)
        return key

    def translate(self) -> None:
        for number, op in enumerate(self.graph.operators):
            code = self.model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            if builtin not in OP_NAMES:
                raise BadInput(f"{self.stage}: operator {builtin} is not in the firmware's kernel library")
            if any(self.tensor(i).type != schema.TensorType.INT8 for i in (op.inputs[0], op.outputs[0])):
                raise BadInput(f"{self.stage}: operator {number} is not int8")
            name = f"{self.stage}_op{number}"
            self._check_dsp_limits(name, OP_NAMES[builtin], op)
            emit = getattr(self, "_" + OP_NAMES[builtin].lower())
            call = emit(name, op)
            reads, writes = self.activation_key(op.inputs[0]), self.activation_key(op.outputs[0])
            self.plan.calls[self.stage].append((call, reads, writes))

    def _check_dsp_limits(self, name: str, op_name: str, op) -> None:
        """CONV_2D gathers two im2col columns into the DSP kernels' scratch, DEPTHWISE_CONV_2D kernel_h
        widened input rows, FULLY_CONNECTED its widened input; the convolutions rescale from a table of
        at most K_DSP_MAX_CHANNELS channels."""
        shape = self.tensor(op.inputs[1]).shape if len(op.inputs) > 1 else None
        if op_name == "CONV_2D":
            needed = 2 * int(np.prod(shape[1:]))  # [out_c, kh, kw, in_c]: two columns of kh * kw * in_c
        elif op_name == "DEPTHWISE_CONV_2D":
            in_w = int(self.tensor(op.inputs[0]).shape[2])  # input [1, h, w, c], filter [1, kh, kw, out_c]
            needed = int(shape[1]) * in_w * int(shape[3])
        elif op_name == "FULLY_CONNECTED":
            needed = int(shape[1])  # [out, in]
        else:
            return
        if op_name != "FULLY_CONNECTED":
            channels = int(shape[0] if op_name == "CONV_2D" else shape[3])
            if channels > K_DSP_MAX_CHANNELS:
                raise BadInput(f"{name}: {op_name} has {channels} output channels, more than the DSP kernels' "
                               f"K_DSP_MAX_CHANNELS = {K_DSP_MAX_CHANNELS}: raise it in firmware/src/kernels.h "
                               "and hil/firmware/codegen.py")
        if needed > K_DSP_SCRATCH_Q15:
            raise BadInput(f"{name}: {op_name} needs {needed} int16 of DSP kernel scratch, more than "
                           f"K_DSP_SCRATCH_Q15 = {K_DSP_SCRATCH_Q15}: raise it in firmware/src/kernels.h "
                           "and hil/firmware/codegen.py")

    def _quantization(self, op) -> dict:
        in_scales, in_zp = self.quant(op.inputs[0])
        out_scales, out_zp = self.quant(op.outputs[0])
        return dict(input_scale=in_scales[0], input_zero_point=in_zp, output_scale=out_scales[0],
                    output_zero_point=out_zp, activation=ACTIVATION_NAMES[op.builtinOptions.fusedActivationFunction])

    def _convolution(self, name, op, kernel: str, params) -> str:
        options = op.builtinOptions
        weights = self.constant(op.inputs[1], np.int8)
        filter_scales, filter_zp = self.quant(op.inputs[1])
        if filter_zp != 0:
            raise BadInput(f"{name}: per-channel weights must be symmetric (zero point 0)")
        fields, multipliers = params(
            self.tensor(op.inputs[0]).shape, weights.shape, stride=(options.strideH, options.strideW),
            dilation=(options.dilationHFactor, options.dilationWFactor), padding=PADDING_NAMES[options.padding],
            filter_scales=filter_scales, **self._quantization(op))
        self._check_output_shape(name, op, fields)
        self.plan.constants += [
            c_array("int8_t", f"{name}_weights", weights),
            c_multipliers(f"{name}_quant", multipliers),
            c_struct("conv_params_t", f"{name}_params", fields),
        ]
        bias = self._bias(name, op)
        return f"{kernel}(&{name}_params, {{source}}, {name}_weights, {bias}, {name}_quant, {{target}});"

    def _check_output_shape(self, name, op, fields) -> None:
        shape = self.tensor(op.outputs[0]).shape
        if (fields["out_h"], fields["out_w"]) != (int(shape[1]), int(shape[2])):
            raise BadInput(f"{name}: output shape {list(shape)} does not follow from its padding")

    def _bias(self, name, op) -> str:
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            return "NULL"
        self.plan.constants.append(c_array("int32_t", f"{name}_bias", self.constant(op.inputs[2], np.int32), 8))
        return f"{name}_bias"

    def _conv_2d(self, name, op) -> str:
        return self._convolution(name, op, "k_conv2d", quantization.conv_params)

    def _depthwise_conv_2d(self, name, op) -> str:
        return self._convolution(name, op, "k_depthwise_conv2d", quantization.depthwise_params)

    def _fully_connected(self, name, op) -> str:
        weights = self.constant(op.inputs[1], np.int8)
        filter_scales, filter_zp = self.quant(op.inputs[1])
        quant = self._quantization(op)
        fields, scales, per_channel = quantization.fc_params(
            int(weights.shape[1]), int(weights.shape[0]), filter_scales=filter_scales,
            filter_zero_point=filter_zp, **quant)
        # The scales in both rounding modes' forms; the image's mode, a define, picks one (kernels.h).
        multipliers = quantization.per_channel_multipliers(quant["input_scale"], filter_scales,
                                                           quant["output_scale"], len(scales))
        doubles = ", ".join(f"{{{mantissa}u, {exponent}}}" for mantissa, exponent in scales)
        self.plan.constants += [
            c_array("int8_t", f"{name}_weights", weights),
            "#ifdef KERNEL_ROUNDING_TFLM\n" + c_multipliers(f"{name}_scale", multipliers) + "#else\n"
            f"static const fc_scale_t {name}_scale[{len(scales)}] = {{{doubles}}};\n#endif\n",
            c_struct("fc_params_t", f"{name}_params", fields),
        ]
        bias = self._bias(name, op)
        return (f"k_fully_connected(&{name}_params, {{source}}, {name}_weights, {bias}, {name}_scale, "
                f"{int(per_channel)}, {{target}});")

    def _average_pool_2d(self, name, op) -> str:
        options = op.builtinOptions
        quant = self._quantization(op)
        fields = quantization.pool_params(
            self.tensor(op.inputs[0]).shape, filter_size=(options.filterHeight, options.filterWidth),
            stride=(options.strideH, options.strideW), padding=PADDING_NAMES[options.padding],
            output_scale=quant["output_scale"], output_zero_point=quant["output_zero_point"],
            activation=quant["activation"])
        self._check_output_shape(name, op, fields)
        self.plan.constants.append(c_struct("pool_params_t", f"{name}_params", fields))
        return f"k_avg_pool2d(&{name}_params, {{source}}, {{target}});"

    def _reshape(self, name, op) -> str:
        size = int(np.prod(self.tensor(op.outputs[0]).shape))
        return f"k_copy({{source}}, {{target}}, {size});"


def plan_model(card: ModelCard) -> Plan:
    plan = Plan()
    stage1, stage2 = read_tflite(card.stages["stage1"].path), read_tflite(card.stages["stage2"].path)
    # Bind stage edges: the input and the logits are the caller's buffers; the feature map is shared.
    g1, g2 = stage1.subgraphs[0], stage2.subgraphs[0]
    outputs1 = dict(zip([o.name for o in card.stages["stage1"].outputs], g1.outputs))
    outputs2 = dict(zip([o.name for o in card.stages["stage2"].outputs], g2.outputs))
    classes = len(card.labels)
    bindings1 = {int(g1.inputs[0]): ("input", "input"),
                 int(outputs1[card.exit_output]): ("exit", "exit_logits"),
                 int(outputs1["feature"]): ("feature", None)}
    bindings2 = {int(g2.inputs[0]): ("feature", None)}
    for k, head in enumerate(card.head_outputs):
        bindings2[int(outputs2[head])] = (head, f"head_logits + {k * classes}")
    StageTranslator(plan, "stage1", stage1, bindings1).translate()
    StageTranslator(plan, "stage2", stage2, bindings2).translate()
    _place_in_arena(plan)
    return plan


def _place_in_arena(plan: Plan) -> None:
    """Greedy placement by size over lifetimes (steps numbered across both stages)."""
    steps = [(reads, writes) for calls in plan.calls.values() for _call, reads, writes in calls]
    for step, (reads, writes) in enumerate(steps):
        plan.tensors[reads].last = step
        tensor = plan.tensors[writes]
        tensor.first = step if tensor.first is None else tensor.first
        tensor.last = max(tensor.last, step)
    placed: list[Activation] = []
    for tensor in sorted((t for t in plan.tensors.values() if t.binding is None), key=lambda t: -t.size):
        offset = 0
        for other in sorted(placed, key=lambda t: t.offset):
            overlaps_in_time = not (tensor.last < (other.first or 0) or other.last < (tensor.first or 0))
            if overlaps_in_time and offset + tensor.size > other.offset and other.offset + other.size > offset:
                offset = _aligned(other.offset + other.size)
        tensor.offset = offset
        placed.append(tensor)


def _aligned(value: int) -> int:
    return (value + ALIGN - 1) // ALIGN * ALIGN


def arena_size(plan: Plan) -> int:
    return max((_aligned(t.offset + t.size) for t in plan.tensors.values() if t.binding is None), default=ALIGN)


def _buffer_expression(tensor: Activation) -> str:
    return tensor.binding if tensor.binding is not None else f"arena + {tensor.offset}"


def _header(card: ModelCard, command: str) -> str:
    return (f"/* GENERATED by `{command}` from {card.directory.relative_to(REPO_ROOT)}/\n"
            f" * (model.json sha256 {card.sha256}). Do not edit: regenerate. */\n")


def generate_sources(card: ModelCard) -> dict[str, str]:
    """The text of model.h and model.c for one model."""
    plan = plan_model(card)
    command = f"hil firmware generate {card.name}"
    classes, heads = len(card.labels), len(card.head_outputs)
    input_size = int(np.prod(card.input.shape))
    header = _header(card, command) + f"""#ifndef MODEL_H
#define MODEL_H

#include <stdint.h>

#define MODEL_NAME "{card.name}"
#define MODEL_INPUT_SIZE {input_size}
#define MODEL_NUM_CLASSES {classes}
#define MODEL_NUM_HEADS {heads}
#define MODEL_ARENA_BYTES {arena_size(plan)}
#define MODEL_STAGE1_MACS {card.stages["stage1"].macs}u
#define MODEL_STAGE2_MACS {card.stages["stage2"].macs}u
#define MODEL_STAGE1_LAYERS {len(plan.calls["stage1"])}u
#define MODEL_NUM_LAYERS {len(plan.calls["stage1"]) + len(plan.calls["stage2"])}u

extern const uint8_t model_sha256[32];
/* Softmax tables (docs/decisions.md): the early exit's, then one per head. */
extern const uint32_t model_exit_lut[256];
extern const uint32_t model_head_luts[MODEL_NUM_HEADS][256];

/* Stage 1: input -> early-exit logits; leaves the feature map in the arena for stage 2. */
void model_stage1(const int8_t *input, int8_t *exit_logits);
/* Stage 2: the feature map -> MODEL_NUM_HEADS rows of MODEL_NUM_CLASSES head logits. */
void model_stage2(int8_t *head_logits);
/* The runtime's (src/qute.c), called after each layer, numbered 0..MODEL_NUM_LAYERS-1 across both
 * stages, with the layer's output tensor: where per-layer timing and tracing hook in. */
void model_layer_done(uint32_t layer, const int8_t *output, uint32_t bytes);

#endif
"""
    body = [_header(card, command), '#include <stddef.h>\n\n#include "kernels.h"\n#include "model.h"\n\n',
            f"static int8_t arena[MODEL_ARENA_BYTES] __attribute__((aligned({ALIGN})));\n\n"]
    body.append("const uint8_t model_sha256[32] = {" + ", ".join(f"0x{b:02x}" for b in bytes.fromhex(card.sha256))
                + "};\n\n")
    body.append(c_array("uint32_t", "model_exit_lut", card.exit_lut).replace("static ", ""))
    rows = ",\n".join("    {" + ", ".join(str(v) for v in card.softmax_lut[h]) + "}" for h in card.head_outputs)
    body.append(f"const uint32_t model_head_luts[MODEL_NUM_HEADS][256] = {{\n{rows}\n}};\n\n")
    body += [c + "\n" for c in plan.constants]
    signatures = {"stage1": "void model_stage1(const int8_t *input, int8_t *exit_logits)",
                  "stage2": "void model_stage2(int8_t *head_logits)"}
    layer = 0  # numbered across both stages, in call order: hil/model/layers.py numbers them the same way
    for stage, calls in plan.calls.items():
        lines = []
        for call, reads, writes in calls:
            target = _buffer_expression(plan.tensors[writes])
            lines.append("    " + call.format(source=_buffer_expression(plan.tensors[reads]), target=target))
            lines.append(f"    model_layer_done({layer}u, {target}, {plan.tensors[writes].size}u);")
            layer += 1
        body.append(signatures[stage] + " {\n" + "\n".join(lines) + "\n}\n\n")
    return {"model.h": header, "model.c": "".join(body).rstrip() + "\n"}


def write_sources(card: ModelCard, directory: Path | None = None) -> list[Path]:
    directory = Path(directory) if directory else GENERATED_DIR / card.name
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in generate_sources(card).items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths
