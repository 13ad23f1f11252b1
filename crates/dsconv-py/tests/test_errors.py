"""Bad input raises the right Python exception with the library's message; nothing
crashes the interpreter."""

import numpy as np
import pytest

import dsconv
from conftest import REPO

X = np.ones((1, 4, 8, 8), np.float32)
W = np.ones((8, 4, 3, 3), np.float32)


@pytest.mark.parametrize("call, exc, message", [
    (lambda: dsconv.conv2d(X[0], W), ValueError, "expected 4 dimensions"),
    (lambda: dsconv.conv2d(X, W[0]), ValueError, "conv2d weight: expected 4 dimensions"),
    (lambda: dsconv.conv2d(X, np.ones((8, 3, 3, 3), np.float32)), ValueError, "channels"),
    (lambda: dsconv.conv2d(X, W, bias=np.ones(7, np.float32)), ValueError, "conv2d bias"),
    (lambda: dsconv.conv2d(X, W, bias=np.ones((8, 1), np.float32)), ValueError,
     "expected 1 dimensions"),
    (lambda: dsconv.conv2d(X, W, stride=0), ValueError, "stride must be at least 1"),
    (lambda: dsconv.conv2d(X, W, stride=-2), ValueError, "stride must be at least 1"),
    (lambda: dsconv.conv2d(X, W, stride=(1, 2, 3)), ValueError, "pair of ints"),
    (lambda: dsconv.conv2d(X, W, stride="2"), TypeError, "stride"),
    (lambda: dsconv.conv2d(X, W, dilation=0), ValueError, "dilation"),
    (lambda: dsconv.conv2d(X, W, padding=-1), ValueError, "padding must be at least 0"),
    (lambda: dsconv.conv2d(X, W, padding=(1, 2, 3)), ValueError, "2 values"),
    (lambda: dsconv.conv2d(X, W, padding="full"), ValueError, "'same', 'valid'"),
    (lambda: dsconv.conv2d(X, W, padding=1.5), TypeError, "padding"),
    (lambda: dsconv.conv2d(X, W, groups=3), ValueError, "groups"),
    (lambda: dsconv.conv2d(X, W, groups=0), ValueError, "groups must be at least 1"),
    (lambda: dsconv.conv2d(X, W, padding_mode="mirror"), ValueError, "padding mode"),
    (lambda: dsconv.conv2d(X, W, padding=8, padding_mode="reflect"), ValueError, "geometry"),
    (lambda: dsconv.conv2d(X, W, padding=9, padding_mode="circular"), ValueError, "geometry"),
    (lambda: dsconv.conv2d(X, np.ones((8, 4, 9, 9), np.float32)), ValueError, "geometry"),
    (lambda: dsconv.conv2d(X, W, layout="chwn"), ValueError, "layout"),
    (lambda: dsconv.conv2d(X, W, threads=-1), ValueError, "threads"),
    (lambda: dsconv.conv2d(X, W, threads=100_000), ValueError, "threads"),
    (lambda: dsconv.conv2d("x", W), TypeError, "input"),
    (lambda: dsconv.conv2d(X, np.ones((0, 4, 3, 3), np.float32)), ValueError, "weight"),
    (lambda: dsconv.conv2d(np.ones((1, 4, 0, 8), np.float32), W), ValueError, ""),
    (lambda: dsconv.grad.conv2d_input((1, 4, 8), W, X), ValueError, "4 values"),
    (lambda: dsconv.grad.conv2d_input((1, 4, 8, 8), W, np.ones((1, 8, 5, 5), np.float32)),
     ValueError, "grad_output"),
    (lambda: dsconv.grad.conv2d_weight(X, (8, 4, 3, 3), np.ones((1, 8, 6, 5), np.float32)),
     ValueError, "grad_output"),
    (lambda: dsconv.DepthwiseConv2d(np.ones((8, 2, 3, 3), np.float32)), ValueError,
     "depthwise weight"),
    (lambda: dsconv.DepthwiseConv2d(np.ones((8, 1, 3, 3), np.float32), multiplier=3),
     ValueError, "multiplier"),
    (lambda: dsconv.DepthwiseSeparableConv2d(np.ones((4, 1, 3, 3), np.float32),
                                             np.ones((8, 5, 1, 1), np.float32)),
     ValueError, "separable pointwise weight"),
    (lambda: dsconv.Conv2d(W, activation="gelu"), ValueError, "activation"),
    (lambda: dsconv.Conv2d(W, activation=(2.0, 1.0)), ValueError, "min ≤ max"),
    (lambda: dsconv.Conv2d(W).cost((1, 4, 8)), ValueError, "input_shape"),
    (lambda: dsconv.cost((1, 3, 7, 7), 0), ValueError, "out_channels"),
    (lambda: dsconv.cost((1, 3, 2, 2), 8, 5), ValueError, "geometry"),
    (lambda: dsconv.cost((1 << 40, 1 << 20, 1 << 20, 1 << 20), 1 << 30), ValueError,
     "overflow"),
    (lambda: dsconv.load("resnet-50"), ValueError, "mobilenet-v2"),
    (lambda: dsconv.load("efficientnet-lite0", width=0.5), ValueError, "width"),
    (lambda: dsconv.load("mobilenet-v2", weights=12), TypeError, "weights"),
    (lambda: dsconv.load("mobilenet-v2", weights="/nonexistent/x.pth"), FileNotFoundError,
     "/nonexistent/x.pth"),
    (lambda: dsconv.load("/nonexistent/model.onnx"), FileNotFoundError, "model.onnx"),
    (lambda: dsconv.load("mobilenet-v2", seed=1, width=0.25).predict(
        np.ones((1, 4, 32, 32), np.float32)), ValueError, "3 channels"),
    (lambda: dsconv.load("mobilenet-v2", seed=1, width=0.25).predict(
        np.ones((3, 32, 32), np.float32)), ValueError, "expected 4 dimensions"),
    (lambda: dsconv.load("mobilenet-v2", seed=1, width=0.25).classify(
        np.ones((8, 8, 3), np.float32)), TypeError, "uint8"),
    (lambda: dsconv.load("mobilenet-v2", seed=1, width=0.25).classify([], top=1), ValueError,
     "no images"),
    (lambda: dsconv.load("efficientnet-lite1", seed=1).classify(
        np.zeros((8, 8, 3), np.uint8)), ValueError, "preprocessing"),
    (lambda: dsconv.set_num_threads(-3), ValueError, "threads"),
])
def test_bad_input_raises(call, exc, message):
    with pytest.raises(exc) as e:
        call()
    assert message.lower() in str(e.value).lower(), str(e.value)


def test_corrupt_and_hostile_checkpoints_are_value_errors(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        dsconv.load("mobilenet-v2", weights=bad)
    adversarial = REPO / "crates" / "dsconv" / "tests" / "fixtures" / "weights" / "adversarial"
    files = sorted(adversarial.glob("*.pth"))
    assert files
    for f in files:
        with pytest.raises((ValueError, MemoryError)):
            dsconv.load("mobilenet-v2", weights=f)
    d = tmp_path / "a_directory.pth"
    d.mkdir()
    with pytest.raises(OSError):
        dsconv.load("mobilenet-v2", weights=d)


def test_the_interpreter_survives_and_still_computes():
    for _ in range(3):
        with pytest.raises(ValueError):
            dsconv.conv2d(X, W, groups=5)
    assert dsconv.conv2d(X, W).shape == (1, 8, 6, 6)
