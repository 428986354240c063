"""digits_rgb: scikit-learn's bundled digits scaled up to square RGB images, for image models.

The built-in MobileNetV2 needs images, and the data must come from an installed package, so each
8x8 digit (the same seeded 75/25 split as `digits`) is scaled up bilinearly to `size` x `size`,
its three channels equal, values 0 to 1. The layout is the framework's own: NCHW for torch, NHWC
for TensorFlow. The images are made once per (seed, size, layout) and kept, read-only.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np

from harness.data.dataset import Dataset, Split
from harness.data.tensors import TensorSpec
from harness.models.digits import NUM_CLASSES, load_digits_split

INPUT_NAME = "images"
SOURCE_SIDE = 8
Layout = Literal["nchw", "nhwc"]


def layout_of(framework: str) -> Layout:
    return "nchw" if framework == "torch" else "nhwc"


def image_shape(size: int, layout: Layout) -> tuple[int, int, int]:
    return (3, size, size) if layout == "nchw" else (size, size, 3)


@functools.lru_cache(maxsize=4)
def load_digits_rgb_split(seed: int, size: int, layout: Layout) -> Dataset:
    """The digits split for `seed` as float32 images of one example shape `image_shape(size, layout)`."""
    digits = load_digits_split(seed)
    name = digits.inputs[0].name

    def images(split: Split) -> np.ndarray:
        flat = np.asarray(split.inputs[name], dtype=np.float32)
        out = upscale(flat.reshape(-1, SOURCE_SIDE, SOURCE_SIDE), size)
        out = np.repeat(out[:, None], 3, axis=1) if layout == "nchw" else np.repeat(out[..., None], 3, axis=3)
        out = np.ascontiguousarray(out)
        out.setflags(write=False)
        return out

    assert digits.train is not None
    return Dataset(
        name="digits_rgb",
        inputs=(TensorSpec(INPUT_NAME, image_shape(size, layout), "float32"),),
        task="classification",
        test=Split({INPUT_NAME: images(digits.test)}, digits.test.labels),
        train=Split({INPUT_NAME: images(digits.train)}, digits.train.labels),
        num_classes=NUM_CLASSES,
        seed=seed,
        source={
            "description": f"scikit-learn's bundled digits scaled up to {size}x{size} RGB "
            f"({layout.upper()}), stratified 75/25 split",
            "split_seed": seed,
            "image_size": size,
            "layout": layout,
        },
    )


def upscale(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of [n, h, w] float images to [n, size, size] (pixel centres aligned)."""
    rows = _interpolation(images.shape[1], size)
    cols = _interpolation(images.shape[2], size)
    return np.einsum("ih,nhw,jw->nij", rows, images, cols, optimize=True).astype(np.float32)


def _interpolation(source: int, target: int) -> np.ndarray:
    """[target, source] weights: each output pixel centre mapped back and interpolated linearly."""
    centres = (np.arange(target) + 0.5) * source / target - 0.5
    centres = np.clip(centres, 0, source - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, source - 1)
    frac = (centres - low).astype(np.float32)
    weights = np.zeros((target, source), dtype=np.float32)
    weights[np.arange(target), low] += 1 - frac
    weights[np.arange(target), high] += frac
    return weights
