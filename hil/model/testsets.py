"""Test sets: int8 inputs ready to stream, with labels, kind, severity and provenance.

`hil testsets generate` writes, for each model, under fixtures/testsets/<model>/:
- clean.npz: the held-out test split;
- shift-s1.npz .. shift-s3.npz: covariate shift at three severities;
- ood.npz: inputs from outside the task (labels are -1).
Files are written byte-for-byte deterministically: the same seed gives the same files.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from hil import __version__
from hil.assets import TESTSETS_DIR
from hil.model import corruptions
from hil.model import datasets
from hil.errors import BadInput
from hil.model.card import ModelCard
from hil.model.registry import MODELS

DEFAULT_SEED = 2026
SEVERITIES = (1, 2, 3)
OOD_LABEL = -1


class TestSetKind(StrEnum):
    """What a test set holds; its metrics follow from it (accuracy for clean and shifted, OOD detection for ood)."""

    __test__ = False  # not a pytest test class

    CLEAN = "clean"
    SHIFTED = "shifted"  # clean samples corrupted at a severity
    OOD = "ood"  # out of distribution: no class of the model's is right


KINDS = tuple(TestSetKind)
REGENERATE = "regenerate it with `hil testsets generate`"


@dataclass(frozen=True)
class TestSet:
    name: str  # e.g. "shift-s2"
    path: Path
    sha256: str
    inputs: np.ndarray  # int8, the model's input layout with a leading sample axis
    labels: np.ndarray  # int64, -1 for out-of-distribution samples
    kind: TestSetKind
    severity: int  # 0 for clean and ood
    corruption: np.ndarray  # per sample: which corruption made it ("none" when clean)
    provenance: dict

    __test__ = False  # not a pytest test class

    def __len__(self) -> int:
        return len(self.labels)


def _kind(path: Path, value: np.ndarray) -> TestSetKind:
    try:
        return TestSetKind(str(value))
    except ValueError:
        raise BadInput(f"{path}: kind {str(value)[:20]!r} is not one of {', '.join(TestSetKind)}; "
                       f"{REGENERATE}") from None


def set_names() -> list[str]:
    return ["clean"] + [f"shift-s{s}" for s in SEVERITIES] + ["ood"]


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz with fixed member timestamps: np.savez stamps the current time into the zip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def _provenance(card: ModelCard, seed: int, source: str, **details) -> dict:
    return {
        "generator": "hil testsets generate",
        "hil_version": __version__,
        "seed": seed,
        "model": card.name,
        "model_sha256": card.sha256,
        "input_scale": card.input.scale,
        "input_zero_point": card.input.zero_point,
        "source": source,
        **details,
    }


def _set_arrays(card, x, labels, kind, severity, corruption, provenance) -> dict:
    return {
        "inputs": card.input.quantize(x),
        "labels": np.asarray(labels, dtype=np.int64),
        "kind": np.array(kind),
        "severity": np.array(severity, dtype=np.int64),
        "corruption": np.asarray(corruption, dtype=str),
        "provenance": np.array(json.dumps(provenance, sort_keys=True)),
    }


def _digits_sets(card: ModelCard, seed: int) -> dict[str, dict]:
    split = datasets.digits()
    images = split.x_test[..., 0]
    none = ["none"] * len(images)
    sets = {"clean": _set_arrays(card, split.x_test, split.y_test, "clean", 0, none,
                                 _provenance(card, seed, "scikit-learn digits, test split"))}
    for severity in SEVERITIES:
        rng = np.random.default_rng([seed, severity])
        shifted, names = corruptions.corrupt_digits(images, severity, rng)
        sets[f"shift-s{severity}"] = _set_arrays(
            card, shifted[..., np.newaxis], split.y_test, "shifted", severity, names,
            _provenance(card, seed, "scikit-learn digits, test split, MNIST-C style corruptions",
                        corruptions=list(corruptions.DIGIT_CORRUPTIONS)),
        )
    rng = np.random.default_rng([seed, 0])
    ood, names = corruptions.digits_ood(images, rng)
    sets["ood"] = _set_arrays(card, ood[..., np.newaxis], np.full(len(ood), OOD_LABEL), "ood", 0, names,
                              _provenance(card, seed, "synthetic 8x8 patterns and inverted digits"))
    return sets


def _mnist1d_sets(card: ModelCard, seed: int) -> dict[str, dict]:
    split = datasets.mnist1d()
    mean, std = datasets.mnist1d_standardisation()
    none = ["none"] * len(split.y_test)
    sets = {"clean": _set_arrays(card, split.x_test, split.y_test, "clean", 0, none,
                                 _provenance(card, seed, "mnist1d.make_dataset() defaults, test split"))}
    for severity in SEVERITIES:
        overrides = dict(corruptions.MNIST1D_SHIFTS[severity], seed=seed + severity,
                         num_samples=corruptions.MNIST1D_SET_SIZE)
        signals, labels = datasets.mnist1d_raw(datasets.mnist1d_args(**overrides))
        x = datasets.as_mnist1d_input((signals - mean) / std)
        sets[f"shift-s{severity}"] = _set_arrays(
            card, x, labels, "shifted", severity, ["mnist1d-knobs"] * len(labels),
            _provenance(card, seed, "mnist1d generator with noise, shear and translation turned up",
                        mnist1d_args=overrides, standardised_with_clean=[mean, std]),
        )
    templates = corruptions.mnist1d_ood_templates(np.random.default_rng([seed, 0]))
    overrides = dict(seed=seed, num_samples=corruptions.MNIST1D_SET_SIZE)
    signals, _ = datasets.mnist1d_raw(datasets.mnist1d_args(**overrides), templates=templates)
    sets["ood"] = _set_arrays(
        card, datasets.as_mnist1d_input((signals - mean) / std), np.full(len(signals), OOD_LABEL), "ood", 0,
        ["oscillating-templates"] * len(signals),
        _provenance(card, seed, "mnist1d generator on random oscillating templates (no digit)", mnist1d_args=overrides),
    )
    return sets


# Keyed by dataset name: a model names its dataset in model/registry.py.
GENERATORS = {"digits": _digits_sets, "mnist1d": _mnist1d_sets}


def generate(card: ModelCard, directory: Path, seed: int = DEFAULT_SEED) -> list[Path]:
    """Write every test set of one model into `directory`; returns the paths."""
    if card.name not in MODELS:
        raise BadInput(f"no test-set generator for model {card.name!r} (known: {', '.join(MODELS)}); "
                       "add the model to hil/model/registry.py")
    paths = []
    for name, arrays in GENERATORS[MODELS[card.name].dataset](card, seed).items():
        path = directory / f"{name}.npz"
        write_npz(path, arrays)
        paths.append(path)
    return paths


def model_testsets_dir(card: ModelCard) -> Path:
    return TESTSETS_DIR / card.name


def load_testset(path: Path, card: ModelCard | None = None) -> TestSet:
    """Load one .npz; with a model card, check it was quantized for that model's input."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such test set; generate it with `hil testsets generate`")
    raw = path.read_bytes()
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("inputs", "labels", "kind", "severity", "corruption", "provenance")}
        provenance = json.loads(str(arrays["provenance"]))
    except KeyError as error:
        raise BadInput(f"{path}: test set lacks the array {error}; {REGENERATE}") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise BadInput(f"{path}: not a readable test set ({error}); {REGENERATE}") from None
    inputs, labels = arrays["inputs"], arrays["labels"]
    if inputs.dtype != np.int8 or labels.ndim != 1 or len(inputs) != len(labels):
        raise BadInput(f"{path}: inputs must be int8 with one label each; {REGENERATE}")
    if card is not None:
        if tuple(inputs.shape[1:]) != card.input.shape[1:]:
            raise BadInput(f"{path}: input shape {inputs.shape[1:]} does not fit model {card.name} "
                           f"{card.input.shape[1:]}")
        quant = (provenance.get("input_scale"), provenance.get("input_zero_point"))
        if quant != (card.input.scale, card.input.zero_point):
            raise BadInput(f"{path}: quantized for input {quant}, but {card.name} expects "
                           f"({card.input.scale}, {card.input.zero_point}); {REGENERATE}")
    return TestSet(
        name=path.stem,
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        inputs=inputs,
        labels=labels.astype(np.int64),
        kind=_kind(path, arrays["kind"]),
        severity=int(arrays["severity"]),
        corruption=arrays["corruption"],
        provenance=provenance,
    )


def load_model_testsets(card: ModelCard, directory: Path | None = None) -> list[TestSet]:
    """Every test set of a model, from fixtures/testsets/<model>/ unless told otherwise."""
    directory = model_testsets_dir(card) if directory is None else Path(directory)
    return [load_testset(directory / f"{name}.npz", card) for name in set_names()]
