"""A QUTE model on disk: model.json plus its .tflite stages, verified by sha256 on load."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hil.assets import MODELS_DIR
from hil.errors import BadInput
from hil.model.litert import reference_interpreter, tensor_description

MODEL_JSON = "model.json"
# What the firmware's int8 kernel library implements exactly; nothing else may appear.
ALLOWED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "RESHAPE", "SQUEEZE"}


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @classmethod
    def from_json(cls, data: dict) -> "TensorSpec":
        return cls(data["name"], tuple(data["shape"]), data["dtype"], float(data["scale"]), int(data["zero_point"]))

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Float values to this tensor's int8, as TFLite's QUANTIZE does: round half away from zero."""
        q = np.round(np.asarray(values, dtype=np.float64) / self.scale) + self.zero_point
        return np.clip(q, -128, 127).astype(np.int8)


@dataclass(frozen=True)
class Stage:
    name: str
    path: Path
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    ops: tuple[str, ...]
    macs: int
    parameters: int
    weight_bytes: int
    peak_activation_bytes: int


@dataclass(frozen=True)
class ModelCard:
    name: str
    directory: Path
    sha256: str  # of model.json, which holds the hashes of every stage: the model's identity
    labels: tuple[str, ...]
    input: TensorSpec
    stages: dict[str, Stage]
    exit_output: str
    head_outputs: tuple[str, ...]
    single_head_output: str
    softmax_lut: dict[str, list[int]]
    training: dict

    @property
    def exit_lut(self) -> list[int]:
        return self.softmax_lut[self.exit_output]

    @property
    def head_luts(self) -> list[list[int]]:
        return [self.softmax_lut[h] for h in self.head_outputs]

    @property
    def deployed_parameters(self) -> int:
        return self.stages["stage1"].parameters + self.stages["stage2"].parameters

    @property
    def full_path_macs(self) -> int:
        return self.stages["stage1"].macs + self.stages["stage2"].macs


def describe_stage(path: Path) -> dict:
    """What model.json records of one stage, read from the .tflite through LiteRT."""
    interpreter = reference_interpreter(path)
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner()
    inputs = [tensor_description(n, d) for n, d in runner.get_input_details().items()]
    outputs = [tensor_description(n, d) for n, d in runner.get_output_details().items()]
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # noqa: SLF001 - LiteRT's only op listing
    produced = {t for op in ops for t in op["outputs"]} | {d["index"] for d in runner.get_input_details().values()}
    constants = {int(t) for op in ops for t in op["inputs"] if t >= 0 and t not in produced}
    # Weights and biases; a RESHAPE's shape operand is a constant too, but not a parameter.
    weights = {int(t) for op in ops if op["op_name"] in _WEIGHTED_OPS for t in op["inputs"][1:] if t in constants}
    size = lambda index: int(np.prod(tensors[index]["shape"]))  # noqa: E731
    nbytes = lambda index: size(index) * np.dtype(tensors[index]["dtype"]).itemsize  # noqa: E731
    return {
        "file": path.name,
        "inputs": inputs,
        "outputs": outputs,
        "ops": [op["op_name"] for op in ops],
        "macs": sum(operator_macs(op, tensors) for op in ops),
        "parameters": sum(size(i) for i in weights),
        "weight_bytes": sum(nbytes(i) for i in weights),
        # A lower bound for the tensor arena: the largest input+output of one operator.
        "peak_activation_bytes": max(
            sum(nbytes(t) for t in list(op["inputs"]) + list(op["outputs"]) if t >= 0 and t not in constants)
            for op in ops
        ),
    }


_WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


def operator_macs(op: dict, tensors: dict) -> int:
    """Multiply-accumulates of one operator; pooling and reshapes count none."""
    out = int(np.prod(tensors[op["outputs"][0]]["shape"]))
    name = op["op_name"]
    if name == "CONV_2D":
        _, kh, kw, cin = tensors[op["inputs"][1]]["shape"]
        return out * int(kh * kw * cin)
    if name == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = tensors[op["inputs"][1]]["shape"]
        return out * int(kh * kw)
    if name == "FULLY_CONNECTED":
        return out * int(tensors[op["inputs"][1]]["shape"][1])
    return 0


def resolve_model_dir(model: str | Path) -> Path:
    """A model name under fixtures/models/, or a path to a model directory or its model.json."""
    path = Path(model)
    if path.name == MODEL_JSON:
        path = path.parent
    if not path.exists() and (MODELS_DIR / str(model)).exists():
        path = MODELS_DIR / str(model)
    return path


def load_model(model: str | Path) -> ModelCard:
    """Load and verify a model; any problem is a BadInput naming the file."""
    directory = resolve_model_dir(model)
    card_path = directory / MODEL_JSON
    if not card_path.is_file():
        known = ", ".join(sorted(p.name for p in MODELS_DIR.iterdir())) if MODELS_DIR.is_dir() else "none"
        raise BadInput(f"{card_path}: no such model (known models: {known})")
    try:
        data = json.loads(card_path.read_text())
        stages = {}
        for name, stage in data["stages"].items():
            path = directory / stage["file"]
            if not path.is_file():
                raise BadInput(f"{path}: file missing; restore it or re-export the model with `hil model train`")
            digest = sha256_file(path)
            if digest != data["files"][stage["file"]]:
                raise BadInput(
                    f"{path}: sha256 {digest[:12]}… does not match model.json ({data['files'][stage['file']][:12]}…);"
                    " the file is corrupt or was changed, restore it or re-export the model"
                )
            stages[name] = Stage(
                name=name,
                path=path,
                sha256=digest,
                inputs=tuple(TensorSpec.from_json(t) for t in stage["inputs"]),
                outputs=tuple(TensorSpec.from_json(t) for t in stage["outputs"]),
                ops=tuple(stage["ops"]),
                macs=int(stage["macs"]),
                parameters=int(stage["parameters"]),
                weight_bytes=int(stage["weight_bytes"]),
                peak_activation_bytes=int(stage["peak_activation_bytes"]),
            )
        return ModelCard(
            name=data["name"],
            directory=directory,
            sha256=sha256_file(card_path),
            labels=tuple(data["labels"]),
            input=TensorSpec.from_json(data["input"]),
            stages=stages,
            exit_output=data["exit"]["output"],
            head_outputs=tuple(h["output"] for h in data["heads"]),
            single_head_output=data["single_head"]["output"],
            softmax_lut={k: [int(v) for v in lut] for k, lut in data["softmax_lut"].items()},
            training=data.get("training", {}),
        )
    except json.JSONDecodeError as error:
        raise BadInput(f"{card_path}: not valid JSON ({error}); restore it from git or re-export the model") from None
    except (KeyError, TypeError, ValueError) as error:
        raise BadInput(
            f"{card_path}: malformed model card, missing or wrong field {error}; restore it from git"
        ) from None
