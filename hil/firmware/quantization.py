"""TFLite's Prepare-time integer parameters, computed exactly as LiteRT computes them.

The firmware's kernels (firmware/src/kernels.h) take these integers as constants from the
code generator; LiteRT derives them at run time from the float scales in the .tflite. One
bit off in a multiplier changes outputs, so each function copies TFLite's arithmetic step
for step, including where it computes in float32 and where in double:
- convolutions get a per-channel (multiplier, shift) from QuantizeMultiplier;
- FULLY_CONNECTED gets its double scale as an exact (mantissa, exponent) pair, because
  LiteRT's reference FC rescales in double rather than with the fixed-point multiplier;
- activation ranges and padding as kernel_util.cc and padding.h compute them.
`multiply_by_quantized_multiplier` and `fc_rescale` transcribe the two rescaling rules.
tests/unit/test_kernels.py checks all of it against LiteRT's reference kernels.

TFLite stores scales as float32; every function here first rounds a scale to float32, so
that a Python float and the value read back from a model give the same parameters.
"""

from __future__ import annotations

import math

import numpy as np
from ai_edge_litert import schema_py_generated as schema

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# Which MultiplyByQuantizedMultiplier the LiteRT wheel (ai-edge-litert 2.3.0) was built
# with: not TFLITE_SINGLE_ROUNDING, i.e. the double-rounding gemmlowp form (found by
# running CONV_2D with an effective scale of exactly 1/4: 1 * 0.25 -> 1, which only double
# rounding gives; tests/unit/test_kernels.py::test_litert_convolutions_use_double_rounding keeps it pinned).
SINGLE_ROUNDING = False

ACTIVATIONS = {
    "NONE": schema.ActivationFunctionType.NONE,
    "RELU": schema.ActivationFunctionType.RELU,
    "RELU6": schema.ActivationFunctionType.RELU6,
    "RELU_N1_TO_1": schema.ActivationFunctionType.RELU_N1_TO_1,
}
PADDINGS = {"SAME": schema.Padding.SAME, "VALID": schema.Padding.VALID}


# --------------------------------------------------------------------------------------
# Parameter functions (pure)
# --------------------------------------------------------------------------------------


def f32(value) -> float:
    """`value` rounded to float32, as TFLite stores scales, returned as an exact Python float."""
    return float(np.float32(value))


def round_half_away(value: float) -> int:
    """std::round / TfLiteRound: to the nearest integer, ties away from zero."""
    magnitude = math.floor(abs(value))
    if abs(value) - magnitude >= 0.5:  # exact: the subtraction of a float's floor is exact
        magnitude += 1
    return int(math.copysign(magnitude, value)) if magnitude else 0


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: (multiplier, shift) with real ≈ multiplier * 2^(shift - 31).

    `multiplier` is in [2^30, 2^31) (or 0); `shift > 0` is a left shift. Edge handling as in
    tensorflow/lite/kernels/internal/quantization_util.cc: a fraction that rounds up to 2^31
    is halved, shifts below -31 flush to zero and, with single rounding, shifts above 30
    saturate to the largest representable multiplier.
    """
    if real_multiplier == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real_multiplier)
    q_fixed = round_half_away(fraction * (1 << 31))  # exact: a power-of-two scaling
    if q_fixed > 1 << 31:
        raise ValueError(f"cannot quantize multiplier {real_multiplier!r}")
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if SINGLE_ROUNDING and shift > 30:
        return INT32_MAX, 30
    return q_fixed, shift


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """Python transcription of TFLite's MultiplyByQuantizedMultiplier, in the variant LiteRT uses."""
    if SINGLE_ROUNDING:
        return multiply_by_quantized_multiplier_single_rounding(x, multiplier, shift)
    return multiply_by_quantized_multiplier_double_rounding(x, multiplier, shift)


def multiply_by_quantized_multiplier_double_rounding(x: int, multiplier: int, shift: int) -> int:
    """The gemmlowp form (tensorflow/lite/kernels/internal/common.cc without TFLITE_SINGLE_ROUNDING).

    RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2^left, multiplier), right):
    two roundings, each to nearest with ties away from zero; x * 2^left wraps in int32.
    """
    left_shift, right_shift = max(shift, 0), max(-shift, 0)
    a = to_int32(x * (1 << left_shift))
    if a == multiplier == INT32_MIN:
        high = INT32_MAX
    else:
        total = a * multiplier + ((1 << 30) if a * multiplier >= 0 else 1 - (1 << 30))
        quotient = abs(total) >> 31  # C's division by 2^31 truncates toward zero
        high = to_int32(quotient if total >= 0 else -quotient)
    mask = (1 << right_shift) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right_shift) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier_single_rounding(x: int, multiplier: int, shift: int) -> int:
    """The TFLITE_SINGLE_ROUNDING form: (x * multiplier + 2^(30 - shift)) >> (31 - shift).

    One rounding, ties towards +infinity. Kept to show, in the tests, that LiteRT does
    *not* use it.
    """
    total_shift = 31 - shift
    return to_int32((x * multiplier + (1 << (total_shift - 1))) >> total_shift)


def to_int32(value: int) -> int:
    """Two's-complement truncation to 32 bits (a C cast from int64 on every target we use)."""
    return (value + 2**31) % 2**32 - 2**31


def activation_range(activation: str, output_scale: float, output_zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 output: (act_min, act_max).

    TFLite quantizes the activation bounds in float32: zero_point + round(f / scale).
    """
    scale = np.float32(output_scale)

    def quantize(bound: float) -> int:
        return output_zero_point + round_half_away(float(np.float32(bound) / scale))

    if activation == "NONE":
        return INT8_MIN, INT8_MAX
    if activation == "RELU":
        return max(INT8_MIN, quantize(0.0)), INT8_MAX
    if activation == "RELU6":
        return max(INT8_MIN, quantize(0.0)), min(INT8_MAX, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(INT8_MIN, quantize(-1.0)), min(INT8_MAX, quantize(1.0))
    raise ValueError(f"unsupported fused activation {activation!r}")


def compute_out_size(padding: str, image_size: int, filter_size: int, stride: int, dilation: int = 1) -> int:
    """ComputeOutSize (tensorflow/lite/kernels/padding.h)."""
    effective_filter = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        return (image_size + stride - 1) // stride
    if padding == "VALID":
        return (image_size + stride - effective_filter) // stride
    raise ValueError(f"unknown padding {padding!r}")


def compute_padding(stride: int, dilation: int, in_size: int, filter_size: int, out_size: int) -> int:
    """The top/left padding of ComputePaddingHeightWidth (the extra odd pixel goes bottom/right)."""
    effective_filter = (filter_size - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective_filter - in_size, 0)
    return total // 2


def _spatial(padding, in_h, in_w, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w) -> dict:
    out_h = compute_out_size(padding, in_h, kernel_h, stride_h, dilation_h)
    out_w = compute_out_size(padding, in_w, kernel_w, stride_w, dilation_w)
    return {
        "out_h": out_h,
        "out_w": out_w,
        "pad_h": compute_padding(stride_h, dilation_h, in_h, kernel_h, out_h),
        "pad_w": compute_padding(stride_w, dilation_w, in_w, kernel_w, out_w),
    }


def per_channel_multipliers(input_scale: float, filter_scales, output_scale: float,
                            channels: int) -> list[tuple[int, int]]:
    """PopulateConvolutionQuantizationParams: one (multiplier, shift) per output channel.

    effective = double(input_scale) * double(filter_scale[c]) / double(output_scale), each
    scale a float32; a single (per-tensor) filter scale is broadcast to every channel.
    """
    scales = [f32(s) for s in np.atleast_1d(np.asarray(filter_scales, dtype=np.float64))]
    if len(scales) == 1:
        scales = scales * channels
    if len(scales) != channels:
        raise ValueError(f"{len(scales)} filter scales for {channels} channels")
    return [quantize_multiplier(f32(input_scale) * s / f32(output_scale)) for s in scales]


def conv_params(
    input_shape,
    filter_shape,
    *,
    stride=(1, 1),
    dilation=(1, 1),
    padding="SAME",
    input_scale: float,
    input_zero_point: int,
    filter_scales,
    output_scale: float,
    output_zero_point: int,
    activation="NONE",
) -> tuple[dict, list[tuple[int, int]]]:
    """conv_params_t fields and per-channel (multiplier, shift) for CONV_2D.

    input_shape: (1, in_h, in_w, in_c) or (in_h, in_w, in_c); filter_shape: (out_c, kh, kw, in_c).
    """
    in_h, in_w, in_c = tuple(input_shape)[-3:]
    out_c, kernel_h, kernel_w, filter_in_c = filter_shape
    if filter_in_c != in_c:
        raise ValueError("filter depth differs from input depth")
    return _conv_like(
        in_h, in_w, in_c, out_c, kernel_h, kernel_w, stride, dilation, padding, 0,
        input_scale, input_zero_point, filter_scales, output_scale, output_zero_point, activation,
    )


def depthwise_params(
    input_shape,
    filter_shape,
    *,
    stride=(1, 1),
    dilation=(1, 1),
    padding="SAME",
    input_scale: float,
    input_zero_point: int,
    filter_scales,
    output_scale: float,
    output_zero_point: int,
    activation="NONE",
) -> tuple[dict, list[tuple[int, int]]]:
    """conv_params_t fields and per-channel (multiplier, shift) for DEPTHWISE_CONV_2D.

    filter_shape: (1, kh, kw, out_c) with out_c = in_c * depth_multiplier.
    """
    in_h, in_w, in_c = tuple(input_shape)[-3:]
    _, kernel_h, kernel_w, out_c = filter_shape
    if out_c % in_c:
        raise ValueError("depthwise output channels must be a multiple of the input channels")
    return _conv_like(
        in_h, in_w, in_c, out_c, kernel_h, kernel_w, stride, dilation, padding, out_c // in_c,
        input_scale, input_zero_point, filter_scales, output_scale, output_zero_point, activation,
    )


def _conv_like(in_h, in_w, in_c, out_c, kernel_h, kernel_w, stride, dilation, padding, depth_multiplier,
               input_scale, input_zero_point, filter_scales, output_scale, output_zero_point, activation):
    act_min, act_max = activation_range(activation, output_scale, output_zero_point)
    fields = {
        "in_h": in_h, "in_w": in_w, "in_c": in_c,
        **_spatial(padding, in_h, in_w, kernel_h, kernel_w, stride[0], stride[1], dilation[0], dilation[1]),
        "out_c": out_c,
        "kernel_h": kernel_h, "kernel_w": kernel_w,
        "stride_h": stride[0], "stride_w": stride[1],
        "dilation_h": dilation[0], "dilation_w": dilation[1],
        "depth_multiplier": depth_multiplier,
        "input_offset": -input_zero_point,
        "output_offset": output_zero_point,
        "act_min": act_min, "act_max": act_max,
    }
    return fields, per_channel_multipliers(input_scale, filter_scales, output_scale, out_c)


def fc_effective_scale(input_scale: float, filter_scale: float, output_scale: float) -> float:
    """The double LiteRT's reference FULLY_CONNECTED multiplies its accumulator by.

    double(input_scale) * double(filter_scale) / double(output_scale), scales as float32,
    evaluated left to right in double, as reference_integer_ops::FullyConnected(Per
    Channel) does with the scales it is given.
    """
    return f32(input_scale) * f32(filter_scale) / f32(output_scale)


def fc_scale(real_scale: float) -> tuple[int, int]:
    """A double as (mantissa, exponent) with real_scale == mantissa * 2^exponent exactly.

    mantissa is the 53-bit significand (2^52 <= mantissa < 2^53), or (0, 0) for zero:
    the fc_scale_t the kernel takes.
    """
    if real_scale == 0.0:
        return 0, 0
    if not (real_scale > 0.0 and math.isfinite(real_scale)):
        raise ValueError(f"fully connected scale must be positive and finite, not {real_scale!r}")
    fraction, exponent = math.frexp(real_scale)
    return int(fraction * 2**53), exponent - 53  # exact: frexp's fraction has 53 bits


def fc_rescale(acc: int, real_scale: float) -> int:
    """Python transcription of the reference FC rescale: (int32)round(double(acc) * scale).

    Python floats are IEEE doubles and the product rounds as in C++; values beyond int32
    are saturated here, as the C kernel does (a C++ cast of them is undefined).
    """
    value = round_half_away(float(acc) * real_scale)
    return min(max(value, INT32_MIN), INT32_MAX)


def fc_params(
    in_features: int,
    out_features: int,
    *,
    input_scale: float,
    input_zero_point: int,
    filter_scales,
    filter_zero_point: int = 0,
    output_scale: float,
    output_zero_point: int,
    activation="NONE",
) -> tuple[dict, list[tuple[int, int]], bool]:
    """fc_params_t fields, the fc_scale_t list (mantissa, exponent) and the per_channel flag.

    Unlike the convolutions, LiteRT's reference FULLY_CONNECTED does not use the
    QuantizeMultiplier result of its Prepare: it rescales in double precision, with
    fc_effective_scale per output (per-channel) or once (per-tensor). Per-channel weights
    are symmetric by the TFLite spec and their zero point is ignored, so filter_offset is
    0 there; per-tensor weights keep filter_offset = -filter_zero_point.
    """
    scales = np.atleast_1d(np.asarray(filter_scales, dtype=np.float64))
    per_channel = len(scales) > 1
    if per_channel and len(scales) != out_features:
        raise ValueError(f"{len(scales)} filter scales for {out_features} outputs")
    fc_scales = [fc_scale(fc_effective_scale(input_scale, s, output_scale)) for s in scales]
    act_min, act_max = activation_range(activation, output_scale, output_zero_point)
    fields = {
        "in_features": in_features,
        "out_features": out_features,
        "input_offset": -input_zero_point,
        "filter_offset": 0 if per_channel else -filter_zero_point,
        "output_offset": output_zero_point,
        "act_min": act_min,
        "act_max": act_max,
    }
    return fields, fc_scales, per_channel


def pool_params(
    input_shape,
    *,
    filter_size=(2, 2),
    stride=(2, 2),
    padding="VALID",
    output_scale: float,
    output_zero_point: int,
    activation="NONE",
) -> dict:
    """pool_params_t fields for AVERAGE_POOL_2D (input and output share their quantization)."""
    in_h, in_w, channels = tuple(input_shape)[-3:]
    act_min, act_max = activation_range(activation, output_scale, output_zero_point)
    return {
        "in_h": in_h, "in_w": in_w, "channels": channels,
        **_spatial(padding, in_h, in_w, filter_size[0], filter_size[1], stride[0], stride[1], 1, 1),
        "filter_h": filter_size[0], "filter_w": filter_size[1],
        "stride_h": stride[0], "stride_w": stride[1],
        "act_min": act_min, "act_max": act_max,
    }
