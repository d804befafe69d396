"""Extraction throughput: one process against a local Ray cluster of 2 workers, same data and model.

Prints images/s of each and the scaling efficiency (2-worker throughput / (2 x single)).
Both use the same total cores (this machine's); the single process uses all of them for torch,
each Ray worker one share of them.
Usage: python benchmarks/ray_scaling.py [--model ViT-B-32] [--n 256] [--batch-size 32]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from extract import make_images

    tmp = Path(tempfile.mkdtemp(prefix="clipscope-ray-"))
    try:
        make_images(tmp / "imgs", args.n)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        base = [sys.executable, "-m", "clipscope.cli.main", "extract", "--model", args.model, "--pretrained", "none",
                "--data", f"images:{tmp / 'imgs'}", "--batch-size", str(args.batch_size), "--quiet"]
        t0 = time.perf_counter()
        subprocess.run(base + ["--out", str(tmp / "single.h5")], check=True, env=env)
        single = args.n / (time.perf_counter() - t0)
        cores = os.cpu_count() or 2
        t0 = time.perf_counter()
        subprocess.run(base + ["--out", str(tmp / "ray.h5"), "--engine", "ray", "--num-shards", "2"], check=True,
                       env={**env, "OMP_NUM_THREADS": str(max(1, cores // 2))})
        ray2 = args.n / (time.perf_counter() - t0)
        print(f"model {args.model}, {args.n} JPEGs, batch {args.batch_size}, {cores} cores (wall time incl. start-up)")
        print(f"single process:      {single:7.1f} images/s")
        print(f"Ray, 2 workers:      {ray2:7.1f} images/s")
        print(f"scaling efficiency:  {ray2 / (2 * single):7.2f}   (speed-up {ray2 / single:.2f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
