"""Export a trained QUTE network as full-int8 .tflite stages plus model.json.

The whole network is converted once, as one graph with every output, so that each tensor
gets exactly one set of quantization parameters. The stages are then cut out of that
flatbuffer: stage 1's feature-map output and stage 2's input are the same tensor, with
the same scale and zero point, by construction. Converting the stages separately would
calibrate that tensor twice and the two ends would disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hil.model import decisions
from hil.model.card import ALLOWED_OPS, MODEL_JSON, describe_stage, sha256_file

STAGES = {
    # stage name: (inputs, outputs), by signature name in the combined graph
    "stage1": (["input"], ["exit", "feature"]),
    "stage2": (["feature"], ["head_0", "head_1"]),
    "baseline": (["feature"], ["final"]),
}
# The combined graph's outputs, in the order the converter lists them (a tuple keeps it).
COMBINED_OUTPUTS = ["exit", "feature", "head_0", "head_1", "final"]
REPRESENTATIVE_SAMPLES = 500


def convert_combined(network, representative_x: np.ndarray) -> bytes:
    """One full-int8 flatbuffer with outputs exit, feature, head_k and final."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None,) + network.input_shape, tf.float32, name="input")])
    def combined(input):  # noqa: A002 - the name becomes the input tensor's name
        stage1 = network.stage1(input)
        outputs = {**stage1, **network.stage2(stage1["feature"]), **network.baseline(stage1["feature"])}
        return tuple(outputs[name] for name in COMBINED_OUTPUTS)

    def representative():
        for sample in representative_x[:REPRESENTATIVE_SAMPLES]:
            yield [sample[np.newaxis].astype(np.float32)]

    # No trackable object: with one, this converter keeps the weights as resource variables.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([combined.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def extract_stage(combined: bytes, inputs: list[str], outputs: list[str]) -> bytes:
    """Cut the operators between named inputs and outputs out of the combined flatbuffer.

    Keeps only the operators the outputs need, renumbers tensors, buffers and operator
    codes, and writes a signature with the stage's own input and output names.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(combined))
    graph = model.subgraphs[0]
    by_name = dict(zip(["input"] + COMBINED_OUTPUTS, [int(t) for t in list(graph.inputs) + list(graph.outputs)]))
    input_ids = [by_name[name] for name in inputs]
    output_ids = [by_name[name] for name in outputs]

    # Walk the (topologically ordered) operators backwards from the outputs.
    needed, kept = set(output_ids), []
    for op in reversed(graph.operators):
        if needed.intersection(op.outputs):
            kept.append(op)
            needed.update(int(t) for t in op.inputs if t >= 0 and t not in input_ids)
    kept.reverse()

    used = sorted({int(t) for op in kept for t in list(op.inputs) + list(op.outputs) if t >= 0} | set(input_ids))
    tensor_map = {old: new for new, old in enumerate(used)}
    buffers, buffer_map = [model.buffers[0]], {0: 0}  # buffer 0 stays the empty sentinel
    tensors = []
    for old in used:
        tensor = graph.tensors[old]
        if tensor.buffer not in buffer_map:
            buffer_map[tensor.buffer] = len(buffers)
            buffers.append(model.buffers[tensor.buffer])
        tensor.buffer = buffer_map[tensor.buffer]
        tensors.append(tensor)
    codes = sorted({op.opcodeIndex for op in kept})
    code_map = {old: new for new, old in enumerate(codes)}
    for op in kept:
        op.inputs = [tensor_map[int(t)] if t >= 0 else -1 for t in op.inputs]
        op.outputs = [tensor_map[int(t)] for t in op.outputs]
        op.opcodeIndex = code_map[op.opcodeIndex]

    graph.operators, graph.tensors = kept, tensors
    graph.inputs = [tensor_map[t] for t in input_ids]
    graph.outputs = [tensor_map[t] for t in output_ids]
    model.operatorCodes = [model.operatorCodes[c] for c in codes]
    for entry in model.metadata or []:
        if entry.buffer not in buffer_map:
            buffer_map[entry.buffer] = len(buffers)
            buffers.append(model.buffers[entry.buffer])
        entry.buffer = buffer_map[entry.buffer]
    model.buffers = buffers

    def tensor_maps(names, ids):
        maps = []
        for name, old in zip(names, ids):
            entry = schema.TensorMapT()
            entry.name, entry.tensorIndex = name.encode(), tensor_map[old]
            maps.append(entry)
        return maps

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = b"serving_default", 0
    signature.inputs, signature.outputs = tensor_maps(inputs, input_ids), tensor_maps(outputs, output_ids)
    model.signatureDefs = [signature]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _float_accuracies(network, split) -> dict:
    import keras

    out = network(split.x_test)
    y = split.y_test
    accuracy = lambda logits: float(np.mean(np.argmax(np.asarray(logits), axis=1) == y))  # noqa: E731
    ensemble = sum(keras.ops.softmax(h) for h in out["heads"])
    return {
        "qute_ensemble": accuracy(ensemble),
        "single_head": accuracy(out["final"]),
        "exit": accuracy(out["exits"][0]),
    }


def export(model_name: str, network, split, settings, directory: Path) -> Path:
    """Write stage1/stage2/baseline .tflite and model.json into `directory`."""
    import tensorflow as tf

    from hil.training.network import EXIT_LOSS_WEIGHTS, HEAD_LOSS_WEIGHTS

    directory.mkdir(parents=True, exist_ok=True)
    combined = convert_combined(network, split.x_train)
    stages = {}
    for stage, (inputs, outputs) in STAGES.items():
        path = directory / f"{stage}.tflite"
        path.write_bytes(extract_stage(combined, inputs, outputs))
        stages[stage] = describe_stage(path)
        unsupported = set(stages[stage]["ops"]) - ALLOWED_OPS
        if unsupported:
            raise RuntimeError(f"{path}: ops outside the firmware's kernel library: {sorted(unsupported)}")

    input_spec = stages["stage1"]["inputs"][0]
    luts = {
        output["name"]: decisions.softmax_lut(output["scale"])
        for stage in stages.values()
        for output in stage["outputs"]
        if output["name"] != "feature"
    }
    card = {
        "name": model_name,
        "format": 1,
        "labels": network.labels,
        "input": input_spec,
        "stages": stages,
        "exit": {"stage": "stage1", "output": "exit", "after_block": 1},
        "feature": {"producer": "stage1", "consumer": "stage2", "output": "feature"},
        "heads": [
            {"stage": "stage2", "output": f"head_{k}", "depthwise_copied_from_exit": k + 1}
            for k in range(len(network.heads))
        ],
        "single_head": {"stage": "baseline", "output": "final"},
        "deployed_stages": ["stage1", "stage2"],
        "softmax_lut": luts,
        "training": {
            "seed": settings.seed,
            "epochs": settings.epochs,
            "frozen_base_epochs": settings.epochs - int(round(settings.epochs * (1 - settings.frozen_fraction))),
            "batch_size": settings.batch_size,
            "learning_rate": settings.learning_rate,
            "loss": {
                "exit_weights": list(EXIT_LOSS_WEIGHTS), "head_weights": list(HEAD_LOSS_WEIGHTS), "final_weight": 1.0,
            },
            "train_samples": int(len(split.y_train)),
            "float_test_accuracy": _float_accuracies(network, split),
            "tensorflow": tf.__version__,
        },
        "files": {f"{stage}.tflite": sha256_file(directory / f"{stage}.tflite") for stage in stages},
    }
    path = directory / MODEL_JSON
    path.write_text(json.dumps(card, indent=1) + "\n")
    return path
