"""Covariate shift and out-of-distribution inputs for the two tasks.

Digits: MNIST-C style corruptions of the 8x8 test images, each at three severities; a
shifted set holds an equal share of every corruption. MNIST-1D: its own generator with
the noise, shear and translation knobs turned up. Out-of-distribution: inputs that are
no digit at all.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Per corruption, its parameter at severities 1, 2, 3 (images are floats in [0, 1]).
DIGIT_CORRUPTIONS = {
    "gaussian_noise": (0.12, 0.22, 0.35),  # sigma of added noise
    "impulse_noise": (0.05, 0.10, 0.18),  # share of pixels set to 0 or 1
    "gaussian_blur": (0.5, 0.75, 1.0),  # sigma in pixels
    "translate": (1, 2, 3),  # pixels, random direction
    "rotate": (15, 25, 40),  # degrees, random sign
    "contrast": (0.55, 0.35, 0.2),  # factor towards the image mean
}


def _corrupt_one(image: np.ndarray, corruption: str, level: float, rng: np.random.Generator) -> np.ndarray:
    if corruption == "gaussian_noise":
        return image + rng.normal(0.0, level, image.shape)
    if corruption == "impulse_noise":
        out = image.copy()
        hit = rng.random(image.shape) < level
        out[hit] = rng.integers(0, 2, hit.sum())
        return out
    if corruption == "gaussian_blur":
        return ndimage.gaussian_filter(image, level, mode="constant")
    if corruption == "translate":
        angle = rng.uniform(0, 2 * np.pi)
        return ndimage.shift(image, (level * np.sin(angle), level * np.cos(angle)), order=1, mode="constant")
    if corruption == "rotate":
        return ndimage.rotate(image, level * rng.choice([-1, 1]), reshape=False, order=1, mode="constant")
    if corruption == "contrast":
        return (image - image.mean()) * level + image.mean()
    raise ValueError(f"unknown corruption {corruption!r}")


def corrupt_digits(images: np.ndarray, severity: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Each image gets one corruption; the corruptions take equal shares, in random order."""
    names = list(DIGIT_CORRUPTIONS)
    assigned = [names[i % len(names)] for i in rng.permutation(len(images))]
    out = np.stack([
        _corrupt_one(image, name, DIGIT_CORRUPTIONS[name][severity - 1], rng)
        for image, name in zip(images, assigned)
    ])
    return np.clip(out, 0.0, 1.0).astype(np.float32), assigned


def digits_ood(images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """As many non-digits as test images: stripes, checkerboards, blobs and inverted digits."""
    kinds = ["stripes", "checkerboard", "blobs", "inverted"]
    out, names = [], []
    yy, xx = np.mgrid[0:8, 0:8]
    for i, image in enumerate(images):
        kind = kinds[i % len(kinds)]
        if kind == "stripes":
            angle, period = rng.uniform(0, np.pi), rng.uniform(2.0, 4.0)
            sample = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
        elif kind == "checkerboard":
            size = int(rng.integers(1, 3))
            sample = (((yy // size) + (xx // size)) % 2).astype(float)
        elif kind == "blobs":
            sample = ndimage.gaussian_filter(rng.random((8, 8)), 1.0)
            sample = (sample - sample.min()) / (np.ptp(sample) + 1e-9)
        else:
            sample = 1.0 - image
        out.append(sample)
        names.append(kind)
    return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32), names


# MNIST-1D generator knobs per severity (defaults: iid 0.02, corr 0.25, shear 0.75).
MNIST1D_SHIFTS = {
    1: {"iid_noise_scale": 0.05, "corr_noise_scale": 0.35, "shear_scale": 1.0},
    2: {"iid_noise_scale": 0.10, "corr_noise_scale": 0.50, "shear_scale": 1.5},
    3: {"iid_noise_scale": 0.20, "corr_noise_scale": 0.70, "shear_scale": 2.0},
}
MNIST1D_SET_SIZE = 600


def mnist1d_ood_templates(rng: np.random.Generator) -> dict:
    """Ten 12-point templates that oscillate faster than any digit template, at its amplitude."""
    from mnist1d.data import get_templates

    digits = get_templates()
    u = np.linspace(0.0, 1.0, digits["x"].shape[1])
    x = np.stack([
        0.45 * np.sin(2 * np.pi * rng.uniform(2.0, 3.5) * u + rng.uniform(0, 2 * np.pi)) for _ in range(10)
    ])
    x[:, 0] = x[:, -1] = 0.0  # the digit templates start and end at zero too
    return {"x": x, "t": digits["t"], "y": np.arange(10)}
