"""Prints a stream's provenance, first samples and SHA-256 (same seed -> same hash).

    python -m mpjax.data.sanity_check --dataset rotmnist --mode drift --T 5000

The hash covers the bytes of all T feature vectors (f32, little-endian) followed by the
T labels (i32, little-endian). For `adaptive` the pick uses a fixed all-zero model under
the squared loss, whose loss 0.5 * ||y||^2 is the same for every candidate, so the first
candidate of each pool is taken.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time

import numpy as np

from mpjax import streams
from mpjax.data.iterators import iterate_stream
from mpjax.data.loaders import DATA_SOURCES, DATASETS, load_dataset

__all__ = ["main", "stream_sha256"]


def _zero_model_loss(x: np.ndarray, y: np.ndarray) -> float:
    """Squared loss of the all-zero linear model: 0.5 * ||0 - y||^2."""
    del x
    return 0.5 * float(np.dot(y, y))


def stream_sha256(dataset, mode: str, seed: int, T: int, first: int = 0, out=None, **opts) -> str:
    """SHA-256 of a stream (all T feature vectors, then all labels); prints the first samples."""
    h = hashlib.sha256()
    labels = np.empty(T, "<i4")
    loss_fn = _zero_model_loss if mode == "adaptive" else None
    unit = "angle (deg)" if dataset.image_shape is not None else "shift (std)"
    for t, (x, y, row, aux) in enumerate(iterate_stream(dataset, mode, seed, T, loss_fn, **opts)):
        h.update(np.ascontiguousarray(x, "<f4").tobytes())
        labels[t] = int(np.argmax(y))
        if t < first and out is not None:
            print(f"  t={t:<3d} row={row:<7d} label={labels[t]}  |x|={np.linalg.norm(x):.6f}  "
                  f"{unit}={aux:g}", file=out)
    h.update(labels.tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=DATASETS, default="rotmnist")
    p.add_argument("--mode", choices=streams.STREAMS, default="iid")
    p.add_argument("--T", type=int, default=5000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data_source", choices=DATA_SOURCES, default="auto")
    p.add_argument("--require_real", action="store_true")
    p.add_argument("--cache_dir", default=None)
    p.add_argument("--image_size", type=int, default=None)
    p.add_argument("--max_rows", type=int, default=None)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    ds = load_dataset(args.dataset, data_source=args.data_source, require_real=args.require_real,
                      seed=args.seed, cache_dir=args.cache_dir, image_size=args.image_size,
                      max_rows=args.max_rows)
    t_load = time.perf_counter() - t0
    print(f"dataset    : {ds.name}  n={ds.x.shape[0]}  d={ds.x.shape[1]}  K={ds.num_classes}  "
          f"image_shape={ds.image_shape}")
    print(f"provenance : {ds.provenance.upper()}")
    print(f"source     : {ds.source}")
    print(f"stream     : mode={args.mode}  seed={args.seed}  T={args.T}")
    if args.mode == "adaptive":
        print("note       : adaptive picks use a fixed all-zero model (equal losses -> first candidate)")
    print("first 5 samples:")
    t0 = time.perf_counter()
    digest = stream_sha256(ds, args.mode, args.seed, args.T, first=5, out=sys.stdout)
    t_stream = time.perf_counter() - t0
    print(f"stream sha256: {digest}")
    print(f"timing     : load {t_load:.2f} s, stream {t_stream:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
