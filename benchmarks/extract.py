"""Extraction throughput of both input paths, as ratios to the same model's forward-only rate.

In one run, per model, on the same encoder and batch size, from realistic JPEGs (crops of the
photographs that ship with scikit-learn and scikit-image, about 500x375, quality 90; photos
decode unlike noise):
  forward   forward passes over preloaded, preprocessed tensors (the ceiling);
  pil       `extract --decode cpu`: PIL decode and preprocess in DataLoader workers;
  tensor    `extract --decode tensor` (= gpu on CUDA): bytes read in workers, batched
            torchvision decode and tensor preprocessing on the encoder's device;
  loader    each path's input pipeline alone, no model.
Goals (#16): on CPU the default path (pil there) >= 0.9x forward; on a GPU the tensor path
>= 0.8x forward and >= 10,000 images/s for ViT-B-32.
Usage: python benchmarks/extract.py [--models ViT-B-32[,ViT-B-16,...]] [--n 512] [--batch-size 64]
       [--device auto] [--workers N]
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def photographs() -> list[np.ndarray]:
    import skimage.data as sd
    from sklearn.datasets import load_sample_images

    return [*load_sample_images().images, sd.astronaut(), sd.coffee(), sd.chelsea(), sd.rocket()]


def make_images(folder: Path, n: int, seed: int = 0, size=(500, 375)) -> None:
    """Random 500x375 crops (scaled, flipped, brightness-jittered) of real photographs."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(a) for a in photographs()]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = photos[i % len(photos)]
        scale = max(size[0] / im.width, size[1] / im.height) * rng.uniform(1.0, 1.6)
        im = im.resize((int(im.width * scale) + 1, int(im.height * scale) + 1), Image.BILINEAR)
        x, y = rng.integers(0, im.width - size[0] + 1), rng.integers(0, im.height - size[1] + 1)
        im = im.crop((x, y, x + size[0], y + size[1]))
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        a = np.clip(np.asarray(im, np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(folder / f"{i:05d}.jpg", quality=90)


def rate(n: int, fn, sync) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return n / (time.perf_counter() - t0)


def bench_model(model: str, source, tmp: Path, args) -> None:
    import torch

    from clipscope.extract import _collate, _ImageDataset, _tensor_pixels, extract
    from clipscope.models import load_encoder
    from clipscope.runtime import default_workers
    from clipscope.tensor_input import TensorPreprocess

    enc = load_encoder(model, "none", device=args.device, precision=args.precision)
    workers = default_workers(enc.device) if args.workers is None else args.workers
    n, bs = len(source.image_ids), args.batch_size
    cuda = enc.device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    pixels = torch.stack([enc.preprocess(source.load_image(i)) for i in range(n)])
    pixels = pixels.to(enc.device) if cuda else pixels
    enc.encode_images(pixels[:bs])  # warm-up
    forward = rate(n, lambda: [enc.encode_images(pixels[i:i + bs]) for i in range(0, n, bs)], sync)

    def run_extract(decode):
        out = tmp / f"{model}-{decode}.h5"
        extract(source, enc, out, batch_size=bs, workers=workers, progress=False, decode=decode, overwrite=True)

    def loader(jpeg_bytes):
        return torch.utils.data.DataLoader(_ImageDataset(source, enc.preprocess, 0, jpeg_bytes=jpeg_bytes),
                                           batch_size=bs, num_workers=workers, collate_fn=_collate,
                                           pin_memory=cuda, prefetch_factor=4 if workers else None)

    prep = TensorPreprocess(enc.preprocess)

    def tensor_loader():
        for idx, payload, bad, _ in loader(True):
            _tensor_pixels(idx, payload, bad, tensor_prep=prep, preprocess=enc.preprocess, device=enc.device)

    run_extract("tensor")  # warm-up: decoder libraries, page cache
    results = {
        "forward": forward,
        "pil": rate(n, lambda: run_extract("cpu"), sync),
        "tensor": rate(n, lambda: run_extract("tensor"), sync),
        "pil loader": rate(n, lambda: [None for _ in loader(False)], sync),
        "tensor loader": rate(n, tensor_loader, sync),
    }
    print(f"\n{model} on {enc.device} ({args.precision}), batch {bs}, {n} JPEGs 500x375, {workers} worker(s), "
          f"{torch.get_num_threads()} torch threads")
    for name, value in results.items():
        print(f"  {name:14s} {value:9.1f} images/s   {value / forward:6.3f}x forward")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="ViT-B-32")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()

    from clipscope.data import open_source

    tmp = Path(tempfile.mkdtemp(prefix="clipscope-bench-"))
    try:
        make_images(tmp / "imgs", args.n)
        source = open_source(f"images:{tmp / 'imgs'}")
        for model in args.models.split(","):
            bench_model(model, source, tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
