"""TFLM's own interpreter and reference kernels (the `tflite-micro` package): what the board's kernels compute.

LiteRT and TFLM differ in one place on our models, the FULLY_CONNECTED requantization (hil/model/requantize.py,
docs/decisions.md "Which reference"); running TFLM itself makes that reference exact for every op.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hil.model.litert import reference_interpreter


class TflmStage:
    """One stage in the TFLM interpreter, called like a LiteRT signature runner: {input name: batch} -> outputs.

    TFLM runs one sample per invoke (batch 1, its arena is planned for the model's shapes) and addresses
    tensors by position; the signature's names come from the same file read through LiteRT.
    """

    def __init__(self, path: Path):
        from tflite_micro.python.tflite_micro import runtime

        self._interpreter = runtime.Interpreter.from_file(str(path))
        litert = reference_interpreter(path)
        signature = litert.get_signature_runner()
        names_by_tensor = {detail["index"]: name for name, detail in signature.get_output_details().items()}
        self._output_names = [names_by_tensor[detail["index"]] for detail in litert.get_output_details()]

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        (batch,) = inputs.values()  # every stage has one input
        collected: list[list[np.ndarray]] = [[] for _ in self._output_names]
        for sample in batch:
            self._interpreter.set_input(np.ascontiguousarray(sample[None], dtype=np.int8), 0)
            self._interpreter.invoke()
            for position, values in enumerate(collected):
                values.append(self._interpreter.get_output(position)[0])
        return {name: np.stack(values) for name, values in zip(self._output_names, collected)}
