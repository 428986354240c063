"""The gRPC path of the tfserving target: PredictionService.Predict with hand-built TensorProtos.

tensorflow_serving.apis imports TensorFlow's protos, and with them TensorFlow itself, so this
module is imported only when `serving.options.protocol: grpc` is chosen, and TensorFlow is
imported the harness way first (TF_USE_LEGACY_KERAS before the first import).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.compression.tensorflow.tf_import import import_tf
from harness.errors import RunError

DT_FLOAT, DT_INT32, DT_INT64 = 1, 3, 9  # tensorflow/core/framework/types.proto
_KINDS = {DT_FLOAT: ("<f4", "float_val"), DT_INT32: ("<i4", "int_val"), DT_INT64: ("<i8", "int64_val")}


def fill_float_tensor(tensor: Any, rows: np.ndarray) -> None:
    """Fill a TensorProto (float32, shape of `rows`) without TensorFlow's make_tensor_proto."""
    tensor.dtype = DT_FLOAT
    for size in rows.shape:
        tensor.tensor_shape.dim.add(size=int(size))
    tensor.tensor_content = np.ascontiguousarray(rows, dtype="<f4").tobytes()


def tensor_to_array(tensor: Any) -> np.ndarray:
    """A numeric TensorProto as a numpy array (packed tensor_content or the typed value lists)."""
    if tensor.dtype not in _KINDS:
        raise RunError(f"tfserving returned a tensor of dtype enum {tensor.dtype}; expected float32 or int")
    dtype, field = _KINDS[tensor.dtype]
    shape = [int(d.size) for d in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        values = np.frombuffer(tensor.tensor_content, dtype=dtype)
    else:
        values = np.asarray(getattr(tensor, field), dtype=dtype)
    return values.reshape(shape)


class TfServingGrpcClient:
    """A channel and PredictionService stub for one model's `serving_default` signature."""

    def __init__(self, target: str, *, model_name: str, input_name: str) -> None:
        import_tf()
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        self._grpc = grpc
        self._predict_pb2 = predict_pb2
        self.target = target
        self.model_name = model_name
        self.input_name = input_name
        # never through an http(s)_proxy from the environment, like the REST session
        self._channel = grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def predict(self, rows: np.ndarray, *, timeout_s: float) -> np.ndarray:
        """The model's single output for `rows` (float32, one row per instance)."""
        request = self._predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = "serving_default"
        fill_float_tensor(request.inputs[self.input_name], rows)
        try:
            response = self._stub.Predict(request, timeout=timeout_s)
        except self._grpc.RpcError as exc:
            raise RunError(
                f"tfserving gRPC Predict at {self.target} failed: {exc.code()}: {exc.details()}"
            ) from exc
        outputs = dict(response.outputs)
        if len(outputs) != 1:
            raise RunError(f"tfserving returned outputs {sorted(outputs)}; expected exactly one")
        return tensor_to_array(next(iter(outputs.values())))

    def close(self) -> None:
        self._channel.close()
