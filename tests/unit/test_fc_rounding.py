"""The FULLY_CONNECTED kernel in the `tflm` rounding mode (kernels.c built with -DKERNEL_ROUNDING_TFLM, as the
tflm images are) against TFLM's own interpreter on single-op models, byte for byte; and the default build still
against LiteRT on the same models, where the two references differ (docs/decisions.md, Which reference)."""

import ctypes

import numpy as np
import pytest

from hil.firmware import quantization as qp
from tests.support.native import FIRMWARE_SRC, build_shared_library
from tests.unit.test_kernels import (FC_CASES, I8, I32, FcParams, FcScale, QMul, assert_same, fc_unit_model,
                                     make_fc_case, ptr, run_litert)

SEEDS = (0, 1, 2)
# A float32 scale and accumulators where TFLM's two roundings and LiteRT's one disagree: -519 * M = -126.396 rounds
# to -126 once, but TFLM first takes -519 * q / 2^31 = -505.58 to -506, and -506 / 4 = -126.5 to -127.
SCALE = 0.2435382604598999
DIFFERING_ACCUMULATORS = (-519, -515, -511)


def _library(directory, defines: list[str], scale_type) -> ctypes.CDLL:
    lib = build_shared_library([FIRMWARE_SRC / "kernels.c"], directory, defines)
    lib.k_fully_connected.argtypes = [ctypes.POINTER(FcParams), ctypes.POINTER(I8), ctypes.POINTER(I8),
                                      ctypes.POINTER(I32), ctypes.POINTER(scale_type), ctypes.c_int,
                                      ctypes.POINTER(I8)]
    lib.k_fully_connected.restype = None
    return lib


@pytest.fixture(scope="module")
def tflm_lib(tmp_path_factory):
    return _library(tmp_path_factory.mktemp("kernels-tflm"), ["-DKERNEL_ROUNDING_TFLM"], QMul)


@pytest.fixture(scope="module")
def litert_lib(tmp_path_factory):
    return _library(tmp_path_factory.mktemp("kernels-litert"), [], FcScale)


def run_tflm(model: bytes, x: np.ndarray) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model)
    interpreter.set_input(np.ascontiguousarray(x, dtype=np.int8), 0)
    interpreter.invoke()
    return interpreter.get_output(0).copy()


def c_fully_connected(lib, fields, scales, per_channel, x, weights, bias, scale_type) -> np.ndarray:
    """The kernel as the generated code calls it: the scales in the rounding mode's form (fc_rescale_t)."""
    weights = np.ascontiguousarray(weights, dtype=np.int8)
    bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.int32)
    c_scales = (scale_type * len(scales))(*[scale_type(*s) for s in scales])
    out = np.full((1, fields["out_features"]), 0x55, dtype=np.int8)
    lib.k_fully_connected(ctypes.byref(FcParams(**fields)), ptr(np.ascontiguousarray(x, dtype=np.int8), I8),
                          ptr(weights, I8), ptr(bias, I32), c_scales, int(per_channel), ptr(out, I8))
    return out


def tflm_scales(case_quant: dict, count: int) -> list[tuple[int, int]]:
    """What the generator emits for the tflm mode: QuantizeMultiplier of each channel's double scale."""
    return qp.per_channel_multipliers(case_quant["input_scale"], case_quant["filter_scales"],
                                      case_quant["output_scale"], count)


@pytest.mark.parametrize("name", list(FC_CASES))
def test_tflm_rounding_fully_connected_matches_tflm(tflm_lib, name):
    for seed in SEEDS:
        c = make_fc_case(FC_CASES[name], seed)
        scales = tflm_scales(c["quant"], len(c["scales"]))
        out = c_fully_connected(tflm_lib, c["fields"], scales, c["per_channel"], c["x"], c["weights"], c["bias"], QMul)
        assert_same(out, run_tflm(c["model"], c["x"]), f"{name} seed {seed} against TFLM")


def test_where_the_references_differ_each_build_matches_its_own(tflm_lib, litert_lib):
    """The single-op model whose accumulator is exactly `acc`: TFLM and LiteRT give different bytes, and each
    rounding mode's kernel gives its reference's, so the two builds are told apart."""
    for acc in DIFFERING_ACCUMULATORS:
        model, (fields, scales, per_channel) = fc_unit_model(SCALE, acc)
        x, weights, bias = np.zeros((1, 1), np.int8), np.ones((1, 1), np.int8), np.array([acc], np.int32)
        tflm, litert = run_tflm(model, x), run_litert(model, x)
        assert tflm[0, 0] == litert[0, 0] - 1, f"acc {acc}: the references should differ by one step"
        quant = dict(input_scale=1.0, filter_scales=[SCALE], output_scale=1.0)
        assert_same(c_fully_connected(tflm_lib, fields, tflm_scales(quant, 1), per_channel, x, weights, bias, QMul),
                    tflm, f"tflm build, acc {acc}")
        assert_same(c_fully_connected(litert_lib, fields, scales, per_channel, x, weights, bias, FcScale),
                    litert, f"litert build, acc {acc}")
