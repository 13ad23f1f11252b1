"""dsconv.load("model.onnx"): the ONNX importer (crates/dsconv-onnx) from Python, on the
committed torchvision MobileNetV2 export (random weights, 10 classes, dynamic H×W) and its
PyTorch float64 / ONNX Runtime outputs (crates/dsconv-onnx/tests/fixtures/torch/)."""

import threading

import numpy as np
import pytest

import dsconv
from conftest import IMAGES, REPO

FIX = REPO / "crates" / "dsconv-onnx" / "tests" / "fixtures" / "torch"
MODEL = FIX / "mobilenet_v2_ts_op11.onnx"


def test_predict_matches_pytorch_float64_and_is_thread_count_independent():
    m = dsconv.load(MODEL)
    assert isinstance(m, dsconv.OnnxModel)
    assert m.outputs and m.inputs[0][1][1] == 3
    x = np.load(FIX / "mobilenet_v2_ts_op11.in.npy")
    ref = np.load(FIX / "mobilenet_v2_ts_op11.torch64.npy")
    y1 = m.predict(x, threads=1)
    y2 = m.predict(x, threads=2)
    assert y1.shape == ref.shape and y1.dtype == np.float32
    assert np.array_equal(y1, y2)
    err = np.abs(y1.astype(np.float64) - ref).max() / np.abs(ref).max()
    assert err < 1e-5, err
    # run() gives every output; a list of one input is the same as the bare array.
    (y3,) = m.run([x])
    assert np.array_equal(y1, y3)


def test_classify_with_preprocessing_arguments_and_cost():
    m = dsconv.load(MODEL, threads=2)
    res = m.classify(
        [IMAGES / "chelsea.png", IMAGES / "coffee.png"],
        top=3,
        resize=72,
        crop=64,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    assert len(res) == 2 and all(len(r) == 3 for r in res)
    for r in res:
        p = [c["probability"] for c in r]
        assert p == sorted(p, reverse=True)
    # The same batch through predict: the same top class.
    spec = {"resize": 72, "crop": (64, 64), "resampling": "bilinear",
            "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    batch = np.stack([dsconv.preprocess_image(IMAGES / "coffee.png", spec)])
    assert int(np.argmax(m.predict(batch)[0])) == res[1][0]["index"]
    cost = m.cost((1, 3, 64, 64))
    assert cost["total"]["macs"] > 0 and cost["layers"]


def test_many_python_threads_share_one_model():
    m = dsconv.load(MODEL)
    x = np.load(FIX / "mobilenet_v2_ts_op11.in.npy")
    want = m.predict(x, threads=1)
    got = [None] * 6
    def work(i):
        got[i] = m.predict(x, threads=1 + i % 2)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(np.array_equal(g, want) for g in got)


def test_bad_onnx_input_raises(tmp_path):
    m = dsconv.load(MODEL)
    with pytest.raises(ValueError):
        m.predict(np.ones((1, 4, 32, 32), np.float32))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(MODEL.read_bytes()[:1000])
    with pytest.raises(ValueError):
        dsconv.load(bad)
    with pytest.raises(ValueError, match="holds its weights"):
        dsconv.load(MODEL, weights="w.pth")
    with pytest.raises(ValueError):
        m.classify(IMAGES / "coffee.png", resize=72, crop=64, mean=(0.5,), std=(1, 1, 1))
