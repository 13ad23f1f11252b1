#!/usr/bin/env python3
"""ImageNet classification of a folder of images (or any path Ray Data reads: a glob,
s3://, gs://, ...) with dsconv, scaled out with Ray Data.

Ray reads and decodes the images (``ray.data.read_images``); ``map_batches`` runs a
class-based UDF, ``Classifier``, on a pool of actors, each holding one dsconv network
(loaded once per actor, run with ``--threads-per-actor`` threads, the GIL released while it
computes); the predictions (path, top-k class indices, labels and probabilities) are written
as Parquet files (or JSON lines) under OUTPUT.

Local run (starts a private Ray on 127.0.0.1, dashboard off):

    python examples/ray_classify.py tests/data/images /tmp/preds \\
        --model efficientnet-lite0 --weights efficientnet-lite0-57934424.pth

On a Ray cluster (dsconv installed on every node: ``pip install ./crates/dsconv-py``; the
weights file reachable at the same path on every node, or use --seed for random weights):

    python examples/ray_classify.py s3://bucket/photos/ s3://bucket/preds/ \\
        --address auto --actors 16 --threads-per-actor 4 --weights /shared/effnet.pth

Each actor reserves ``--threads-per-actor`` CPUs, so actors × threads should not exceed the
cluster's CPUs (leave some for reading and decoding).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Optional

import numpy as np


class Classifier:
    """The per-actor UDF: one dsconv network, loaded once, applied to batches of decoded
    images (``{"image": uint8 [H, W, 3] arrays, "path": str}``)."""

    def __init__(self, model: str, weights: Optional[str], width: float, seed: int,
                 threads: int, top: int) -> None:
        import dsconv

        self.net = dsconv.load(model, weights=weights, width=width, seed=seed,
                               threads=threads)
        self.top = top

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import dsconv

        x = self.net.preprocess_images(list(batch["image"]))   # the registry's preprocessing
        top = dsconv.top_classes(self.net.predict(x), self.top)  # softmax in float64
        return {
            "path": np.asarray(batch["path"]),
            "index": np.asarray([[c["index"] for c in row] for row in top], np.int64),
            "label": np.asarray([row[0]["label"] for row in top]),
            "probability": np.asarray([[c["probability"] for c in row] for row in top]),
        }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="images: a folder, glob or URI ray.data.read_images reads")
    p.add_argument("output", help="folder (or URI) for the predictions")
    p.add_argument("--model", default="efficientnet-lite0",
                   help="a dsconv built-in network (dsconv.models())")
    p.add_argument("--weights", default=None,
                   help="checkpoint (.pth/.safetensors); default: random weights from --seed")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier (MobileNets)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument("--actors", type=int, default=2, help="number of model actors")
    p.add_argument("--threads-per-actor", type=int, default=1,
                   help="dsconv threads (and Ray CPUs) per actor")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch")
    p.add_argument("--top", type=int, default=5, help="classes kept per image")
    p.add_argument("--format", choices=["parquet", "json"], default="parquet")
    p.add_argument("--address", default=None,
                   help="Ray cluster address ('auto' for the cluster this node belongs to); "
                        "default: a new local Ray bound to 127.0.0.1")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the local Ray (default: all of this machine's)")
    return p.parse_args(argv)


def build(args: argparse.Namespace):
    """The Ray Data pipeline (lazy): read → classify → the dataset to write."""
    import ray

    ds = ray.data.read_images(args.input, mode="RGB", include_paths=True)
    return ds.map_batches(
        Classifier,
        fn_constructor_kwargs=dict(model=args.model, weights=args.weights, width=args.width,
                                   seed=args.seed, threads=args.threads_per_actor,
                                   top=args.top),
        batch_size=args.batch_size,
        batch_format="numpy",
        concurrency=args.actors,
        num_cpus=args.threads_per_actor,
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.weights and os.path.exists(args.weights):
        args.weights = os.path.abspath(args.weights)    # actors may run elsewhere
    import ray

    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False,
                 _node_ip_address="127.0.0.1", configure_logging=False)
    try:
        ds = build(args)
        if args.format == "parquet":
            ds.write_parquet(args.output)
        else:
            ds.write_json(args.output)
    finally:
        ray.shutdown()
    print(f"predictions written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.exit(main())
