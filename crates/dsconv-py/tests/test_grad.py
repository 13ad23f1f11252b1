"""dsconv.grad against the float64 reference gradients on random geometries (the
reference itself is checked against the forward reference by the adjoint identity)."""

import numpy as np

import dsconv
import reference as ref

TOL = 1e-5


def test_reference_gradients_are_the_adjoint_of_the_forward():
    rng = np.random.default_rng(11)
    for _ in range(40):
        case = ref.random_case(rng)
        x = rng.standard_normal(case["x_shape"])
        w = rng.standard_normal(case["w_shape"])
        y = ref.conv2d(x, w, **case["kw"])
        dy = rng.standard_normal(y.shape)
        dx = ref.conv2d_input(x.shape, w, dy, **case["kw"])
        dw = ref.conv2d_weight(x, w.shape, dy, **case["kw"])
        # <conv(x, w), dy> is linear in x and in w
        lhs = float((y * dy).sum())
        assert abs(lhs - float((x * dx).sum())) <= 1e-9 * max(1.0, abs(lhs)), case
        assert abs(lhs - float((w * dw).sum())) <= 1e-9 * max(1.0, abs(lhs)), case


def test_random_geometries_match_float64_reference_gradients():
    rng = np.random.default_rng(12)
    for i in range(160):
        case = ref.random_case(rng)
        layout = "nchw" if i % 2 == 0 else "nhwc"
        x = rng.standard_normal(case["x_shape"]).astype(np.float32)
        w = rng.standard_normal(case["w_shape"]).astype(np.float32)
        y_shape = ref.conv2d(x, w, **case["kw"]).shape
        dy = rng.standard_normal(y_shape).astype(np.float32)
        want_dx = ref.conv2d_input(x.shape, w, dy, **case["kw"])
        want_dw = ref.conv2d_weight(x, w.shape, dy, **case["kw"])
        to = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))) if layout == "nhwc" \
            else (lambda a: a)
        x_size = to(x).shape
        dx = dsconv.grad.conv2d_input(x_size, w, to(dy), layout=layout, **case["kw"])
        dw = dsconv.grad.conv2d_weight(to(x), w.shape, to(dy), layout=layout, **case["kw"])
        if layout == "nhwc":
            dx = dx.transpose(0, 3, 1, 2)
        assert dx.shape == x.shape and dw.shape == w.shape
        assert ref.max_rel(dx, want_dx) <= TOL, case
        assert ref.max_rel(dw, want_dw) <= TOL, case
        db = dsconv.grad.conv2d_bias(to(dy), layout=layout)
        assert ref.max_rel(db, dy.astype(np.float64).sum(axis=(0, 2, 3))) <= TOL


def test_gradients_are_bitwise_equal_for_every_thread_count():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((32, 8, 3, 3)).astype(np.float32)
    kw = dict(stride=2, padding="same", groups=2, padding_mode="reflect")
    dy = rng.standard_normal(dsconv.conv2d(x, w, **kw).shape).astype(np.float32)
    dx1 = dsconv.grad.conv2d_input(x.shape, w, dy, threads=1, **kw)
    dw1 = dsconv.grad.conv2d_weight(x, w.shape, dy, threads=1, **kw)
    for t in (2, 4):
        assert np.array_equal(dsconv.grad.conv2d_input(x.shape, w, dy, threads=t, **kw), dx1)
        assert np.array_equal(dsconv.grad.conv2d_weight(x, w.shape, dy, threads=t, **kw), dw1)
