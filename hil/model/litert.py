"""LiteRT with its reference kernels: the host's ground truth for int8 inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def reference_interpreter(model: Path | bytes, preserve_all_tensors: bool = False):
    """An interpreter that uses TFLite's reference kernels (BUILTIN_REF), not the optimised ones.

    The reference kernels are the integer semantics the firmware's kernel library copies;
    the optimised kernels and XNNPACK may round differently. With `preserve_all_tensors`, every
    intermediate tensor can be read after invoke() (LiteRT otherwise reuses their memory): what a
    trace compares the device's layer outputs with.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    return Interpreter(**source, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                       experimental_preserve_all_tensors=preserve_all_tensors)


def tensor_description(name: str, detail: dict) -> dict:
    """Name, shape (batch 1), dtype and per-tensor quantization of a signature tensor."""
    scale, zero_point = detail["quantization"]
    return {
        "name": name,
        "shape": [int(d) for d in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zero_point),
    }
