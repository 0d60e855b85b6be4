"""The two data sources behind the QUTE models, as float arrays with a fixed, seeded split.

Both training (`hil model train`) and test-set generation (`hil testsets generate`) read
the data from here, so the test split the lab streams is exactly the one training held out.
Nothing is downloaded: scikit-learn ships the 8x8 digits, and mnist1d generates MNIST-1D
from its templates (its download path is never used).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    """Float inputs in the model's layout (N, H, W, C) and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits() -> Split:
    """scikit-learn's 8x8 digits, scaled to [0, 1], stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., np.newaxis]
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    return Split(x_train, y_train, x_test, y_test)


def mnist1d_args(**overrides: float):
    """mnist1d's default generation arguments, with some knobs turned (for shifted sets)."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args()
    for name, value in overrides.items():
        if not hasattr(args, name):
            raise ValueError(f"mnist1d has no generation argument {name!r}")
        setattr(args, name, value)
    return args


def mnist1d_raw(args, templates: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Signals and labels exactly as mnist1d.make_dataset draws them, before it standardises.

    make_dataset standardises each data set by its own mean and std; a shifted set must
    instead be scaled with the clean set's statistics, or the shift would be partly undone.
    This repeats make_dataset's loop (same seed, same draws) without that last step.
    """
    from mnist1d.data import get_templates, set_seed, transform

    templates = get_templates() if templates is None else templates
    set_seed(args.seed)
    per_class = args.num_samples // len(templates["y"])
    xs, ys = [], []
    for label_index in range(len(templates["y"])):
        for _ in range(per_class):
            x, _t = transform(templates["x"][label_index], templates["t"], args)
            xs.append(x)
            ys.append(templates["y"][label_index])
    order = np.random.permutation(len(ys))
    return np.stack(xs)[order], np.stack(ys)[order]


def mnist1d_standardisation() -> tuple[float, float]:
    """Mean and std that make_dataset uses for the default (clean) MNIST-1D."""
    x, _ = mnist1d_raw(mnist1d_args())
    return float(x.mean()), float(x.std())


def as_mnist1d_input(signals: np.ndarray) -> np.ndarray:
    """(N, 40) signals to the model layout (N, 1, 40, 1): a 1-D conv is a 2-D conv with H = 1."""
    return signals.astype(np.float32)[:, np.newaxis, :, np.newaxis]


def mnist1d() -> Split:
    """MNIST-1D from mnist1d.make_dataset() with its default arguments (80/20 split)."""
    from mnist1d.data import make_dataset

    data = make_dataset(mnist1d_args())
    return Split(
        as_mnist1d_input(data["x"]),
        data["y"].astype(np.int64),
        as_mnist1d_input(data["x_test"]),
        data["y_test"].astype(np.int64),
    )


# Keyed by dataset name: a model names its dataset in model/registry.py.
SOURCES = {"digits": digits, "mnist1d": mnist1d}
