"""The scenario's `data:` block: where the evaluation data comes from and how it is split.

One model per kind (npz, table, images, python, synthetic), a union discriminated by `kind`, so the
JSON Schema offers each kind's own keys. Errors come out as `data.<key>` (pydantic would put the
kind into the location, `data.npz.labels`, which is no key of the file). Paths are relative to the
scenario file. Light: pydantic only; the readers live in `harness.data`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, WrapValidator, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from harness.data.tensors import DTYPES
from harness.scenario.bounds import MAX_DIM, MAX_SEED, StrictModel

DATA_KINDS = ("npz", "table", "images", "python", "synthetic")
MAX_EXAMPLES = 10_000_000  # rows of one split; ImageNet's train set is 1.3M
MAX_SYNTHETIC = 1_000_000  # generated examples; the bytes they take are checked by check_data
MAX_CLASSES = 1_000_000
MAX_IMAGE_SIDE = 8192
MAX_INPUTS = 16  # as model.inputs
MAX_VALUE = 1e9  # bounds of synthetic value ranges and of image mean/std
SPLIT_PLACEHOLDER = "{split}"  # in npz array names: replaced by test, train or calibration
PYTHON_TARGET = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"

Count = Annotated[int, Field(ge=1, le=MAX_EXAMPLES)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class DataKeyError(ValueError):
    """A cross-field problem of the block, reported at `data.<key>` rather than at `data`."""

    def __init__(self, key: str, expected: str) -> None:
        super().__init__(expected)
        self.key = key


class SplitSpec(StrictModel):
    """Split one source (data.path, or a python function's arrays) into test and train."""

    test_size: Count | Fraction = Field(
        default=0.25,
        description=f"The test part: a fraction between 0 and 1 (exclusive), or a count of examples "
        f"(1 to {MAX_EXAMPLES:,}). The rest is train.",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description=f"Seed of the split (0 to {MAX_SEED}); default data.seed.",
    )
    stratify: bool = Field(
        default=True,
        description="Classification: each class is split in the same proportion. Ignored for regression.",
    )

    @field_validator("test_size", mode="before")
    @classmethod
    def _fraction_or_count(cls, value: Any) -> Any:
        # one message instead of one per member of the union
        fraction = isinstance(value, float) and 0.0 < value < 1.0
        count = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_EXAMPLES
        if not (fraction or count):
            raise ValueError(f"a fraction between 0 and 1 (exclusive) or a count from 1 to {MAX_EXAMPLES:,}")
        return value


class _LabelledData(StrictModel):
    """Keys shared by the kinds that carry labels."""

    max_examples: int | None = Field(
        default=None,
        ge=1,
        le=MAX_EXAMPLES,
        description="Evaluate on at most this many test examples: a seeded subsample (stratified by "
        f"class for classification), kept in file order. 1 to {MAX_EXAMPLES:,}.",
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=MAX_SEED,
        description=f"Seeds the split, the calibration count and max_examples draws (0 to {MAX_SEED}).",
    )
    num_classes: int | None = Field(
        default=None,
        ge=2,
        le=MAX_CLASSES,
        description="Classification: the number of classes, when the labels do not show every class "
        "(default: the largest class id + 1, or the number of class names).",
    )
    classes: list[str] | None = Field(
        default=None,
        min_length=2,
        max_length=MAX_CLASSES,
        description="Classification: class names in id order. Named labels (strings, image folders) map "
        "to their position here (default: sorted order); numeric ids are named by it in the report.",
    )

    @model_validator(mode="after")
    def _classes_agree(self) -> _LabelledData:
        if self.classes is not None:
            if len(set(self.classes)) != len(self.classes):
                raise DataKeyError("classes", "distinct class names")
            if self.num_classes is not None and self.num_classes != len(self.classes):
                raise DataKeyError("num_classes", f"{len(self.classes)}, the length of data.classes")
        return self


_PATH = "One file or folder split into test and train by data.split (instead of data.test)."
_TEST = "The evaluation data (a file or folder of this kind): accuracy, fidelity and load requests."
_TRAIN = "Training data for recipes that fine-tune or distil (optional)."
_CALIBRATION = (
    "Calibration data for PTQ and observers: a file or folder, or a count of examples drawn (seeded, "
    "stratified) from train. Default: recipes calibrate on train."
)


class _FileData(_LabelledData):
    """Keys shared by the kinds read from files: either test (+ train), or path + split."""

    path: str | None = Field(default=None, description=_PATH)
    split: SplitSpec | None = Field(default=None, description="How data.path is split into test and train.")
    test: str | None = Field(default=None, description=_TEST)
    train: str | None = Field(default=None, description=_TRAIN)
    calibration: str | Count | None = Field(default=None, description=_CALIBRATION)

    @model_validator(mode="after")
    def _one_layout(self) -> _FileData:
        if self.path is not None:
            if self.split is None:
                raise DataKeyError(
                    "split", "a split: {test_size, seed, stratify} with data.path; or name the file data.test"
                )
            for key in ("test", "train"):
                if getattr(self, key) is not None:
                    raise DataKeyError(key, "no data.test or data.train with data.path (split by data.split)")
        elif self.split is not None:
            raise DataKeyError("split", "data.split only with data.path (data.test is not split further)")
        elif self.test is None:
            raise DataKeyError("test", "a test file or folder, or data.path with data.split")
        if isinstance(self.calibration, int) and self.train is None and self.split is None:
            raise DataKeyError(
                "calibration", "a file when there is no train split (a count is drawn from train)"
            )
        return self


class NpzSpec(_FileData):
    """Arrays in .npz files (numpy.savez): one array per model input, and one of labels."""

    kind: Literal["npz"] = Field(description="Arrays in .npz files.")
    inputs: str | Annotated[dict[str, str], Field(min_length=1, max_length=MAX_INPUTS)] = Field(
        description="The array of a one-input model, or a mapping of model input name to array name. "
        f"Names may hold {SPLIT_PLACEHOLDER}, replaced by test, train or calibration, so one file holding "
        "x_train and x_test serves as both data.test and data.train."
    )
    labels: str | None = Field(
        description="The array of labels (class ids or names, or regression values); null for "
        "unlabelled data (latency and fidelity only). May hold {split}. A calibration file may lack it."
    )

    @model_validator(mode="after")
    def _placeholder_needs_files(self) -> NpzSpec:
        names = [self.inputs] if isinstance(self.inputs, str) else list(self.inputs.values())
        if self.path is not None and any(SPLIT_PLACEHOLDER in n for n in [*names, self.labels or ""]):
            raise DataKeyError("inputs", f"array names without {SPLIT_PLACEHOLDER} with data.path")
        return self


class TableSpec(_FileData):
    """A CSV or Parquet table (read with pandas): feature columns and a label column."""

    kind: Literal["table"] = Field(description="A CSV or Parquet table.")
    format: Literal["auto", "csv", "parquet"] = Field(
        default="auto", description="auto: parquet for .parquet/.pq files, else csv."
    )
    separator: str = Field(default=",", min_length=1, max_length=1, description="CSV field separator.")
    inputs: list[str] | Annotated[dict[str, list[str]], Field(min_length=1, max_length=MAX_INPUTS)] | None = (
        Field(
            default=None,
            description="Feature columns of a one-input model (a list), or a mapping of model input name "
            "to its columns. Default: every column but the labels, in file order.",
        )
    )
    labels: str | list[str] | None = Field(
        description="The label column (class ids or names, or a regression value), several columns for "
        "a regression with several outputs, or null for unlabelled data. A calibration file may lack it."
    )
    dtype: Literal[DTYPES] | None = Field(  # type: ignore[valid-type]  # as schema.InputDecl: a tuple of names
        default=None,
        description="Feature element type, unless model.inputs declares it. Default: the columns' own "
        "(float64 read as float32).",
    )


class ImagesSpec(_FileData):
    """A folder with one subfolder of images per class (read with Pillow)."""

    kind: Literal["images"] = Field(description="A folder of class subfolders of images.")
    input: str | None = Field(
        default=None, description="Model input name; default model.inputs[0].name, else 'inputs'."
    )
    size: list[Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)]] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description=f"[height, width] every image is resized to (1 to {MAX_IMAGE_SIDE}). Default: from "
        "model.inputs[0].shape and data.layout.",
    )
    resize: Literal["stretch", "crop"] = Field(
        default="stretch",
        description="stretch: resize to size; crop: scale the shorter side to fit, then crop the centre.",
    )
    color: Literal["rgb", "grayscale"] = Field(default="rgb", description="3 channels (rgb) or 1.")
    layout: Literal["NHWC", "NCHW"] = Field(
        default="NHWC", description="NHWC (TensorFlow's order) or NCHW (PyTorch's) of each batch."
    )
    dtype: Literal["float32", "float16", "uint8"] = Field(default="float32", description="Element type.")
    scale: Literal["unit", "symmetric", "raw"] = Field(
        default="unit", description="Pixel values: unit [0, 1], symmetric [-1, 1] or raw 0..255."
    )
    mean: list[Annotated[float, Field(ge=-MAX_VALUE, le=MAX_VALUE)]] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description="Per-channel mean subtracted after scaling (one value, or one per channel).",
    )
    std: list[Annotated[float, Field(gt=0, le=MAX_VALUE)]] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description="Per-channel standard deviation divided by, after the mean (one value, or one per "
        "channel).",
    )

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1

    @model_validator(mode="after")
    def _pixels_are_consistent(self) -> ImagesSpec:
        if self.dtype == "uint8" and (self.scale != "raw" or self.mean or self.std):
            raise DataKeyError("scale", "raw and no mean/std for dtype uint8 (0..255 fits no other scaling)")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and len(values) not in (1, self.channels):
                raise DataKeyError(key, f"1 or {self.channels} values for color {self.color}")
        return self


class PythonDataSpec(_LabelledData):
    """A function returning the data; importing its module runs user code, as a conftest.py does."""

    kind: Literal["python"] = Field(description="A Python function returning the data.")
    function: str = Field(
        pattern=PYTHON_TARGET,
        description="'pkg.module:function', resolved with the scenario's folder first on sys.path. Called "
        "without arguments, it returns (inputs, labels), inputs alone (unlabelled), or a dict of splits "
        "{'test': ..., 'train': ..., 'calibration': ...} of those; inputs are an array (one-input "
        "model) or a dict of model input name to array.",
    )

    @field_validator("function", mode="before")
    @classmethod
    def _target_syntax(cls, value: Any) -> Any:
        # the pattern stays in the JSON Schema; this says in words what it means
        if not isinstance(value, str) or not re.match(PYTHON_TARGET, value):
            raise ValueError("'pkg.module:function' (a dotted module path, a colon, a function name)")
        return value

    split: SplitSpec | None = Field(
        default=None,
        description="Split the returned arrays into test and train. Without it, they are all test data.",
    )
    calibration: Count | None = Field(
        default=None,
        description="A count of examples drawn (seeded, stratified) from train for calibration; or return "
        "a 'calibration' split. Default: recipes calibrate on train.",
    )


class SyntheticInput(StrictModel):
    """One generated input: its shape, dtype and value range."""

    name: str = Field(description="Model input name.")
    shape: list[Annotated[int, Field(ge=1, le=MAX_DIM)]] = Field(
        max_length=8, description=f"Shape of one example, without the batch dimension (each 1 to {MAX_DIM})."
    )
    dtype: Literal[DTYPES] = Field(  # type: ignore[valid-type]  # as schema.InputDecl: a tuple of names
        default="float32", description="Element type: " + ", ".join(DTYPES) + "."
    )
    low: float = Field(default=0.0, ge=-MAX_VALUE, le=MAX_VALUE, description="Smallest value.")
    high: float | None = Field(
        default=None,
        ge=-MAX_VALUE,
        le=MAX_VALUE,
        description="Values are uniform in [low, high); default low + 1 for floats, low + 10 for integers.",
    )

    @model_validator(mode="after")
    def _range(self) -> SyntheticInput:
        if self.high is not None and self.high <= self.low:
            raise DataKeyError("high", f"a value greater than low ({self.low:g})")
        return self


class SyntheticSpec(StrictModel):
    """Seeded random inputs with no labels: latency and fidelity only, no accuracy."""

    kind: Literal["synthetic"] = Field(description="Seeded random inputs without labels.")
    examples: int = Field(
        default=256, ge=1, le=MAX_SYNTHETIC, description=f"Test examples generated (1 to {MAX_SYNTHETIC:,})."
    )
    inputs: list[SyntheticInput] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_INPUTS,
        description="The inputs to generate; default model.inputs (values in [0, 1) or 0..9).",
    )
    calibration: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SYNTHETIC,
        description="Random examples generated for calibrating recipes (PTQ ranges from noise are poor).",
    )
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description=f"Seed of the values (0 to {MAX_SEED}).")


def _data_key_errors(value: Any, handler: Any) -> Any:
    """Re-raise the union's errors at `data.<key>`: drop the kind pydantic puts in the location,
    and move a DataKeyError from `data` to its key."""
    try:
        return handler(value)
    except ValidationError as exc:
        raw = value if isinstance(value, dict) else {}
        details = [_at_key(error, raw) for error in exc.errors()]
        raise ValidationError.from_exception_data(exc.title, details) from None


def _at_key(error: Any, raw: dict[str, Any]) -> InitErrorDetails:
    loc = tuple(error["loc"])
    if loc and loc[0] in DATA_KINDS:
        loc = loc[1:]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        if "kind" not in raw:
            return InitErrorDetails(type="missing", loc=("kind",), input=raw)
        kinds = PydanticCustomError("data_kind", "one of " + ", ".join(DATA_KINDS))
        return InitErrorDetails(type=kinds, loc=("kind",), input=raw["kind"])
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, DataKeyError):
        where: Any = raw
        for part in loc:  # the mapping the error is about, to quote the offending value
            where = where[part] if isinstance(where, dict | list) and _has(where, part) else {}
        got = where.get(cause.key, where) if isinstance(where, dict) else where
        return InitErrorDetails(
            type=PydanticCustomError("data_key", str(cause)), loc=(*loc, cause.key), input=got
        )
    return InitErrorDetails(type=error["type"], loc=loc, input=error["input"], ctx=error.get("ctx", {}))


def _has(container: dict[str, Any] | list[Any], part: Any) -> bool:
    if isinstance(container, dict):
        return part in container
    return isinstance(part, int) and 0 <= part < len(container)


DataSpec = Annotated[
    NpzSpec | TableSpec | ImagesSpec | PythonDataSpec | SyntheticSpec,
    Field(discriminator="kind"),
    WrapValidator(_data_key_errors),
]
FileDataSpec = NpzSpec | TableSpec | ImagesSpec
