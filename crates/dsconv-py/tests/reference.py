"""A float64 NumPy reference of conv2d and its gradients, written from the definition
(independent of dsconv): pad with np.pad (zeros / reflect / edge / wrap), then sum the
taps. The gradients are the adjoint of that: scatter each tap back into the padded input,
then fold every padded copy onto the pixel it copied."""

from __future__ import annotations

import math

import numpy as np

NP_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def resolve_padding(padding, in_hw, k_hw, stride, dilation):
    """(top, bottom, left, right) for every padding form dsconv accepts."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        assert padding == "same"
        out = []
        for n, k, s, d in zip(in_hw, k_hw, stride, dilation):
            o = -(-n // s)
            total = max((o - 1) * s + (k - 1) * d + 1 - n, 0)
            out += [total // 2, total - total // 2]
        return tuple(out)
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


def _geometry(x_shape, w_shape, stride, padding, dilation):
    _, _, h, w = x_shape
    _, _, kh, kw = w_shape
    stride, dilation = pair(stride), pair(dilation)
    top, bottom, left, right = resolve_padding(padding, (h, w), (kh, kw), stride, dilation)
    oh = (h + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return stride, dilation, (top, bottom, left, right), oh, ow


def _pad(x, pads, mode):
    top, bottom, left, right = pads
    width = ((0, 0), (0, 0), (top, bottom), (left, right))
    return np.pad(x, width, mode=NP_MODES[mode])


def _tap(xp, i, j, stride, dilation, oh, ow):
    r0, c0 = i * dilation[0], j * dilation[1]
    return xp[:, :, r0 : r0 + stride[0] * (oh - 1) + 1 : stride[0],
              c0 : c0 + stride[1] * (ow - 1) + 1 : stride[1]]


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """NCHW float64 conv2d from the definition."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    stride, dilation, pads, oh, ow = _geometry(x.shape, w.shape, stride, padding, dilation)
    xp = _pad(x, pads, padding_mode)
    n = x.shape[0]
    cout, cin_g, kh, kw = w.shape
    cout_g = cout // groups
    y = np.zeros((n, cout, oh, ow))
    for g in range(groups):
        xs = slice(g * cin_g, (g + 1) * cin_g)
        os_ = slice(g * cout_g, (g + 1) * cout_g)
        for i in range(kh):
            for j in range(kw):
                t = _tap(xp[:, xs], i, j, stride, dilation, oh, ow)
                y[:, os_] += np.einsum("nchw,oc->nohw", t, w[os_, :, i, j])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def _source(i, n, mode):
    if 0 <= i < n:
        return i
    if mode == "zeros":
        return None
    if mode == "reflect":
        return -i if i < 0 else 2 * (n - 1) - i
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    return i % n


def conv2d_input(x_shape, w, dy, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """∂L/∂x in float64 for an upstream gradient dy (NCHW)."""
    w = np.asarray(w, np.float64)
    dy = np.asarray(dy, np.float64)
    stride, dilation, pads, oh, ow = _geometry(x_shape, w.shape, stride, padding, dilation)
    n, c, h, wd = x_shape
    top, bottom, left, right = pads
    dxp = np.zeros((n, c, h + top + bottom, wd + left + right))
    cout, cin_g, kh, kw = w.shape
    cout_g = cout // groups
    for g in range(groups):
        xs = slice(g * cin_g, (g + 1) * cin_g)
        os_ = slice(g * cout_g, (g + 1) * cout_g)
        for i in range(kh):
            for j in range(kw):
                r0, c0 = i * dilation[0], j * dilation[1]
                dxp[:, xs, r0 : r0 + stride[0] * (oh - 1) + 1 : stride[0],
                    c0 : c0 + stride[1] * (ow - 1) + 1 : stride[1]] += np.einsum(
                    "nohw,oc->nchw", dy[:, os_], w[os_, :, i, j])
    rows = np.zeros((n, c, h, dxp.shape[3]))
    for r in range(dxp.shape[2]):
        s = _source(r - top, h, padding_mode)
        if s is not None:
            rows[:, :, s] += dxp[:, :, r]
    dx = np.zeros((n, c, h, wd))
    for col in range(rows.shape[3]):
        s = _source(col - left, wd, padding_mode)
        if s is not None:
            dx[:, :, :, s] += rows[:, :, :, col]
    return dx


def conv2d_weight(x, w_shape, dy, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """∂L/∂w in float64."""
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    stride, dilation, pads, oh, ow = _geometry(x.shape, w_shape, stride, padding, dilation)
    xp = _pad(x, pads, padding_mode)
    cout, cin_g, kh, kw = w_shape
    cout_g = cout // groups
    dw = np.zeros(w_shape)
    for g in range(groups):
        xs = slice(g * cin_g, (g + 1) * cin_g)
        os_ = slice(g * cout_g, (g + 1) * cout_g)
        for i in range(kh):
            for j in range(kw):
                t = _tap(xp[:, xs], i, j, stride, dilation, oh, ow)
                dw[os_, :, i, j] = np.einsum("nohw,nchw->oc", dy[:, os_], t)
    return dw


def random_case(rng, modes=("zeros", "reflect", "replicate", "circular")):
    """A random valid geometry: every padding form, mode, groups kind; small sizes."""
    while True:
        kind = rng.choice(["standard", "depthwise", "multiplier", "grouped", "pointwise"])
        n = int(rng.integers(1, 3))
        h, w = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        if kind == "pointwise":
            kh = kw = 1
        else:
            kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        if kind == "standard":
            cin, groups = int(rng.integers(1, 6)), 1
            cout = int(rng.integers(1, 9))
        elif kind == "pointwise":
            cin, groups, cout = int(rng.integers(1, 9)), 1, int(rng.integers(1, 9))
        elif kind == "depthwise":
            cin = int(rng.integers(1, 12))
            groups, cout = cin, cin
        elif kind == "multiplier":
            cin = int(rng.integers(1, 6))
            groups, cout = cin, cin * int(rng.integers(2, 4))
        else:
            groups = int(rng.integers(2, 4))
            cin = groups * int(rng.integers(1, 4))
            cout = groups * int(rng.integers(1, 4))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        form = rng.choice(["int", "pair", "four", "same", "valid"])
        if form == "int":
            padding = int(rng.integers(0, 4))
        elif form == "pair":
            padding = (int(rng.integers(0, 4)), int(rng.integers(0, 4)))
        elif form == "four":
            padding = tuple(int(v) for v in rng.integers(0, 4, size=4))
        else:
            padding = str(form)
        mode = str(rng.choice(list(modes)))
        if isinstance(padding, int) and rng.random() < 0.5:
            stride = int(stride[0])
        pads = resolve_padding(padding, (h, w), (kh, kw), pair(stride), dilation)
        limit = {"reflect": lambda p, s: p < s, "circular": lambda p, s: p <= s}.get(
            mode, lambda p, s: True)
        if not all(limit(p, s) for p, s in zip(pads, (h, h, w, w))):
            continue
        if h + pads[0] + pads[1] < dilation[0] * (kh - 1) + 1:
            continue
        if w + pads[2] + pads[3] < dilation[1] * (kw - 1) + 1:
            continue
        return dict(
            x_shape=(n, cin, h, w), w_shape=(cout, cin // groups, kh, kw),
            bias=bool(rng.random() < 0.5),
            kw=dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                    padding_mode=mode),
        )


def max_rel(got, ref):
    """max |got − ref| / max(max|ref|, tiny)."""
    ref = np.asarray(ref, np.float64)
    scale = max(float(np.abs(ref).max()) if ref.size else 0.0, 1e-30)
    return float(np.abs(np.asarray(got, np.float64) - ref).max()) / scale if ref.size else 0.0


def ceil_div(a, b):
    return -(-a // b) if b else math.inf
