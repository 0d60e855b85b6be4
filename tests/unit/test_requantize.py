"""The two host references differ only in FULLY_CONNECTED's requantization, and hil/model/requantize.py says how.

For every FULLY_CONNECTED of every stage, on every shipped test set: the int32 accumulators are read from LiteRT,
then requantized by the numpy model of each interpreter; each must reproduce its own interpreter to the bit.
"""

from dataclasses import dataclass

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from hil.model.card import ModelCard
from hil.model.reference import Reference, run_reference
from hil.model.requantize import (QuantizedMultiplier, effective_scales, multiply_by_quantized_multiplier,
                                  requantize_litert, requantize_tflm)
from hil.model.testsets import load_model_testsets
from hil.model.tflm import TflmStage

STAGES = ("stage1", "stage2", "baseline")


@dataclass(frozen=True)
class FullyConnectedCase:
    name: str  # the signature output it produces
    accumulators: np.ndarray  # (N, C) int32, bias included
    scales: np.ndarray  # (C,) input_scale * weight_scale[c] / output_scale
    output_zero_point: int
    litert: np.ndarray  # (N, C) int8, what LiteRT BUILTIN_REF answered
    tflm: np.ndarray  # (N, C) int8, what TFLM answered


def _quantization(detail: dict) -> tuple[np.ndarray, np.ndarray]:
    parameters = detail["quantization_parameters"]
    return parameters["scales"], parameters["zero_points"]


def fully_connected_cases(card: ModelCard, inputs: np.ndarray) -> list[FullyConnectedCase]:
    cases = []
    feature = None
    for stage in STAGES:
        path = card.stages[stage].path
        batch = inputs if stage == "stage1" else feature
        # reference_interpreter's settings, keeping every intermediate tensor to read the accumulators' inputs.
        interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                                  experimental_preserve_all_tensors=True)
        input_index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(input_index, list(batch.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        details = {d["index"]: d for d in interpreter.get_tensor_details()}
        signature = interpreter.get_signature_runner()
        names = {d["index"]: name for name, d in signature.get_output_details().items()}
        tflm = TflmStage(path)(x=batch)
        for op in interpreter._get_ops_details():  # noqa: SLF001 - LiteRT's only per-op view
            if op["op_name"] != "FULLY_CONNECTED":
                continue
            x_index, w_index, b_index = op["inputs"]
            (out_index,) = op["outputs"]
            x = interpreter.get_tensor(x_index).reshape(len(batch), -1).astype(np.int64)
            weights = interpreter.get_tensor(w_index).astype(np.int64)
            bias = interpreter.get_tensor(b_index).astype(np.int64)
            (x_scale,), (x_zero,) = _quantization(details[x_index])
            weight_scales, weight_zeros = _quantization(details[w_index])
            (out_scale,), (out_zero,) = _quantization(details[out_index])
            assert len(weight_scales) == weights.shape[0] and not np.any(weight_zeros)  # per channel, symmetric
            name = names[out_index]
            cases.append(FullyConnectedCase(
                name=f"{stage}/{name}",
                accumulators=(x - x_zero) @ weights.T + bias,
                scales=effective_scales(x_scale, weight_scales, out_scale),
                output_zero_point=int(out_zero),
                litert=interpreter.get_tensor(out_index).reshape(len(batch), -1),
                tflm=tflm[name].reshape(len(batch), -1),
            ))
        if stage == "stage1":
            feature = interpreter.get_tensor(
                next(i for i, n in names.items() if n == card.stages["stage1"].outputs[1].name))
    return cases


def _all_inputs(card: ModelCard) -> np.ndarray:
    return np.concatenate([t.inputs for t in load_model_testsets(card)])


def test_each_numpy_requantization_reproduces_its_interpreter_bit_for_bit(card):
    differing = 0
    for case in fully_connected_cases(card, _all_inputs(card)):
        litert = requantize_litert(case.accumulators, case.scales, case.output_zero_point)
        tflm = requantize_tflm(case.accumulators, case.scales, case.output_zero_point)
        np.testing.assert_array_equal(litert, case.litert, err_msg=f"{card.name} {case.name}: LiteRT")
        np.testing.assert_array_equal(tflm, case.tflm, err_msg=f"{card.name} {case.name}: TFLM")
        # The difference is the rounding, never more than one step, and it is there on every model.
        assert np.abs(case.litert.astype(int) - case.tflm).max() <= 1, case.name
        differing += int(np.any(case.litert != case.tflm, axis=1).sum())
        # Swapped, the models do not reproduce the other interpreter: the test tells them apart.
        assert not np.array_equal(litert, tflm) or np.array_equal(case.litert, case.tflm)
    assert differing > 0, f"{card.name}: no sample where LiteRT and TFLM differ"


def test_quantize_multiplier_and_double_rounding_match_tflite_on_known_values():
    # 0.75 = 0.75 * 2**0: Q31 mantissa 0.75 * 2**31, shift 0.
    assert QuantizedMultiplier.of(0.75) == QuantizedMultiplier(1610612736, 0)
    # A mantissa that rounds up to 1.0 carries into the shift.
    assert QuantizedMultiplier.of(1.0 - 2.0 ** -40) == QuantizedMultiplier(1 << 30, 1)
    assert QuantizedMultiplier.of(2.0 ** -40) == QuantizedMultiplier(0, 0)
    half = QuantizedMultiplier.of(0.5)
    # With shift 0 only the high-mul rounds, and its nudge sends ties up: 2.5 -> 3, -2.5 -> -2 (gemmlowp).
    assert multiply_by_quantized_multiplier(np.array([5, -5, 4]), half).tolist() == [3, -2, 2]
    # 0.25 is 0.5 * 2**-1: the shift's rounding divide sends ties away from zero: 1.5 -> 2, -1.5 -> -2.
    quarter = QuantizedMultiplier.of(0.25)
    assert multiply_by_quantized_multiplier(np.array([6, -6, 7]), quarter).tolist() == [2, -2, 2]


def test_double_rounding_differs_from_litert_exact_rounding_just_below_a_half():
    # M = (2**31 - 1) / 2**32, a hair under 0.5: 3 * M = 1.4999999993, which LiteRT rounds to 1. TFLM's high-mul
    # first rounds 3 * M * 2 to 3, then halves 3 with ties away from zero: 2.
    scale = (2**31 - 1) / 2**32
    assert QuantizedMultiplier.of(scale) == QuantizedMultiplier(2**31 - 1, -1)
    acc = np.array([[3], [-3]])
    assert requantize_litert(acc, np.array([scale]), 0).ravel().tolist() == [1, -1]
    assert requantize_tflm(acc, np.array([scale]), 0).ravel().tolist() == [2, -2]


def test_tflm_reference_differs_from_litert_only_in_classifier_outputs_by_one_step(card):
    inputs = _all_inputs(card)
    litert = run_reference(card, inputs, reference=Reference.LITERT)
    tflm = run_reference(card, inputs, reference=Reference.TFLM)
    pairs = [(litert.exit, tflm.exit), *zip(litert.heads, tflm.heads), (litert.single_head, tflm.single_head)]
    assert any(np.any(a != b) for a, b in pairs)
    for a, b in pairs:
        assert a.shape == b.shape and a.dtype == b.dtype == np.int8
        assert np.abs(a.astype(int) - b).max() <= 1
