"""The gRPC path of the tfserving target: PredictionService.Predict with hand-built TensorProtos.

Every named input goes as raw bytes (`tensor_content`) in its own dtype, so large tensors cost
no text encoding. tensorflow_serving.apis imports TensorFlow's protos, and with them TensorFlow
itself, so this module is imported only when `serving.options.protocol: grpc` is chosen, and
TensorFlow is imported the harness way first (TF_USE_LEGACY_KERAS before the first import).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from harness.compression.tensorflow.tf_import import import_tf
from harness.errors import RunError

# tensorflow/core/framework/types.proto: DataType enum values, and the TensorProto field that
# holds values of that type when they are not packed in tensor_content
DATA_TYPES = {
    "float32": 1,  # DT_FLOAT
    "float64": 2,  # DT_DOUBLE
    "int32": 3,  # DT_INT32
    "uint8": 4,  # DT_UINT8
    "int8": 6,  # DT_INT8
    "int64": 9,  # DT_INT64
    "bool": 10,  # DT_BOOL
    "float16": 19,  # DT_HALF
}
_VALUE_FIELDS = {
    1: "float_val",
    2: "double_val",
    3: "int_val",
    4: "int_val",
    6: "int_val",
    9: "int64_val",
    10: "bool_val",
    19: "half_val",  # the float16 bit patterns, one per int32
}
_DTYPES = {enum: np.dtype(name).newbyteorder("<") for name, enum in DATA_TYPES.items()}


def fill_tensor(tensor: Any, array: np.ndarray) -> None:
    """Fill a TensorProto with `array` (shape, dtype, little-endian bytes), without TensorFlow's
    make_tensor_proto."""
    array = np.asarray(array)
    name = array.dtype.name
    if name not in DATA_TYPES:
        raise RunError(
            f"tfserving gRPC: no tensor type for {name} input; expected one of {', '.join(DATA_TYPES)}"
        )
    tensor.dtype = DATA_TYPES[name]
    for size in array.shape:
        tensor.tensor_shape.dim.add(size=int(size))
    tensor.tensor_content = np.ascontiguousarray(array, dtype=_DTYPES[tensor.dtype]).tobytes()


def tensor_to_array(tensor: Any) -> np.ndarray:
    """A numeric TensorProto as a numpy array (packed tensor_content or the typed value lists)."""
    if tensor.dtype not in _DTYPES:
        raise RunError(f"tfserving returned a tensor of dtype enum {tensor.dtype}; expected a numeric type")
    dtype = _DTYPES[tensor.dtype]
    shape = [int(d.size) for d in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        values = np.frombuffer(tensor.tensor_content, dtype=dtype)
    elif tensor.dtype == DATA_TYPES["float16"]:
        values = np.asarray(tensor.half_val, dtype=np.uint16).view(np.float16)
    else:
        values = np.asarray(getattr(tensor, _VALUE_FIELDS[tensor.dtype]), dtype=dtype)
    count = int(np.prod(shape)) if shape else 1
    if values.size == 1 and count > 1:  # a proto may hold one value for a tensor filled with it
        values = np.full(count, values[0], dtype=dtype)
    return values.reshape(shape)


def pick_output(outputs: Mapping[str, Any], name: str | None) -> Any:
    """The output named `name`, or the only one when `name` is None."""
    if name is not None and name in outputs:
        return outputs[name]
    if name is None and len(outputs) == 1:
        return next(iter(outputs.values()))
    wanted = f"output {name!r}" if name else "exactly one output"
    raise RunError(f"tfserving returned outputs {sorted(outputs)}; expected {wanted}")


class TfServingGrpcClient:
    """A channel and PredictionService stub for one model's `serving_default` signature."""

    def __init__(self, target: str, *, model_name: str) -> None:
        import_tf()
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        self._grpc = grpc
        self._predict_pb2 = predict_pb2
        self.target = target
        self.model_name = model_name
        # never through an http(s)_proxy from the environment, like the REST session
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.enable_http_proxy", 0),
                # a batch of images is far beyond gRPC's 4 MiB default; TF Serving accepts up to 2 GiB
                ("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", -1),
            ],
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def predict(
        self, inputs: Mapping[str, np.ndarray], *, output_name: str | None, timeout_s: float
    ) -> np.ndarray:
        """The model's output `output_name` (or its only one) for the named input arrays."""
        request = self._predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = "serving_default"
        for name, array in inputs.items():
            fill_tensor(request.inputs[name], array)
        try:
            response = self._stub.Predict(request, timeout=timeout_s)
        except self._grpc.RpcError as exc:
            raise RunError(
                f"tfserving gRPC Predict at {self.target} failed: {exc.code()}: {exc.details()}"
            ) from exc
        return tensor_to_array(pick_output(dict(response.outputs), output_name))

    def close(self) -> None:
        self._channel.close()
