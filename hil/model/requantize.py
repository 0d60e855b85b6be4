"""The FULLY_CONNECTED requantization of each host reference, in numpy, to the bit.

An int8 FULLY_CONNECTED with per-channel weights accumulates in int32, then scales each output channel c by
M_c = input_scale * weight_scale[c] / output_scale. The two interpreters scale differently (docs/decisions.md,
"Which reference"):
- LiteRT's BUILTIN_REF kernel multiplies in double and rounds once: round(acc * M_c), half away from zero;
- TFLM's reference kernel (and so the firmware's) turns M_c into a Q31 multiplier and a shift and applies
  gemmlowp's doubly-rounded MultiplyByQuantizedMultiplier.
They disagree by one step when the accumulator lands near a half; everything else in our models agrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Q31 = 1 << 31


@dataclass(frozen=True)
class QuantizedMultiplier:
    """M = multiplier * 2**(shift - 31), multiplier in [2**30, 2**31): TFLite's QuantizeMultiplier."""

    multiplier: int
    shift: int

    @classmethod
    def of(cls, real: float) -> QuantizedMultiplier:
        if real == 0.0:
            return cls(0, 0)
        fraction, shift = math.frexp(real)  # real = fraction * 2**shift, fraction in [0.5, 1)
        multiplier = _round_half_away(fraction * Q31)
        if multiplier == Q31:  # the fraction rounded up to 1.0
            multiplier //= 2
            shift += 1
        if shift < -31:  # too small for Q31: TFLite flushes it to zero
            return cls(0, 0)
        return cls(multiplier, shift)


def _round_half_away(value: float) -> int:
    """std::round (TfLiteRound): halves go away from zero, unlike Python's round."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp: the high 32 bits of 2*a*b, rounded to nearest, ties toward +infinity (a, b int32)."""
    product = a.astype(np.int64) * np.int64(b)
    nudge = np.where(product >= 0, 1 << 30, 1 - (1 << 30))
    total = product + nudge
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))  # C++ division truncates toward zero
    return np.where((a == np.iinfo(np.int32).min) & (b == np.iinfo(np.int32).min),
                    np.iinfo(np.int32).max, high)


def rounding_divide_by_power_of_two(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp: x / 2**exponent rounded to nearest, ties away from zero."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(acc: np.ndarray, quantized: QuantizedMultiplier) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier without TFLITE_SINGLE_ROUNDING: two roundings (TFLM's build)."""
    left_shift = max(quantized.shift, 0)
    right_shift = max(-quantized.shift, 0)
    high = saturating_rounding_doubling_high_mul(acc.astype(np.int64) * (1 << left_shift), quantized.multiplier)
    return rounding_divide_by_power_of_two(high, right_shift)


def effective_scales(input_scale: float, weight_scales: np.ndarray, output_scale: float) -> np.ndarray:
    """M_c per output channel, in double from the float32 scales, as both interpreters compute it."""
    return np.float64(input_scale) * np.asarray(weight_scales, dtype=np.float32).astype(np.float64) / np.float64(
        output_scale)


def requantize_litert(acc: np.ndarray, scales: np.ndarray, output_zero_point: int) -> np.ndarray:
    """LiteRT BUILTIN_REF: round(acc * M_c) in double, one rounding; then the zero point and the int8 clamp.

    acc: (N, C) int32 accumulators (bias included); scales: (C,) M_c.
    """
    product = acc.astype(np.float64) * scales
    rounded = np.where(product >= 0, np.floor(product + 0.5), np.ceil(product - 0.5)).astype(np.int64)
    return _to_int8(rounded + output_zero_point)


def requantize_tflm(acc: np.ndarray, scales: np.ndarray, output_zero_point: int) -> np.ndarray:
    """TFLM: per channel, QuantizeMultiplier(M_c) then the doubly-rounded multiply; then zero point and clamp."""
    scaled = np.empty(acc.shape, dtype=np.int64)
    for channel, scale in enumerate(scales):
        scaled[:, channel] = multiply_by_quantized_multiplier(acc[:, channel], QuantizedMultiplier.of(float(scale)))
    return _to_int8(scaled + output_zero_point)


def _to_int8(values: np.ndarray) -> np.ndarray:
    return np.clip(values, -128, 127).astype(np.int8)
