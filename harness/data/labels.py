"""Labels as the harness uses them: int64 class ids 0..K-1 for classification, float32 values of
shape (n,) or (n, k) for regression.

Class names (strings in a table, image folder names) become ids in sorted order, or in the order of
`data.classes`; the mapping is taken over every part at once, so test and train agree on ids even
when one of them misses a class. Numeric labels are used as ids as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from harness.data.parts import DataProblem, Part
from harness.data.tensors import Task


@dataclass(frozen=True)
class EncodedLabels:
    """Each part's labels (None where it has none), the class count and the class names in id order."""

    labels: dict[str, np.ndarray | None]
    num_classes: int | None
    classes: list[str] | None


def encode_labels(
    parts: Mapping[str, Part], task: Task, classes: list[str] | None, num_classes: int | None
) -> EncodedLabels:
    """Every part's labels as class ids or regression values; DataProblem naming the part otherwise."""
    labelled = {name: part for name, part in parts.items() if part.labels is not None}
    if not labelled and not any(part.class_names for part in parts.values()):
        return EncodedLabels({name: None for name in parts}, None, None)
    if task == "regression":
        values = {name: _values(part) for name, part in labelled.items()}
        widths = {v.shape[1:] for v in values.values()}
        if len(widths) > 1:
            raise DataProblem(
                next(iter(labelled.values())).label_key,
                f"one number of label columns in every part, got {widths}",
            )
        return EncodedLabels({name: values.get(name) for name in parts}, None, None)
    kinds = {p.labels.dtype.kind for p in labelled.values() if p.labels is not None}
    if kinds & set("USO") or any(p.class_names for p in parts.values()):
        return _from_names(parts, classes, num_classes)
    ids = {name: _class_ids(part) for name, part in labelled.items()}
    top = max((int(v.max()) + 1 for v in ids.values() if v.size), default=0)
    count = num_classes or (len(classes) if classes else max(top, 1))
    if top > count:
        name = next(n for n, v in ids.items() if v.size and v.max() >= count)
        key = "data.num_classes" if num_classes else "data.classes"
        raise DataProblem(key, f"class ids 0..{count - 1}; {parts[name].where} has {int(ids[name].max())}")
    return EncodedLabels({name: ids.get(name) for name in parts}, count, list(classes) if classes else None)


def _from_names(
    parts: Mapping[str, Part], classes: list[str] | None, num_classes: int | None
) -> EncodedLabels:
    texts = {name: _texts(part) for name, part in parts.items() if part.labels is not None}
    shown = set().union(
        *(np.unique(t).tolist() for t in texts.values()), *(p.class_names for p in parts.values())
    )
    names = list(classes) if classes else sorted(shown)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(shown - set(index))
    if unknown:
        where = next(p.where for n, p in parts.items() if unknown[0] in (*p.class_names, *texts.get(n, ())))
        raise DataProblem("data.classes", f"every class among data.classes; {where} has {unknown[0]!r}")
    if num_classes is not None and num_classes < len(names):
        raise DataProblem(
            "data.num_classes", f"at least the {len(names)} classes the labels name, got {num_classes}"
        )
    ids: dict[str, np.ndarray | None] = {}
    for name in parts:
        if name in texts:
            unique, inverse = np.unique(texts[name], return_inverse=True)
            ids[name] = np.array([index[u] for u in unique.tolist()], dtype=np.int64)[inverse.reshape(-1)]
        else:
            ids[name] = None
    return EncodedLabels(ids, num_classes or len(names), names)


def _texts(part: Part) -> np.ndarray:
    labels = _one_per_row(part)
    if labels.dtype.kind == "O":
        for row, value in enumerate(labels.tolist()):
            if value is None or (isinstance(value, float) and value != value):
                raise DataProblem(
                    part.label_key,
                    f"a label in every row; {part.where} has none in row {row} (counting from 0)",
                )
    return labels.astype(str)


def _class_ids(part: Part) -> np.ndarray:
    labels = _one_per_row(part)
    if labels.dtype.kind == "b":
        return labels.astype(np.int64)
    if labels.dtype.kind not in "iuf":
        raise DataProblem(part.label_key, f"class ids or names; {part.where} has {labels.dtype} labels")
    if labels.dtype.kind == "f":
        bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            raise DataProblem(
                part.label_key,
                f"whole class ids 0..K-1 (for values set model.task: regression); {part.where} has "
                f"{labels[bad][0]!r}",
            )
    ids = labels.astype(np.int64)
    if ids.size and ids.min() < 0:
        raise DataProblem(part.label_key, f"class ids 0..K-1; {part.where} has {int(ids.min())}")
    return ids


def _one_per_row(part: Part) -> np.ndarray:
    assert part.labels is not None
    labels = part.labels
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataProblem(
            part.label_key,
            f"one class per example (for one-hot labels store the argmax); {part.where} has labels of "
            f"shape {list(labels.shape)}",
        )
    return labels


def _values(part: Part) -> np.ndarray:
    assert part.labels is not None
    labels = part.labels
    if labels.dtype.kind not in "biuf" or labels.ndim not in (1, 2):
        raise DataProblem(
            part.label_key,
            f"numbers, one value or one row per example (class names need model.task: classification); "
            f"{part.where} has {labels.dtype} labels of shape {list(labels.shape)}",
        )
    values = labels.astype(np.float32)
    if not np.isfinite(values).all():
        raise DataProblem(part.label_key, f"a finite value in every row; {part.where} has NaN or infinity")
    return values
