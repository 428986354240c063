"""The images kind: a folder with one subfolder per class, decoded with Pillow.

Class subfolders are read in sorted order, their files (searched recursively) too; hidden entries
(.DS_Store, .ipynb_checkpoints) are skipped, and any other file that Pillow cannot decode is an
error rather than silently dropped. Images are decoded only for the rows a split keeps. Each image
is converted to RGB or grayscale, resized (stretched, or scaled and centre-cropped), scaled,
normalized by mean/std, then laid out NHWC or NCHW.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.parts import PART_KEYS, DataProblem, Part, default_input_name, sha256_file
from harness.errors import first_line
from harness.scenario.data_spec import ImagesSpec
from harness.scenario.schema import ModelSpec


@dataclass(frozen=True)
class ImageFolder:
    """The image files of a class-per-subfolder folder, in reading order, and each one's class."""

    files: list[Path]
    labels: list[str]
    class_names: tuple[str, ...]  # every class subfolder, also the empty ones


def list_folder(folder: Path, key: str) -> ImageFolder:
    if not folder.is_dir():
        raise DataProblem(key, f"a folder with one subfolder of images per class; {folder} is not a folder")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    stray = next((p for p in entries if not p.is_dir()), None)
    if stray is not None:
        raise DataProblem(key, f"only class subfolders in {folder}; {stray.name} is a file")
    if not entries:
        raise DataProblem(key, f"one subfolder of images per class in {folder}; it has none")
    files: list[Path] = []
    labels: list[str] = []
    for class_dir in entries:
        found = sorted(p for p in class_dir.rglob("*") if p.is_file() and not _hidden(p, class_dir))
        files += found
        labels += [class_dir.name] * len(found)
    if not files:
        raise DataProblem(key, f"image files in the class subfolders of {folder}; they are empty")
    return ImageFolder(files, labels, tuple(p.name for p in entries))


def image_size(spec: ImagesSpec, model: ModelSpec) -> tuple[int, int]:
    """(height, width): data.size, else read off model.inputs' declared shape in data.layout."""
    if spec.size is not None:
        return spec.size[0], spec.size[1]
    declared = _declared_shape(spec, model)
    if declared is None or len(declared) != 3:
        raise DataProblem(
            "data.size", "[height, width], as model.inputs declares no 3-dimensional image input"
        )
    return (declared[0], declared[1]) if spec.layout == "NHWC" else (declared[1], declared[2])


def example_shape(spec: ImagesSpec, size: tuple[int, int]) -> tuple[int, int, int]:
    height, width = size
    return (height, width, spec.channels) if spec.layout == "NHWC" else (spec.channels, height, width)


def check_images(spec: ImagesSpec, model: ModelSpec, part: str, folder: Path) -> None:
    """DataProblem unless `folder` has class subfolders of files and the image shape fits the model."""
    list_folder(folder, PART_KEYS[part])
    shape = example_shape(spec, image_size(spec, model))
    declared = _declared_shape(spec, model)
    if declared is not None and tuple(declared) != shape:
        raise DataProblem(
            "data.size", f"images of the shape model.inputs declares, {list(declared)}; size, color and "
            f"layout give {list(shape)}"
        )  # fmt: skip


def read_images(spec: ImagesSpec, model: ModelSpec, part: str, written: str, folder: Path) -> Part:
    key = PART_KEYS[part]
    listing = list_folder(folder, key)
    size = image_size(spec, model)
    name = spec.input or default_input_name(model)
    record = {"path": written, "images": len(listing.files), "sha256": _folder_digest(listing, folder)}

    def fetch(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {name: decode([listing.files[i] for i in rows], spec, size, key)}

    labels = np.array(listing.labels, dtype=str)
    return Part(len(listing.files), labels, fetch, record, key, listing.class_names, where=str(folder))


def decode(files: list[Path], spec: ImagesSpec, size: tuple[int, int], key: str) -> np.ndarray:
    """The images of `files` as one array (n, *example_shape) of spec.dtype."""
    from PIL import Image

    height, width = size
    pixels = np.empty((len(files), height, width, spec.channels), dtype=np.uint8)
    for row, path in enumerate(files):
        try:
            with Image.open(path) as image:
                converted = _resized(image.convert("RGB" if spec.color == "rgb" else "L"), size, spec.resize)
                pixels[row] = np.asarray(converted).reshape(height, width, spec.channels)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataProblem(
                key, f"image files only; Pillow cannot read {path}: {first_line(exc)}"
            ) from None
    array = pixels if spec.dtype == "uint8" else _scaled(pixels, spec)
    if spec.layout == "NCHW":
        array = array.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(array, dtype=np.dtype(spec.dtype))


def _scaled(pixels: np.ndarray, spec: ImagesSpec) -> np.ndarray:
    values = pixels.astype(np.float32)
    if spec.scale == "unit":
        values /= 255.0
    elif spec.scale == "symmetric":
        values = values / 127.5 - 1.0
    if spec.mean is not None:
        values -= np.asarray(spec.mean, dtype=np.float32)
    if spec.std is not None:
        values /= np.asarray(spec.std, dtype=np.float32)
    return values


def _resized(image: Any, size: tuple[int, int], mode: str) -> Any:
    from PIL import Image

    height, width = size
    if mode == "crop":
        # scale so the image covers the target, then cut the centre: no distortion of the aspect ratio
        factor = max(width / image.width, height / image.height)
        scaled = (max(width, round(image.width * factor)), max(height, round(image.height * factor)))
        image = image.resize(scaled, Image.Resampling.BILINEAR)
        left, top = (scaled[0] - width) // 2, (scaled[1] - height) // 2
        return image.crop((left, top, left + width, top + height))
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.Resampling.BILINEAR)


def _declared_shape(spec: ImagesSpec, model: ModelSpec) -> list[int] | None:
    if not model.inputs:
        return None
    name = spec.input or model.inputs[0].name
    return next((list(decl.shape) for decl in model.inputs if decl.name == name), None)


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _folder_digest(listing: ImageFolder, folder: Path) -> str:
    """sha256 over every image's path (relative to the folder) and content hash, in reading order."""
    digest = hashlib.sha256()
    for path in listing.files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()
