"""Request bodies and response rows of the HTTP targets: what goes over the wire, in one place.

Requests are encoded here, once, before load starts (`encode_requests`); the load generator only
sends the bytes. The wire formats (one request carries `rows_per_request` examples):

- json-instances: `{"instances": [e0, e1, ...]}`, one entry per example: the example's nested
  list for a one-input model, an object by input name for several (TF Serving's row format).
- json-columnar: `{"inputs": B}`: the batch's nested list for one input, an object
  input name -> batch for several (TF Serving's columnar format).
- npy: the body is one .npy file (numpy.lib.format), the (n, *shape) batch of the only input in
  its declared dtype; Content-Type application/x-npy.
- npz: an uncompressed .npz (a zip holding one .npy per input, named after it); Content-Type
  application/x-npz. Both binary formats are what `np.save` / `np.savez` write, so any client can
  produce them.
- template: the user's `request_template` with `{{instances}}`, `{{inputs}}` or
  `{{inputs.NAME}}` replaced by the JSON of the instances, the columnar inputs or one input.

The TorchServe handler (torchserve_handler.py, self-contained inside the .mar) decodes the first
four; tests check that it reads exactly what these encoders write. Responses are JSON; a dotted
`output_path` ("predictions", "outputs.0.probs") names where the per-example rows are.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.data.tensors import Batch, TensorSpec, as_batch, batch_len
from harness.serving.base import EncodedRequests
from harness.serving.wire import (
    JSON,
    LARGE_EXAMPLE_NUMBERS,
    NPY,
    NPZ,
    PLACEHOLDER,
    template_placeholders,
    template_problem,
)

# the distinct bodies of a load run are held in memory by every Locust process (and sent to each
# remote worker): beyond this total, the load cycles over the bodies encoded so far
MAX_BODIES_BYTES = 64 * 1024 * 1024


def model_batch(batch: Batch | np.ndarray, inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """`batch` under the model's input names, in their dtypes (as_batch). A one-input model takes a
    one-entry batch whatever its key, as the in-process runners do: the data's input may carry
    another name than the model's."""
    if len(inputs) == 1 and isinstance(batch, Mapping) and len(batch) == 1 and inputs[0].name not in batch:
        batch = {inputs[0].name: next(iter(batch.values()))}
    return as_batch(batch, inputs)


def example_numbers(spec: TensorSpec) -> int:
    return math.prod(spec.shape)


def auto_encoding(inputs: Sequence[TensorSpec]) -> str:
    """'binary' when an example of any input holds more than LARGE_EXAMPLE_NUMBERS numbers, else 'json'."""
    return "binary" if any(example_numbers(s) > LARGE_EXAMPLE_NUMBERS for s in inputs) else "json"


class RequestEncoder:
    """Turns a batch (input name -> array, rows first) into one request body."""

    encoding = ""  # what the report calls the format
    content_type = JSON

    def __init__(self, inputs: Sequence[TensorSpec]) -> None:
        self.inputs = tuple(inputs)

    def encode(self, batch: Batch) -> bytes:
        raise NotImplementedError


def _json_value(array: np.ndarray) -> Any:
    # tolist() gives Python floats (exactly the float32 value) and bools; json writes the shortest
    # repr that reads back to the same double, so a float32 survives the round trip bit for bit
    return np.asarray(array).tolist()


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


class JsonInstancesEncoder(RequestEncoder):
    encoding = "json-instances"

    def instances(self, batch: Batch) -> list[Any]:
        single = self.inputs[0].name if len(self.inputs) == 1 else None
        if single is not None:
            return list(_json_value(batch[single]))
        columns = {s.name: _json_value(batch[s.name]) for s in self.inputs}
        return [{name: column[i] for name, column in columns.items()} for i in range(batch_len(batch))]

    def encode(self, batch: Batch) -> bytes:
        return _json_bytes({"instances": self.instances(batch)})


class JsonColumnarEncoder(RequestEncoder):
    encoding = "json-columnar"

    def columns(self, batch: Batch) -> Any:
        if len(self.inputs) == 1:
            return _json_value(batch[self.inputs[0].name])
        return {s.name: _json_value(batch[s.name]) for s in self.inputs}

    def encode(self, batch: Batch) -> bytes:
        return _json_bytes({"inputs": self.columns(batch)})


class NpyEncoder(RequestEncoder):
    encoding = "npy"
    content_type = NPY

    def __init__(self, inputs: Sequence[TensorSpec]) -> None:
        super().__init__(inputs)
        if len(self.inputs) != 1:
            raise ValueError("a .npy body holds one input; use .npz for several")

    def encode(self, batch: Batch) -> bytes:
        spec = self.inputs[0]
        out = io.BytesIO()
        np.save(out, np.ascontiguousarray(batch[spec.name], dtype=spec.dtype), allow_pickle=False)
        return out.getvalue()


class NpzEncoder(RequestEncoder):
    encoding = "npz"
    content_type = NPZ

    def encode(self, batch: Batch) -> bytes:
        out = io.BytesIO()
        arrays: dict[str, Any] = {
            s.name: np.ascontiguousarray(batch[s.name], dtype=s.dtype) for s in self.inputs
        }
        np.savez(out, **arrays)  # uncompressed: zlib would cost the client and the server more than bytes
        return out.getvalue()


class TemplateEncoder(RequestEncoder):
    """The user's body template with the data's JSON in place of each placeholder."""

    encoding = "template"

    def __init__(self, inputs: Sequence[TensorSpec], template: str, content_type: str) -> None:
        super().__init__(inputs)
        problem = template_problem(template)
        if problem:
            raise ValueError(f"request_template: {problem}")
        names = {s.name for s in self.inputs}
        for name in template_placeholders(template):
            if name.startswith("inputs.") and name.removeprefix("inputs.") not in names:
                raise ValueError(
                    f"request_template: {{{{{name}}}}} names no input; the model takes "
                    f"{', '.join(s.describe() for s in self.inputs)}"
                )
        self.template = template
        self.content_type = content_type
        self._rows = JsonInstancesEncoder(self.inputs)
        self._columns = JsonColumnarEncoder(self.inputs)

    def encode(self, batch: Batch) -> bytes:
        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "instances":
                value = self._rows.instances(batch)
            elif name == "inputs":
                value = self._columns.columns(batch)
            else:
                value = _json_value(batch[name.removeprefix("inputs.")])
            return json.dumps(value, separators=(",", ":"), allow_nan=False)

        return PLACEHOLDER.sub(fill, self.template).encode()


def make_encoder(
    inputs: Sequence[TensorSpec],
    encoding: str,
    *,
    json_format: str = "instances",
    template: str | None = None,
    content_type: str = JSON,
) -> RequestEncoder:
    """The encoder for `encoding` ('json', 'binary' or 'auto'; ignored when a template is given).

    Binary is .npy for a one-input model, .npz for several."""
    if template is not None:
        return TemplateEncoder(inputs, template, content_type)
    if encoding == "auto":
        encoding = auto_encoding(inputs)
    if encoding == "binary":
        return NpyEncoder(inputs) if len(inputs) == 1 else NpzEncoder(inputs)
    if encoding != "json":
        raise ValueError(f"unknown encoding {encoding!r}; expected json, binary or auto")
    return JsonColumnarEncoder(inputs) if json_format == "columnar" else JsonInstancesEncoder(inputs)


def request_rows(total: int, rows_per_request: int) -> list[np.ndarray]:
    """Row indexes of each request: consecutive chunks covering every example once, the last one
    topped up from the start so that every request carries exactly `rows_per_request` rows."""
    count = max(1, math.ceil(total / rows_per_request))
    return [(i * rows_per_request + np.arange(rows_per_request)) % total for i in range(count)]


def encode_requests(
    encoder: RequestEncoder,
    batch: Batch,
    rows_per_request: int,
    *,
    output_path: str | None,
    output_width: int | None,
    max_bytes: int = MAX_BODIES_BYTES,
) -> EncodedRequests:
    """The load's request bodies over the examples of `batch`, encoded once.

    Stops once the bodies reach `max_bytes` (at least one body): the load then cycles over fewer
    distinct examples, which changes nothing for a model whose cost does not depend on the values."""
    total = batch_len(batch)
    if total == 0:
        raise ValueError("no examples to encode requests from")
    if rows_per_request < 1:
        raise ValueError(f"rows_per_request must be at least 1, got {rows_per_request}")
    bodies: list[bytes] = []
    size = 0
    for rows in request_rows(total, rows_per_request):
        if bodies and size >= max_bytes:
            break
        body = encoder.encode({name: array[rows] for name, array in batch.items()})
        bodies.append(body)
        size += len(body)
    return EncodedRequests(
        content_type=encoder.content_type,
        bodies=tuple(bodies),
        rows_per_body=rows_per_request,
        encoding=encoder.encoding,
        output_path=output_path,
        output_width=output_width,
    )


# ---- responses --------------------------------------------------------------------------------


def value_at_path(payload: Any, path: str) -> Any:
    """The value at a dotted path: object keys, or list indexes ('outputs.0.probs'); KeyError if absent."""
    value = payload
    walked: list[str] = []
    for key in path.split("."):
        walked.append(key)
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.lstrip("-").isdigit() and -len(value) <= int(key) < len(value):
            value = value[int(key)]
        else:
            raise KeyError(f"the response has nothing at {'.'.join(walked)!r}")
    return value


def as_output_rows(value: Any, *, rows: int, width: int) -> np.ndarray:
    """float32 (rows, width) from what an output path yields: a list of rows (nested further is
    flattened per example), or, for one example, its flat row; a flat list of `rows` numbers when
    width is 1. ValueError says what was found."""
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expected rows of numbers, got {str(value)[:80]}: {exc}") from None
    if array.ndim == 0 and rows == 1 and width == 1:
        return array.reshape(1, 1)
    if array.ndim == 1:
        if width == 1 and array.shape[0] == rows:
            return array.reshape(rows, 1)
        if rows == 1 and array.shape[0] == width:
            return array.reshape(1, width)
    elif array.ndim >= 2 and array.shape[0] == rows:
        array = array.reshape(rows, -1)
        if array.shape[1] == width:
            return array
    raise ValueError(f"expected {rows} row(s) of {width} value(s), got shape {list(array.shape)}")


def rows_at_path(payload: Any, path: str, *, rows: int, width: int) -> np.ndarray:
    """The float32 (rows, width) outputs at `path` of a JSON response; ValueError if not there."""
    try:
        value = value_at_path(payload, path)
    except KeyError as exc:
        raise ValueError(f"{exc.args[0]} (output_path {path!r})") from None
    return as_output_rows(value, rows=rows, width=width)


def tfserving_rows(
    payload: Any, *, rest_format: str, output_name: str | None, rows: int, width: int
) -> np.ndarray:
    """float32 (rows, width) from a TF Serving REST predict response.

    Row format answers `{"predictions": [...]}`: per example, the output's value, or an object by
    output name when the signature has several outputs. Columnar answers `{"outputs": value}` or
    `{"outputs": {name: value}}`. `output_name` picks one of several outputs."""
    if not isinstance(payload, Mapping):
        raise ValueError("the response is not a JSON object")
    key = "predictions" if rest_format == "row" else "outputs"
    if key not in payload:
        raise ValueError(f"the response has no {key!r}: {str(payload)[:120]}")
    value = payload[key]
    if rest_format == "row" and isinstance(value, list) and value and isinstance(value[0], Mapping):
        value = [_pick(example, output_name) for example in value]
    elif rest_format == "columnar" and isinstance(value, Mapping):
        value = _pick(value, output_name)
    return as_output_rows(value, rows=rows, width=width)


def _pick(outputs: Mapping[str, Any], name: str | None) -> Any:
    if name is not None and name in outputs:
        return outputs[name]
    if name is None and len(outputs) == 1:
        return next(iter(outputs.values()))
    wanted = f"output {name!r}" if name else "one output"
    raise ValueError(f"the model returns outputs {sorted(outputs)}; expected {wanted}")


def tfserving_output_path(rest_format: str, output_name: str | None, multi_output: bool) -> str:
    """Where a TF Serving response has one entry per example, for the load generator's check."""
    if rest_format == "row":
        return "predictions"
    return f"outputs.{output_name}" if multi_output and output_name else "outputs"
