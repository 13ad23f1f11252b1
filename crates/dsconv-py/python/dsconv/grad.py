"""Gradients of ``dsconv.conv2d``, shaped like ``torch.nn.grad``.

``conv2d_input(input_size, weight, grad_output, ...)`` and
``conv2d_weight(input, weight_size, grad_output, ...)`` take the same keywords as
``dsconv.conv2d`` (stride, padding in every form, dilation, groups, padding_mode, layout,
threads); ``conv2d_bias(grad_output)`` sums the upstream gradient per channel. Every
gradient is bitwise identical for every thread count.

>>> import numpy as np, dsconv
>>> x = np.random.default_rng(0).standard_normal((2, 4, 9, 9), dtype=np.float32)
>>> w = np.random.default_rng(1).standard_normal((8, 4, 3, 3), dtype=np.float32)
>>> y = dsconv.conv2d(x, w, stride=2, padding="same", padding_mode="reflect")
>>> dy = np.ones_like(y)
>>> dsconv.grad.conv2d_input(x.shape, w, dy, stride=2, padding="same",
...                          padding_mode="reflect").shape
(2, 4, 9, 9)
>>> dsconv.grad.conv2d_weight(x, w.shape, dy, stride=2, padding="same",
...                           padding_mode="reflect").shape
(8, 4, 3, 3)
"""

from ._dsconv import conv2d_bias, conv2d_input, conv2d_weight

__all__ = ["conv2d_input", "conv2d_weight", "conv2d_bias"]
