"""The one way this package imports TensorFlow: legacy Keras (tf_keras) first, for tfmot.

tensorflow-model-optimization works only with Keras 2; TensorFlow 2.16+ bundles Keras 3 unless
TF_USE_LEGACY_KERAS=1 is set before TensorFlow is first imported. Setting it here, in the leaf
that imports TensorFlow, keeps the choice out of the CLI and the light modules. `import_tf` is
the tensorflow descriptor's import shim (`harness.frameworks.TENSORFLOW.import_framework()`).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from harness.errors import RunError


def import_tf() -> tuple[ModuleType, ModuleType]:
    """(tensorflow, tf_keras), with tf.keras resolving to tf_keras."""
    if "tensorflow" not in sys.modules:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO/WARNING lines on every import
    elif os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RunError(
            "TensorFlow was imported before the harness could set TF_USE_LEGACY_KERAS=1, which "
            "tensorflow-model-optimization needs; set it in the environment before starting"
        )
    import tensorflow as tf
    import tf_keras

    return tf, tf_keras


def import_tfmot() -> ModuleType:
    """tensorflow_model_optimization, after import_tf() has chosen legacy Keras."""
    import_tf()
    import warnings

    with warnings.catch_warnings():
        # tfmot 0.8.1 checks the TF version with distutils' LooseVersion on import; nothing to act on
        warnings.filterwarnings("ignore", "distutils Version classes are deprecated", DeprecationWarning)
        import tensorflow_model_optimization as tfmot

    return tfmot
