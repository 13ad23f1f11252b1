"""Training from Python: dsconv.train / TrainableModel.fit against `dsconv train` (the same
weights, bit for bit), the callback, Ctrl-C and exceptions (nothing written), threads,
save / load, and bad input."""

import json
import os
import pathlib
import signal
import subprocess

import numpy as np
import pytest

import dsconv
from conftest import need

SMALL = dict(widths=(8, 16))


def cli() -> str:
    path = os.environ.get("DSCONV_CLI", "")
    need(bool(path) and os.path.isfile(path), f"the dsconv binary (DSCONV_CLI={path!r})")
    return path


def toy(n=24, seed=0):
    """Class = which quadrant of an 8×8 image is bright (uint8 images, int32 labels)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n, dtype=np.int32) % 4
    x = rng.integers(0, 40, size=(n, 1, 8, 8), dtype=np.uint8)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 0, r * 4 : r * 4 + 4, q * 4 : q * 4 + 4] += 200
    return x, y


def no_files(d: pathlib.Path):
    return sorted(p.name for p in d.iterdir())


def test_digits_as_dsconv_train_bit_for_bit(tmp_path):
    exe = cli()
    args = ["--epochs", "2", "--lr", "3e-3", "--seed", "5", "--schedule", "cosine"]
    run = subprocess.run(
        [exe, "train", "--model", "ds-cnn", "--data", "digits", "--val", "digits-test",
         *args, "--threads", "1", "--json", "--out", str(tmp_path / "cli.safetensors")],
        capture_output=True, text=True, check=True,
    )
    summary = json.loads(run.stdout)
    net = dsconv.train(
        "ds-cnn", data="digits", val="digits-test", epochs=2, lr=3e-3, seed=5,
        schedule="cosine", threads=2, out=tmp_path / "py.safetensors",
    )
    # The same numbers, epoch by epoch, and the same weights.
    h = net.history
    assert h.steps == summary["steps"] == 90
    assert h.loss == [e["loss"] for e in summary["epochs"]]
    assert h.accuracy == [e["accuracy"] for e in summary["epochs"]]
    assert h.val_accuracy == [e["val_accuracy"] for e in summary["epochs"]]
    assert h.val_accuracy[-1] == summary["val_accuracy"] > 0.9
    from_cli = dsconv.TrainableModel.load(tmp_path / "cli.safetensors", input_shape=(1, 8, 8))
    from_py = dsconv.TrainableModel.load(tmp_path / "py.safetensors", input_shape=(1, 8, 8))
    ours = net.state_dict()
    for sd in (from_cli.state_dict(), from_py.state_dict()):
        assert sorted(sd) == sorted(ours)
        for k, v in ours.items():
            assert v.dtype == sd[k].dtype and v.shape == sd[k].shape, k
            assert np.array_equal(v, sd[k]), k
    assert ours["features.0.1.num_batches_tracked"].dtype == np.int64
    assert int(ours["features.0.1.num_batches_tracked"]) == 90
    # evaluate is `dsconv eval`; the optimizer state went beside the checkpoint.
    ev = net.evaluate("digits-test")
    assert ev["accuracy"] == h.val_accuracy[-1] and ev["images"] == 359
    out = subprocess.run(
        [exe, "eval", "--model", "ds-cnn", "--weights", str(tmp_path / "py.safetensors"),
         "--data", "digits-test", "--json"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(out.stdout)["accuracy"] == ev["accuracy"]
    assert (tmp_path / "py.optim.safetensors").is_file()
    # Reloaded, it predicts the same logits.
    test_images = dsconv.Dataset.digits("test").images
    assert np.array_equal(from_py.predict(test_images), net.predict(test_images))
    top = net.classify(test_images[:3], top=2)
    assert len(top) == 3 and len(top[0]) == 2
    assert top[0][0]["probability"] >= top[0][1]["probability"]
    assert top[0][0]["index"] == int(np.argmax(net.predict(test_images[:1])[0]))


def test_fit_on_arrays_callback_threads_and_resume(tmp_path):
    x, y = toy()
    runs = []
    for threads in (1, 2):
        events = []
        net = dsconv.TrainableModel("std-cnn", seed=3, **SMALL)
        assert not net.built
        h = net.fit((x, y), val=(x, y), steps=5, batch=8, optimizer="sgd", lr=0.05,
                    momentum=0.9, nesterov=True, augment=True, threads=threads,
                    callback=events.append)
        runs.append(net.state_dict())
    assert net.built and net.input_shape == (1, 8, 8) and net.classes == 4
    # 24 images at batch 8: 3 steps per epoch; 5 steps = 2 epochs, the second partial.
    kinds = [(e["event"], e["step"] if e["event"] == "step" else e["steps"]) for e in events]
    assert kinds == [("step", 1), ("step", 2), ("step", 3), ("epoch", 3),
                     ("step", 4), ("step", 5), ("epoch", 5)]
    assert events[0]["epoch_steps"] == 3 and events[4]["epoch_steps"] == 2
    assert len(h) == 2 and h.steps == 5 and h["val_accuracy"] == h.val_accuracy
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
    # resume=True continues the optimizer; a fresh fit starts a new one.
    net.fit((x, y), steps=2, batch=8, optimizer="sgd", lr=0.05, momentum=0.9,
            nesterov=True, resume=True)
    assert net.info()["optimizer_steps"] == 7
    with pytest.raises(ValueError, match="sgd"):
        net.fit((x, y), steps=1, batch=8, resume=True)
    # save(optimizer=True) + dsconv.train(init=..., resume=True).
    paths = net.save(tmp_path / "a.safetensors", optimizer=True)
    assert [os.path.basename(p) for p in paths] == ["a.safetensors", "a.optim.safetensors"]
    again = dsconv.train("std-cnn", data=(x, y), init=tmp_path / "a.safetensors",
                         resume=True, steps=1, batch=8, optimizer="sgd", lr=0.05,
                         momentum=0.9, nesterov=True)
    assert again.info()["widths"] == [8, 16]
    # load_state_dict round trip, and a foreign one refused with every key named.
    other = dsconv.TrainableModel("std-cnn", input_shape=(1, 8, 8), classes=4, **SMALL)
    other.load_state_dict(net.state_dict())
    assert np.array_equal(other.predict(x), net.predict(x))
    with pytest.raises(ValueError, match="classifier.1.bias"):
        sd = net.state_dict()
        del sd["classifier.1.bias"]
        other.load_state_dict(sd)


def test_callback_exception_and_ctrl_c_stop_training_writing_nothing(tmp_path):
    x, y = toy()
    seen = []

    def boom(event):
        seen.append(event["event"])
        if len(seen) == 2:
            raise RuntimeError("stop here")

    net = dsconv.TrainableModel("ds-cnn", **SMALL)
    with pytest.raises(RuntimeError, match="stop here"):
        net.fit((x, y), epochs=3, batch=8, callback=boom, out=tmp_path / "x.safetensors")
    assert seen == ["step", "step"]
    assert no_files(tmp_path) == []
    assert net.info()["optimizer_steps"] == 0  # the failed fit's optimizer is not kept

    def interrupt(event):
        signal.raise_signal(signal.SIGINT)

    # Python installs its KeyboardInterrupt handler only when SIGINT is not ignored at
    # start-up (a shell's background job inherits SIG_IGN): install it for this check.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            dsconv.train("ds-cnn", data=(x, y), epochs=3, batch=8, callback=interrupt,
                         out=tmp_path / "y.safetensors", **SMALL)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert no_files(tmp_path) == []
    # A diverging run names the optimizer step and writes nothing either.
    with pytest.raises(ValueError, match="optimizer step"):
        dsconv.train("ds-cnn", data=(x, y), optimizer="sgd", lr=1e30, steps=20, batch=4,
                     out=tmp_path / "z.safetensors", **SMALL)
    assert no_files(tmp_path) == []


def test_image_folder_as_dsconv_train(tmp_path):
    from PIL import Image

    root = tmp_path / "photos"
    for name, v in (("cat", 30), ("dog", 220)):
        (root / name).mkdir(parents=True)
        for i in range(4):
            px = np.zeros((6, 6, 3), np.uint8)
            px[..., 0], px[..., 1] = v, v + i
            px[..., 2] = (np.arange(6) * 10)[None, :]
            Image.fromarray(px).save(root / name / f"{i}.png")
    net = dsconv.train("ds-cnn", data=root, steps=3, batch=4, widths=(4, 8), seed=2)
    assert net.class_names == ["cat", "dog"] and net.input_shape == (3, 6, 6)
    assert net.classify(np.asarray(Image.open(root / "dog" / "0.png")).transpose(2, 0, 1)[None],
                        top=2)[0][0]["label"] in ("cat", "dog")
    exe = cli()
    subprocess.run(
        [exe, "train", "--model", "ds-cnn", "--data", str(root), "--steps", "3", "--batch",
         "4", "--widths", "4,8", "--seed", "2", "--out", str(tmp_path / "f.safetensors")],
        capture_output=True, check=True,
    )
    theirs = dsconv.TrainableModel.load(tmp_path / "f.safetensors", input_shape=(3, 6, 6))
    ours = net.state_dict()
    assert all(np.array_equal(v, theirs.state_dict()[k]) for k, v in ours.items())


def test_bad_input_raises_with_the_library_message(tmp_path):
    x, y = toy(8)
    fit = dict(steps=1, batch=4, **SMALL)
    with pytest.raises(ValueError, match="int64 or int32"):
        dsconv.train("ds-cnn", data=(x, y.astype(np.float32)), **fit)
    with pytest.raises(ValueError, match="labels"):
        dsconv.train("ds-cnn", data=(x, y[:5]), **fit)
    with pytest.raises(ValueError, match="negative"):
        dsconv.train("ds-cnn", data=(x, np.where(y == 3, -1, y)), **fit)
    with pytest.raises(ValueError, match="4 dimensions"):
        dsconv.train("ds-cnn", data=(x[:, 0], y), **fit)
    with pytest.raises(ValueError, match="out of range"):
        dsconv.train("ds-cnn", data=(x, y), val=(x, y + 1), **fit)
    with pytest.raises(ValueError, match=r"\[1, 8, 8\]"):
        dsconv.train("ds-cnn", data=(x, y), val=(x[:, :, :4, :4], y), **fit)
    with pytest.raises(ValueError, match="unknown; trainable models: ds-cnn"):
        dsconv.train("resnet", data=(x, y), **fit)
    with pytest.raises(ValueError, match="at least 2"):
        dsconv.train("ds-cnn", data=(x, y), steps=1, batch=1)
    with pytest.raises(ValueError, match="step:EPOCHS:GAMMA"):
        dsconv.train("ds-cnn", data=(x, y), schedule="linear", **fit)
    with pytest.raises(ValueError, match="expected sgd or adamw"):
        dsconv.train("ds-cnn", data=(x, y), optimizer="lbfgs", **fit)
    with pytest.raises(ValueError, match="SGD options"):
        dsconv.train("ds-cnn", data=(x, y), momentum=0.9, **fit)
    with pytest.raises(ValueError, match="not both"):
        dsconv.train("ds-cnn", data=(x, y), epochs=1, steps=1)
    with pytest.raises(ValueError, match="label_smoothing"):
        dsconv.train("ds-cnn", data=(x, y), label_smoothing=2.0, **fit)
    with pytest.raises(FileNotFoundError):
        dsconv.train("ds-cnn", data=(x, y), init=tmp_path / "missing.safetensors", **fit)
    with pytest.raises(ValueError, match="not digits"):
        dsconv.train("ds-cnn", data="nowhere", **fit)
    with pytest.raises(TypeError):
        dsconv.train("ds-cnn", data=42, **fit)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        dsconv.train("ds-cnn", data=tmp_path / "empty", **fit)
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot decode"):
        dsconv.train("ds-cnn", data=tmp_path / "bad", **fit)
    # Another architecture's checkpoint.
    std = dsconv.train("std-cnn", data=(x, y), **fit)
    std.save(tmp_path / "std.safetensors")
    with pytest.raises(ValueError, match="not a ds-cnn checkpoint"):
        dsconv.TrainableModel.load(tmp_path / "std.safetensors", input_shape=(1, 8, 8))
    net = dsconv.TrainableModel("ds-cnn")
    with pytest.raises(RuntimeError, match="not built"):
        net.predict(x)
    assert no_files(tmp_path) == ["bad", "empty", "std.safetensors"]


def test_every_trainable_model_trains_from_python(rng):
    names = dsconv.trainable_models()
    assert {"ds-cnn", "std-cnn", "mobilenet-v2"} <= set(names)
    x = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
    y = np.array([0, 1, 0, 1])
    net = dsconv.train("MobileNetV2", data=(x, y), steps=1, batch=4, seed=1)
    assert net.name == "mobilenet-v2" and net.predict(x).shape == (4, 2)
    assert "features.0.0.weight" in net.state_dict()


def test_width_mult_drop_path_and_fine_tune(tmp_path, rng):
    # width_mult: MobileNetV2's stem has round(32·α to a multiple of 8) channels.
    half = dsconv.TrainableModel("mobilenet-v2", input_shape=(3, 32, 32), classes=3,
                                 width_mult=0.5)
    assert half.state_dict()["features.0.0.weight"].shape == (16, 3, 3, 3)
    assert half.state_dict()["classifier.1.weight"].shape[0] == 3
    lite = dsconv.TrainableModel("efficientnet-lite0", input_shape=(3, 32, 32), classes=2,
                                 drop_path=0.2)
    x = rng.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8)
    assert lite.predict(x).shape == (2, 2)
    with pytest.raises(ValueError, match="drop_path"):
        dsconv.TrainableModel("efficientnet-lite0", input_shape=(3, 32, 32), classes=2,
                              drop_path=1.5)
    # Fine-tuning a 4-class checkpoint to 3 classes: a fresh classifier, the rest loaded;
    # without fine_tune the checkpoint's class count wins.
    src = dsconv.TrainableModel("ds-cnn", input_shape=(1, 8, 8), classes=4, seed=3, **SMALL)
    ckpt = tmp_path / "four.safetensors"
    src.save(str(ckpt))
    base = src.state_dict()
    kept = dsconv.TrainableModel("ds-cnn", input_shape=(1, 8, 8), classes=3, weights=ckpt)
    assert kept.classes == 4
    tuned = dsconv.TrainableModel("ds-cnn", input_shape=(1, 8, 8), classes=3, weights=ckpt,
                                  fine_tune=True, seed=5)
    assert tuned.classes == 3
    sd = tuned.state_dict()
    head = [k for k in sd if sd[k].shape != base[k].shape]
    assert head and all(k.startswith(("classifier", "fc")) for k in head), head
    for k in sd:
        if k not in head:
            np.testing.assert_array_equal(sd[k], base[k], err_msg=k)
    x, y = toy(12)
    net = dsconv.train("ds-cnn", data=(x, y % 3), init=ckpt, fine_tune=True, steps=1,
                       batch=4, seed=0)
    assert net.classes == 3 and net.predict(x).shape == (12, 3)
    with pytest.raises(ValueError, match="fine_tune"):
        dsconv.TrainableModel("ds-cnn", fine_tune=True)
