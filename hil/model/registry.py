"""The models hil knows: one table that the CLI, the firmware build, test sets and training read.

A row names the model, the data it is trained and tested on (a source in model/datasets.py and
its test sets in model/testsets.py, both keyed by the dataset's name), the network that is
trained (a builder in training/network.py, keyed by its name) and how long. The model itself
lives in fixtures/models/<name>/ (`hil model train`); docs/design.md says how to add one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelEntry:
    name: str  # fixtures/models/<name>/, model.json's name
    dataset: str  # datasets.SOURCES and testsets.GENERATORS key
    architecture: str  # training.network.ARCHITECTURES key
    epochs: int


MODELS: dict[str, ModelEntry] = {entry.name: entry for entry in (
    ModelEntry("qute-digits", dataset="digits", architecture="digits_cnn", epochs=60),
    ModelEntry("qute-mnist1d", dataset="mnist1d", architecture="mnist1d_dscnn", epochs=80),
)}
MODEL_NAMES = tuple(MODELS)
