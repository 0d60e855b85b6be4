"""The firmware's int8 kernels (firmware/src/kernels.c) against LiteRT's reference kernels.

Every case builds a one-operator int8 model (hil/firmware/single_op.py), runs it with
OpResolverType.BUILTIN_REF, runs the C kernel on the same bytes with the parameters the
builder's Prepare transcription computes, and requires every output byte to be equal.

What LiteRT 2.3.0 actually does, as pinned here:
- CONV_2D / DEPTHWISE_CONV_2D rescale with the double-rounding (gemmlowp)
  MultiplyByQuantizedMultiplier, not the TFLITE_SINGLE_ROUNDING one.
- FULLY_CONNECTED rescales in double precision, round(acc * in_s * f_s / out_s), not with
  MultiplyByQuantizedMultiplier at all, for per-tensor and per-channel weights alike.
- Fused activation bounds are quantized in float32.
"""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hil.firmware import single_op as tb
from hil.firmware import quantization as qp
from hil.firmware.conformance_gen import run_litert
from hil.model.litert import reference_interpreter
from tests.support.native import FIRMWARE_SRC, HOST_FLAGS, build_shared_library

I8 = ctypes.c_int8
I32 = ctypes.c_int32
INT32_MIN, INT32_MAX = qp.INT32_MIN, qp.INT32_MAX

# --------------------------------------------------------------------------------------
# The C library through ctypes
# --------------------------------------------------------------------------------------

CONV_INT16 = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "kernel_h", "kernel_w", "stride_h",
              "stride_w", "dilation_h", "dilation_w", "pad_h", "pad_w", "depth_multiplier")
POOL_INT16 = ("in_h", "in_w", "channels", "out_h", "out_w", "filter_h", "filter_w", "stride_h",
              "stride_w", "pad_h", "pad_w")


class QMul(ctypes.Structure):
    _fields_ = [("multiplier", ctypes.c_int32), ("shift", ctypes.c_int32)]


class FcScale(ctypes.Structure):
    _fields_ = [("mantissa", ctypes.c_uint64), ("exponent", ctypes.c_int32)]


class ConvParams(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int16) for name in CONV_INT16] + [
        (name, ctypes.c_int32) for name in ("input_offset", "output_offset", "act_min", "act_max")]


class FcParams(ctypes.Structure):
    _fields_ = [("in_features", ctypes.c_int16), ("out_features", ctypes.c_int16)] + [
        (name, ctypes.c_int32)
        for name in ("input_offset", "filter_offset", "output_offset", "act_min", "act_max")]


class PoolParams(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int16) for name in POOL_INT16] + [
        ("act_min", ctypes.c_int32), ("act_max", ctypes.c_int32)]


@pytest.fixture(scope="session")
def kernels_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("kernels")


@pytest.fixture(scope="session")
def clib(kernels_dir):
    lib = build_shared_library([FIRMWARE_SRC / "kernels.c"], kernels_dir)
    lib.k_multiply_by_quantized_multiplier.argtypes = [I32, I32, I32]
    lib.k_multiply_by_quantized_multiplier.restype = I32
    lib.k_fc_rescale.argtypes = [I32, ctypes.POINTER(FcScale)]
    lib.k_fc_rescale.restype = I32
    conv_args = [ctypes.POINTER(ConvParams), ctypes.POINTER(I8), ctypes.POINTER(I8), ctypes.POINTER(I32),
                 ctypes.POINTER(QMul), ctypes.POINTER(I8)]
    lib.k_conv2d.argtypes = conv_args
    lib.k_depthwise_conv2d.argtypes = conv_args
    lib.k_fully_connected.argtypes = [ctypes.POINTER(FcParams), ctypes.POINTER(I8), ctypes.POINTER(I8),
                                      ctypes.POINTER(I32), ctypes.POINTER(FcScale), ctypes.c_int,
                                      ctypes.POINTER(I8)]
    lib.k_avg_pool2d.argtypes = [ctypes.POINTER(PoolParams), ctypes.POINTER(I8), ctypes.POINTER(I8)]
    lib.k_copy.argtypes = [ctypes.POINTER(I8), ctypes.POINTER(I8), I32]
    for name in ("k_conv2d", "k_depthwise_conv2d", "k_fully_connected", "k_avg_pool2d", "k_copy"):
        getattr(lib, name).restype = None
    return lib


def ptr(array: np.ndarray | None, ctype):
    if array is None:
        return None
    assert array.flags["C_CONTIGUOUS"]
    return array.ctypes.data_as(ctypes.POINTER(ctype))


def c_conv(lib, fields, qmul, x, weights, bias, depthwise=False) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.int8)
    weights = np.ascontiguousarray(weights, dtype=np.int8)
    bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.int32)
    per_channel = (QMul * len(qmul))(*[QMul(m, s) for m, s in qmul])
    out = np.full((1, fields["out_h"], fields["out_w"], fields["out_c"]), 0x55, dtype=np.int8)
    kernel = lib.k_depthwise_conv2d if depthwise else lib.k_conv2d
    kernel(ctypes.byref(ConvParams(**fields)), ptr(x, I8), ptr(weights, I8), ptr(bias, I32), per_channel, ptr(out, I8))
    return out


def c_fully_connected(lib, fields, scales, per_channel, x, weights, bias) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.int8)
    weights = np.ascontiguousarray(weights, dtype=np.int8)
    bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.int32)
    c_scales = (FcScale * len(scales))(*[FcScale(m, e) for m, e in scales])
    out = np.full((1, fields["out_features"]), 0x55, dtype=np.int8)
    lib.k_fully_connected(ctypes.byref(FcParams(**fields)), ptr(x, I8), ptr(weights, I8), ptr(bias, I32),
                          c_scales, int(per_channel), ptr(out, I8))
    return out


def c_avg_pool(lib, fields, x) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.int8)
    out = np.full((1, fields["out_h"], fields["out_w"], fields["channels"]), 0x55, dtype=np.int8)
    lib.k_avg_pool2d(ctypes.byref(PoolParams(**fields)), ptr(x, I8), ptr(out, I8))
    return out


def c_fc_rescale(lib, acc: int, real_scale: float) -> int:
    return lib.k_fc_rescale(acc, ctypes.byref(FcScale(*qp.fc_scale(real_scale))))


def assert_same(c_out: np.ndarray, ref: np.ndarray, what: str = ""):
    assert c_out.shape == ref.shape, f"{what}: shape {c_out.shape} != LiteRT {ref.shape}"
    diff = np.flatnonzero(c_out.ravel() != ref.ravel())
    assert diff.size == 0, (
        f"{what}: {diff.size}/{ref.size} bytes differ; first at {diff[:5].tolist()}: "
        f"C {c_out.ravel()[diff[:5]].tolist()} vs LiteRT {ref.ravel()[diff[:5]].tolist()}")


# --------------------------------------------------------------------------------------
# Random operands
# --------------------------------------------------------------------------------------


def random_input(rng, shape, zero_point: int, spread: int | None = None) -> np.ndarray:
    """int8 values; with `spread`, only zero_point +- spread (so accumulators stay small)."""
    if spread is None:
        return rng.integers(-128, 128, shape).astype(np.int8)
    return np.clip(rng.integers(zero_point - spread, zero_point + spread + 1, shape), -128, 127).astype(np.int8)


def random_weights(rng, shape, low=-127, high=127) -> np.ndarray:
    return rng.integers(low, high + 1, shape).astype(np.int8)


def random_bias(rng, kind: str, channels: int, magnitude: int = 4000):
    """(bias for LiteRT, bias for C): 'none' gives LiteRT zeros and C a NULL pointer."""
    if kind == "none":
        return np.zeros(channels, np.int32), None
    if kind == "zero":
        bias = np.zeros(channels, np.int32)
    elif kind == "large":
        bias = rng.integers(-(1 << 24), 1 << 24, channels).astype(np.int32)
    else:
        bias = rng.integers(-magnitude, magnitude + 1, channels).astype(np.int32)
    return bias, bias


def filter_scales_for(rng, kind, channels: int) -> np.ndarray:
    """Per-channel filter scales: 'uniform' ~ one decade, 'spread' ~ four decades, or given."""
    if isinstance(kind, (int, float)):
        return np.full(channels, kind, np.float32)
    if kind == "uniform":
        return (10.0 ** rng.uniform(-2.5, -1.5, channels)).astype(np.float32)
    if kind == "spread":
        return (10.0 ** rng.uniform(-5.0, -1.0, channels)).astype(np.float32)
    return np.asarray(kind, np.float32)


def auto_output_scale(input_scale, filter_scales, taps: int) -> float:
    """An output scale that puts a typical accumulator a few dozen steps from zero."""
    typical = math.sqrt(taps) * 74.0 * 74.0 * float(np.exp(np.mean(np.log(filter_scales)))) * input_scale
    return float(np.float32(typical / 40.0))


# --------------------------------------------------------------------------------------
# Convolutions
# --------------------------------------------------------------------------------------

BASE_CONV = dict(in_hw=(5, 5), in_c=2, out_c=3, kernel=(3, 3), stride=(1, 1), dilation=(1, 1), padding="SAME",
                 activation="NONE", in_zp=0, in_scale=0.05, out_zp=0, out_scale=None, f_scales="uniform",
                 w_range=(-127, 127), x_spread=None, bias="random", depth_multiplier=1)

CONV_CASES = {
    "1x1_valid": dict(kernel=(1, 1), padding="VALID", in_c=4, out_c=5),
    "3x3_same_s1": dict(),
    "3x3_same_s2": dict(stride=(2, 2), in_hw=(7, 7)),
    "3x3_valid_s2": dict(stride=(2, 2), in_hw=(7, 6), padding="VALID"),
    "3x3_same_stride_1x2": dict(stride=(1, 2), in_hw=(6, 7)),
    "3x3_same_stride_2x1": dict(stride=(2, 1), in_hw=(7, 6)),
    "1x5_same_stride_1x2_1d": dict(in_hw=(1, 40), in_c=1, out_c=8, kernel=(1, 5), stride=(1, 2), activation="RELU"),
    "1x3_same_1d": dict(in_hw=(1, 10), in_c=4, out_c=4, kernel=(1, 3)),
    "1x3_valid_1d": dict(in_hw=(1, 9), in_c=3, kernel=(1, 3), padding="VALID"),
    "odd_7x5x3": dict(in_hw=(7, 5), in_c=3, out_c=4),
    "odd_7x5x3_s2_valid": dict(in_hw=(7, 5), in_c=3, out_c=4, stride=(2, 2), padding="VALID"),
    "dilation_2_same": dict(in_hw=(7, 7), dilation=(2, 2)),
    "dilation_2_valid": dict(in_hw=(7, 8), dilation=(2, 2), padding="VALID"),
    "dilation_2x1_stride_2": dict(in_hw=(8, 7), dilation=(2, 1), stride=(1, 2)),
    "relu": dict(activation="RELU", in_zp=-5, out_zp=-20),
    "relu6": dict(activation="RELU6", out_scale=0.03, out_zp=-128),
    "relu6_wide_scale": dict(activation="RELU6", out_scale=0.01, out_zp=10),
    "input_zp_-128": dict(in_zp=-128, out_zp=-128, activation="RELU"),
    "input_zp_127": dict(in_zp=127, out_zp=127),
    "output_zp_-128": dict(out_zp=-128),
    "output_zp_127": dict(out_zp=127),
    "saturation": dict(w_range=(-128, 127), out_scale=1e-4, bias="zero"),
    "saturation_extremes_zp": dict(w_range=(-128, 127), out_scale=1e-4, in_zp=-128, out_zp=127),
    "scales_span_4_decades": dict(f_scales="spread", out_c=8, in_c=3),
    "positive_shift": dict(kernel=(1, 1), in_c=1, out_c=4, f_scales=0.05, in_scale=0.5, out_scale=0.001,
                           w_range=(-2, 2), x_spread=2, bias="small", in_zp=3, out_zp=-7),
    "shift_exactly_1": dict(kernel=(1, 1), in_c=1, out_c=2, f_scales=0.25, in_scale=4.0, out_scale=1.0,
                            w_range=(-3, 3), x_spread=10, bias="small"),
    "tiny_effective_scale": dict(f_scales=1e-6, out_scale=0.5, bias="large"),
    "bias_null": dict(bias="none"),
    "bias_large": dict(bias="large", out_scale=40.0),
    "model_digits_conv1": dict(in_hw=(8, 8), in_c=1, out_c=16, in_zp=-128, in_scale=0.003921568859368563,
                               out_zp=-128, activation="RELU"),
    "model_digits_pointwise": dict(in_hw=(8, 8), in_c=16, out_c=32, kernel=(1, 1), in_zp=-128,
                                   in_scale=0.0057, out_zp=-128, activation="RELU"),
    "model_mnist1d_conv1": dict(in_hw=(1, 40), in_c=1, out_c=32, kernel=(1, 5), stride=(1, 2), in_zp=17,
                                in_scale=0.0377, out_zp=-128, activation="RELU"),
}

DEPTHWISE_CASES = {
    "3x3_same": dict(in_c=4, out_c=4),
    "3x3_same_s2": dict(in_c=3, out_c=3, stride=(2, 2), in_hw=(7, 7)),
    "3x3_valid_stride_2x1": dict(in_c=3, out_c=3, stride=(2, 1), in_hw=(7, 6), padding="VALID"),
    "1x1": dict(in_c=5, out_c=5, kernel=(1, 1)),
    "1x3_stride_1x2_1d": dict(in_hw=(1, 20), in_c=8, out_c=8, kernel=(1, 3), stride=(1, 2), activation="RELU"),
    "1x5_valid_1d": dict(in_hw=(1, 11), in_c=2, out_c=2, kernel=(1, 5), padding="VALID"),
    "odd_7x5x3": dict(in_hw=(7, 5), in_c=3, out_c=3),
    "depth_multiplier_2": dict(in_c=3, out_c=6, depth_multiplier=2),
    "depth_multiplier_2_s2_valid": dict(in_hw=(7, 5), in_c=3, out_c=6, depth_multiplier=2, stride=(2, 2),
                                        padding="VALID"),
    "depth_multiplier_3": dict(in_c=2, out_c=6, depth_multiplier=3, kernel=(1, 3)),
    "dilation_2": dict(in_hw=(7, 7), in_c=3, out_c=3, dilation=(2, 2)),
    "relu6_zp": dict(in_c=4, out_c=4, activation="RELU6", out_scale=0.03, in_zp=-128, out_zp=-128),
    "input_zp_127": dict(in_c=3, out_c=3, in_zp=127, out_zp=127),
    "saturation": dict(in_c=3, out_c=3, w_range=(-128, 127), out_scale=1e-4, bias="zero"),
    "scales_span_4_decades": dict(in_c=8, out_c=8, f_scales="spread"),
    "positive_shift": dict(in_c=2, out_c=2, kernel=(1, 1), f_scales=0.05, in_scale=0.5, out_scale=0.001,
                           w_range=(-2, 2), x_spread=2, bias="small"),
    "bias_null": dict(in_c=3, out_c=3, bias="none"),
    "bias_large": dict(in_c=3, out_c=3, bias="large", out_scale=40.0),
    "model_digits_dw": dict(in_hw=(8, 8), in_c=32, out_c=32, in_zp=-128, in_scale=0.034, out_zp=-128,
                            activation="RELU"),
    "model_mnist1d_dw_stride_2": dict(in_hw=(1, 20), in_c=32, out_c=32, kernel=(1, 3), stride=(1, 2),
                                      in_zp=-128, in_scale=0.0256, out_zp=-128, activation="RELU"),
}


def make_conv_case(spec: dict, seed: int, depthwise: bool):
    """Operands, the LiteRT model and the C parameters for one convolution case."""
    case = {**BASE_CONV, **spec}
    rng = np.random.default_rng(seed)
    in_h, in_w = case["in_hw"]
    in_c, out_c = case["in_c"], case["out_c"]
    kh, kw = case["kernel"]
    w_shape = (1, kh, kw, out_c) if depthwise else (out_c, kh, kw, in_c)
    weights = random_weights(rng, w_shape, *case["w_range"])
    f_scales = filter_scales_for(rng, case["f_scales"], out_c)
    taps = kh * kw * (1 if depthwise else in_c)
    out_scale = case["out_scale"] or auto_output_scale(case["in_scale"], f_scales, taps)
    x = random_input(rng, (1, in_h, in_w, in_c), case["in_zp"], case["x_spread"])
    if case["bias"] == "small":
        model_bias, c_bias = random_bias(rng, "random", out_c, magnitude=3)
    else:
        model_bias, c_bias = random_bias(rng, case["bias"], out_c)
    quant = dict(input_scale=case["in_scale"], input_zero_point=case["in_zp"], filter_scales=f_scales,
                 output_scale=out_scale, output_zero_point=case["out_zp"], stride=case["stride"],
                 dilation=case["dilation"], padding=case["padding"], activation=case["activation"])
    if depthwise:
        model = tb.depthwise_conv2d_model(x.shape, weights, model_bias, **quant)
        fields, qmul = qp.depthwise_params(x.shape, weights.shape, **quant)
        assert fields["depth_multiplier"] == case["depth_multiplier"]
    else:
        model = tb.conv2d_model(x.shape, weights, model_bias, **quant)
        fields, qmul = qp.conv_params(x.shape, weights.shape, **quant)
    return dict(x=x, weights=weights, bias=c_bias, model=model, fields=fields, qmul=qmul)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(CONV_CASES))
def test_conv2d_matches_litert(clib, name, seed):
    c = make_conv_case(CONV_CASES[name], seed, depthwise=False)
    ref = run_litert(c["model"], c["x"])
    assert_same(c_conv(clib, c["fields"], c["qmul"], c["x"], c["weights"], c["bias"]), ref, name)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(DEPTHWISE_CASES))
def test_depthwise_conv2d_matches_litert(clib, name, seed):
    c = make_conv_case(DEPTHWISE_CASES[name], seed, depthwise=True)
    ref = run_litert(c["model"], c["x"])
    assert_same(c_conv(clib, c["fields"], c["qmul"], c["x"], c["weights"], c["bias"], depthwise=True), ref, name)


def test_conv_cases_reach_the_shifts_and_ranges_they_claim():
    """The named cases really exercise what their names say (so a pass means something)."""
    shifts = {name: [s for _, s in make_conv_case(spec, 0, False)["qmul"]] for name, spec in CONV_CASES.items()}
    assert max(shifts["positive_shift"]) > 0  # effective scale 25: a left shift
    assert all(s == 1 for s in shifts["shift_exactly_1"])  # effective scale exactly 1.0
    assert max(shifts["3x3_same_s1"]) < 0  # the usual case: right shifts
    assert max(shifts["scales_span_4_decades"]) - min(shifts["scales_span_4_decades"]) >= 7
    for name in ("saturation", "saturation_extremes_zp"):
        c = make_conv_case(CONV_CASES[name], 0, False)
        out = run_litert(c["model"], c["x"])
        assert (out == -128).any() and (out == 127).any(), f"{name} does not clip both ways"
    relu6 = make_conv_case(CONV_CASES["relu6"], 0, False)
    assert relu6["fields"]["act_min"] == -128 and relu6["fields"]["act_max"] == 72  # -128 + round(6 / 0.03)
    assert (run_litert(relu6["model"], relu6["x"]) == 72).any()


# --------------------------------------------------------------------------------------
# Fully connected
# --------------------------------------------------------------------------------------

FC_CASES = {
    "per_tensor_512x10": dict(n_in=512, n_out=10),
    "per_tensor_320x10": dict(n_in=320, n_out=10),
    "per_channel_512x10_digits": dict(n_in=512, n_out=10, per_channel=True, in_zp=-128, in_scale=0.048,
                                      out_zp=52),
    "per_channel_320x10_mnist1d": dict(n_in=320, n_out=10, per_channel=True, in_zp=-128, in_scale=0.126,
                                       out_zp=26),
    "per_tensor_filter_zero_point": dict(n_in=64, n_out=7, filter_zp=5),
    "per_channel_filter_zero_point_ignored": dict(n_in=64, n_out=7, per_channel=True, filter_zp=3),
    "relu": dict(n_in=33, n_out=9, activation="RELU", out_zp=-30),
    "relu6": dict(n_in=33, n_out=9, activation="RELU6", out_scale=0.03, out_zp=-128),
    "input_zp_127_output_zp_-128": dict(n_in=50, n_out=6, in_zp=127, out_zp=-128),
    "input_zp_-128_output_zp_127": dict(n_in=50, n_out=6, in_zp=-128, out_zp=127),
    "saturation": dict(n_in=40, n_out=8, w_range=(-128, 127), out_scale=1e-4, bias="zero"),
    "scales_span_4_decades": dict(n_in=40, n_out=8, per_channel=True, f_scales="spread"),
    "positive_shift": dict(n_in=2, n_out=6, f_scales=0.05, in_scale=0.5, out_scale=0.001, w_range=(-2, 2),
                           x_spread=2, bias="small"),
    "bias_null": dict(n_in=20, n_out=5, bias="none"),
    "bias_null_per_channel": dict(n_in=20, n_out=5, bias="none", per_channel=True),
    "bias_large": dict(n_in=20, n_out=5, bias="large", out_scale=40.0),
}
BASE_FC = dict(per_channel=False, in_zp=0, in_scale=0.05, out_zp=0, out_scale=None, f_scales="uniform",
               filter_zp=0, w_range=(-127, 127), x_spread=None, bias="random", activation="NONE")


def make_fc_case(spec: dict, seed: int):
    case = {**BASE_FC, **spec}
    rng = np.random.default_rng(seed)
    n_in, n_out = case["n_in"], case["n_out"]
    weights = random_weights(rng, (n_out, n_in), *case["w_range"])
    scales = filter_scales_for(rng, case["f_scales"], n_out)
    f_scales = scales if case["per_channel"] else scales[:1]
    out_scale = case["out_scale"] or auto_output_scale(case["in_scale"], f_scales, n_in)
    x = random_input(rng, (1, n_in), case["in_zp"], case["x_spread"])
    if case["bias"] == "small":
        bias, _ = random_bias(rng, "random", n_out, magnitude=3)
    elif case["bias"] == "none":
        bias = None  # FULLY_CONNECTED takes an omitted bias: both sides see none
    else:
        bias, _ = random_bias(rng, case["bias"], n_out)
    quant = dict(input_scale=case["in_scale"], input_zero_point=case["in_zp"], filter_scales=f_scales,
                 filter_zero_point=case["filter_zp"], output_scale=out_scale,
                 output_zero_point=case["out_zp"], activation=case["activation"])
    model = tb.fully_connected_model(n_in, weights, bias, **quant)
    fields, scales, per_channel = qp.fc_params(n_in, n_out, **quant)
    acc = (weights.astype(np.int64) + fields["filter_offset"]) @ (x[0].astype(np.int64) + fields["input_offset"])
    rescaled = (acc + (0 if bias is None else bias)) * (case["in_scale"] * np.asarray(f_scales, np.float64) / out_scale)
    return dict(x=x, weights=weights, bias=bias, model=model, fields=fields, scales=scales, per_channel=per_channel,
                in_int32=bool(np.all(np.abs(rescaled) < 2**31)), quant=quant)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", list(FC_CASES))
def test_fully_connected_matches_litert(clib, name, seed):
    c = make_fc_case(FC_CASES[name], seed)
    ref = run_litert(c["model"], c["x"])
    out = c_fully_connected(clib, c["fields"], c["scales"], c["per_channel"], c["x"], c["weights"], c["bias"])
    assert_same(out, ref, name)


def fc_unit_model(scale: float, bias: int, activation="NONE", out_zp=0, out_scale=1.0):
    """A 1->1 FULLY_CONNECTED whose accumulator is input + bias, times `scale` (input scale 1, weight 1)."""
    quant = dict(input_scale=1.0, input_zero_point=0, filter_scales=[scale * out_scale], output_scale=out_scale,
                 output_zero_point=out_zp, activation=activation)
    return tb.fully_connected_model(1, np.ones((1, 1)), [bias], **quant), qp.fc_params(1, 1, **quant)


# --------------------------------------------------------------------------------------
# Rescaling arithmetic: which variant LiteRT uses, and the C against its transcriptions
# --------------------------------------------------------------------------------------


def test_litert_convolutions_use_double_rounding(clib):
    """An effective scale of exactly 1/4 tells the MultiplyByQuantizedMultiplier variants apart.

    x = 1: 0.25 -> 0 in one rounding, 1 in two (0.25 -> 0.5 -> 1); x = -2: -0.5 -> 0 with
    single rounding's ties-up, -1 with gemmlowp's ties-away. LiteRT's CONV_2D and
    DEPTHWISE_CONV_2D show the double-rounding values, and so does the C kernel.
    """
    xs = np.arange(-8, 9, dtype=np.int8)
    quant = dict(input_scale=1.0, input_zero_point=0, filter_scales=[0.25], output_scale=1.0,
                 output_zero_point=0, padding="VALID")
    shape = (1, 1, len(xs), 1)
    fields, qmul = qp.conv_params(shape, (1, 1, 1, 1), **quant)
    dw_fields, dw_qmul = qp.depthwise_params(shape, (1, 1, 1, 1), **quant)
    assert qmul == dw_qmul == [(1 << 30, -1)]
    double = [qp.multiply_by_quantized_multiplier_double_rounding(int(x), 1 << 30, -1) for x in xs]
    single = [qp.multiply_by_quantized_multiplier_single_rounding(int(x), 1 << 30, -1) for x in xs]
    assert double != single
    for depthwise in (False, True):
        build = tb.depthwise_conv2d_model if depthwise else tb.conv2d_model
        ref = run_litert(build(shape, np.ones((1, 1, 1, 1)), [0], **quant), xs).ravel().tolist()
        assert ref == double
        out = c_conv(clib, dw_fields if depthwise else fields, qmul, xs.reshape(shape), np.ones((1, 1, 1, 1)), None,
                     depthwise)
        assert out.ravel().tolist() == double


def test_litert_fully_connected_rescales_in_double(clib):
    """FULLY_CONNECTED rounds acc * 0.25 once, ties away from zero: neither multiplier variant."""
    xs = np.arange(-8, 9)
    expected = [qp.round_half_away(x * 0.25) for x in xs]
    double = [qp.multiply_by_quantized_multiplier_double_rounding(int(x), 1 << 30, -1) for x in xs]
    single = [qp.multiply_by_quantized_multiplier_single_rounding(int(x), 1 << 30, -1) for x in xs]
    assert expected != double and expected != single
    for per_channel in (False, True):
        scales = [0.25, 0.25] if per_channel else [0.25]
        quant = dict(input_scale=1.0, input_zero_point=0, filter_scales=scales, output_scale=1.0, output_zero_point=0)
        weights = np.ones((len(scales), 1))
        model = tb.fully_connected_model(1, weights, None, **quant)
        fields, fc_scales, flag = qp.fc_params(1, len(scales), **quant)
        for x, want in zip(xs, expected):
            x = np.array([[x]], np.int8)
            assert run_litert(model, x).ravel()[0] == want
            assert c_fully_connected(clib, fields, fc_scales, flag, x, weights, None).ravel()[0] == want


def test_litert_fully_connected_rounds_the_double_product(clib):
    """acc * scale is rounded to a double before round(): 3 * (1/6) is 0.49999999999999997 exactly,
    0.5 as a double product, so LiteRT gives 1 (and -1), where exact arithmetic would give 0."""
    sixth = qp.fc_effective_scale(1.0, 1.0, 6.0)
    assert sixth == 1.0 / 6.0 and 3 * sixth == 0.5
    for acc, want in ((3, 1), (-3, -1), (2, 0), (4, 1)):
        model, (fields, fc_scales, per_channel) = fc_unit_model(sixth, acc, out_scale=6.0)
        x = np.zeros((1, 1), np.int8)
        assert run_litert(model, x).ravel()[0] == want
        assert c_fully_connected(clib, fields, fc_scales, per_channel, x, np.ones((1, 1)), [acc]).ravel()[0] == want


def rounding_witnesses(real_scale: float, limit: int = 3):
    """Accumulators for which MultiplyByQuantizedMultiplier (as LiteRT's convolutions use it, with
    QuantizeMultiplier's 31-bit multiplier) and the double rescale give different integers
    inside the int8 range."""
    multiplier, shift = qp.quantize_multiplier(real_scale)
    found = []
    for n in range(-120, 120):
        centre = round((n + 0.5) / real_scale)
        for acc in range(centre - 2, centre + 3):
            exact = qp.fc_rescale(acc, real_scale)
            if exact != qp.multiply_by_quantized_multiplier(acc, multiplier, shift) and abs(exact) < 120:
                found.append(acc)
                if len(found) == limit:
                    return found
    return found


def test_fully_connected_needs_the_full_double_scale(clib):
    """Accumulators where MultiplyByQuantizedMultiplier with a 31-bit multiplier is off by one:
    LiteRT follows the double product, and so does the C kernel."""
    checked = 0
    for scale in (0.0123456789, 0.000987654321, 0.3333333333, 1.0 / 7.0):
        scale = qp.f32(scale)  # the filter scale; input and output scales are 1.0
        witnesses = rounding_witnesses(scale)
        for acc in witnesses:
            model, (fields, fc_scales, per_channel) = fc_unit_model(scale, acc)
            x = np.zeros((1, 1), np.int8)
            want = qp.fc_rescale(acc, scale)
            assert run_litert(model, x).ravel()[0] == want
            assert c_fully_connected(clib, fields, fc_scales, per_channel, x, np.ones((1, 1)), [acc]).ravel()[0] == want
            checked += 1
    assert checked >= 6


EDGE_X = [INT32_MIN, INT32_MIN + 1, -(1 << 30) - 1, -(1 << 30), -65536, -12345, -3, -2, -1, 0, 1, 2, 3, 12345,
          65535, 1 << 30, INT32_MAX - 1, INT32_MAX]
EDGE_MULTIPLIERS = [0, 1, 1 << 30, (1 << 30) + 1, 1518500250, 1999999999, INT32_MAX - 1, INT32_MAX]


@pytest.mark.parametrize("shift", range(-31, 31))
def test_multiply_by_quantized_multiplier_edges(clib, shift):
    for x in EDGE_X:
        for multiplier in EDGE_MULTIPLIERS:
            want = qp.multiply_by_quantized_multiplier(x, multiplier, shift)
            got = clib.k_multiply_by_quantized_multiplier(x, multiplier, shift)
            assert got == want, f"x={x} multiplier={multiplier} shift={shift}: C {got} != {want}"


@settings(max_examples=3000, deadline=None)
@given(x=st.integers(INT32_MIN, INT32_MAX), multiplier=st.integers(1 << 30, INT32_MAX),
       shift=st.integers(-31, 30))
def test_multiply_by_quantized_multiplier_random(clib, x, multiplier, shift):
    assert clib.k_multiply_by_quantized_multiplier(x, multiplier, shift) == qp.multiply_by_quantized_multiplier(
        x, multiplier, shift)


EDGE_SCALES = [2.0**-60, 1e-12, 2.0**-32, 1e-6, 0.000987654321, 0.0123456789, 0.25, 1.0 / 3.0, 0.5, 1.0 - 2.0**-53,
               1.0, 1.5, 3.0, 1024.0 + 2.0**-40, 2.0**31, 1e12]


@pytest.mark.parametrize("real_scale", EDGE_SCALES)
def test_fc_rescale_edges(clib, real_scale):
    accs = EDGE_X + [5, -5, 7, -7, 1000, -1000, 123456789, -123456789]
    for acc in accs:
        assert c_fc_rescale(clib, acc, real_scale) == qp.fc_rescale(acc, real_scale), f"acc={acc} scale={real_scale!r}"


def test_fc_rescale_ties_and_near_ties(clib):
    """Exact halves round away from zero; one double ulp either side decides by the product."""
    for k in range(-6, 6):
        assert c_fc_rescale(clib, 2 * k + 1, 0.5) == qp.round_half_away(k + 0.5)
        for scale in (math.nextafter(0.5, 0.0), math.nextafter(0.5, 1.0)):
            assert c_fc_rescale(clib, 2 * k + 1, scale) == qp.fc_rescale(2 * k + 1, scale)
    # 3 * (1/6 rounded to double) is 0.49999999999999997 in exact arithmetic but rounds to 0.5
    # as a double product, and round() then gives 1: the C follows the double, not the exact value.
    sixth = 1.0 / 6.0
    assert 3 * sixth == 0.5 and c_fc_rescale(clib, 3, sixth) == 1 and c_fc_rescale(clib, -3, sixth) == -1


@settings(max_examples=3000, deadline=None)
@given(acc=st.integers(INT32_MIN, INT32_MAX),
       scale=st.floats(min_value=1e-12, max_value=1e4, allow_nan=False, allow_infinity=False))
def test_fc_rescale_random(clib, acc, scale):
    assert c_fc_rescale(clib, acc, scale) == qp.fc_rescale(acc, scale)


@settings(max_examples=2000, deadline=None)
@given(acc=st.integers(-(1 << 24), 1 << 24), s_in=st.floats(1e-4, 1.0), s_f=st.floats(1e-6, 1e-1),
       s_out=st.floats(1e-3, 1.0))
def test_fc_rescale_on_float32_scale_ratios(clib, acc, s_in, s_f, s_out):
    scale = qp.fc_effective_scale(s_in, s_f, s_out)
    assert c_fc_rescale(clib, acc, scale) == qp.fc_rescale(acc, scale)


# --------------------------------------------------------------------------------------
# Average pool and reshape
# --------------------------------------------------------------------------------------

POOL_CASES = {
    "2x2_s2_valid_model_digits": dict(in_hw=(8, 8), channels=32, filter=(2, 2), stride=(2, 2), padding="VALID",
                                      zp=-128),
    "1x2_s1x2_valid_model_mnist1d": dict(in_hw=(1, 20), channels=32, filter=(1, 2), stride=(1, 2),
                                         padding="VALID", zp=-128),
    "2x2_s2_valid_odd_7x5x3": dict(in_hw=(7, 5), channels=3, filter=(2, 2), stride=(2, 2), padding="VALID"),
    "2x2_s2_same_odd_7x5x3_clipped": dict(in_hw=(7, 5), channels=3, filter=(2, 2), stride=(2, 2), padding="SAME"),
    "3x3_s1_same_clipped": dict(in_hw=(5, 6), channels=2, filter=(3, 3), stride=(1, 1), padding="SAME"),
    "3x3_s2_same_clipped": dict(in_hw=(6, 6), channels=2, filter=(3, 3), stride=(2, 2), padding="SAME"),
    "1x3_s1_same_1d": dict(in_hw=(1, 9), channels=4, filter=(1, 3), stride=(1, 1), padding="SAME"),
    "2x2_stride_1x2": dict(in_hw=(4, 6), channels=2, filter=(2, 2), stride=(1, 2), padding="VALID"),
    "relu_zp": dict(in_hw=(4, 4), channels=3, filter=(2, 2), stride=(2, 2), padding="VALID", activation="RELU",
                    zp=-20),
    "relu6_zp": dict(in_hw=(4, 4), channels=3, filter=(2, 2), stride=(2, 2), padding="SAME",
                     activation="RELU6", zp=-100, scale=0.05),
    "zp_127": dict(in_hw=(4, 5), channels=3, filter=(2, 2), stride=(2, 2), padding="SAME", zp=127),
    "negative_ties": dict(in_hw=(4, 4), channels=2, filter=(2, 2), stride=(2, 2), padding="VALID", ties=True),
}


def make_pool_case(spec: dict, seed: int):
    case = {"activation": "NONE", "zp": 0, "scale": 0.1, "ties": False, **spec}
    rng = np.random.default_rng(seed)
    shape = (1, *case["in_hw"], case["channels"])
    if case["ties"]:  # sums that are exact halves (+-0.5, +-1.5, ...) of the window size
        x = rng.choice(np.array([-3, -2, -1, 1, 2, 3], np.int8), shape).astype(np.int8)
    else:
        x = random_input(rng, shape, case["zp"])
    quant = dict(filter_size=case["filter"], stride=case["stride"], padding=case["padding"],
                 activation=case["activation"])
    model = tb.average_pool2d_model(shape, scale=case["scale"], zero_point=case["zp"], **quant)
    fields = qp.pool_params(shape, output_scale=case["scale"], output_zero_point=case["zp"], **quant)
    return x, model, fields


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(POOL_CASES))
def test_avg_pool2d_matches_litert(clib, name, seed):
    x, model, fields = make_pool_case(POOL_CASES[name], seed)
    assert_same(c_avg_pool(clib, fields, x), run_litert(model, x), name)


def test_avg_pool_same_padding_divides_by_in_image_taps(clib):
    """A corner window of a SAME 3x3 pool holds 4 pixels: its average is over 4, not 9."""
    x = np.full((1, 3, 3, 1), 9, np.int8)
    model = tb.average_pool2d_model(x.shape, scale=0.1, zero_point=0, filter_size=(3, 3), stride=(1, 1),
                                    padding="SAME")
    fields = qp.pool_params(x.shape, filter_size=(3, 3), stride=(1, 1), padding="SAME", output_scale=0.1,
                            output_zero_point=0)
    assert (fields["pad_h"], fields["pad_w"]) == (1, 1)
    assert run_litert(model, x).ravel().tolist() == [9] * 9
    assert c_avg_pool(clib, fields, x).ravel().tolist() == [9] * 9


@pytest.mark.parametrize("shapes", [((1, 4, 4, 32), (1, 512)), ((1, 1, 10, 32), (1, 320)), ((1, 3, 5, 7), (1, 105))])
def test_reshape_is_a_copy(clib, shapes):
    in_shape, out_shape = shapes
    x = np.random.default_rng(0).integers(-128, 128, in_shape).astype(np.int8)
    ref = run_litert(tb.reshape_model(in_shape, out_shape, scale=0.05, zero_point=-128), x)
    out = np.zeros(out_shape, np.int8)
    clib.k_copy(ptr(x, I8), ptr(out, I8), x.size)
    assert_same(out, ref, "reshape")
    clib.k_copy(ptr(x, I8), ptr(x, I8), x.size)  # in place is allowed and changes nothing
    assert_same(x.reshape(out_shape), ref, "reshape in place")


# --------------------------------------------------------------------------------------
# Property-based: small random shapes and quantizations
# --------------------------------------------------------------------------------------

log_scale = st.floats(min_value=-4.0, max_value=0.0).map(lambda e: float(np.float32(10.0**e)))
zero_points = st.sampled_from([-128, -127, -1, 0, 1, 17, 126, 127]) | st.integers(-128, 127)
activations = st.sampled_from(["NONE", "RELU", "RELU6"])
hypothesis_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def conv_specs(draw, depthwise: bool):
    in_c = draw(st.integers(1, 4))
    depth_multiplier = draw(st.integers(1, 3)) if depthwise else 1
    spec = dict(
        in_hw=(draw(st.integers(1, 7)), draw(st.integers(1, 7))),
        in_c=in_c,
        out_c=in_c * depth_multiplier if depthwise else draw(st.integers(1, 4)),
        depth_multiplier=depth_multiplier,
        kernel=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        dilation=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        padding=draw(st.sampled_from(["SAME", "VALID"])),
        activation=draw(activations),
        in_zp=draw(zero_points),
        out_zp=draw(zero_points),
        in_scale=draw(log_scale),
        f_scales=draw(st.sampled_from(["uniform", "spread"])),
        bias=draw(st.sampled_from(["random", "large", "none"])),
    )
    if draw(st.booleans()):
        spec["out_scale"] = draw(log_scale)
    h, w = spec["in_hw"]
    eff_h = (spec["kernel"][0] - 1) * spec["dilation"][0] + 1
    eff_w = (spec["kernel"][1] - 1) * spec["dilation"][1] + 1
    if spec["padding"] == "VALID" and (eff_h > h or eff_w > w):
        spec["padding"] = "SAME"
    return spec


@hypothesis_settings
@given(spec=conv_specs(depthwise=False), seed=st.integers(0, 2**32 - 1))
def test_conv2d_random(clib, spec, seed):
    c = make_conv_case(spec, seed, depthwise=False)
    assert_same(c_conv(clib, c["fields"], c["qmul"], c["x"], c["weights"], c["bias"]),
                run_litert(c["model"], c["x"]), str(spec))


@hypothesis_settings
@given(spec=conv_specs(depthwise=True), seed=st.integers(0, 2**32 - 1))
def test_depthwise_conv2d_random(clib, spec, seed):
    c = make_conv_case(spec, seed, depthwise=True)
    assert_same(c_conv(clib, c["fields"], c["qmul"], c["x"], c["weights"], c["bias"], depthwise=True),
                run_litert(c["model"], c["x"]), str(spec))


@hypothesis_settings
@given(n_in=st.integers(1, 64), n_out=st.integers(1, 12), per_channel=st.booleans(), in_zp=zero_points,
       out_zp=zero_points, filter_zp=st.integers(-10, 10), in_scale=log_scale, out_scale=st.none() | log_scale,
       f_scales=st.sampled_from(["uniform", "spread"]), bias=st.sampled_from(["random", "large", "none"]),
       activation=activations, seed=st.integers(0, 2**32 - 1))
def test_fully_connected_random(clib, n_in, n_out, per_channel, in_zp, out_zp, filter_zp, in_scale, out_scale,
                                f_scales, bias, activation, seed):
    if per_channel and n_out == 1:
        per_channel = False  # one scale is per-tensor to TFLite
    spec = dict(n_in=n_in, n_out=n_out, per_channel=per_channel, in_zp=in_zp, out_zp=out_zp, filter_zp=filter_zp,
                in_scale=in_scale, out_scale=out_scale, f_scales=f_scales, bias=bias, activation=activation)
    c = make_fc_case(spec, seed)
    # Past int32, TFLite's reference is undefined (a signed overflow) and LiteRT wraps: see the test below.
    assume(c["in_int32"])
    assert_same(c_fully_connected(clib, c["fields"], c["scales"], c["per_channel"], c["x"], c["weights"], c["bias"]),
                run_litert(c["model"], c["x"]), str(spec))


def test_fully_connected_past_int32_saturates_where_litert_wraps(clib):
    """A finding, kept as a test so that a change on either side shows: when accumulator x scale
    passes int32 (an effective scale of about 10^4 with a bias near 2^24, which no trained model
    has), LiteRT's reference casts the out-of-range double to INT32_MIN and the negative output
    offset wraps it to +127; the firmware saturates to -128, the value the real arithmetic gives.
    Found by the random test above."""
    spec = dict(n_in=1, n_out=1, per_channel=False, in_zp=-128, out_zp=-128, filter_zp=0, in_scale=1.0,
                out_scale=float(np.float32(1e-4)), f_scales="uniform", bias="large", activation="NONE")
    c = make_fc_case(spec, 1)
    assert not c["in_int32"]
    assert c_fully_connected(clib, c["fields"], c["scales"], c["per_channel"], c["x"], c["weights"],
                             c["bias"]).tolist() == [[-128]]
    assert run_litert(c["model"], c["x"]).tolist() == [[127]]


@hypothesis_settings
@given(in_hw=st.tuples(st.integers(1, 7), st.integers(1, 7)), channels=st.integers(1, 4),
       filter=st.tuples(st.integers(1, 3), st.integers(1, 3)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       padding=st.sampled_from(["SAME", "VALID"]), activation=activations, zp=zero_points, scale=log_scale,
       seed=st.integers(0, 2**32 - 1))
def test_avg_pool2d_random(clib, in_hw, channels, filter, stride, padding, activation, zp, scale, seed):
    if padding == "VALID" and (filter[0] > in_hw[0] or filter[1] > in_hw[1]):
        padding = "SAME"
    spec = dict(in_hw=in_hw, channels=channels, filter=filter, stride=stride, padding=padding,
                activation=activation, zp=zp, scale=scale)
    x, model, fields = make_pool_case(spec, seed)
    assert_same(c_avg_pool(clib, fields, x), run_litert(model, x), str(spec))


# --------------------------------------------------------------------------------------
# Parameter functions
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("real, expected", [
    (0.0, (0, 0)),
    (1.0, (1 << 30, 1)),
    (0.5, (1 << 30, 0)),
    (0.25, (1 << 30, -1)),
    (0.75, (3 << 29, 0)),
    (1.0 - 2.0**-40, (1 << 30, 1)),  # the fraction rounds up to 2^31: halved, shift + 1
    (2.0**-31, (1 << 30, -30)),
    (2.0**-32, (1 << 30, -31)),
    (2.0**-33, (0, 0)),  # shift below -31 flushes to zero
    (3.0, (3 << 29, 2)),
])
def test_quantize_multiplier(real, expected):
    assert qp.quantize_multiplier(real) == expected


@settings(max_examples=500, deadline=None)
@given(real=st.floats(min_value=2.0**-31, max_value=2.0**20))
def test_quantize_multiplier_represents_the_scale(real):
    multiplier, shift = qp.quantize_multiplier(real)
    assert (1 << 30) <= multiplier <= INT32_MAX and -31 <= shift <= 21
    assert abs(multiplier * 2.0 ** (shift - 31) - real) <= real * 2.0**-30


@pytest.mark.parametrize("real", [1e-9, 0.0123, 1.0 / 3.0, 1.0, 7.5, 2.0**-40 * 3])
def test_fc_scale_is_exact(real):
    mantissa, exponent = qp.fc_scale(real)
    assert (1 << 52) <= mantissa < (1 << 53)
    assert math.ldexp(mantissa, exponent) == real


def test_activation_range():
    assert qp.activation_range("NONE", 0.1, 5) == (-128, 127)
    assert qp.activation_range("RELU", 0.1, 5) == (5, 127)
    assert qp.activation_range("RELU", 0.1, -128) == (-128, 127)
    assert qp.activation_range("RELU6", 0.1, -128) == (-128, -68)
    assert qp.activation_range("RELU6", 0.01, 10) == (10, 127)  # 6 / 0.01 = 600 steps: clipped to int8
    assert qp.activation_range("RELU", 0.1, 127) == (127, 127)


# 6 / s is 150.49999654 in double but exactly 150.5 in float32 (TFLite's arithmetic here).
FLOAT32_RELU6_SCALE = 0.039867110550403595


def test_activation_bounds_are_quantized_in_float32(clib):
    """RELU6's upper bound on a scale where float32 and double division round differently."""
    assert float(np.float32(6.0) / np.float32(FLOAT32_RELU6_SCALE)) == 150.5
    assert qp.round_half_away(6.0 / FLOAT32_RELU6_SCALE) == 150
    assert qp.activation_range("RELU6", FLOAT32_RELU6_SCALE, -128) == (-128, 23)  # -128 + 151
    model, (fields, fc_scales, per_channel) = fc_unit_model(1.0, 10_000, "RELU6", -128, FLOAT32_RELU6_SCALE)
    x = np.zeros((1, 1), np.int8)
    assert run_litert(model, x).ravel().tolist() == [23]
    out = c_fully_connected(clib, fields, fc_scales, per_channel, x, np.ones((1, 1)), [10_000])
    assert out.ravel().tolist() == [23]


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("in_size, kernel, stride, dilation", [
    (7, 3, 1, 1), (7, 3, 2, 1), (8, 3, 2, 1), (6, 2, 2, 1), (5, 1, 1, 1), (40, 5, 2, 1), (9, 3, 2, 2), (7, 3, 3, 2),
])
def test_output_size_and_padding_match_litert(padding, in_size, kernel, stride, dilation):
    """The builder's padding arithmetic gives the output shape LiteRT allocates."""
    x_shape = (1, 2, in_size, 1)
    if padding == "VALID" and (kernel - 1) * dilation + 1 > in_size:
        pytest.skip("kernel larger than the input")
    quant = dict(input_scale=0.1, input_zero_point=0, filter_scales=[0.1], output_scale=0.1, output_zero_point=0,
                 stride=(1, stride), dilation=(1, dilation), padding=padding)
    model = tb.conv2d_model(x_shape, np.ones((1, 1, kernel, 1)), [0], **quant)
    interpreter = reference_interpreter(model)
    interpreter.allocate_tensors()
    fields, _ = qp.conv_params(x_shape, (1, 1, kernel, 1), **quant)
    assert interpreter.get_output_details()[0]["shape"].tolist() == [1, 2, fields["out_w"], 1]
    total = max((fields["out_w"] - 1) * stride + (kernel - 1) * dilation + 1 - in_size, 0)
    assert fields["pad_w"] == total // 2 and fields["pad_h"] == 0


def test_op_versions_are_accepted(monkeypatch):
    """LiteRT resolves each operator at the version the builder writes; an unknown one fails."""
    models = [
        tb.conv2d_model((1, 2, 2, 1), np.ones((1, 1, 1, 1)), [0], input_scale=0.1, input_zero_point=0,
                        filter_scales=[0.1], output_scale=0.1, output_zero_point=0),
        tb.depthwise_conv2d_model((1, 2, 2, 1), np.ones((1, 1, 1, 1)), [0], input_scale=0.1, input_zero_point=0,
                                  filter_scales=[0.1], output_scale=0.1, output_zero_point=0),
        tb.fully_connected_model(2, np.ones((2, 2)), None, input_scale=0.1, input_zero_point=0,
                                 filter_scales=[0.1, 0.2], output_scale=0.1, output_zero_point=0),
        tb.average_pool2d_model((1, 2, 2, 1), scale=0.1, zero_point=0),
        tb.reshape_model((1, 2, 2, 1), (1, 4), scale=0.1, zero_point=0),
    ]
    for model in models:
        reference_interpreter(model).allocate_tensors()
    monkeypatch.setitem(tb.OP_VERSIONS, "RESHAPE", 2)
    with pytest.raises(ValueError, match="version '2'"):
        reference_interpreter(tb.reshape_model((1, 2, 2, 1), (1, 4), scale=0.1, zero_point=0)).allocate_tensors()


# --------------------------------------------------------------------------------------
# The comparison has teeth
# --------------------------------------------------------------------------------------


def test_wrong_parameters_are_caught(clib):
    """Each deliberately wrong parameter makes the C output differ from LiteRT's."""
    c = make_conv_case(CONV_CASES["model_digits_conv1"], 0, depthwise=False)
    ref = run_litert(c["model"], c["x"])
    assert_same(c_conv(clib, c["fields"], c["qmul"], c["x"], c["weights"], c["bias"]), ref, "baseline")
    c = make_conv_case(CONV_CASES["3x3_same_s1"], 0, depthwise=False)
    ref = run_litert(c["model"], c["x"])
    wrong = {
        "output zero point + 1": ({**c["fields"], "output_offset": c["fields"]["output_offset"] + 1}, c["qmul"]),
        "input zero point + 1": ({**c["fields"], "input_offset": c["fields"]["input_offset"] - 1}, c["qmul"]),
        "pad_w + 1": ({**c["fields"], "pad_w": c["fields"]["pad_w"] + 1}, c["qmul"]),
        "shift - 1 on channel 0": (c["fields"], [(c["qmul"][0][0], c["qmul"][0][1] - 1)] + c["qmul"][1:]),
        # 1.6 % larger on one channel (a 0.1 % error would move too few of its 25 outputs)
        "multiplier + 2^24 on channel 1": (c["fields"], [c["qmul"][0], (c["qmul"][1][0] + (1 << 24), c["qmul"][1][1])]
                                           + c["qmul"][2:]),
    }
    for what, (fields, qmul) in wrong.items():
        out = c_conv(clib, fields, qmul, c["x"], c["weights"], c["bias"])
        assert not np.array_equal(out, ref), f"a wrong {what} went unnoticed"

    f = make_fc_case(FC_CASES["per_tensor_320x10"], 0)
    ref = run_litert(f["model"], f["x"])
    off_by_one = {**f["fields"], "output_offset": f["fields"]["output_offset"] + 1}
    assert not np.array_equal(
        c_fully_connected(clib, off_by_one, f["scales"], f["per_channel"], f["x"], f["weights"], f["bias"]), ref)

    x, model, fields = make_pool_case(POOL_CASES["2x2_s2_same_odd_7x5x3_clipped"], 0)
    ref = run_litert(model, x)
    # Dividing clipped windows by the full 2x2 instead of the in-image count would be a bug:
    # emulate it by padding the input with explicit zeros.
    padded = np.zeros((1, 8, 6, 3), np.int8)
    padded[:, :7, :5] = x
    full_windows = c_avg_pool(clib, qp.pool_params(padded.shape, output_scale=0.1, output_zero_point=0,
                                                   padding="VALID"), padded)
    assert not np.array_equal(full_windows, ref)


def test_fully_connected_is_the_double_rescale_on_model_sized_layers():
    """On 512->10 per-channel layers with large biases, LiteRT's outputs are exactly
    clamp(round(acc * scale) + zero point), acc computed independently here with numpy."""
    for seed in range(10):
        f = make_fc_case(dict(n_in=512, n_out=10, per_channel=True, in_zp=-128, in_scale=0.048, out_zp=52,
                              bias="large", out_scale=0.3), seed)
        ref = run_litert(f["model"], f["x"]).ravel().tolist()
        acc = f["weights"].astype(np.int64) @ (f["x"].ravel().astype(np.int64) + 128) + f["bias"]
        scales = [math.ldexp(m, e) for m, e in f["scales"]]
        assert [min(max(qp.fc_rescale(int(a), s) + 52, -128), 127) for a, s in zip(acc, scales)] == ref


# --------------------------------------------------------------------------------------
# The header as the code generator and the firmware see it
# --------------------------------------------------------------------------------------

LAYOUT_PROBE = r"""
#include <stddef.h>
#include "kernels.h"
#define FIELD(T, f) (long)offsetof(T, f)
long probe(int i) {
    const long values[] = {
        (long)sizeof(qmul_t), (long)sizeof(fc_scale_t), (long)sizeof(conv_params_t), (long)sizeof(fc_params_t),
        (long)sizeof(pool_params_t), FIELD(conv_params_t, depth_multiplier), FIELD(conv_params_t, input_offset),
        FIELD(conv_params_t, act_max), FIELD(fc_params_t, input_offset), FIELD(fc_params_t, act_max),
        FIELD(pool_params_t, pad_w), FIELD(pool_params_t, act_min), FIELD(fc_scale_t, exponent),
    };
    return values[i];
}
"""


def test_ctypes_mirrors_match_the_header(kernels_dir):
    source = kernels_dir / "layout_probe.c"
    source.write_text(LAYOUT_PROBE)
    lib = build_shared_library([source], kernels_dir)
    lib.probe.restype = ctypes.c_long
    expected = [ctypes.sizeof(QMul), ctypes.sizeof(FcScale), ctypes.sizeof(ConvParams), ctypes.sizeof(FcParams),
                ctypes.sizeof(PoolParams), ConvParams.depth_multiplier.offset, ConvParams.input_offset.offset,
                ConvParams.act_max.offset, FcParams.input_offset.offset, FcParams.act_max.offset,
                PoolParams.pad_w.offset, PoolParams.act_min.offset, FcScale.exponent.offset]
    assert [lib.probe(i) for i in range(len(expected))] == expected


def test_kernels_build_freestanding_without_floats(kernels_dir):
    """No libc, no compiler helper calls, no floating point: -mgeneral-regs-only rejects any
    float arithmetic on x86, and a Cortex-M4 soft-float build would call __aeabi_* helpers."""
    obj = kernels_dir / "kernels_freestanding.o"
    flags = [f for f in HOST_FLAGS if f not in ("-shared", "-fPIC")]
    subprocess.run(["gcc", *flags, "-ffreestanding", "-mgeneral-regs-only", "-Wconversion", "-c", "-o", str(obj),
                    str(FIRMWARE_SRC / "kernels.c")], check=True, capture_output=True, text=True)
    assert subprocess.run(["nm", "-u", str(obj)], check=True, capture_output=True, text=True).stdout.split() == []
    arm = shutil.which("arm-none-eabi-gcc")
    if arm is None:
        return
    arm_obj = kernels_dir / "kernels_m4.o"
    subprocess.run([arm, "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-mcpu=cortex-m4", "-mthumb",
                    "-mfloat-abi=soft", "-ffreestanding", "-c", "-o", str(arm_obj), str(FIRMWARE_SRC / "kernels.c")],
                   check=True, capture_output=True, text=True)
    nm = shutil.which("arm-none-eabi-nm")
    if nm:
        assert subprocess.run([nm, "-u", str(arm_obj)], check=True, capture_output=True, text=True).stdout.split() == []
