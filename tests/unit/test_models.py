"""The committed models: they load in LiteRT and agree with their model.json."""

import json

import numpy as np
import pytest

from hil.model.decisions import softmax_lut
from hil.model.litert import reference_interpreter
from hil.model.card import ALLOWED_OPS, MODEL_JSON, describe_stage, load_model, sha256_file
from hil.model.reference import run_reference
from hil.model.testsets import load_model_testsets

KIB = 1024


def test_every_stage_loads_in_litert_and_matches_model_json(card):
    data = json.loads((card.directory / MODEL_JSON).read_text())
    for name, stage in card.stages.items():
        interpreter = reference_interpreter(stage.path)
        interpreter.allocate_tensors()
        described = describe_stage(stage.path)  # read back from the .tflite through LiteRT
        assert described == data["stages"][name], name
        for spec in stage.inputs + stage.outputs:
            assert spec.dtype == "int8"  # full int8: no float at the model's edges
        assert set(stage.ops) <= ALLOWED_OPS


def test_hashes_in_model_json_are_the_files_hashes(card):
    data = json.loads((card.directory / MODEL_JSON).read_text())
    assert set(data["files"]) == {s.path.name for s in card.stages.values()}
    for stage in card.stages.values():
        assert data["files"][stage.path.name] == sha256_file(stage.path)


def test_stage_boundary_has_one_quantization(card):
    (feature,) = [t for t in card.stages["stage1"].outputs if t.name == "feature"]
    assert card.stages["stage2"].inputs == (feature,)
    assert card.stages["baseline"].inputs == (feature,)


def test_softmax_tables_follow_the_output_scales(card):
    for stage in card.stages.values():
        for output in stage.outputs:
            if output.name != "feature":
                assert card.softmax_lut[output.name] == softmax_lut(output.scale)


def test_model_fits_the_small_mcu_with_room(card):
    weights = sum(card.stages[s].weight_bytes for s in ("stage1", "stage2"))
    activations = max(card.stages[s].peak_activation_bytes for s in ("stage1", "stage2"))
    assert weights < 128 * KIB  # half the STM32L432KC's 256 KiB flash
    assert activations < 16 * KIB  # a quarter of its 64 KiB SRAM


def test_int8_accuracy_is_within_one_point_of_float(card):
    clean = load_model_testsets(card)[0]
    outputs = run_reference(card, clean.inputs)
    from hil.model.evaluation import answers

    int8 = answers(card, outputs)
    floats = card.training["float_test_accuracy"]
    assert abs(np.mean(int8["qute"].predicted == clean.labels) - floats["qute_ensemble"]) <= 0.01
    assert abs(np.mean(int8["single_head"].predicted == clean.labels) - floats["single_head"]) <= 0.01


def test_digits_clean_accuracy_is_at_least_95_percent():
    card = load_model("qute-digits")
    clean = load_model_testsets(card)[0]
    from hil.model.evaluation import answers

    assert np.mean(answers(card, run_reference(card, clean.inputs))["qute"].predicted == clean.labels) >= 0.95


def test_batched_reference_equals_one_sample_at_a_time(card):
    clean = load_model_testsets(card)[0]
    batched = run_reference(card, clean.inputs[:70], batch_size=32)
    single = run_reference(card, clean.inputs[:70], batch_size=1)
    pairs = zip((batched.exit, *batched.heads, batched.single_head), (single.exit, *single.heads, single.single_head))
    for a, b in pairs:
        assert a.dtype == np.int8 and np.array_equal(a, b)


def test_a_changed_stage_file_is_refused(tmp_path, card):
    import shutil

    copy = tmp_path / card.name
    shutil.copytree(card.directory, copy)
    data = bytearray((copy / "stage2.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "stage2.tflite").write_bytes(bytes(data))
    from hil.errors import BadInput

    with pytest.raises(BadInput, match="stage2.tflite: sha256"):
        load_model(copy)
