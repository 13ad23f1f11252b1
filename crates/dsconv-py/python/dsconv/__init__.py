"""dsconv: depthwise separable convolution on NumPy arrays, exact like PyTorch and fast on
the CPU (a Rust library underneath).

Functions: ``conv2d`` (``torch.nn.functional.conv2d`` plus "same" at any stride,
asymmetric padding, reflect/replicate/circular, NHWC), ``grad.conv2d_input`` /
``grad.conv2d_weight`` / ``grad.conv2d_bias`` (``torch.nn.grad``), ``cost`` (standard vs
separable), ``model_cost`` (per-layer tables of the built-in networks).
Layers: ``Conv2d``, ``DepthwiseConv2d``, ``PointwiseConv2d``, ``DepthwiseSeparableConv2d``.
Networks: ``load(name, weights=...)`` → ``Model`` with ``predict`` and ``classify``.
Training: ``train(model, data=..., val=..., epochs=...)`` → ``TrainableModel`` (``fit``,
``predict``, ``classify``, ``evaluate``, ``state_dict``, ``save``) with its ``history``;
``Dataset`` (arrays, the embedded digits, NumPy files; image folders through Pillow).

Every call validates its arguments (``ValueError``/``TypeError`` for bad input, ``OSError``
for files, with the library's message), releases the GIL while it computes, and is safe
to make from many threads at once. ``threads=`` sets one call's thread count,
``set_num_threads`` the default (initially one per core); results are bitwise identical for
every thread count.

>>> import numpy as np, dsconv
>>> x = np.random.default_rng(0).standard_normal((1, 32, 56, 56), dtype=np.float32)
>>> dw = np.random.default_rng(1).standard_normal((32, 1, 3, 3), dtype=np.float32)
>>> dsconv.conv2d(x, dw, groups=32, stride=2, padding="same").shape
(1, 32, 28, 28)
"""

from . import grad
from ._dsconv import (
    Conv2d,
    Dataset,
    DepthwiseConv2d,
    DepthwiseSeparableConv2d,
    Network,
    PointwiseConv2d,
    __version__,
    conv2d,
    cost,
    get_num_threads,
    imagenet_classes,
    model_cost,
    model_info,
    models,
    set_num_threads,
    trainable_models,
)
from ._models import Model, OnnxModel, load, preprocess_image, top_classes
from ._train import History, TrainableModel, train

__all__ = [
    "conv2d",
    "grad",
    "cost",
    "model_cost",
    "model_info",
    "models",
    "load",
    "train",
    "TrainableModel",
    "Dataset",
    "History",
    "trainable_models",
    "Model",
    "OnnxModel",
    "Network",
    "Conv2d",
    "DepthwiseConv2d",
    "PointwiseConv2d",
    "DepthwiseSeparableConv2d",
    "set_num_threads",
    "get_num_threads",
    "imagenet_classes",
    "preprocess_image",
    "top_classes",
    "__version__",
]
