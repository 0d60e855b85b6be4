"""The DSP kernels (kernels.c, Armv7E-M) give the portable kernels' outputs, byte for byte.

The portable kernels are the ones tests/unit/test_kernels.py holds equal to LiteRT on the host.
The DSP path cannot run on the host, so kernels.c is cross-compiled for the Cortex-M4 and the
Cortex-M7 with the firmware's flags and called on unicorn (tests/support/arm_kernels.py); every
output byte of every case must equal the host-compiled portable kernel's on the same bytes.
The cases are the models' own layer shapes and random shapes, offsets, scales and biases around
the fast paths' edges: taps and channels not multiples of 4, odd pixel and channel counts,
padding, strides, dilation, accumulators that wrap, and the shapes that fall back.
"""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from hil.errors import BadInput
from hil.firmware import codegen
from hil.firmware import quantization as qp
from hil.firmware import single_op as tb
from tests.support.arm_kernels import ArmKernels
from tests.support.native import FIRMWARE_SRC
from tests.unit.test_kernels import (INT32_MAX, INT32_MIN, ConvParams, FcParams, FcScale, PoolParams, QMul,
                                     c_avg_pool, c_conv, c_fully_connected, clib, kernels_dir)  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None and not os.environ.get("CI"),
                                reason="arm-none-eabi-gcc not installed (CI installs it)")
CORES = ("cortex-m4", "cortex-m7")
SCRATCH_Q15 = codegen.K_DSP_SCRATCH_Q15


@pytest.fixture(scope="module", params=CORES)
def arm(request, kernels_dir) -> ArmKernels:  # noqa: F811
    return ArmKernels.build(kernels_dir, request.param)


def conv_fields(in_hw, in_c, out_c, kernel, stride, dilation, pad, depth_multiplier, input_offset, output_offset,
                act) -> dict:
    out_hw = tuple((size + 2 * p - d * (k - 1) - 1) // s + 1
                   for size, p, d, k, s in zip(in_hw, pad, dilation, kernel, stride))
    return dict(in_h=in_hw[0], in_w=in_hw[1], in_c=in_c, out_h=out_hw[0], out_w=out_hw[1], out_c=out_c,
                kernel_h=kernel[0], kernel_w=kernel[1], stride_h=stride[0], stride_w=stride[1],
                dilation_h=dilation[0], dilation_w=dilation[1], pad_h=pad[0], pad_w=pad[1],
                depth_multiplier=depth_multiplier, input_offset=input_offset, output_offset=output_offset,
                act_min=act[0], act_max=act[1])


# The layers of qute-digits and qute-mnist1d (firmware/generated/*/model.c): (in_hw, in_c, out_c,
# kernel, stride, pad, depthwise, input_offset).
MODEL_LAYERS = [
    ((8, 8), 1, 16, (3, 3), (1, 1), (1, 1), False, 128),
    ((8, 8), 16, 32, (1, 1), (1, 1), (0, 0), False, 128),
    ((8, 8), 32, 32, (3, 3), (1, 1), (1, 1), True, 128),
    ((8, 8), 16, 32, (3, 3), (2, 2), (0, 0), False, 128),
    ((4, 4), 32, 32, (3, 3), (1, 1), (1, 1), False, 128),
    ((4, 4), 32, 32, (3, 3), (1, 1), (1, 1), True, 128),
    ((1, 40), 1, 32, (1, 5), (1, 2), (0, 1), False, -17),
    ((1, 20), 32, 32, (1, 1), (1, 1), (0, 0), False, 128),
    ((1, 20), 32, 32, (1, 3), (1, 1), (0, 1), True, 128),
    ((1, 20), 32, 32, (1, 3), (1, 2), (0, 0), True, 128),
    ((1, 10), 32, 32, (1, 3), (1, 1), (0, 1), True, 128),
]


def random_conv_case(rng: np.random.Generator, fields: dict, depthwise: bool, extreme_bias: bool = False):
    in_c, out_c = fields["in_c"], fields["out_c"]
    x = rng.integers(-128, 128, (1, fields["in_h"], fields["in_w"], in_c), dtype=np.int8)
    shape = (1, fields["kernel_h"], fields["kernel_w"], out_c) if depthwise else \
        (out_c, fields["kernel_h"], fields["kernel_w"], in_c)
    weights = rng.integers(-128, 128, shape, dtype=np.int8)
    if extreme_bias:  # the accumulators wrap past int32: so must both paths
        bias = rng.choice([INT32_MAX - 1000, INT32_MIN + 1000], out_c).astype(np.int32)
    else:
        bias = None if rng.random() < 0.2 else rng.integers(-50_000, 50_000, out_c, dtype=np.int32)
    qmul = [(int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(-14, 3))) for _ in range(out_c)]
    return x, weights, bias, qmul


def assert_conv_equal(clib, arm: ArmKernels, fields: dict, case, depthwise: bool):  # noqa: F811
    x, weights, bias, qmul = case
    portable = c_conv(clib, fields, qmul, x, weights, bias, depthwise=depthwise).ravel()
    per_channel = (QMul * len(qmul))(*[QMul(m, s) for m, s in qmul])
    device = arm.conv2d(bytes(ConvParams(**fields)), bytes(per_channel), x, weights, bias, portable.size,
                        depthwise=depthwise)
    differing = np.flatnonzero(device != portable)
    assert differing.size == 0, (f"{arm.cpu} {'depthwise ' if depthwise else ''}{fields}: {differing.size} of "
                                 f"{portable.size} bytes differ, first at {differing[0]}")


@pytest.mark.parametrize("layer", range(len(MODEL_LAYERS)))
def test_model_layers_are_bit_exact(clib, arm, layer):  # noqa: F811
    in_hw, in_c, out_c, kernel, stride, pad, depthwise, input_offset = MODEL_LAYERS[layer]
    fields = conv_fields(in_hw, in_c, out_c, kernel, stride, (1, 1), pad, 1 if depthwise else 0, input_offset,
                         -128, (-128, 127))
    rng = np.random.default_rng(layer)
    for _ in range(3):
        assert_conv_equal(clib, arm, fields, random_conv_case(rng, fields, depthwise), depthwise)


def random_conv_fields(rng: np.random.Generator, depthwise: bool) -> dict:
    while True:
        kernel = tuple(int(k) for k in rng.integers(1, 6, 2))
        dilation = tuple(int(d) for d in rng.choice([1, 1, 1, 2], 2))
        stride = tuple(int(s) for s in rng.integers(1, 4, 2))
        in_hw = tuple(int(v) for v in rng.integers(1, 10, 2))
        pad = tuple(int(rng.integers(0, d * (k - 1) + 1)) for k, d in zip(kernel, dilation))
        in_c = int(rng.choice([1, 2, 3, 4, 5, 8, 12, 16, 20, 32]))
        multiplier = int(rng.choice([1, 1, 1, 2, 3])) if depthwise else 0
        out_c = in_c * multiplier if depthwise else int(rng.integers(1, 12))
        act = sorted(int(v) for v in rng.integers(-128, 128, 2)) if rng.random() < 0.3 else (-128, 127)
        fields = conv_fields(in_hw, in_c, out_c, kernel, stride, dilation, pad, multiplier,
                             int(rng.integers(-127, 129)), int(rng.integers(-128, 128)), act)
        if fields["out_h"] >= 1 and fields["out_w"] >= 1:
            return fields


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "depthwise"])
def test_random_shapes_are_bit_exact(clib, arm, depthwise):  # noqa: F811
    rng = np.random.default_rng(2026 + depthwise)
    for index in range(120):
        fields = random_conv_fields(rng, depthwise)
        assert_conv_equal(clib, arm, fields, random_conv_case(rng, fields, depthwise, extreme_bias=index % 10 == 0),
                          depthwise)


def test_columns_past_the_scratch_fall_back_and_stay_exact(clib, arm):  # noqa: F811
    # 3 x 3 x 72 taps: two columns need 1296 int16, more than the scratch's 1152.
    fields = conv_fields((4, 4), 72, 3, (3, 3), (1, 1), (1, 1), (1, 1), 0, 128, -5, (-128, 127))
    assert 2 * 3 * 3 * 72 > SCRATCH_Q15
    assert_conv_equal(clib, arm, fields, random_conv_case(np.random.default_rng(7), fields, False), False)


def test_more_channels_than_the_rescale_table_fall_back_and_stay_exact(clib, arm):  # noqa: F811
    rng = np.random.default_rng(8)
    for depthwise, channels in ((False, codegen.K_DSP_MAX_CHANNELS + 1), (True, codegen.K_DSP_MAX_CHANNELS + 4)):
        fields = conv_fields((3, 3), channels if depthwise else 4, channels, (3, 3), (1, 1), (1, 1), (1, 1),
                             1 if depthwise else 0, 128, 3, (-128, 127))
        assert_conv_equal(clib, arm, fields, random_conv_case(rng, fields, depthwise), depthwise)


def test_extreme_offsets_are_bit_exact(clib, arm):  # noqa: F811
    """Inputs plus offset span -255..255 (int16 in the columns), weights -128..127."""
    rng = np.random.default_rng(11)
    for input_offset, value in [(128, 127), (-127, -128), (128, -128), (-127, 127)]:
        for depthwise in (False, True):
            fields = conv_fields((5, 5), 8, 8 if depthwise else 6, (3, 3), (1, 1), (1, 1), (1, 1),
                                 1 if depthwise else 0, input_offset, 0, (-128, 127))
            x, weights, bias, qmul = random_conv_case(rng, fields, depthwise)
            x[...] = value
            weights[...] = rng.choice([-128, 127], weights.shape)
            assert_conv_equal(clib, arm, fields, (x, weights, bias, qmul), depthwise)


def test_the_rescale_is_bit_exact_on_any_accumulator(clib, arm):  # noqa: F811
    """The DSP path's own MultiplyByQuantizedMultiplier against the portable one: a 1 x 1 conv with
    zero weights whose bias is the accumulator, one (accumulator, multiplier, shift) per channel,
    scaled into the int8 range so every rounding shows: ties of both signs (multiplier 2^30 halves
    the accumulator exactly), the int32 extremes, left shifts that wrap, right shifts up to 31."""
    rng = np.random.default_rng(3)
    accs, qmul = [], []
    for _ in range(1500):
        acc = int(rng.choice([INT32_MIN, INT32_MAX, INT32_MIN + 1, int(rng.integers(-3000, 3000)),
                              int(rng.integers(INT32_MIN, INT32_MAX, endpoint=True))]))
        multiplier = int(rng.choice([1 << 30, (1 << 31) - 1, int(rng.integers(1 << 30, 1 << 31))]))
        magnitude = max(abs(acc), 1).bit_length()  # acc * multiplier / 2^31 ~ 2^(magnitude - 1 + shift)
        if rng.random() < 0.9:
            shift = int(np.clip(rng.integers(1, 9) - magnitude, -31, 30))
        else:  # left shifts, wrapping
            shift = int(rng.integers(0, 31))
        accs.append(acc)
        qmul.append((multiplier, shift))
    accs += [0, 0]
    qmul += [(0, -5), (1 << 30, 0)]
    # Every tie of both roundings in plain sight: multiplier 2^30 halves exactly (the high-mul ties
    # on every odd accumulator), and a right shift of e ties wherever the half's low e bits are 10...0.
    for shift in range(0, -6, -1):
        for acc in range(-255 << -shift, 255 << -shift, 1 + (3 << -shift) // 4):
            accs.append(acc)
            qmul.append((1 << 30, shift))
    distinct = set()
    for start in range(0, len(accs), codegen.K_DSP_MAX_CHANNELS):  # a call's channels fit the rescale table
        chunk_accs = np.array(accs[start:start + codegen.K_DSP_MAX_CHANNELS], dtype=np.int32)
        chunk_qmul = qmul[start:start + codegen.K_DSP_MAX_CHANNELS]
        fields = conv_fields((1, 1), 1, len(chunk_qmul), (1, 1), (1, 1), (1, 1), (0, 0), 0, 0, 0, (-128, 127))
        x = np.zeros((1, 1, 1, 1), dtype=np.int8)
        weights = np.zeros((len(chunk_qmul), 1, 1, 1), dtype=np.int8)
        assert_conv_equal(clib, arm, fields, (x, weights, chunk_accs, chunk_qmul), False)
        distinct.update(c_conv(clib, fields, chunk_qmul, x, weights, chunk_accs).ravel().tolist())
    assert len(distinct) > 150  # the cases land inside the int8 range, not on its clamps


def fc_case(rng: np.random.Generator, n_in: int, n_out: int, per_channel: bool, filter_offset: int):
    fields = dict(in_features=n_in, out_features=n_out, input_offset=int(rng.integers(-127, 129)),
                  filter_offset=filter_offset, output_offset=int(rng.integers(-128, 128)), act_min=-128, act_max=127)
    x = rng.integers(-128, 128, (1, n_in), dtype=np.int8)
    weights = rng.integers(-127, 128, (n_out, n_in), dtype=np.int8)
    bias = None if rng.random() < 0.2 else rng.integers(-100_000, 100_000, n_out, dtype=np.int32)
    reals = 10.0 ** rng.uniform(-5, -1, n_out if per_channel else 1)
    scales = [qp.fc_scale(float(real)) for real in reals]
    return fields, scales, x, weights, bias


def assert_fc_equal(clib, arm: ArmKernels, case, per_channel: bool):  # noqa: F811
    fields, scales, x, weights, bias = case
    portable = c_fully_connected(clib, fields, scales, per_channel, x, weights, bias).ravel()
    c_scales = (FcScale * len(scales))(*[FcScale(m, e) for m, e in scales])
    device = arm.fully_connected(bytes(FcParams(**fields)), bytes(c_scales), per_channel, x, weights, bias,
                                 portable.size)
    assert np.array_equal(device, portable), f"{arm.cpu} fully connected {fields}: {device} != {portable}"


def test_fully_connected_is_bit_exact(clib, arm):  # noqa: F811
    rng = np.random.default_rng(5)
    sizes = [(512, 10), (320, 10), (1, 1), (3, 2), (4, 3), (7, 5), (8, 1), (9, 4), (17, 7), (33, 9),
             (SCRATCH_Q15, 2), (SCRATCH_Q15 + 1, 3)]  # the last falls back to the portable kernel
    for index, (n_in, n_out) in enumerate(sizes * 2):
        per_channel = index % 2 == 0
        filter_offset = 0 if per_channel else int(rng.choice([0, -3, 127, -128]))
        assert_fc_equal(clib, arm, fc_case(rng, n_in, n_out, per_channel, filter_offset), per_channel)


def test_average_pool_is_bit_exact(clib, arm):  # noqa: F811
    """Windows clipped by padding on every side (the divisor is the taps inside), sums of both signs
    with ties in the rounded division, activation ranges; the models' own 2 x 2 and 1 x 2 pools, and
    a 16 x 16 window, summed one channel at a time."""
    rng = np.random.default_rng(13)
    shapes = [((8, 8), 32, (2, 2), (2, 2), (0, 0)), ((1, 20), 32, (1, 2), (1, 2), (0, 0)),
              ((16, 17), 4, (16, 16), (1, 1), (0, 0))]  # 256 taps: past what int16 sums hold
    for _ in range(60):
        filter_hw = tuple(int(v) for v in rng.integers(1, 5, 2))
        shapes.append((tuple(int(v) for v in rng.integers(1, 9, 2)), int(rng.integers(1, 9)), filter_hw,
                       tuple(int(v) for v in rng.integers(1, 4, 2)), tuple(int(rng.integers(0, f)) for f in filter_hw)))
    for in_hw, channels, filter_hw, stride, pad in shapes:
        out_hw = tuple((size + 2 * p - f) // s + 1 for size, p, f, s in zip(in_hw, pad, filter_hw, stride))
        if min(out_hw) < 1:
            continue
        act = sorted(int(v) for v in rng.integers(-128, 128, 2)) if rng.random() < 0.3 else (-128, 127)
        fields = dict(in_h=in_hw[0], in_w=in_hw[1], channels=channels, out_h=out_hw[0], out_w=out_hw[1],
                      filter_h=filter_hw[0], filter_w=filter_hw[1], stride_h=stride[0], stride_w=stride[1],
                      pad_h=pad[0], pad_w=pad[1], act_min=act[0], act_max=act[1])
        x = rng.integers(-128, 128, (1, *in_hw, channels), dtype=np.int8)
        portable = c_avg_pool(clib, fields, x).ravel()
        device = arm.avg_pool2d(bytes(PoolParams(**fields)), x, portable.size)
        assert np.array_equal(device, portable), f"{arm.cpu} average pool {fields}"


def test_the_arm_build_takes_the_dsp_path(kernels_dir):  # noqa: F811
    """What the equality tests run is the DSP code: it is in the Cortex-M4 build, and
    -DKERNELS_PORTABLE (the bench's comparison build) leaves none of it."""
    dsp = ArmKernels.build(kernels_dir, "cortex-m4").disassembly()
    portable = ArmKernels.build(kernels_dir, "cortex-m4", ("-DKERNELS_PORTABLE",)).disassembly()
    for mnemonic in ("smlad", "sxtb16", "sxtab16", "smlabb", "smlatt"):
        assert f"\t{mnemonic}\t" in dsp, mnemonic
        assert f"\t{mnemonic}\t" not in portable, mnemonic


def test_the_generator_knows_the_dsp_limits():
    header = (FIRMWARE_SRC / "kernels.h").read_text()
    assert re.search(r"#define K_DSP_SCRATCH_Q15 (\d+)", header).group(1) == str(codegen.K_DSP_SCRATCH_Q15)
    assert re.search(r"#define K_DSP_MAX_CHANNELS (\d+)", header).group(1) == str(codegen.K_DSP_MAX_CHANNELS)


def translate_conv(in_c: int, out_c: int):
    weights = np.ones((out_c, 3, 3, in_c), dtype=np.int8)
    model_bytes = tb.conv2d_model((1, 4, 4, in_c), weights, np.zeros(out_c, dtype=np.int32), input_scale=0.1,
                                  input_zero_point=0, filter_scales=[0.01] * out_c, output_scale=0.5,
                                  output_zero_point=0)
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_bytes, 0))
    codegen.StageTranslator(codegen.Plan(), "stage1", model, {}).translate()


def test_the_generator_refuses_a_layer_past_the_dsp_limits():
    translate_conv(64, codegen.K_DSP_MAX_CHANNELS)  # two columns of 576 taps: exactly the scratch
    with pytest.raises(BadInput, match=r"stage1_op0: CONV_2D needs 1296 int16 of DSP kernel scratch.*kernels\.h"):
        translate_conv(72, 2)  # two columns of 648 taps
    with pytest.raises(BadInput, match=r"stage1_op0: CONV_2D has 65 output channels.*K_DSP_MAX_CHANNELS = 64"):
        translate_conv(4, 65)
