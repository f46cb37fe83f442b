"""Every registry of builders is filled here, and only here; these are the doors to them.

Importing a builder module runs its ``@REGISTRY.register`` decorators (the idea
of TensorFlow Model Garden's ``registry_imports.py``): this file imports each
one, so what can be named in a config is listed in one place. Adding a model,
dataset, augmentation, optimizer, schedule or callback: write the builder in its
stage's folder, register it, and import its module below. Other modules reach the
doors, and the types they take and give (``CallbackContext``, ``LearningRate``, the
per-epoch ``MlflowMetricsLogger``), through this file only. Imports TensorFlow.
"""

from __future__ import annotations

# Builder modules, imported for their registrations.
# The doors: each looks a name up in its registry and builds from the config node.
from cifarlab.data import DATASETS, cifar10, idx, image_folder, load_dataset, synthetic  # noqa: F401  datasets  # noqa: E402
from cifarlab.data.augment import build_augmentation  # noqa: E402  (registry in the same module)
from cifarlab.models import MODELS, build_model, cnn, delta, dense, keras_app, resnet  # noqa: F401  models  # noqa: E402
from cifarlab.models.layers import colour, fast_dropout, fused_batchnorm  # noqa: F401  Keras layers, for loading
from cifarlab.training.callbacks import CallbackContext, MlflowMetricsLogger, build_callbacks  # noqa: E402
from cifarlab.training.optim import LearningRate, build_optimizer, build_schedule, plateau_callback  # noqa: E402

__all__ = [
    "DATASETS",
    "MODELS",
    "CallbackContext",
    "LearningRate",
    "MlflowMetricsLogger",
    "build_augmentation",
    "build_callbacks",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "load_dataset",
    "plateau_callback",
]
