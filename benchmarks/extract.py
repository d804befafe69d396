"""Extraction throughput as a ratio to the same model's forward-only throughput.

In one run, on the same encoder and batch size: (1) forward passes over preloaded,
preprocessed tensors; (2) `extract` from JPEG files on disk (decode, preprocess in DataLoader
workers, encode, write the journal and the cache). Prints both in images/s and their ratio
(goal >= 0.9 on CPU).
Usage: python benchmarks/extract.py [--model ViT-B-32] [--n 256] [--batch-size 32] [--device auto]
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def make_images(folder: Path, n: int, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    for i in range(n):
        img = np.roll(base, i * 7, axis=1) // 2 + rng.integers(0, 128, (240, 320, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.jpg", quality=90)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()

    import torch

    from clipscope.data import open_source
    from clipscope.extract import extract
    from clipscope.models import load_encoder
    from clipscope.runtime import default_workers

    tmp = Path(tempfile.mkdtemp(prefix="clipscope-bench-"))
    try:
        make_images(tmp / "imgs", args.n)
        source = open_source(f"images:{tmp / 'imgs'}")
        enc = load_encoder(args.model, "none", device=args.device, precision=args.precision)
        workers = default_workers(enc.device) if args.workers is None else args.workers
        pixels = torch.stack([enc.preprocess(source.load_image(i)) for i in range(args.n)])
        if enc.device.startswith("cuda"):
            pixels = pixels.pin_memory()
        enc.encode_images(pixels[: args.batch_size])  # warm-up

        def sync():
            if enc.device.startswith("cuda"):
                torch.cuda.synchronize()

        sync()
        t0 = time.perf_counter()
        for i in range(0, args.n, args.batch_size):
            enc.encode_images(pixels[i:i + args.batch_size])
        sync()
        forward = args.n / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        extract(source, enc, tmp / "cache.h5", batch_size=args.batch_size, workers=workers, progress=False)
        sync()
        full = args.n / (time.perf_counter() - t0)

        # The loader alone (decode + preprocess in the same DataLoader, no model): its ceiling.
        from clipscope.extract import _collate, _ImageDataset

        loader = torch.utils.data.DataLoader(_ImageDataset(source, enc.preprocess, 0), batch_size=args.batch_size,
                                             num_workers=workers, collate_fn=_collate,
                                             prefetch_factor=4 if workers else None)
        t0 = time.perf_counter()
        for _ in loader:
            pass
        decode_only = args.n / (time.perf_counter() - t0)
        print(f"model {args.model} on {enc.device} ({args.precision}), batch {args.batch_size}, {args.n} JPEGs 320x240, "
              f"{workers} worker(s), {torch.get_num_threads()} torch threads")
        print(f"forward only (preloaded tensors): {forward:8.1f} images/s")
        print(f"extract (files -> cache):         {full:8.1f} images/s")
        print(f"loader alone (decode+preprocess): {decode_only:8.1f} images/s")
        print(f"ratio extract / forward:          {full / forward:8.3f}   (goal >= 0.9)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
