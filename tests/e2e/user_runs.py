"""Running a user's scenario and checking its accuracy the way the user would, with scikit-learn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from sklearn.metrics import accuracy_score

from harness.api import TEST_LABELS_FILE, run_scenario
from harness.results import RunResult

# pipeline tests, not statistics: short windows, a loose stability limit, few requests suffice
TINY_LOAD = {
    "users": 1,
    "warmup_s": 0.3,
    "measure_s": 1.0,
    "validity": {"max_spread": 5.0, "min_requests": 20},
}


def run_user_scenario(workspace: Path, name: str, scenario: dict[str, Any], tmp_path: Path) -> RunResult:
    """Write `scenario` (in-process unless it says otherwise) next to the user's files and run it."""
    path = workspace / f"{name}.yaml"
    body = {"name": name, "serving": {"target": "inprocess"}, "load": TINY_LOAD, **scenario}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return run_scenario(path, reports_dir=tmp_path / "reports", baselines_dir=tmp_path / "baselines")


def served_accuracy_is_sklearns(
    result: RunResult, user_labels: np.ndarray | None, *, same_order: bool = True
) -> None:
    """Every variant's reported accuracy is scikit-learn's on the outputs the target answered and the
    labels the harness read, which are the user's (in file order, or per class for an image folder;
    None: a split the harness drew, so only the harness knows the order)."""
    read = np.load(Path(result.run_dir) / "inputs" / TEST_LABELS_FILE)
    if user_labels is None:
        pass
    elif same_order:
        assert np.array_equal(read, user_labels)
    else:
        assert np.array_equal(np.bincount(read, minlength=10), np.bincount(user_labels, minlength=10))
    for variant in result.variants:
        m = variant.reported
        assert m is not None
        outputs = np.load(Path(result.run_dir) / m.outputs_file)
        assert outputs.shape == (len(read), 10)
        assert m.metrics["accuracy"] == pytest.approx(accuracy_score(read, outputs.argmax(axis=1)), abs=1e-12)


def write_image_folder(root: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """uint8 8x8 grayscale PNGs in `root/<split>/<label>/<i>.png`, one subfolder per class."""
    for split, (images, labels) in splits.items():
        for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.reshape(8, 8)).save(folder / f"{i}.png")
