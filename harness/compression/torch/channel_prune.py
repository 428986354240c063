"""torch.prune with `structure: channels`: remove whole channels with torch-pruning, then fine-tune.

torch-pruning traces the module once (autograd graph of a call on zero inputs) into a dependency
graph, so the channels that must go together go together: a conv's output channels with the batch
norm after it, the depthwise conv and the 1x1 projection reading them, and every layer joined by a
residual add. Each group is ranked by the L2 magnitude of all its weights (torch-pruning's
GroupMagnitudeImportance) and `amount` of its channels are removed (`scope: layer`), or `amount`
of all channels with the lowest-ranked ones anywhere (`scope: global`). The layers are rebuilt
smaller, so the model needs fewer parameters and multiply-accumulates, and exports as a plain
smaller nn.Module. The layers that produce the model's outputs are never narrowed (found by
walking back from every output through the ops that keep channels, to the first conv, linear,
embedding or recurrent layer), and the outputs' shapes are checked before and after.

A model the tracer cannot follow, a torch.export program (its GraphModule has no conv or linear
modules to rebuild) and TorchScript are refused with one line naming the recipe. Fine-tuning on
the train split then recovers accuracy: cross-entropy on the labels (logit or probability
outputs) or mean squared error (regression), Adam with a cosine-decaying learning rate, seeded.
"""

from __future__ import annotations

import math
import time
import warnings
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.compression.base import RecipeContext, StepReport
from harness.compression.params import TorchPruneParams
from harness.compression.torch.program import is_graph_module
from harness.compression.torch.stats import is_quantized, refuse_torchscript, sparsity_stats
from harness.data.tensors import TensorSpec
from harness.errors import RunError, UserError
from harness.models.torch_io import example_inputs, first_output, model_outputs, to_tensors
from harness.models.torch_training import deterministic_torch, training_threads

if TYPE_CHECKING:
    import torch
    from torch import nn

STRUCTURE = "structure channels"
EVAL_CHUNK = 128  # rows per forward pass when accuracy is measured: bounds image activations


def prune_channels(
    model: Any, params: TorchPruneParams, context: RecipeContext | None, recipe: str
) -> tuple[Any, StepReport]:
    """Structured channel pruning of `model` in place, then fine-tuning; the model and its report."""
    start = time.perf_counter()
    where = f"{recipe} {STRUCTURE}"
    module = _check_module(model, recipe, where)
    if context is None:
        raise RunError(
            f"{where} traces the model on its inputs and fine-tunes it: call it with a RecipeContext"
        )
    train = context.data.train
    if params.fine_tune_epochs and (train is None or train.labels is None):
        raise UserError(
            f"{where} fine-tunes on the labelled train split, and the data has none: give data.train or "
            "data.split, or set fine_tune_epochs: 0"
        )
    inputs = context.signature.inputs if context.signature is not None else context.data.inputs
    details, notes = restructure(module, inputs, params, where)
    if params.fine_tune_epochs:
        tuned_details, tuned_notes = _fine_tune(module, context, inputs, params)
        details.update(tuned_details)
        notes += tuned_notes
    else:
        notes.append("not fine-tuned (fine_tune_epochs 0)")
    module.eval()
    module.requires_grad_(False)
    stats = sparsity_stats(module)
    return module, StepReport(
        recipe=recipe,
        params=params.model_dump(),
        seconds=time.perf_counter() - start,
        sparsity=stats["sparsity"],
        sparsity_all_params=stats["sparsity_all_params"],
        notes=notes,
        details=details,
    )


def restructure(
    module: nn.Module, inputs: tuple[TensorSpec, ...], params: TorchPruneParams, where: str
) -> tuple[dict[str, Any], list[str]]:
    """Remove `params.amount` of the channels of `module` in place; what changed, as report details
    (parameters and multiply-accumulates before and after, per-layer channels) and notes."""
    import torch

    example = example_inputs(inputs)
    one = example_inputs(inputs, rows=1)
    module.eval()
    module.requires_grad_(True)  # the tracer follows grad_fn links: cached models come frozen
    with torch.no_grad():
        shapes_before = _output_shapes(module, example)
    macs_before, params_before = _count(module, one)
    channels_before = _out_channels(module)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = _prune(module, example, params, where)
    with torch.no_grad():
        try:
            shapes_after = _output_shapes(module, example)
        except Exception as exc:
            raise RunError(f"{where}: the pruned model no longer runs ({_first_line(exc)})") from None
    if shapes_after != shapes_before:
        raise RunError(
            f"{where}: pruning changed the model's output shapes from {shapes_before} to {shapes_after}"
        )
    macs_after, params_after = _count(module, one)
    channels_after = _out_channels(module)
    changed = {
        name: [before, channels_after[name]]
        for name, before in channels_before.items()
        if channels_after.get(name) != before
    }
    if not changed:
        raise UserError(
            f"{where}: no channel of {type(module).__name__} could be removed (every group feeds an "
            "output or is too small for amount)"
        )
    removed = sum(b - a for b, a in changed.values())
    total = sum(channels_before.values())
    library = f"torch-pruning {version('torch-pruning')}"
    details: dict[str, Any] = {
        "library": library,
        "param_count_before": params_before,
        "param_count_after": params_after,
        "macs_before": macs_before,  # multiply-accumulates for one example
        "macs_after": macs_after,
        "channels_removed": removed,
        "channels_total": total,
        "layer_out_channels": changed,  # layer -> [before, after], for the layers that shrank
        "kept_layers": kept,  # the output layers, never narrowed
    }
    notes = [
        f"{library} structured channel pruning ({params.scope}, group L2 magnitude, dependency graph "
        f"across residual adds and grouped/depthwise convs): removed {removed} of {total} output "
        f"channels of conv/linear layers ({len(changed)} layers narrowed, output layers "
        f"{', '.join(kept) or 'none'} kept); parameters {params_before:,} -> {params_after:,} "
        f"({_change(params_before, params_after)}), multiply-accumulates per example {macs_before:,} -> "
        f"{macs_after:,} ({_change(macs_before, macs_after)})"
    ]
    notes += sorted({f"torch-pruning warned: {_first_line(w.message)}" for w in caught})
    return details, notes


def _fine_tune(
    module: nn.Module, context: RecipeContext, inputs: tuple[TensorSpec, ...], params: TorchPruneParams
) -> tuple[dict[str, Any], list[str]]:
    """Fine-tune the pruned module; report details and notes, with the test accuracy before and
    after for a labelled classifier (what fine-tuning recovered)."""
    output_kind = context.signature.output.kind if context.signature is not None else "logits"
    classifier = context.data.task == "classification" and context.data.labelled
    details: dict[str, Any] = {}
    if classifier:
        details["test_accuracy_after_pruning"] = _accuracy(module, context, inputs)
    seconds, examples = fine_tune_module(module, context, inputs, output_kind, params)
    details.update(fine_tune_seconds=round(seconds, 3), fine_tune_examples=examples)
    loss = "mean squared error" if output_kind == "values" else "cross-entropy on the labels"
    notes = [
        f"fine-tuned {_epochs(params.fine_tune_epochs)} on {examples} train examples ({loss}, Adam lr "
        f"{params.learning_rate:g} cosine-decayed, batch {params.batch_size}) in {seconds:.1f} s"
    ]
    if classifier:
        details["test_accuracy_after_fine_tune"] = _accuracy(module, context, inputs)
        notes.append(
            f"test accuracy {details['test_accuracy_after_pruning']:.4f} right after pruning, "
            f"{details['test_accuracy_after_fine_tune']:.4f} after fine-tuning"
        )
    return details, notes


def fine_tune_module(
    module: nn.Module,
    context: RecipeContext,
    inputs: tuple[TensorSpec, ...],
    output_kind: str,
    params: TorchPruneParams,
) -> tuple[float, int]:
    """Train `module` in place on the labelled train split; (seconds, examples per epoch)."""
    import torch

    train = context.data.train
    if train is None or train.labels is None:  # prune_channels refused this before pruning
        raise RunError("fine-tuning needs the labelled train split")
    start = time.perf_counter()
    with deterministic_torch(training_threads()):
        torch.manual_seed(context.seed)
        tensors = to_tensors(train.inputs, inputs)
        labels = torch.tensor(np.asarray(train.labels))
        rows = len(labels)
        steps = math.ceil(rows / params.batch_size) * params.fine_tune_epochs
        optimizer = torch.optim.Adam(module.parameters(), lr=params.learning_rate)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
        )
        order = torch.Generator().manual_seed(context.seed)
        module.train()
        for _ in range(params.fine_tune_epochs):
            permutation = torch.randperm(rows, generator=order)
            for i in range(0, rows, params.batch_size):
                batch = permutation[i : i + params.batch_size]
                if len(batch) < 2 and rows >= 2:  # batch norm cannot train on one example
                    continue
                out = first_output(module(*(t[batch] for t in tensors)))
                optimizer.zero_grad()
                _loss(out, labels[batch], output_kind).backward()
                optimizer.step()
                schedule.step()
    module.eval()
    return time.perf_counter() - start, rows


def _loss(out: torch.Tensor, labels: torch.Tensor, output_kind: str) -> torch.Tensor:
    """Mean squared error for values, negative log-likelihood for probabilities, else cross-entropy."""
    import torch
    from torch import nn

    out = out.reshape(len(labels), -1).float()
    if output_kind == "values":
        return nn.functional.mse_loss(out, labels.reshape(len(labels), -1).float())
    if output_kind == "probabilities":
        return nn.functional.nll_loss(torch.log(out.clamp_min(1e-12)), labels.long())
    return nn.functional.cross_entropy(out, labels.long())


def _check_module(model: Any, recipe: str, where: str) -> nn.Module:
    """The nn.Module to restructure; UserError for what has none or cannot be pruned."""
    import torch
    from torch import nn

    refuse_torchscript(model, recipe)
    if is_graph_module(model):
        raise UserError(
            f"{where} rebuilds conv and linear modules, and a torch.export program (.pt2) has none "
            "left: give the model as a python: factory, or use structure unstructured"
        )
    if not isinstance(model, nn.Module):
        raise UserError(f"{where} needs a torch nn.Module, got {type(model).__name__}")
    quantized = [name for name, p in model.named_parameters() if is_quantized(p)]
    if quantized:
        raise UserError(f"{where} cannot prune quantized weights; put torch.prune before torch.int8")
    if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
        raise UserError(f"{where} needs float32 weights; put torch.prune before torch.half")
    return model


def _prune(module: nn.Module, example: tuple[Any, ...], params: TorchPruneParams, where: str) -> list[str]:
    """Prune `module` in place with torch-pruning; the names of the output layers it kept whole."""
    import torch_pruning as tp

    try:
        graph = tp.DependencyGraph().build_dependency(module, example_inputs=list(example))
        keep = output_layers(graph)
        pruner = tp.pruner.BasePruner(
            module,
            list(example),
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=params.amount,
            global_pruning=params.scope == "global",
            ignored_layers=keep,
        )
        pruner.step()
    except Exception as exc:
        raise UserError(
            f"{where}: torch-pruning cannot restructure {type(module).__name__} ({_first_line(exc)})"
        ) from None
    names = {id(m): name for name, m in module.named_modules()}
    return sorted(names.get(id(m), type(m).__name__) for m in keep)


def output_layers(graph: Any) -> list[nn.Module]:
    """The modules whose output channels reach a model output: from each output, back through
    element-wise, shape and normalisation ops (kept too) to the first conv/linear/embedding/LSTM."""
    import torch_pruning as tp
    from torch import nn

    stops = (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding, nn.EmbeddingBag, nn.RNNBase)
    functional = _functional_ops(tp)
    # the graph is traced back from the outputs, so the nodes nothing reads are the outputs: an
    # output op, or the layer that returned the output tensor itself
    kept: list[nn.Module] = []
    seen: set[int] = set()
    stack = [node for node in graph.module2node.values() if not node.outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.module, nn.Module) and not isinstance(node.module, functional):
            kept.append(node.module)
            if isinstance(node.module, stops):
                continue
        stack.extend(node.inputs)
    return kept


def _functional_ops(tp: Any) -> tuple[type, ...]:
    """torch-pruning's graph stand-ins for functional ops (concat, reshape, add, output): not layers."""
    names = (
        "_ConcatOp",
        "_SplitOp",
        "_UnbindOp",
        "_ReshapeOp",
        "_SliceOp",
        "_ExpandOp",
        "_ElementWiseOp",
        "_OutputOp",
    )
    return tuple(getattr(tp.ops, name) for name in names if hasattr(tp.ops, name))


def _output_shapes(module: nn.Module, example: tuple[Any, ...]) -> list[tuple[int, ...]]:
    import torch

    out = module(*example)
    flat: list[Any] = []
    stack = [out]
    while stack:
        item = stack.pop(0)
        if isinstance(item, dict):
            stack[:0] = list(item.values())
        elif isinstance(item, (list, tuple)):
            stack[:0] = list(item)
        elif isinstance(item, torch.Tensor):
            flat.append(tuple(item.shape))
    return flat


def _count(module: nn.Module, one: tuple[Any, ...]) -> tuple[int, int]:
    """(multiply-accumulates, parameters) of one call on one example, by torch-pruning's counter."""
    import torch
    import torch_pruning as tp

    with torch.no_grad():
        macs, count = tp.utils.count_ops_and_params(module, one)
    return int(macs), int(count)


def _out_channels(module: nn.Module) -> dict[str, int]:
    """Output channels (features) of every conv and linear layer, by name."""
    from torch import nn

    found: dict[str, int] = {}
    for name, layer in module.named_modules():
        if isinstance(layer, nn.modules.conv._ConvNd):
            found[name] = int(layer.out_channels)
        elif isinstance(layer, nn.Linear):
            found[name] = int(layer.out_features)
    return found


def _accuracy(module: nn.Module, context: RecipeContext, inputs: tuple[TensorSpec, ...]) -> float:
    module.eval()
    test = context.data.test
    outputs = model_outputs(module, dict(test.inputs), inputs, chunk=EVAL_CHUNK)
    return round(float((outputs.argmax(axis=1) == np.asarray(test.labels)).mean()), 6)


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _change(before: int, after: int) -> str:
    return f"{(after - before) / before:+.1%}" if before else "n/a"


def _first_line(exc: Any) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
