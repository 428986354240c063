"""What the graph of a torch.export program says about its weights.

A `.pt2` source reaches the recipes as the GraphModule of its ExportedProgram (`program.module()`):
it keeps no nn.Linear or nn.Conv2d modules, only parameters read by `get_attr` nodes and ops that
consume them. A *weight* here is the tensor an op takes as its weight operand: aten.linear and the
convolutions (arg 1), and what a decomposed program turned them into (addmm's arg 2, mm's arg 1),
followed back through transposes and views. After PT2E int8, the weight is an int8 tensor behind a
`quantized_decomposed.dequantize_per_channel` node; `GraphWeight.quantized` says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# op name (OpOverloadPacket name, without the namespace) -> index of its weight operand
_WEIGHT_OPERAND = {
    "linear": 1,
    "conv1d": 1,
    "conv2d": 1,
    "conv3d": 1,
    "convolution": 1,
    "conv_transpose1d": 1,
    "conv_transpose2d": 1,
    "conv_transpose3d": 1,
    "addmm": 2,
    "mm": 1,
}
# ops a weight passes through on its way to the op that uses it (layout changes, no arithmetic)
_PASS_THROUGH = {
    "t",
    "permute",
    "transpose",
    "view",
    "reshape",
    "_unsafe_view",
    "detach",
    "alias",
    "contiguous",
}
_DEQUANTIZE = {"dequantize_per_channel", "dequantize_per_tensor"}
PT2E_NAMESPACE = "quantized_decomposed"


@dataclass(frozen=True)
class GraphWeight:
    """One weight operand of a linear/conv op in a program's graph."""

    name: str  # readable name: the parameter's own, or for a PT2E int8 weight the op's bias name with
    # 'bias' replaced by 'weight' (the float parameter it replaced), else the attribute's name
    target: str  # the attribute path the graph reads it from, e.g. "fc.weight" or "_frozen_param0"
    op: str  # "linear", "conv2d", ...
    quantized: bool  # an int8 tensor behind a PT2E dequantize node
    dequantize: Any = None  # the dequantize node (quantized weights only), to recover the values


def is_graph_module(model: Any) -> bool:
    """True for the GraphModule of a torch.export program (not for TorchScript modules)."""
    import torch

    return isinstance(model, torch.fx.GraphModule) and not isinstance(model, torch.jit.ScriptModule)


def _op_name(node: Any) -> tuple[str, str]:
    """(namespace, name) of a call_function node's target: ('aten', 'linear')."""
    target = node.target
    packet = getattr(target, "overloadpacket", None)
    qualified = getattr(packet, "_qualified_op_name", None) or getattr(target, "__name__", "")
    namespace, _, name = str(qualified).rpartition("::")
    return namespace, name


def is_pt2e_quantized(model: Any) -> bool:
    """True when the graph holds PT2E quantize/dequantize ops (the program was converted to int8)."""
    if not is_graph_module(model):
        return False
    return any(n.op == "call_function" and _op_name(n)[0] == PT2E_NAMESPACE for n in model.graph.nodes)


def graph_weights(model: Any) -> list[GraphWeight]:
    """Every weight operand of a linear/conv op, once per attribute, in graph order."""
    seen: dict[str, GraphWeight] = {}
    for node in model.graph.nodes:
        if node.op != "call_function":
            continue
        namespace, op = _op_name(node)
        index = _WEIGHT_OPERAND.get(op)
        if namespace != "aten" or index is None or len(node.args) <= index:
            continue
        source, dequantize = _weight_source(node.args[index])
        if source is None or source.target in seen:
            continue
        target = str(source.target)
        name = target
        if dequantize is not None:
            name = _replaced_name(node, op) or target
        seen[target] = GraphWeight(name, target, op, dequantize is not None, dequantize)
    return list(seen.values())


def _weight_source(arg: Any) -> tuple[Any, Any]:
    """(get_attr node, dequantize node or None) an operand comes from, or (None, None)."""
    import torch

    node, dequantize = arg, None
    while isinstance(node, torch.fx.Node):
        if node.op == "get_attr":
            return node, dequantize
        if node.op != "call_function" or not node.args:
            return None, None
        namespace, name = _op_name(node)
        if namespace == PT2E_NAMESPACE and name in _DEQUANTIZE:
            dequantize = node
        elif name not in _PASS_THROUGH:
            return None, None  # computed from activations (e.g. x @ y), not a stored weight
        node = node.args[0]
    return None, None


def _replaced_name(node: Any, op: str) -> str | None:
    bias_index = 0 if op == "addmm" else 2
    bias = node.args[bias_index] if len(node.args) > bias_index else None
    target = str(getattr(bias, "target", "")) if getattr(bias, "op", None) == "get_attr" else ""
    return target[: -len("bias")] + "weight" if target.endswith("bias") else None


def attribute(model: Any, target: str) -> Any:
    """The tensor at attribute path `target` ('fc.weight') of a module."""
    owner, _, name = target.rpartition(".")
    return getattr(model.get_submodule(owner) if owner else model, name)


def weight_values(model: Any, weight: GraphWeight) -> Any:
    """The float values of a weight: the parameter itself, or a PT2E int8 weight dequantized."""
    import torch

    if not weight.quantized:
        return attribute(model, weight.target).detach()
    node = weight.dequantize
    if any(isinstance(a, torch.fx.Node) and a.op != "get_attr" for a in node.args):
        # scales computed at run time: the stored int8 values are all there is to read
        return attribute(model, weight.target).detach().float()
    args = [attribute(model, str(a.target)) if isinstance(a, torch.fx.Node) else a for a in node.args]
    with torch.no_grad():
        return node.target(*args, **node.kwargs).detach()


def program_tensors(model: Any) -> Iterator[tuple[str, Any]]:
    """(name, float values) of a program's parameters and of its PT2E int8 weights (dequantized);
    the scales and zero points that describe the int8 weights are not counted."""
    for name, param in model.named_parameters():
        yield name, param.detach()
    for weight in graph_weights(model):
        if weight.quantized:  # int8 buffers standing in for the float parameters they replaced
            yield weight.name, weight_values(model, weight)


def drop_unused_attributes(model: Any) -> list[str]:
    """Delete parameters and buffers no graph node reads (PT2E leaves the float weights its int8
    copies replaced; export would save both). Returns the deleted attribute paths."""
    used = {str(n.target) for n in model.graph.nodes if n.op in ("get_attr", "call_module")}
    dropped = []
    for name, _ in [*model.named_parameters(), *model.named_buffers()]:
        # kept: what the graph reads, and everything inside a submodule it calls or reads (the
        # branches of a torch.cond read their own attributes)
        if name in used or any(name.startswith(prefix + ".") for prefix in used):
            continue
        owner, _, attr = name.rpartition(".")
        module = model.get_submodule(owner) if owner else model
        delattr(module, attr)
        dropped.append(name)
    return dropped
