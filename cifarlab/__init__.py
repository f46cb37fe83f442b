"""cifarlab: config-driven Keras experiments for small-image classification, tracked in MLflow."""

from cifarlab.runtime.onednn import use_onednn
from cifarlab.runtime.quiet import quiet_tensorflow

__version__ = "0.1.0"

# Before any submodule can import TensorFlow, which reads its log level and kernel choice only once.
quiet_tensorflow()
use_onednn()
