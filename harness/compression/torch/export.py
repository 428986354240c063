"""Export a model to the served artifact (a torch.export .pt2 with a dynamic batch dimension) and
load served artifacts back.

.pt2 is the only format compressed models are served in: torchao-quantized models are silently
wrong under torch.jit.script (digits accuracy 97.8% -> 9.8%) and fail under torch.jit.trace, while
torch.export keeps the quantized tensor subclasses and loads back with plain `torch.export.load`
(which imports torchao by itself when the file holds its tensors). A PT2E int8 program calls
`quantized_decomposed` ops, whose library must be imported before loading: the artifact lists it
in `extra["imports"]`, which every loader (this runner, the TorchServe handler) imports first.
A user's TorchScript file is served as given, which is why `load_artifact_module` also reads it.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifacts import ServedArtifact
from harness.atomic import atomic_write_bytes
from harness.compression.torch.program import is_pt2e_quantized
from harness.compression.torch.quiet_import import import_torchao
from harness.compression.torch.stats import is_quantized
from harness.data.tensors import Batch, Signature, TensorSpec
from harness.errors import RunError, UserError
from harness.models.torch_io import example_inputs, model_outputs
from harness.models.torch_loader import (
    PT2E_OPS_MODULE,
    load_exported_program,
    load_torchscript,
    required_imports,
)

EXPORT_FILE = "model.pt2"


def export_program(module: Any, inputs: tuple[TensorSpec, ...]) -> Any:
    """torch.export `module` with example inputs built from `inputs` (zeros, a batch of 2) and the
    batch dimension of every input dynamic; UserError with the first line of export's complaint."""
    import torch

    if isinstance(module, torch.jit.ScriptModule):
        raise UserError(
            "a TorchScript module cannot be exported to .pt2: TorchScript files are served as given, "
            "in a variant without steps"
        )
    # a torch.export GraphModule refuses eval(): it was exported in the mode it runs in
    with contextlib.suppress(NotImplementedError):
        module.eval()
    batch = torch.export.Dim("batch", min=1)
    try:
        return torch.export.export(
            module, example_inputs(inputs), dynamic_shapes=tuple({0: batch} for _ in inputs)
        )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"torch.export failed for {type(module).__name__} (served models are .pt2 programs with a "
            f"dynamic batch dimension, called as model({', '.join(s.name for s in inputs)})): {first}"
        ) from None


def export_module(module: Any, out_dir: Path, signature: Signature) -> tuple[ServedArtifact, float]:
    """torch.export `module` to `<out_dir>/model.pt2`; the artifact and the seconds export + save took."""
    import torch

    start = time.perf_counter()
    program = export_program(module, signature.inputs)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = atomic_write_bytes(out_dir / EXPORT_FILE, buffer.getvalue())
    seconds = time.perf_counter() - start

    torchao_tensors = any(is_quantized(p) for _, p in module.named_parameters())
    pt2e = is_pt2e_quantized(module)
    extra: dict[str, Any] = {
        "torch_version": torch.__version__,
        "dynamic_batch": True,
        "quantized": torchao_tensors or pt2e,
    }
    if torchao_tensors:
        torchao = import_torchao()
        # torch.export.load imports torchao itself; listed so a server image knows it needs it
        extra.update(torchao_version=torchao.__version__, imports=["torchao"])
    if pt2e:
        extra.update(quantization="pt2e", imports=[PT2E_OPS_MODULE])
    artifact = ServedArtifact(
        path=path, framework="torch", format="torch.export", signature=signature, extra=extra
    )
    return artifact, seconds


def copy_user_artifact(source: Path, fmt: str, out_dir: Path, signature: Signature) -> ServedArtifact:
    """Serve a user's model file exactly as given (copied into the variant folder)."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"model{source.suffix}"
    shutil.copyfile(source, target)
    extra: dict[str, Any] = {"torch_version": torch.__version__, "source": str(source)}
    extra["dynamic_batch"] = True if fmt == "torch.export" else None  # TorchScript does not say
    if fmt == "torch.export" and (imports := required_imports(target)):
        extra["imports"] = imports
    return ServedArtifact(path=target, framework="torch", format=fmt, signature=signature, extra=extra)


def load_artifact_module(artifact: ServedArtifact) -> Any:
    """The callable module in a served artifact, loaded fresh from disk on CPU."""
    path = Path(artifact.path)
    if not path.is_file():
        raise RunError(f"artifact file not found: {path}")
    if artifact.framework != "torch":
        raise UserError(f"cannot load a {artifact.framework} artifact with torch: {path}")
    for module in artifact.extra.get("imports", []):
        importlib.import_module(module)
    if artifact.format == "torch.export":
        return load_exported_program(path)
    if artifact.format == "torchscript":
        return load_torchscript(path)
    raise UserError(f"unsupported torch artifact format {artifact.format!r} for {path}")


class TorchArtifactRunner:
    """Runs a served artifact in this process: outputs (and argmax labels) for batches of named inputs.

    Safe to call from several threads at once: the loaded module holds no per-call state, and
    inference_mode is thread-local.
    """

    def __init__(self, artifact: ServedArtifact) -> None:
        self.artifact = artifact
        self.inputs = artifact.signature.inputs
        self.module = load_artifact_module(artifact)

    def _batch(self, batch: Batch | np.ndarray) -> Batch:
        if isinstance(batch, np.ndarray):  # a one-input model's bare array
            if len(self.inputs) != 1:
                raise ValueError(f"expected named inputs {self.artifact.signature.describe_inputs()}")
            return {self.inputs[0].name: batch}
        return batch

    def predict_outputs(self, batch: Batch | np.ndarray) -> np.ndarray:
        """float32 (n, width): the model's output row for each example of `batch`."""
        return model_outputs(self.module, self._batch(batch), self.inputs)

    def predict_labels(self, batch: Batch | np.ndarray) -> np.ndarray:
        """Top-1 class of each example (classification)."""
        return self.predict_outputs(batch).argmax(axis=1).astype(np.int64)
