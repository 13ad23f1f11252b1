"""The layer classes: equal to the functional conv2d / the f64 reference, built from
arrays or from state_dict-like mappings, cost dicts, the cost functions."""

import numpy as np
import pytest

import dsconv
import reference as ref


def test_conv2d_layer_equals_functional_and_fuses_activation():
    rng = np.random.default_rng(21)
    x = rng.standard_normal((2, 6, 11, 13)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    kw = dict(stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2), groups=2,
              padding_mode="replicate")
    layer = dsconv.Conv2d(w, b, **kw)
    assert np.array_equal(layer(x), dsconv.conv2d(x, w, b, **kw))
    assert np.array_equal(layer.forward(x, threads=2), layer(x))
    assert (layer.in_channels, layer.out_channels) == (6, 8)
    assert np.array_equal(layer.weight, w) and np.array_equal(layer.bias, b)
    relu6 = dsconv.Conv2d(w, b, activation="relu6", **kw)
    assert np.array_equal(relu6(x), np.clip(layer(x), 0, 6))
    clamp = dsconv.Conv2d(w, b, activation=(-0.5, 0.25), **kw)
    assert np.array_equal(clamp(x), np.clip(layer(x), -0.5, 0.25))
    nhwc = dsconv.Conv2d(w, b, layout="nhwc", **kw)
    got = nhwc(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    assert np.array_equal(got.transpose(0, 3, 1, 2), layer(x))
    assert "Conv2d" in repr(layer)


def test_depthwise_pointwise_separable_match_reference():
    rng = np.random.default_rng(22)
    x = rng.standard_normal((2, 8, 15, 15)).astype(np.float32)
    dw_w = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)  # multiplier 2
    dw_b = rng.standard_normal(16).astype(np.float32)
    pw_w = rng.standard_normal((12, 16, 1, 1)).astype(np.float32)
    kw = dict(stride=2, padding="same", padding_mode="reflect")
    dw = dsconv.DepthwiseConv2d(dw_w, dw_b, multiplier=2, **kw)
    assert (dw.channels, dw.multiplier) == (8, 2)
    want_dw = ref.conv2d(x, dw_w, dw_b, groups=8, **kw)
    assert ref.max_rel(dw(x), want_dw) <= 1e-5
    pw = dsconv.PointwiseConv2d(pw_w)
    mid = dw(x)
    assert ref.max_rel(pw(mid), ref.conv2d(mid, pw_w)) <= 1e-5
    block = dsconv.DepthwiseSeparableConv2d(dw_w, pw_w, dw_b, None, multiplier=2, **kw)
    assert np.array_equal(block(x), pw(dw(x)))
    composed = dsconv.DepthwiseSeparableConv2d.from_layers(dw, pw)
    assert np.array_equal(composed(x), block(x))
    assert np.array_equal(block.depthwise.weight, dw_w)
    # the fused path (multiplier 1, zero padding) equals the two layers run apart
    dw1 = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    pw1 = rng.standard_normal((24, 8, 1, 1)).astype(np.float32)
    fused = dsconv.DepthwiseSeparableConv2d(dw1, pw1, depthwise_activation="relu6",
                                            pointwise_activation="relu6", padding=1)
    apart = dsconv.PointwiseConv2d(pw1, activation="relu6")(
        dsconv.DepthwiseConv2d(dw1, padding=1, activation="relu6")(x))
    assert np.array_equal(fused(x), apart)
    want = np.clip(ref.conv2d(np.clip(ref.conv2d(x, dw1, groups=8, padding=1), 0, 6), pw1), 0, 6)
    assert ref.max_rel(fused(x), want) <= 1e-5
    for t in (1, 2):
        assert np.array_equal(fused(x, threads=t), fused(x))
    nhwc = dsconv.DepthwiseSeparableConv2d(dw1, pw1, depthwise_activation="relu6",
                                           pointwise_activation="relu6", padding=1,
                                           layout="nhwc")
    got = nhwc(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    assert np.array_equal(got, fused(x))


def test_layers_from_state_dict_names():
    rng = np.random.default_rng(23)
    sd = {
        "block.depthwise.weight": rng.standard_normal((4, 1, 3, 3)),       # float64: converted
        "block.depthwise.bias": rng.standard_normal(4),
        "block.pointwise.weight": rng.standard_normal((8, 4, 1, 1)),
        "conv.weight": rng.standard_normal((8, 4, 3, 3)).astype(np.float32),
    }
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    block = dsconv.DepthwiseSeparableConv2d.from_state_dict(sd, prefix="block.", padding=1)
    direct = dsconv.DepthwiseSeparableConv2d(
        sd["block.depthwise.weight"], sd["block.pointwise.weight"], sd["block.depthwise.bias"],
        padding=1)
    assert np.array_equal(block(x), direct(x))
    conv = dsconv.Conv2d.from_state_dict(sd, "conv.", padding="same")
    assert conv.bias is None
    assert np.array_equal(conv(x), dsconv.conv2d(x, sd["conv.weight"], padding="same"))
    dwl = dsconv.DepthwiseConv2d.from_state_dict(sd, "block.depthwise.", padding=1)
    pwl = dsconv.PointwiseConv2d.from_state_dict(sd, "block.pointwise.")
    assert np.array_equal(pwl(dwl(x)), block(x))
    with pytest.raises(ValueError, match="state_dict has no 'nope.weight'"):
        dsconv.Conv2d.from_state_dict(sd, "nope.")


def test_costs():
    c = dsconv.cost((1, 3, 7, 7), 128, 3)                 # the seed's example
    assert c["standard"]["macs"] == 86_400
    assert c["depthwise"]["macs"] == 675 and c["pointwise"]["macs"] == 9_600
    assert c["separable"]["macs"] == 10_275
    assert c["ratio"] == pytest.approx(10_275 / 86_400)
    assert c["formula_ratio"] == pytest.approx(1 / 128 + 1 / 9)
    assert c["standard"]["kind"] == "standard" and c["pointwise"]["kind"] == "pointwise"
    nhwc = dsconv.cost((1, 7, 7, 3), 128, kernel_size=3, layout="nhwc")
    assert nhwc["separable"] == c["separable"]
    block = dsconv.DepthwiseSeparableConv2d(np.ones((3, 1, 3, 3), np.float32),
                                            np.ones((128, 3, 1, 1), np.float32))
    assert block.cost((1, 3, 7, 7))["macs"] == 10_275
    assert block.cost((1, 3, 7, 7))["flops"] == 20_550
    conv = dsconv.Conv2d(np.ones((128, 3, 3, 3), np.float32))
    assert conv.cost((1, 3, 7, 7))["macs"] == 86_400
    v1 = dsconv.model_cost("mobilenet-v1")
    assert v1["total"]["macs"] == 568_740_352 and v1["total"]["params"] == 4_210_088
    assert v1["layers"][0]["name"] == "conv1"
    std = dsconv.model_cost("MobileNetV1", as_standard=True)
    assert std["total"]["macs"] > 4_800_000_000
    lite = dsconv.model_cost("efficientnet-lite0")
    assert lite["layers"][0]["name"] == "_conv_stem"
    net = dsconv.load("efficientnet-lite0", seed=3)
    assert net.cost()["total"] == lite["total"]
    with pytest.raises(ValueError, match="mobilenet-v1 only"):
        dsconv.model_cost("mobilenet-v2", as_standard=True)
