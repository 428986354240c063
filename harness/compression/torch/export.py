"""Export a module to the served artifact (a torch.export .pt2 with a dynamic batch dimension) and
load served artifacts back.

.pt2 is the only format compressed models are served in: torchao-quantized models are silently
wrong under torch.jit.script (digits accuracy 97.8% -> 9.8%) and fail under torch.jit.trace, while
torch.export keeps the quantized tensor subclasses and loads back with plain `torch.export.load`
(which imports torchao by itself when the file holds its tensors). A user's TorchScript file is
served as given, which is why `load_artifact_module` also reads "torchscript".
"""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifacts import ServedArtifact
from harness.atomic import atomic_write_bytes
from harness.compression.torch.quiet_import import import_torchao
from harness.compression.torch.stats import is_quantized
from harness.errors import RunError, UserError
from harness.models.torch_loader import load_exported_program, load_torchscript

EXPORT_FILE = "model.pt2"
_EXAMPLE_BATCH = 2  # a batch of 1 would let export specialise the batch dimension to 1


def export_module(
    module: Any, out_dir: Path, *, input_shape: tuple[int, ...], num_classes: int
) -> tuple[ServedArtifact, float]:
    """torch.export `module` with a dynamic batch dimension to `<out_dir>/model.pt2`; the artifact
    and the seconds export + save took."""
    import torch

    start = time.perf_counter()
    module.eval()
    example = torch.zeros((_EXAMPLE_BATCH, *input_shape), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"torch.export failed for {type(module).__name__}: {first}") from exc
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = atomic_write_bytes(out_dir / EXPORT_FILE, buffer.getvalue())
    seconds = time.perf_counter() - start

    quantized = any(is_quantized(p) for _, p in module.named_parameters())
    extra: dict[str, Any] = {
        "torch_version": torch.__version__,
        "dynamic_batch": True,
        "quantized": quantized,
    }
    if quantized:
        torchao = import_torchao()
        # torch.export.load imports torchao itself; listed so a server image knows it needs it
        extra.update(torchao_version=torchao.__version__, imports=["torchao"])
    artifact = ServedArtifact(
        path=path,
        framework="torch",
        format="torch.export",
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        extra=extra,
    )
    return artifact, seconds


def copy_user_artifact(
    source: Path, fmt: str, out_dir: Path, *, input_shape: tuple[int, ...], num_classes: int
) -> ServedArtifact:
    """Serve a user's model file exactly as given (copied into the variant folder)."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"model{source.suffix}"
    shutil.copyfile(source, target)
    return ServedArtifact(
        path=target,
        framework="torch",
        format=fmt,
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        extra={"torch_version": torch.__version__, "source": str(source), "dynamic_batch": None},
    )


def load_artifact_module(artifact: ServedArtifact) -> Any:
    """The callable module in a served artifact, loaded fresh from disk on CPU."""
    path = Path(artifact.path)
    if not path.is_file():
        raise RunError(f"artifact file not found: {path}")
    if artifact.framework != "torch":
        raise UserError(f"cannot load a {artifact.framework} artifact with torch: {path}")
    if artifact.format == "torch.export":
        return load_exported_program(path)
    if artifact.format == "torchscript":
        return load_torchscript(path)
    raise UserError(f"unsupported torch artifact format {artifact.format!r} for {path}")


class TorchArtifactRunner:
    """Runs a served artifact in this process: scores and argmax labels for numpy batches.

    Safe to call from several threads at once: the loaded module holds no per-call state, and
    inference_mode is thread-local.
    """

    def __init__(self, artifact: ServedArtifact) -> None:
        self.artifact = artifact
        self.module = load_artifact_module(artifact)

    def _as_batch(self, batch: np.ndarray) -> np.ndarray:
        rows = np.asarray(batch, dtype=np.float32)
        shape = tuple(self.artifact.input_shape)
        if rows.shape == shape:  # a single example
            rows = rows[None]
        if rows.shape[1:] != shape:
            raise ValueError(f"expected a batch of shape (n, {', '.join(map(str, shape))}), got {rows.shape}")
        return rows

    def predict_scores(self, batch: np.ndarray) -> np.ndarray:
        import torch

        rows = self._as_batch(batch)
        with torch.inference_mode():
            # torch.tensor copies: the caller's array may be read-only (torch.from_numpy warns then)
            scores = self.module(torch.tensor(rows))
        return scores.float().numpy()

    def predict_labels(self, batch: np.ndarray, chunk: int = 4096) -> np.ndarray:
        rows = self._as_batch(batch)
        parts = [self.predict_scores(rows[i : i + chunk]).argmax(axis=1) for i in range(0, len(rows), chunk)]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)
