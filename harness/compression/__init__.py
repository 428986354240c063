"""Compression recipes, looked up by name ("torch.prune", "torch.int8").

The table holds "module:Class" strings only; implementations (and torch) are imported when a
recipe is first used. Parameter models live in `harness.compression.params` so a scenario can be
validated without importing any framework. Third parties add recipes through the
`harness.recipes` entry point group (and must give their class a `params_model`).
"""

from __future__ import annotations

from harness.registry import Registry

RECIPES = Registry(
    "recipe",
    {
        "torch.prune": "harness.compression.torch.prune:TorchPruneRecipe",
        "torch.int8": "harness.compression.torch.int8:TorchInt8Recipe",
        "torch.distill": "harness.compression.torch.distill:TorchDistillRecipe",
        "torch.half": "harness.compression.torch.half:TorchHalfRecipe",
        "tf.prune": "harness.compression.tensorflow.prune:TfPruneRecipe",
        "tf.cluster": "harness.compression.tensorflow.cluster:TfClusterRecipe",
        "tf.qat": "harness.compression.tensorflow.qat:TfQatRecipe",
        "tf.ptq": "harness.compression.tensorflow.ptq:TfPtqRecipe",
        "tf.distill": "harness.compression.tensorflow.distill:TfDistillRecipe",
    },
    "harness.recipes",
)

__all__ = ["RECIPES"]
