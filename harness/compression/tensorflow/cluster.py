"""tf.cluster: tfmot weight clustering (weight sharing) of Dense/convolution kernels.

Each kernel layer of a private clone is wrapped in `cluster_weights`, which snaps every weight to
the nearest of `clusters` centroids; fine-tuning then trains the centroids, and
`strip_clustering` leaves plain layers whose kernels hold at most `clusters` distinct values
(what makes the file compress well). `cluster_weights` rewrites the weights of the layers it is
given, hence the clone: the caller's model is never touched. Biases are not clustered.

After a tf.prune step (kernels with many exact zeros) the sparsity-preserving variant of
`cluster_weights` is used, so the zeros survive and the two steps compose.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from harness.compression.base import Recipe, RecipeContext, StepReport
from harness.compression.params import TfClusterParams
from harness.compression.tensorflow.finetune import (
    SPARSE_INPUT,
    clone_with_weights,
    fine_tune,
    kernel_layer_types,
    kernel_layers,
    kernel_zero_fraction,
    quality_details,
    quality_note,
    quality_on_test,
    require_context,
    seeded,
    wrap_layers,
)
from harness.compression.tensorflow.stats import require_keras_model
from harness.compression.tensorflow.tf_import import import_tfmot
from harness.errors import UserError


class TfClusterRecipe(Recipe):
    """Share `clusters` values per kernel, fine-tuning the shared values on the training split."""

    name: ClassVar[str] = "tf.cluster"
    framework: ClassVar[str] = "tensorflow"
    params_model = TfClusterParams
    params: TfClusterParams

    def apply(self, model: Any, context: RecipeContext | None = None) -> tuple[Any, StepReport]:
        context = require_context(context, self.name)
        model = require_keras_model(model, self.name)
        tfmot = import_tfmot()
        start = time.perf_counter()
        data, p = context.data, self.params
        before = quality_on_test(model, data)

        work = clone_with_weights(model, self.name)
        types = kernel_layer_types()
        candidates = [layer for layer in work.layers if isinstance(layer, types)]
        # a kernel with fewer weights than clusters has nothing to share (and k-means cannot start)
        targets = [layer.name for layer in candidates if int(np.prod(layer.kernel.shape)) >= p.clusters]
        if not targets:
            raise UserError(
                f"{self.name} needs a Dense or convolution kernel with at least clusters={p.clusters} "
                "weights; the model has none"
            )
        sparsity_before = kernel_zero_fraction([layer for layer in candidates if layer.name in targets])
        preserve = sparsity_before >= SPARSE_INPUT
        cluster_weights = (
            _sparsity_preserving_cluster_weights() if preserve else tfmot.clustering.keras.cluster_weights
        )
        options = {"preserve_sparsity": True} if preserve else {}
        init = tfmot.clustering.keras.CentroidInitialization[p.centroid_init.upper()]
        with seeded(context.seed):  # k-means++ and random centroid initialisation draw from TF's RNG
            clustered = wrap_layers(
                work,
                lambda layer: cluster_weights(
                    layer, number_of_clusters=p.clusters, cluster_centroids_init=init, **options
                ),
                lambda layer: layer.name in targets,
            )
        fit_seconds = fine_tune(clustered, data, p, context.seed)
        result = tfmot.clustering.keras.strip_clustering(clustered)
        seconds = time.perf_counter() - start

        result_layers = [layer for layer in kernel_layers(result) if layer.name in targets]
        unique = {layer.name: int(np.unique(layer.kernel.numpy()).size) for layer in result_layers}
        sparsity = kernel_zero_fraction(result_layers)
        after = quality_on_test(result, data)
        left_alone = [layer.name for layer in result.layers if layer.weights and layer.name not in targets]
        note = (
            f"clustered the kernels of {len(targets)} layers into {p.clusters} shared values "
            f"({p.centroid_init} init) and fine-tuned {p.fine_tune_epochs} epochs; distinct values per "
            f"kernel: {min(unique.values())}..{max(unique.values())}{quality_note(before, after)}"
        )
        if preserve:
            note += (
                f"; sparsity-preserving clustering kept the input's zeros ({sparsity:.4f} of kernel weights)"
            )
        return result, StepReport(
            recipe=self.name,
            params=p.model_dump(),
            seconds=seconds,
            sparsity=sparsity,
            notes=[note],
            details={
                "unique_values": unique,
                "preserve_sparsity": preserve,
                "sparsity_before": sparsity_before,
                "left_alone": left_alone,
                **quality_details(before, after),
                "fine_tune_seconds": round(fit_seconds, 3),
            },
        )


def _sparsity_preserving_cluster_weights() -> Any:
    """tfmot's sparsity-preserving `cluster_weights` (it keeps zero weights at zero).

    tfmot 0.8.1 does not export it under tfmot.clustering.keras; its own sparsity-preserving
    clustering example imports it from this module.
    """
    import_tfmot()
    from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster

    return cluster.cluster_weights
