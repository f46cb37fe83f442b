"""cifarlab: config-driven Keras experiments for small-image classification, tracked in MLflow."""

__version__ = "0.1.0"
