"""The images kind on real PNG folders written with Pillow: layouts, dtypes, scaling, resizing,
class ids from folders, and errors for files that are not images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.unit.data_scenarios import load, load_error


def _pixels(seed: int, height: int = 4, width: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _folder(root: Path, counts: dict[str, int], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """PNG files root/<class>/<i>.png; the pixels written, per class, in file order."""
    written: dict[str, list[np.ndarray]] = {}
    for k, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        written[name] = [_pixels(seed + 100 * k + i) for i in range(count)]
        for i, pixels in enumerate(written[name]):
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return written


RAW = {"kind": "images", "test": "imgs", "size": [4, 4], "dtype": "uint8", "scale": "raw"}


def test_nhwc_uint8_raw_pixels_and_class_ids_from_sorted_folders(tmp_path):
    written = _folder(tmp_path / "imgs", {"dog": 3, "cat": 4})
    (tmp_path / "imgs" / "cat" / ".DS_Store").write_bytes(b"\0")  # hidden files are skipped
    data = load(tmp_path, RAW)
    assert data.x_test.shape == (7, 4, 4, 3)
    assert data.x_test.dtype == np.uint8
    assert data.y_test.tolist() == [0, 0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(data.x_test[0], written["cat"][0])
    np.testing.assert_array_equal(data.x_test[6], written["dog"][2])
    described = data.describe()
    assert described["classes"] == ["cat", "dog"]
    assert described["files"]["test"]["images"] == 7
    assert data.inputs[0].describe() == "inputs: uint8[4, 4, 3]"


def test_nchw_float32_grayscale_scaled_to_unit_with_size_from_model_inputs(tmp_path):
    _folder(tmp_path / "imgs", {"a": 2, "b": 2})
    spec = {"kind": "images", "test": "imgs", "layout": "NCHW", "color": "grayscale"}
    data = load(tmp_path, spec, inputs=[{"name": "image", "shape": [1, 4, 4]}])
    assert data.inputs[0].describe() == "image: float32[1, 4, 4]"
    gray = np.asarray(Image.open(tmp_path / "imgs" / "a" / "0.png").convert("L"), dtype=np.float32) / 255
    np.testing.assert_allclose(data.x_test[0, 0], gray, rtol=1e-6)
    assert data.x_test.min() >= 0.0
    assert data.x_test.max() <= 1.0


def test_symmetric_scale_then_mean_and_std_per_channel(tmp_path):
    written = _folder(tmp_path / "imgs", {"a": 1, "b": 1})
    spec = {"kind": "images", "test": "imgs", "size": [4, 4], "scale": "symmetric", "mean": [0.1, 0.2, 0.3]}
    data = load(tmp_path, {**spec, "std": [0.5]})
    expected = (written["a"][0].astype(np.float32) / 127.5 - 1 - np.array([0.1, 0.2, 0.3], np.float32)) / 0.5
    np.testing.assert_allclose(data.x_test[0], expected, rtol=1e-5, atol=1e-6)


def test_crop_keeps_the_centre_and_stretch_resizes_the_whole_image(tmp_path):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "b").mkdir()
    wide = np.zeros((4, 8, 3), dtype=np.uint8)
    wide[:, 4:] = 255  # left half black, right half white
    Image.fromarray(wide).save(tmp_path / "imgs" / "a" / "wide.png")
    Image.fromarray(wide).save(tmp_path / "imgs" / "b" / "wide.png")
    crop = load(tmp_path, {**RAW, "resize": "crop"}).x_test[0, :, :, 0]
    # the centre 4 columns of 8: two black, two white
    assert crop[:, :2].max() == 0
    assert crop[:, 2:].min() == 255
    assert load(tmp_path, {**RAW, "size": [2, 3]}).x_test.shape == (2, 2, 3, 3)


def test_train_and_test_folders_agree_on_ids_and_empty_folders_count_as_classes(tmp_path):
    _folder(tmp_path / "train", {"ant": 2, "bee": 2, "cow": 2})
    _folder(tmp_path / "test", {"bee": 2, "cow": 1}, seed=50)
    (tmp_path / "test" / "ant").mkdir()
    data = load(tmp_path, {**RAW, "test": "test", "train": "train"})
    assert data.y_test.tolist() == [1, 1, 2]
    assert data.y_train.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.num_classes == 3
    ordered = load(tmp_path, {**RAW, "test": "test", "train": "train", "classes": ["cow", "bee", "ant"]})
    assert ordered.y_test.tolist() == [1, 1, 0]
    assert "data.classes: expected every class among data.classes;" in load_error(
        tmp_path, {**RAW, "test": "test", "classes": ["bee", "cow"]}
    )


def test_one_folder_split_stratified_with_calibration_and_max_examples(tmp_path):
    _folder(tmp_path / "all", {"x": 8, "y": 4})
    spec = {
        **RAW,
        "test": None,
        "path": "all",
        "split": {"test_size": 0.5},
        "calibration": 3,
        "max_examples": 3,
    }
    data = load(tmp_path, spec)
    assert np.bincount(data.y_train).tolist() == [4, 2]
    assert np.bincount(data.y_test).tolist() == [2, 1], "max_examples keeps the class mix"
    assert len(data.calibration) == 3


def test_fingerprint_changes_when_one_pixel_changes(tmp_path):
    written = _folder(tmp_path / "imgs", {"a": 2, "b": 2})
    before = load(tmp_path, RAW)
    pixels = written["b"][1].copy()
    pixels[3, 2, 1] ^= 1
    Image.fromarray(pixels).save(tmp_path / "imgs" / "b" / "1.png")
    after = load(tmp_path, RAW)
    assert after.fingerprint() != before.fingerprint()
    assert after.describe()["files"]["test"]["sha256"] != before.describe()["files"]["test"]["sha256"]


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        (lambda root: (root / "a" / "notes.txt").write_text("hello"), "Pillow cannot read"),
        (lambda root: (root / "b" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken"), "Pillow cannot read"),
        (lambda root: (root / "README.md").write_text("x"), "expected only class subfolders in"),
    ],
)
def test_files_that_are_not_images_are_errors_naming_them(tmp_path, spoil, expected):
    _folder(tmp_path / "imgs", {"a": 1, "b": 1})
    spoil(tmp_path / "imgs")
    message = load_error(tmp_path, RAW)
    assert message.split(": ")[1] == "data.test"
    assert expected in message
    assert "imgs" in message


def test_missing_or_empty_folders_are_errors(tmp_path):
    assert "data.test: expected a folder with one subfolder of images per class;" in load_error(tmp_path, RAW)
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    assert "data.test: expected image files in the class subfolders of" in load_error(tmp_path, RAW)
