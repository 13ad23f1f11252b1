"""examples/ray_classify.py as written, on a local Ray (2 CPUs, bound to 127.0.0.1,
dashboard off) over 64 images made from the two test photos: every prediction equal to
dsconv's single-process result."""

import os
import subprocess
import sys

import numpy as np
import pytest

import dsconv
from conftest import IMAGES, REPO, need
from test_models import effnet_weights

N_IMAGES = 64


def make_images(folder):
    """64 PNGs: crops of several sizes and places, mirrored, flipped and rotated."""
    from PIL import Image
    rng = np.random.default_rng(64)
    photos = [np.asarray(Image.open(IMAGES / n).convert("RGB")) for n in
              ("chelsea.png", "coffee.png")]
    paths = []
    for i in range(N_IMAGES):
        a = photos[i % 2]
        h, w = a.shape[:2]
        ch, cw = int(rng.integers(h // 3, h + 1)), int(rng.integers(w // 3, w + 1))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = a[top:top + ch, left:left + cw]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        img = np.rot90(img, int(rng.integers(0, 4))) if rng.random() < 0.3 else img
        p = folder / f"img{i:02d}.png"
        Image.fromarray(np.ascontiguousarray(img)).save(p)
        paths.append(p)
    return paths


def test_ray_pipeline_matches_single_process(tmp_path):
    try:
        import pyarrow.parquet as pq
        import ray  # noqa: F401
    except ImportError:
        need(False, "ray[data] is not installed (scripts/test.sh installs it)")
    images = tmp_path / "images"
    images.mkdir()
    paths = make_images(images)
    w = effnet_weights()
    if w is not None and w.is_file():
        model = ["--model", "efficientnet-lite0", "--weights", str(w)]
        net = dsconv.load("efficientnet-lite0", weights=w, threads=1)
    else:   # the check is the same with random weights
        model = ["--model", "mobilenet-v2", "--width", "0.5", "--seed", "3"]
        net = dsconv.load("mobilenet-v2", width=0.5, seed=3, threads=1)
    out = tmp_path / "preds"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    cmd = [sys.executable, str(REPO / "examples" / "ray_classify.py"), str(images), str(out),
           *model, "--num-cpus", "2", "--actors", "1", "--threads-per-actor", "1",
           "--batch-size", "12", "--top", "5"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == N_IMAGES
    by_name = {os.path.basename(row["path"]): row for row in rows}
    assert sorted(by_name) == sorted(p.name for p in paths)
    want = net.classify(paths, top=5)
    for p, ref in zip(paths, want):
        got = by_name[p.name]
        assert list(got["index"]) == [c["index"] for c in ref], p.name
        assert list(got["probability"]) == [c["probability"] for c in ref], p.name
        assert got["label"] == ref[0]["label"]
