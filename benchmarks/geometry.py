"""Time and peak memory of `gap` and `uniformity` on N pairs x 512 with default settings.

Prints, measured in this run: the wall time of reading and normalising the rows once (the
baseline), each command's wall time and its ratio to that baseline, its peak extra memory and
that peak as a ratio to one float32 copy of the rows (2 x N x 512 x 4 bytes). Goals (#19, on
the 2-core CI machine): gap <= 15 s at 300,000 pairs and <= 60 s at 1,000,000; uniformity
<= 60 s at 1,000,000; peak extra memory <= 1.5x the rows at 1,000,000.
Usage: python benchmarks/geometry.py [--n 300000] [--dim 512] [--workdir /tmp/clipscope-bench]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_pairs(path: Path, n: int, d: int, seed: int = 0) -> None:
    """A (2, n, d) float32 pair array with a modality gap, written in blocks (memmap)."""
    rng = np.random.default_rng(seed)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(2, n, d))
    offset = rng.normal(size=d).astype(np.float32)
    offset *= 0.6 / np.linalg.norm(offset)
    for i in range(0, n, 50_000):
        m = min(n, i + 50_000) - i
        shared = rng.normal(size=(m, d)).astype(np.float32)
        img = shared + 0.7 * rng.normal(size=(m, d)).astype(np.float32)
        txt = shared + 0.7 * rng.normal(size=(m, d)).astype(np.float32)
        img /= np.linalg.norm(img, axis=1, keepdims=True)
        txt /= np.linalg.norm(txt, axis=1, keepdims=True)
        arr[0, i:i + m] = img + offset
        arr[1, i:i + m] = txt - offset
    arr.flush()
    del arr


def measure(*args) -> dict:
    out = subprocess.run([sys.executable, str(HERE / "_measure.py"), *map(str, args)], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/clipscope-bench"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    arr, cache = args.workdir / f"pairs-{args.n}x{args.dim}.npy", args.workdir / f"pairs-{args.n}x{args.dim}.h5"
    if not cache.exists():
        make_pairs(arr, args.n, args.dim)
        subprocess.run([sys.executable, "-m", "clipscope.cli.main", "import", "--pair-array", str(arr), "--out",
                        str(cache), "--overwrite"], check=True)
        arr.unlink()
    rows_mb = 2 * args.n * args.dim * 4 / 2**20
    print(f"rows: 2 x {args.n} x {args.dim} float32 = {rows_mb:.0f} MB")
    read = measure("--read-only", cache)
    print(f"{'read once':<11} {read['seconds']:7.1f} s   (the baseline: both modalities read and normalised)")
    for command in ("gap", "uniformity"):
        r = measure(command, cache, "--out", args.workdir / command, "--quiet")
        print(f"{command:<11} {r['seconds']:7.1f} s = {r['seconds'] / read['seconds']:5.1f}x the read   "
              f"peak extra memory {r['peak_extra_mb']:7.0f} MB = {r['peak_extra_mb'] / rows_mb:.2f}x the rows")


if __name__ == "__main__":
    main()
