"""dsconv.conv2d against the float64 reference on random geometries: every padding form
(int, pair, four sides, same, valid) and mode, both layouts, groups, depthwise, depth
multiplier, pointwise; input dtypes and memory orders."""

import numpy as np
import pytest

import dsconv
import reference as ref

TOL = 1e-5  # × max|reference|, the target


def run_case(rng, case, layout, threads=1):
    x = rng.standard_normal(case["x_shape"]).astype(np.float32)
    w = rng.standard_normal(case["w_shape"]).astype(np.float32)
    b = rng.standard_normal(case["w_shape"][0]).astype(np.float32) if case["bias"] else None
    want = ref.conv2d(x, w, b, **case["kw"])
    xin = x if layout == "nchw" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    got = dsconv.conv2d(xin, w, b, layout=layout, threads=threads, **case["kw"])
    if layout == "nhwc":
        got = got.transpose(0, 3, 1, 2)
    return got, want


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_random_geometries_match_float64_reference(layout):
    rng = np.random.default_rng(7 if layout == "nchw" else 8)
    seen = set()
    for _ in range(300):
        case = ref.random_case(rng)
        got, want = run_case(rng, case, layout)
        assert got.dtype == np.float32
        assert got.shape == want.shape, case
        assert ref.max_rel(got, want) <= TOL, case
        kw = case["kw"]
        form = kw["padding"] if isinstance(kw["padding"], str) else (
            "int" if isinstance(kw["padding"], int) else f"{len(kw['padding'])}-tuple")
        seen.add((form, kw["padding_mode"]))
    # every padding form met every mode
    forms = {"int", "2-tuple", "4-tuple", "same", "valid"}
    modes = {"zeros", "reflect", "replicate", "circular"}
    assert seen == {(f, m) for f in forms for m in modes}


def test_mobilenet_sized_layers_and_threads_are_bitwise_equal():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 32, 28, 28)).astype(np.float32)
    cases = [
        (rng.standard_normal((32, 1, 3, 3)), dict(groups=32, padding=1)),
        (rng.standard_normal((32, 1, 3, 3)), dict(groups=32, stride=2, padding="same")),
        (rng.standard_normal((64, 32, 1, 1)), dict()),
        (rng.standard_normal((16, 32, 3, 3)), dict(padding=(1, 2, 0, 1), stride=(2, 1))),
        (rng.standard_normal((64, 1, 5, 5)), dict(groups=32, padding=2,
                                                  padding_mode="reflect")),
    ]
    for w, kw in cases:
        w = w.astype(np.float32)
        want = ref.conv2d(x, w, **kw)
        one = dsconv.conv2d(x, w, threads=1, **kw)
        assert ref.max_rel(one, want) <= TOL, kw
        for t in (2, 3, 0):
            assert np.array_equal(dsconv.conv2d(x, w, threads=t, **kw), one), (kw, t)
        nhwc = dsconv.conv2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), w, layout="nhwc",
                             **kw)
        assert np.array_equal(nhwc.transpose(0, 3, 1, 2), one), kw


def test_dtypes_and_memory_orders():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 9, 9))
    w = rng.standard_normal((4, 3, 3, 3))
    want = dsconv.conv2d(x.astype(np.float32), w.astype(np.float32), groups=2, padding=1)
    # float64 inputs are converted
    assert np.array_equal(dsconv.conv2d(x, w, groups=2, padding=1), want)
    # Fortran order and a strided view are copied into C order first
    xf = np.asfortranarray(x.astype(np.float32))
    assert np.array_equal(dsconv.conv2d(xf, w.astype(np.float32), groups=2, padding=1), want)
    big = np.zeros((2, 12, 9, 18), np.float32)
    big[:, ::2, :, ::2] = x
    view = big[:, ::2, :, ::2]
    assert not view.flags.c_contiguous
    assert np.array_equal(dsconv.conv2d(view, w.astype(np.float32), groups=2, padding=1), want)
    # lists work too
    small = dsconv.conv2d([[[[1.0, 2.0], [3.0, 4.0]]]], [[[[1.0]]]], bias=[0.5])
    assert small.tolist() == [[[[1.5, 2.5], [3.5, 4.5]]]]
    # the input array is not modified
    x32 = x.astype(np.float32)
    before = x32.copy()
    dsconv.conv2d(x32, w.astype(np.float32), groups=2, padding=1, padding_mode="circular")
    assert np.array_equal(x32, before)


def test_same_at_stride_2_is_tf_same_upper():
    # in 6, k 3, s 2 → out 3, total padding 1: all of it at the bottom/right
    x = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    w = np.ones((1, 1, 3, 3), np.float32)
    got = dsconv.conv2d(x, w, stride=2, padding="same")
    want = dsconv.conv2d(x, w, stride=2, padding=(0, 1, 0, 1))
    assert got.shape == (1, 1, 3, 3)
    assert np.array_equal(got, want)


def test_nan_and_inf_propagate():
    x = np.ones((1, 2, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    x[0, 1, 2, 2] = np.inf
    y = dsconv.conv2d(x, np.ones((2, 1, 1, 1), np.float32), groups=2)
    assert np.isnan(y[0, 0, 1, 1]) and np.isinf(y[0, 1, 2, 2])
    assert np.isfinite(y).sum() == y.size - 2
