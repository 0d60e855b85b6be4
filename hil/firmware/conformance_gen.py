"""Generates the kernel conformance suite (hil/firmware/conformance.py) from the host reference.

Each vector is built to reach one rounding or saturation corner of one kernel the models use: ties of both
signs in each rounding step, extreme zero points, multipliers near 2^31, shifts at both ends, outputs at
act_min and act_max exactly and beyond them, odd shapes, strides, dilation and padding. Its parameters are
the ones the code generator computes (hil/firmware/quantization.py) and its expected outputs are what LiteRT's
reference kernels and TFLM's interpreter compute for a one-operator model of the same tensors
(hil/firmware/single_op.py), one per host reference a lab may name. Operands
are fixed or drawn from one seeded generator, so a regeneration gives the same bytes
(tests/unit/test_conformance.py); bench/conformance_coverage.py measures which branches of kernels.c the suite
reaches. `hil firmware conformance` writes the suite and its digest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hil.firmware import quantization as qp
from hil.firmware import single_op
from hil.firmware.conformance import Kernel, Vector, conv_payload, fc_payload, pool_payload, reshape_payload
from hil.model.litert import reference_interpreter

SEED = 17  # issue 17


def run_litert(model: bytes, x: np.ndarray) -> np.ndarray:
    """The one output of a one-input model under LiteRT's reference kernels."""
    interpreter = reference_interpreter(model)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    interpreter.set_tensor(inp["index"], np.ascontiguousarray(x, dtype=np.int8).reshape(inp["shape"]))
    interpreter.invoke()
    return interpreter.get_tensor(out["index"]).copy()


def run_tflm(model: bytes, x: np.ndarray) -> np.ndarray:
    """The same under TFLM's interpreter and reference kernels (the `tflite-micro` package)."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model)
    interpreter.set_input(np.ascontiguousarray(x, dtype=np.int8).reshape(interpreter.get_input_details(0)["shape"]), 0)
    interpreter.invoke()
    return interpreter.get_output(0).copy()


def _vector(name: str, kernel: Kernel, corner: str, payload: bytes, model: bytes, x: np.ndarray) -> Vector:
    """A vector with both references' outputs for the model it was built with."""
    expected = [run(model, x).astype(np.int8).tobytes() for run in (run_litert, run_tflm)]
    return Vector(name, kernel, corner, payload, *expected)


@dataclass
class ConvCase:
    """One CONV_2D or DEPTHWISE_CONV_2D vector; `x` (h, w, c) and `weights` in TFLite's filter order."""

    name: str
    corner: str
    x: np.ndarray
    weights: np.ndarray
    bias: np.ndarray | None
    filter_scales: list[float]
    input_scale: float = 1.0
    input_zero_point: int = 0
    output_scale: float = 1.0
    output_zero_point: int = 0
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "VALID"
    activation: str = "NONE"
    depthwise: bool = False

    def vector(self) -> Vector:
        quant = dict(stride=self.stride, dilation=self.dilation, padding=self.padding,
                     input_scale=self.input_scale, input_zero_point=self.input_zero_point,
                     filter_scales=self.filter_scales, output_scale=self.output_scale,
                     output_zero_point=self.output_zero_point, activation=self.activation)
        x = np.asarray(self.x, np.int8)
        weights = np.asarray(self.weights, np.int8)
        shape = (1, *x.shape)
        channels = weights.shape[3] if self.depthwise else weights.shape[0]
        # LiteRT's int8 convolutions require a bias: a kernel called without one is checked against zeros.
        bias = np.zeros(channels, np.int32) if self.bias is None else np.asarray(self.bias, np.int32)
        if self.depthwise:
            fields, multipliers = qp.depthwise_params(shape, weights.shape, **quant)
            model = single_op.depthwise_conv2d_model(shape, weights, bias, **quant)
        else:
            fields, multipliers = qp.conv_params(shape, weights.shape, **quant)
            model = single_op.conv2d_model(shape, weights, bias, **quant)
        payload = conv_payload(fields, multipliers, self.bias, x.ravel(), weights.ravel(), self.depthwise)
        kernel = Kernel.DEPTHWISE_CONV_2D if self.depthwise else Kernel.CONV_2D
        return _vector(self.name, kernel, self.corner, payload, model, x[None])


@dataclass
class FcCase:
    name: str
    corner: str
    x: np.ndarray  # (in,)
    weights: np.ndarray  # (out, in)
    bias: np.ndarray | None
    filter_scales: list[float]  # one: per tensor
    input_scale: float = 1.0
    input_zero_point: int = 0
    filter_zero_point: int = 0
    output_scale: float = 1.0
    output_zero_point: int = 0
    activation: str = "NONE"

    def vector(self) -> Vector:
        x = np.asarray(self.x, np.int8)
        weights = np.asarray(self.weights, np.int8)
        out_features, in_features = weights.shape
        quant = dict(input_scale=self.input_scale, input_zero_point=self.input_zero_point,
                     output_scale=self.output_scale, output_zero_point=self.output_zero_point,
                     filter_zero_point=self.filter_zero_point, activation=self.activation)
        scales = self.filter_scales if len(self.filter_scales) > 1 else self.filter_scales[0]
        fields, fc_scales, per_channel = qp.fc_params(in_features, out_features, filter_scales=scales, **quant)
        model = single_op.fully_connected_model(in_features, weights, self.bias, filter_scales=scales, **quant)
        payload = fc_payload(fields, fc_scales, per_channel, self.bias, x, weights.ravel())
        return _vector(self.name, Kernel.FULLY_CONNECTED, self.corner, payload, model, x[None])


@dataclass
class PoolCase:
    name: str
    corner: str
    x: np.ndarray  # (h, w, c)
    filter_size: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: str = "VALID"
    scale: float = 0.1
    zero_point: int = 0
    activation: str = "NONE"

    def vector(self) -> Vector:
        x = np.asarray(self.x, np.int8)
        shape = (1, *x.shape)
        quant = dict(filter_size=self.filter_size, stride=self.stride, padding=self.padding, activation=self.activation)
        fields = qp.pool_params(shape, output_scale=self.scale, output_zero_point=self.zero_point, **quant)
        model = single_op.average_pool2d_model(shape, scale=self.scale, zero_point=self.zero_point, **quant)
        return _vector(self.name, Kernel.AVERAGE_POOL_2D, self.corner, pool_payload(fields, x.ravel()), model,
                       x[None])


@dataclass
class ReshapeCase:
    name: str
    corner: str
    x: np.ndarray
    output_shape: tuple[int, ...] = field(default=())

    def vector(self) -> Vector:
        x = np.asarray(self.x, np.int8)
        model = single_op.reshape_model(x.shape, self.output_shape, scale=0.5, zero_point=3)
        return _vector(self.name, Kernel.RESHAPE, self.corner, reshape_payload(x.ravel()), model, x)


def _ramp(low: int, high: int) -> np.ndarray:
    """low..high inclusive, as int8, one per output position: each output sees one accumulator."""
    return np.arange(low, high + 1).astype(np.int8)


def conv_cases(rng: np.random.Generator) -> list[ConvCase]:
    """1x1 convolutions over a ramp give one accumulator per output, so that each rounding corner is hit by
    name; the rest are shapes, strides, dilation and padding with random operands."""
    ramp = _ramp(-24, 24)[None, :, None]  # 1 x 49 x 1: accumulators -24..24 with weight 1
    one = np.ones((1, 1, 1, 1), np.int8)
    cases = [
        ConvCase("conv/ties-quarter", "scale 1/4: both roundings meet ties of both signs (x.5 and x.25)", ramp, one,
                 None, [0.25]),
        ConvCase("conv/ties-half", "scale 1/2 (shift 0): ties of both signs in the high multiply", ramp, one, None,
                 [0.5]),
        ConvCase("conv/ties-eighth-bias", "scale 1/8 with a bias: ties after the bias, negative sums", ramp, one,
                 np.array([-3], np.int32), [0.125]),
        ConvCase("conv/multiplier-near-2^31", "multiplier 2^31 - 128 (scale 1 - 2^-24): the largest products",
                 ramp * 5, one, None, [float(np.float32(1 - 2**-24))], output_scale=1.0),
        ConvCase("conv/multiplier-2^30", "multiplier 2^30 exactly (scale 2^-k)", ramp, one * 7, None, [2.0 ** -5]),
        ConvCase("conv/shift-min", "shift -31: scale 2^-32, accumulators near 2^31 from the bias",
                 np.zeros((1, 4, 1), np.int8), np.ones((1, 1, 1, 1), np.int8) * 0,
                 np.array([2**31 - 1], np.int32), [2.0 ** -32], output_zero_point=-3),
        ConvCase("conv/shift-below-min", "scale 2^-40 flushes to multiplier 0: only the zero point is left",
                 ramp[:, :8], one, np.array([1 << 20], np.int32), [2.0 ** -40], output_zero_point=5),
        ConvCase("conv/shift-left", "scale 2^12 (shift 13): left shift, saturating at both ends", ramp, one, None,
                 [2.0 ** 12], input_scale=1.0),
        ConvCase("conv/shift-left-small", "scale 2 (shift 2): a left shift that neither wraps nor saturates", ramp,
                 one, None, [2.0]),
        ConvCase("conv/shift-left-max", "scale 2^29 (shift 30): the largest left shift; x * 2^30 wraps in int32",
                 _ramp(-4, 4)[None, :, None], one, None, [2.0 ** 29]),
        ConvCase("conv/act-exact", "RELU6: outputs at act_min and act_max exactly, one past each, and between",
                 _ramp(-10, 70)[None, :, None], one, None, [1.0], input_scale=1.0, output_scale=0.1,
                 output_zero_point=-10, activation="RELU6"),
        ConvCase("conv/act-relu-zp-127", "RELU with output zero point 127: act_min = act_max = 127",
                 ramp, one, None, [1.0], output_zero_point=127, activation="RELU"),
        ConvCase("conv/saturate-int8", "no activation: outputs clamp at -128 and 127",
                 _ramp(-100, 100)[None, ::4, None],
                 one * 3, None, [1.0], output_scale=1.0),
        ConvCase("conv/zero-points-extreme", "input zero point -128, output zero point 127",
                 _ramp(-128, -80)[None, :, None], one * -2, None, [1.0], input_zero_point=-128,
                 output_scale=0.5, output_zero_point=127),
        ConvCase("conv/input-zp-127", "input zero point 127, output zero point -128", _ramp(80, 127)[None, :, None],
                 one * -2, None, [0.75], input_zero_point=127, output_zero_point=-128),
        ConvCase("conv/per-channel", "per-channel scales across orders of magnitude, bias, shifts -2..-20",
                 rng.integers(-128, 128, (3, 3, 2)), rng.integers(-127, 128, (6, 1, 1, 2)),
                 rng.integers(-5000, 5000, 6), [2.0 ** -1, 0.3, 2.0 ** -8, 1e-3, 2.0 ** -15, 7e-6],
                 input_scale=0.05, output_scale=0.05),
        ConvCase("conv/same-stride-2-odd", "SAME padding, stride 2 on an odd 5x7 image: pads on every side",
                 rng.integers(-128, 128, (5, 7, 2)), rng.integers(-127, 128, (2, 3, 3, 2)),
                 rng.integers(-2000, 2000, 2), [0.01, 0.02], input_scale=0.05, input_zero_point=-7,
                 output_scale=0.06, output_zero_point=4, stride=(2, 2), padding="SAME"),
        ConvCase("conv/dilation-same", "dilation 2 with SAME padding, 1x2 stride", rng.integers(-128, 128, (6, 6, 1)),
                 rng.integers(-127, 128, (2, 3, 3, 1)), None, [0.02, 0.015], input_scale=0.05,
                 output_scale=0.05, dilation=(2, 2), stride=(1, 2), padding="SAME", activation="RELU"),
        ConvCase("conv/1d-kernel", "a 1x5 kernel on a 1-D signal, SAME, stride 2 (the mnist1d shape)",
                 rng.integers(-128, 128, (1, 20, 2)), rng.integers(-127, 128, (3, 1, 5, 2)),
                 rng.integers(-3000, 3000, 3), [0.01, 0.012, 0.009], input_scale=0.04, output_scale=0.05,
                 stride=(1, 2), padding="SAME"),
    ]
    dw_ramp = _ramp(-20, 20)[None, :, None]
    dw_one = np.ones((1, 1, 1, 1), np.int8)
    cases += [
        ConvCase("dw/ties-quarter", "scale 1/4: ties of both signs", dw_ramp, dw_one, None, [0.25], depthwise=True),
        ConvCase("dw/multiplier-near-2^31", "multiplier 2^31 - 128 with negative accumulators", dw_ramp * 6, dw_one,
                 None, [float(np.float32(1 - 2**-24))], depthwise=True),
        ConvCase("dw/shift-left", "scale 2^9: left shift and saturation", dw_ramp, dw_one, None, [2.0 ** 9],
                 depthwise=True),
        ConvCase("dw/shift-min", "shift -31 with a bias near 2^31", np.zeros((1, 3, 1), np.int8), dw_one,
                 np.array([-(2**31) + 1], np.int32), [2.0 ** -32], depthwise=True),
        ConvCase("dw/act-exact", "RELU6 outputs at act_min and act_max exactly", _ramp(-10, 70)[None, :, None], dw_one,
                 None, [1.0], output_scale=0.1, output_zero_point=-10, activation="RELU6", depthwise=True),
        ConvCase("dw/multiplier-2-same-stride", "depth multiplier 2, SAME padding, stride 2 on an odd image",
                 rng.integers(-128, 128, (5, 5, 2)), rng.integers(-127, 128, (1, 3, 3, 4)),
                 rng.integers(-2000, 2000, 4), [0.02, 0.01, 0.03, 0.005], input_scale=0.05, input_zero_point=3,
                 output_scale=0.05, output_zero_point=-2, stride=(2, 2), padding="SAME", depthwise=True),
        ConvCase("dw/dilation-valid", "dilation 2, VALID, input zero point -128, RELU",
                 rng.integers(-128, 128, (6, 5, 3)), rng.integers(-127, 128, (1, 2, 2, 3)), None,
                 [0.01, 0.02, 0.015], input_scale=0.05, input_zero_point=-128, output_scale=0.5,
                 output_zero_point=-128, dilation=(2, 2), activation="RELU", depthwise=True),
    ]
    return cases


def rounding_53_accumulators(real_scale: float, count: int) -> list[int]:
    """Accumulators, both signs, whose exact product with `real_scale` rounds to 53 bits on an exact tie (half an
    ulp dropped) with an odd and with an even significand, and with more and less than half dropped: found by
    the exact integer arithmetic the kernel does (kernels.c k_fc_rescale, step 2)."""
    mantissa, _ = qp.fc_scale(real_scale)
    found: dict[str, list[int]] = {"tie-odd": [], "tie-even": [], "above": [], "below": []}
    # A tie needs the product's lowest set bit to be the top dropped bit: magnitudes of few odd bits times a power
    # of two reach it, from the largest down (so that the 128-bit product also carries).
    candidates = sorted({odd << k for odd in range(1, 2048, 2) for k in range(12) if (odd << k) < 1 << 20},
                        reverse=True)
    for magnitude in candidates:
        product = magnitude * mantissa
        excess = product.bit_length() - 53
        dropped, half = product & ((1 << excess) - 1), 1 << (excess - 1)
        odd = (product >> excess) & 1
        kind = ("tie-odd" if odd else "tie-even") if dropped == half else "above" if dropped > half else "below"
        if len(found[kind]) < count:
            found[kind].append(magnitude)
        if all(len(values) == count for values in found.values()):
            break
    return [sign * m for values in found.values() for m in values for sign in (1, -1)]


def fc_cases(rng: np.random.Generator) -> list[FcCase]:
    """in_features 1 and weight 1 make each output's accumulator its bias plus the input: each rounding
    corner of the double rescale (round to 53 bits ties to even, round() ties away) by name. No vector
    saturates the rescale itself (|acc * scale| >= 2^31): LiteRT's cast of such a double to int32 is undefined
    behaviour in C++ (x86 gives INT32_MIN for either sign), so there is no reference to hold the kernel's
    saturation to; tests/unit/test_kernels.py holds it to its own spec."""
    x_one = np.array([0], np.int8)
    col = np.ones((32, 1), np.int8)
    ramp_bias = np.arange(-16, 16, dtype=np.int32)
    fc_tie_scale = qp.fc_effective_scale(0.01, 0.003, 0.7)
    return [
        FcCase("fc/ties-half", "scale 1/2: round() ties away from zero, both signs", x_one, col, ramp_bias, [0.5]),
        FcCase("fc/ties-quarter-zp", "scale 1/4, output zero point -128: ties and saturation at -128", x_one, col,
               ramp_bias * 3, [0.25], output_zero_point=-120),
        FcCase("fc/round-53-exact-ties", "scale 0.01 * 0.003 / 0.7 in double and accumulators up to 2^20: the "
               "53-bit rounding of the product drops exactly half an ulp (odd and even significand), more and less, "
               "and the 128-bit product carries", x_one, col[:16],
               np.array(rounding_53_accumulators(fc_tie_scale, 2), np.int32), [0.003], input_scale=0.01,
               output_scale=0.7),
        FcCase("fc/wide-accumulator", "accumulators near +-2^31 on a scale near 2^-27: the 128-bit product's low "
               "word carries into its high word", x_one, col[:12],
               rng.integers(1 << 29, (1 << 31) - 1, 12) * np.array([1, -1] * 6), [1e-4], input_scale=1e-4,
               output_scale=0.9),
        FcCase("fc/zero-scale-channel", "per-channel, one channel's filter scale 0: its scale's mantissa is 0",
               x_one + 3, np.ones((4, 1), np.int8), np.array([5, -7, 9, 11], np.int32), [0.5, 0.0, 0.25, 1.0],
               input_zero_point=1, output_zero_point=-4),
        FcCase("fc/unit-accumulator", "accumulators of +-1 and 0: no bits dropped, and the zero shortcut", x_one,
               col[:6], np.array([1, -1, 0, 1, -1, 0], np.int32), [0.75]),
        FcCase("fc/scale-tiny", "scale 2^-80: the value is below 1/2 for every accumulator", x_one, col[:4],
               np.array([2**31 - 1, -(2**31), 12345, -1], np.int32), [2.0 ** -80], output_zero_point=9),
        FcCase("fc/scale-2^20", "scale 2^20: exponent >= 0 without saturation, then clamped to int8", x_one, col[:6],
               np.array([0, 1, -1, 3, -3, 2000], np.int32), [2.0 ** 20], input_scale=1.0, output_scale=1.0),
        FcCase("fc/act-exact", "RELU6: outputs at act_min and act_max exactly and past them", x_one, col,
               np.arange(-12, 52, 2, dtype=np.int32), [0.5], output_scale=0.5, output_zero_point=-10,
               activation="RELU6"),
        FcCase("fc/zero-points-extreme", "input zero point 127, filter zero point -128 (per tensor)",
               rng.integers(-128, 128, 5), rng.integers(-128, 128, (7, 5)), rng.integers(-40000, 40000, 7),
               [0.004], input_scale=0.1, input_zero_point=127, filter_zero_point=-128, output_scale=0.9,
               output_zero_point=-3),
        FcCase("fc/per-channel", "per-channel scales across decades, no bias, input zero point -128",
               rng.integers(-128, 128, 12), rng.integers(-127, 128, (6, 12)), None,
               [0.5, 0.03, 1e-3, 2.0 ** -10, 7e-5, 0.2], input_scale=0.05, input_zero_point=-128,
               output_scale=0.3, output_zero_point=2),
        FcCase("fc/dense", "a dense layer with random operands (the models' FC shapes, shrunk)",
               rng.integers(-128, 128, 16), rng.integers(-127, 128, (10, 16)), rng.integers(-3000, 3000, 10),
               [0.006], input_scale=0.08, input_zero_point=-9, output_scale=0.12, output_zero_point=11),
    ]


def pool_cases(rng: np.random.Generator) -> list[PoolCase]:
    pairs = np.array([[v, v + d] for v in range(-6, 7) for d in (0, 1)], np.int8)  # sums of both parities
    return [
        PoolCase("pool/ties", "2-tap windows: sums of both signs, odd sums tie and round away from zero",
                 pairs.reshape(1, -1, 1), filter_size=(1, 2), stride=(1, 2)),
        PoolCase("pool/extremes", "sums of -128s and 127s: the int8 ends exactly", np.array(
            [-128, -128, 127, 127, -128, 127, 127, -128], np.int8).reshape(2, 2, 2), filter_size=(2, 2), stride=(1, 1)),
        PoolCase("pool/same-partial", "SAME padding on an odd image: windows of 4, 2 and 1 taps",
                 rng.integers(-128, 128, (5, 5, 2)), filter_size=(2, 2), stride=(2, 2), padding="SAME"),
        PoolCase("pool/relu6", "RELU6: averages at act_min and act_max exactly and past them",
                 _ramp(-40, 90)[::2].reshape(1, -1, 1), filter_size=(1, 1), stride=(1, 1), scale=0.1,
                 zero_point=-10, activation="RELU6"),
        PoolCase("pool/same-3x3-stride-1", "SAME padding on every side: windows of 9, 6 and 4 taps",
                 rng.integers(-128, 128, (4, 4, 1)), filter_size=(3, 3), stride=(1, 1), padding="SAME"),
        PoolCase("pool/3x3-stride-2", "3x3 windows of 9 taps, stride 2, SAME on 6x7",
                 rng.integers(-128, 128, (6, 7, 1)), filter_size=(3, 3), stride=(2, 2), padding="SAME"),
    ]


def reshape_cases(rng: np.random.Generator) -> list[ReshapeCase]:
    return [ReshapeCase("reshape/flatten", "every byte value once: the copy changes nothing",
                        np.arange(-128, 128, dtype=np.int16).astype(np.int8)[:200].reshape(1, 5, 5, 8), (1, 200)),
            ReshapeCase("reshape/odd", "an odd shape", rng.integers(-128, 128, (1, 3, 1, 7)), (1, 21))]


def dsp_path_cases(rng: np.random.Generator) -> list[ConvCase | PoolCase]:
    """The Armv7E-M kernels' own paths (kernels.c, KERNELS_DSP), which the boards run and the vectors above
    mostly leave to the portable fallback: whole groups of 4 input channels in CONV_2D's im2col, depthwise with
    4 or 8 channels (depth multiplier 1, no dilation), pools of 4 channels summed by SXTAB16, and the SSAT that
    clamps to int8 when the activation range is int8's. bench/conformance_coverage.py found them unreached."""
    lanes = np.arange(-20, 20).astype(np.int8).reshape(1, 10, 4)  # accumulators -20..19, every channel
    ones4 = np.ones((1, 1, 1, 4), np.int8)
    pairs = np.array([[v, v + d] for v in range(-6, 6) for d in (0, 1)], np.int8)  # both parities and signs
    pool_lanes = np.stack([pairs.ravel(), -pairs.ravel(), pairs.ravel()[::-1], -pairs.ravel()[::-1]], axis=-1)
    return [
        ConvCase("conv/in-4-same-odd", "4 input channels (im2col's whole groups), SAME on a 3x3 image, 3 output "
                 "channels and an odd pixel count", rng.integers(-128, 128, (3, 3, 4)),
                 rng.integers(-127, 128, (3, 3, 3, 4)), rng.integers(-3000, 3000, 3), [0.004, 0.01, 0.002],
                 input_scale=0.05, input_zero_point=-5, output_scale=0.08, output_zero_point=6, padding="SAME"),
        ConvCase("conv/in-8-relu6-zp-128", "8 input channels, RELU6 with output zero point -128: act_min is "
                 "int8's, act_max below it (the clamp, not SSAT)", rng.integers(-128, 128, (1, 6, 8)),
                 rng.integers(-127, 128, (2, 1, 1, 8)), None, [0.02, 0.03], input_scale=0.05, output_scale=0.03,
                 output_zero_point=-128, activation="RELU6"),
        ConvCase("dw/4-ties-quarter", "4 channels on the DSP path, scale 1/4: ties of both signs", lanes, ones4,
                 None, [0.25] * 4, depthwise=True),
        ConvCase("dw/4-shift-left-ssat", "4 channels, scale 2^9: left shift, SSAT's saturation at both ends", lanes,
                 ones4, None, [2.0 ** 9] * 4, depthwise=True),
        ConvCase("dw/4-multiplier-near-2^31", "4 channels, multiplier 2^31 - 128 on negative accumulators",
                 lanes * 6, ones4, None, [float(np.float32(1 - 2**-24))] * 4, depthwise=True),
        ConvCase("dw/4-shift-min-bias", "4 channels, shift -31 with biases near both ends of int32",
                 np.zeros((1, 3, 4), np.int8), ones4, np.array([2**31 - 1, -(2**31) + 1, 2**30, -(2**30)], np.int32),
                 [2.0 ** -32] * 4, output_zero_point=-3, depthwise=True),
        ConvCase("dw/4-act-exact-zp-128", "4 channels, RELU6 with output zero point -128: act_min is int8's, "
                 "act_max below 127 (the clamp, not SSAT), outputs at both exactly and past them",
                 np.arange(-10, 70, 2).astype(np.int8).reshape(1, 10, 4), ones4, None, [1.0] * 4, output_scale=0.1,
                 output_zero_point=-128, activation="RELU6", depthwise=True),
        ConvCase("dw/4-same-stride-2-relu", "4 channels, SAME, stride 2 on an odd 5x5 image: taps clipped on "
                 "every side; RELU above int8's act_min", rng.integers(-128, 128, (5, 5, 4)),
                 rng.integers(-127, 128, (1, 3, 3, 4)), rng.integers(-2000, 2000, 4), [0.02, 0.01, 0.03, 0.005],
                 input_scale=0.05, input_zero_point=3, output_scale=0.05, output_zero_point=-2, stride=(2, 2),
                 padding="SAME", activation="RELU", depthwise=True),
        ConvCase("dw/8-valid", "8 channels (two groups of 4), a 2x3 kernel, VALID, input zero point -128",
                 rng.integers(-128, 128, (3, 3, 8)), rng.integers(-127, 128, (1, 2, 3, 8)),
                 rng.integers(-2000, 2000, 8), [0.01, 0.02, 0.015, 0.03, 0.004, 0.05, 0.02, 0.01], input_scale=0.05,
                 input_zero_point=-128, output_scale=0.4, output_zero_point=7, depthwise=True),
        ConvCase("dw/4-dilation-2x1", "4 channels, dilation 2 down the rows: the portable fallback",
                 rng.integers(-128, 128, (5, 3, 4)), rng.integers(-127, 128, (1, 2, 2, 4)), None, [0.02] * 4,
                 input_scale=0.05, output_scale=0.1, dilation=(2, 1), depthwise=True),
        ConvCase("dw/4-dilation-1x2", "4 channels, dilation 2 along the rows only: the portable fallback",
                 rng.integers(-128, 128, (3, 5, 4)), rng.integers(-127, 128, (1, 2, 2, 4)), None, [0.02] * 4,
                 input_scale=0.05, output_scale=0.1, dilation=(1, 2), padding="SAME", depthwise=True),
        ConvCase("dw/4-kernel-taller-than-scratch", "4 channels, a 25x1 kernel, SAME on a 1x12 image: 25 widened "
                 "rows exceed the scratch, the portable fallback", rng.integers(-128, 128, (1, 12, 4)),
                 rng.integers(-127, 128, (1, 25, 1, 4)), rng.integers(-500, 500, 4), [0.01, 0.02, 0.03, 0.04],
                 input_scale=0.05, output_scale=0.1, padding="SAME", depthwise=True),
        PoolCase("pool/4-ties", "4 channels (SXTAB16's two int16 sums a word), 2-tap windows: odd sums of both "
                 "signs in every lane", pool_lanes.reshape(1, -1, 4), filter_size=(1, 2), stride=(1, 2)),
        PoolCase("pool/4-extremes", "4 channels of -128s and 127s: both int16 halves at the int8 ends",
                 np.array([-128, 127, -128, 127] * 2 + [127, -128, 127, -128] * 2, np.int8).reshape(2, 2, 4),
                 filter_size=(1, 2), stride=(1, 2)),
        PoolCase("pool/4-same-3x3", "4 channels, SAME on every side: windows of 9, 6 and 4 taps",
                 rng.integers(-128, 128, (4, 4, 4)), filter_size=(3, 3), stride=(1, 1), padding="SAME"),
        PoolCase("pool/4-relu6", "4 channels, RELU6: averages at act_min and act_max exactly",
                 np.arange(-40, 88, 2).astype(np.int8).reshape(1, 16, 4), filter_size=(1, 1), stride=(1, 1),
                 scale=0.1, zero_point=-10, activation="RELU6"),
        PoolCase("pool/4-window-over-255-taps", "4 channels, a 16x16 window (256 taps: past an int16 sum's 255) on "
                 "a 2x2 image, SAME: summed one channel at a time", rng.integers(-128, 128, (2, 2, 4)),
                 filter_size=(16, 16), stride=(1, 1), padding="SAME"),
    ]


def generate() -> list[Vector]:
    """Every vector of the suite, in order; one seeded generator draws the random operands."""
    rng = np.random.default_rng(SEED)
    cases = [*conv_cases(rng), *fc_cases(rng), *pool_cases(rng), *reshape_cases(rng), *dsp_path_cases(rng)]
    return [case.vector() for case in cases]

