"""Single-op int8 TFLite models built in memory, to run through LiteRT's reference kernels.

The host reference of the kernel conformance suite (hil/firmware/conformance_gen.py) and of the kernel
tests (tests/unit/test_kernels.py).

The kernel parameters the firmware needs for such a model come from hil/firmware/quantization.py,
the same functions the code generator uses; this module only builds the models (with the
schema's object API) taken as ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from hil.firmware.quantization import ACTIVATIONS, PADDINGS, conv_params, depthwise_params, f32, pool_params

# --------------------------------------------------------------------------------------
# Model builders
# --------------------------------------------------------------------------------------

# Operator versions as the TFLite converter writes them for int8 models (the QUTE fixtures
# carry the same ones). LiteRT only checks that a version is registered (CONV_2D 1-8,
# DEPTHWISE_CONV_2D 1-6, FULLY_CONNECTED 1-14, AVERAGE_POOL_2D 1-3, RESHAPE 1 only in
# ai-edge-litert 2.3.0's reference resolver), not that it matches the tensors' types.
OP_VERSIONS = {
    "CONV_2D": 3,  # int8 with per-channel weights
    "DEPTHWISE_CONV_2D": 3,  # int8 with per-channel weights
    "FULLY_CONNECTED": 4,  # int8
    "AVERAGE_POOL_2D": 2,  # int8
    "RESHAPE": 1,
}

_TYPES = {"int8": schema.TensorType.INT8, "int32": schema.TensorType.INT32}


@dataclass
class Tensor:
    """One tensor of the model: constant when `data` is given, else a graph input or output."""

    shape: tuple
    dtype: str = "int8"
    scale: object = None  # float, or a sequence for per-channel quantization
    zero_point: object = None  # int, or a sequence (defaults to zeros)
    quantized_dimension: int = 0
    data: np.ndarray | None = None
    name: str = ""


def _tensor_t(tensor: Tensor, buffer: int, name: str) -> schema.TensorT:
    t = schema.TensorT()
    t.shape = [int(d) for d in tensor.shape]
    t.type = _TYPES[tensor.dtype]
    t.buffer = buffer
    t.name = (tensor.name or name).encode()
    if tensor.scale is not None:
        q = schema.QuantizationParametersT()
        q.scale = [f32(s) for s in np.atleast_1d(tensor.scale)]
        zero_point = tensor.zero_point if tensor.zero_point is not None else 0
        q.zeroPoint = [int(z) for z in np.broadcast_to(np.atleast_1d(zero_point), (len(q.scale),))]
        q.quantizedDimension = tensor.quantized_dimension
        t.quantization = q
    return t


def single_op_model(op: str, inputs: list[Tensor | None], outputs: list[Tensor], options=None,
                    options_type: int = 0, version: int | None = None) -> bytes:
    """A model with one operator; a trailing `None` in `inputs` is an omitted optional input.

    An omitted bias is left out of the operator's input list altogether: CONV_2D takes the
    length of that list as "has bias" and rejects a -1 index there.

    Constant inputs (with `data`) get a buffer of their bytes; the others become the
    subgraph's inputs, in order. Buffer 0 is the empty sentinel every TFLite model has.
    """
    inputs = list(inputs)
    while inputs and inputs[-1] is None:
        inputs.pop()
    buffers = [schema.BufferT()]
    tensors: list[schema.TensorT] = []
    op_inputs, graph_inputs = [], []
    for i, tensor in enumerate(inputs):
        if tensor is None:
            op_inputs.append(-1)
            continue
        buffer = 0
        if tensor.data is not None:
            data = np.ascontiguousarray(tensor.data, dtype=np.dtype(tensor.dtype).newbyteorder("<"))
            if tuple(data.shape) != tuple(tensor.shape):
                raise ValueError(f"input {i}: data shape {data.shape} != {tuple(tensor.shape)}")
            b = schema.BufferT()
            b.data = np.frombuffer(data.tobytes(), dtype=np.uint8)
            buffers.append(b)
            buffer = len(buffers) - 1
        else:
            graph_inputs.append(len(tensors))
        op_inputs.append(len(tensors))
        tensors.append(_tensor_t(tensor, buffer, f"input_{i}"))
    op_outputs = []
    for i, tensor in enumerate(outputs):
        op_outputs.append(len(tensors))
        tensors.append(_tensor_t(tensor, 0, f"output_{i}"))

    builtin = getattr(schema.BuiltinOperator, op)
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)  # what TFLite writers put there
    code.version = version if version is not None else OP_VERSIONS[op]

    operator = schema.OperatorT()
    operator.opcodeIndex = 0
    operator.inputs = op_inputs
    operator.outputs = op_outputs
    operator.builtinOptionsType = options_type
    operator.builtinOptions = options

    subgraph = schema.SubGraphT()
    subgraph.tensors = tensors
    subgraph.inputs = graph_inputs
    subgraph.outputs = op_outputs
    subgraph.operators = [operator]
    subgraph.name = b"main"

    model = schema.ModelT()
    model.version = 3
    model.description = b"hil hil/firmware/single_op.py"
    model.operatorCodes = [code]
    model.subgraphs = [subgraph]
    model.buffers = buffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _bias_tensor(bias, input_scale, filter_scales, channels) -> Tensor | None:
    """The int32 bias with scale input_scale * filter_scale (zero point 0), or None (omitted)."""
    if bias is None:
        return None
    scales = np.atleast_1d(np.asarray(filter_scales, dtype=np.float64))
    bias_scales = [f32(np.float32(input_scale) * np.float32(s)) for s in scales]
    return Tensor((channels,), "int32", bias_scales if len(bias_scales) > 1 else bias_scales[0], 0,
                  data=np.asarray(bias, dtype=np.int32))


def conv2d_model(input_shape, weights, bias, *, input_scale, input_zero_point, filter_scales,
                 output_scale, output_zero_point, stride=(1, 1), dilation=(1, 1), padding="SAME",
                 activation="NONE") -> bytes:
    """CONV_2D: weights int8 [out_c, kh, kw, in_c], per-channel symmetric (quantized dim 0).

    LiteRT's int8 CONV_2D requires a bias ("has_bias was not true"): for a kernel called
    with a NULL bias, compare against a model with a zero bias.
    """
    weights = np.asarray(weights, dtype=np.int8)
    out_c = weights.shape[0]
    fields, _ = conv_params(input_shape, weights.shape, stride=stride, dilation=dilation,
                            padding=padding, input_scale=input_scale,
                            input_zero_point=input_zero_point, filter_scales=filter_scales,
                            output_scale=output_scale, output_zero_point=output_zero_point,
                            activation=activation)
    options = schema.Conv2DOptionsT()
    options.padding = PADDINGS[padding]
    options.strideH, options.strideW = stride
    options.dilationHFactor, options.dilationWFactor = dilation
    options.fusedActivationFunction = ACTIVATIONS[activation]
    return single_op_model(
        "CONV_2D",
        [
            Tensor(tuple(input_shape), scale=input_scale, zero_point=input_zero_point),
            Tensor(weights.shape, scale=filter_scales, zero_point=0, quantized_dimension=0, data=weights),
            _bias_tensor(bias, input_scale, filter_scales, out_c),
        ],
        [Tensor((1, fields["out_h"], fields["out_w"], out_c), scale=output_scale, zero_point=output_zero_point)],
        options, schema.BuiltinOptions.Conv2DOptions,
    )


def depthwise_conv2d_model(input_shape, weights, bias, *, input_scale, input_zero_point, filter_scales,
                           output_scale, output_zero_point, stride=(1, 1), dilation=(1, 1),
                           padding="SAME", activation="NONE") -> bytes:
    """DEPTHWISE_CONV_2D: weights int8 [1, kh, kw, out_c], per-channel (quantized dim 3)."""
    weights = np.asarray(weights, dtype=np.int8)
    out_c = weights.shape[3]
    fields, _ = depthwise_params(input_shape, weights.shape, stride=stride, dilation=dilation,
                                 padding=padding, input_scale=input_scale,
                                 input_zero_point=input_zero_point, filter_scales=filter_scales,
                                 output_scale=output_scale, output_zero_point=output_zero_point,
                                 activation=activation)
    options = schema.DepthwiseConv2DOptionsT()
    options.padding = PADDINGS[padding]
    options.strideH, options.strideW = stride
    options.dilationHFactor, options.dilationWFactor = dilation
    options.depthMultiplier = fields["depth_multiplier"]
    options.fusedActivationFunction = ACTIVATIONS[activation]
    return single_op_model(
        "DEPTHWISE_CONV_2D",
        [
            Tensor(tuple(input_shape), scale=input_scale, zero_point=input_zero_point),
            Tensor(weights.shape, scale=filter_scales, zero_point=0, quantized_dimension=3, data=weights),
            _bias_tensor(bias, input_scale, filter_scales, out_c),
        ],
        [Tensor((1, fields["out_h"], fields["out_w"], out_c), scale=output_scale, zero_point=output_zero_point)],
        options, schema.BuiltinOptions.DepthwiseConv2DOptions,
    )


def fully_connected_model(in_features, weights, bias, *, input_scale, input_zero_point, filter_scales,
                          output_scale, output_zero_point, filter_zero_point=0,
                          activation="NONE") -> bytes:
    """FULLY_CONNECTED: input [1, in], weights int8 [out, in], per-tensor or per-channel."""
    weights = np.asarray(weights, dtype=np.int8)
    out_features = weights.shape[0]
    options = schema.FullyConnectedOptionsT()
    options.fusedActivationFunction = ACTIVATIONS[activation]
    return single_op_model(
        "FULLY_CONNECTED",
        [
            Tensor((1, in_features), scale=input_scale, zero_point=input_zero_point),
            Tensor(weights.shape, scale=filter_scales, zero_point=filter_zero_point, data=weights),
            _bias_tensor(bias, input_scale, filter_scales, out_features),
        ],
        [Tensor((1, out_features), scale=output_scale, zero_point=output_zero_point)],
        options, schema.BuiltinOptions.FullyConnectedOptions,
    )


def average_pool2d_model(input_shape, *, scale, zero_point, filter_size=(2, 2), stride=(2, 2),
                         padding="VALID", activation="NONE") -> bytes:
    """AVERAGE_POOL_2D on int8 (input and output quantization must be equal)."""
    fields = pool_params(input_shape, filter_size=filter_size, stride=stride, padding=padding,
                         output_scale=scale, output_zero_point=zero_point, activation=activation)
    options = schema.Pool2DOptionsT()
    options.padding = PADDINGS[padding]
    options.strideH, options.strideW = stride
    options.filterHeight, options.filterWidth = filter_size
    options.fusedActivationFunction = ACTIVATIONS[activation]
    return single_op_model(
        "AVERAGE_POOL_2D",
        [Tensor(tuple(input_shape), scale=scale, zero_point=zero_point)],
        [Tensor((1, fields["out_h"], fields["out_w"], fields["channels"]), scale=scale, zero_point=zero_point)],
        options, schema.BuiltinOptions.Pool2DOptions,
    )


def reshape_model(input_shape, output_shape, *, scale, zero_point) -> bytes:
    """RESHAPE with its new shape given both as a constant int32 input and as options."""
    options = schema.ReshapeOptionsT()
    options.newShape = [int(d) for d in output_shape]
    shape = np.asarray(output_shape, dtype=np.int32)
    return single_op_model(
        "RESHAPE",
        [
            Tensor(tuple(input_shape), scale=scale, zero_point=zero_point),
            Tensor(shape.shape, "int32", data=shape),
        ],
        [Tensor(tuple(output_shape), scale=scale, zero_point=zero_point)],
        options, schema.BuiltinOptions.ReshapeOptions,
    )
