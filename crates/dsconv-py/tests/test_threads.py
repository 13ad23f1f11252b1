"""Many Python threads at once on shared functions, layers and networks: every result
identical to the single-threaded one (the GIL is released while computing)."""

import threading

import numpy as np

import dsconv


def run_threads(n, fn):
    results, errors = [None] * n, []

    def work(i):
        try:
            results[i] = fn(i)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    return results


def test_concurrent_calls_give_identical_results():
    rng = np.random.default_rng(31)
    x = rng.standard_normal((2, 16, 24, 24)).astype(np.float32)
    w = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)
    pw = rng.standard_normal((32, 16, 1, 1)).astype(np.float32)
    block = dsconv.DepthwiseSeparableConv2d(w, pw, padding=1, threads=2)
    net = dsconv.load("mobilenet-v2", width=0.35, seed=2)
    img = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    want_conv = dsconv.conv2d(x, w, groups=16, padding="same", padding_mode="reflect",
                              threads=1)
    want_block = block(x, threads=1)
    want_net = net.predict(img, threads=1)
    dy = np.ones_like(want_conv)
    want_dw = dsconv.grad.conv2d_weight(x, w.shape, dy, groups=16, padding="same",
                                        padding_mode="reflect", threads=1)

    def work(i):
        threads = [1, 2, None][i % 3]
        out = []
        for _ in range(3):
            out.append(np.array_equal(
                dsconv.conv2d(x, w, groups=16, padding="same", padding_mode="reflect",
                              threads=threads), want_conv))
            out.append(np.array_equal(block(x, threads=threads), want_block))
            out.append(np.array_equal(net.predict(img, threads=threads), want_net))
            out.append(np.array_equal(dsconv.grad.conv2d_weight(
                x, w.shape, dy, groups=16, padding="same", padding_mode="reflect",
                threads=threads), want_dw))
        return out

    for r in run_threads(8, work):
        assert all(r), r


def test_default_thread_count_setting():
    before = dsconv.get_num_threads()
    try:
        dsconv.set_num_threads(1)
        assert dsconv.get_num_threads() == 1
        dsconv.set_num_threads(0)       # back to one per core
        assert dsconv.get_num_threads() >= 1
    finally:
        dsconv.set_num_threads(before)
