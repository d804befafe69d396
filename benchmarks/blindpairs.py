"""Blind-pair mining at N = 60,000 (CLIP D = 512, reference D = 768) from caches.

In one run: (1) a bare blocked N^2 x D matmul over the same CLIP rows (every tile of X X^T,
no reduction beyond keeping the tile); (2) `clipscope blindpairs CACHE --reference-cache REF`
in a child process, whose wall time and peak extra memory are measured. Prints the time
ratio (goal <= 1.3) and the peak memory (goal <= 2 GB).
Usage: python benchmarks/blindpairs.py [--n 60000] [--device auto]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/clipscope-bench"))
    args = ap.parse_args()
    import torch

    from clipscope.linalg import DEFAULT_BLOCK, similarity_tiles
    from clipscope.runtime import resolve_device

    device = resolve_device(args.device)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    clip = unit(rng.normal(size=(args.n, 512)).astype(np.float32))
    ref = unit(rng.normal(size=(args.n, 768)).astype(np.float32))
    for k in range(0, 200, 2):  # plant 100 blind pairs
        clip[k + 1] = unit(clip[k:k + 1] + 0.01 * rng.normal(size=(1, 512)).astype(np.float32))[0]
        ref[k + 1] = -ref[k]
    paths = {}
    for name, arr in (("clip", clip), ("ref", ref)):
        np.save(args.workdir / f"{name}.npy", arr)
        paths[name] = args.workdir / f"bp-{name}-{args.n}.h5"
        subprocess.run([sys.executable, "-m", "clipscope.cli.main", "import", "--image-embeddings",
                        str(args.workdir / f"{name}.npy"), "--out", str(paths[name]), "--overwrite"], check=True)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    sync()
    t0 = time.perf_counter()
    for *_, _s in similarity_tiles(clip, clip, block=DEFAULT_BLOCK, device=device):
        pass
    sync()
    bare = time.perf_counter() - t0
    out = subprocess.run([sys.executable, str(HERE / "_measure.py"), "blindpairs", str(paths["clip"]),
                          "--reference-cache", str(paths["ref"]), "--out", str(args.workdir / "bp"), "--quiet",
                          "--no-plots", "--device", device],
                         capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    r = json.loads(out.stdout.strip().splitlines()[-1])
    found = json.loads((args.workdir / "bp" / "blindpairs.json").read_text())["metrics"]["n_blind_pairs"]["value"]
    print(f"N = {args.n}, CLIP D = 512, reference D = 768, device {device}, block {DEFAULT_BLOCK}")
    print(f"bare blocked N^2 x D matmul:   {bare:7.1f} s")
    print(f"blindpairs from caches:        {r['seconds']:7.1f} s   ratio {r['seconds'] / bare:.2f}  (goal <= 1.3)")
    print(f"peak extra memory:             {r['peak_extra_mb']:7.0f} MB  (goal <= 2048 MB)")
    print(f"blind pairs found:             {int(found)} (100 planted)")


if __name__ == "__main__":
    main()
