"""Time and peak memory of `gap` and `uniformity` on N pairs x D, on each engine, in one run.

The cache (N image and N text rows, 1:1 pairs in row order, a modality gap) is written block
by block from a seeded generator: no copy of the rows is ever held, in memory or as a second
file, so N may exceed this machine's memory (6,000,000 x 512 = 24.6 GB of rows).

Printed, measured in this run (each run starting with the page cache dropped, when run as root):
before each command, reading and normalising every row once, block by block (the disk baseline,
with its read rate: this machine's disk varies between runs, so each command is set against a
read measured just before it); for each command and engine its wall time, that as a ratio
to the baseline, its peak resident memory (the whole process: Python, torch and the command)
and its peak extra memory (what the command holds) as a ratio to the rows' float32 size, and
the memory the streaming path said it would use. `local` is skipped where the rows would not
fit (it would refuse).

Usage: python benchmarks/geometry.py [--n 1000000] [--dim 512] [--engines local,stream]
                                     [--workdir /tmp/clipscope-bench] [--keep]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


class SyntheticRows:
    """One modality's rows, generated when sliced (rows i..j from a generator seeded by i): image
    and text rows share a component (so pairs are close) and sit on opposite sides of a gap."""

    dtype = np.dtype(np.float32)

    def __init__(self, n: int, d: int, text: bool, seed: int = 0):
        self.n, self.d, self.text, self.seed = n, d, text, seed
        self.shape = (n, d)
        offset = np.random.default_rng([seed, 0]).normal(size=d).astype(np.float32)
        self.offset = offset * (0.6 / np.linalg.norm(offset)) * (-1 if text else 1)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, sl: slice) -> np.ndarray:
        i, j, _ = sl.indices(self.n)
        shared = np.random.default_rng([self.seed, 1, i]).standard_normal((j - i, self.d), np.float32)
        own = np.random.default_rng([self.seed, 2 + self.text, i]).standard_normal((j - i, self.d), np.float32)
        rows = shared + 0.7 * own
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return rows + self.offset


def write_synthetic_cache(path: Path, n: int, d: int) -> None:
    from clipscope.cache import write_cache

    k = np.arange(n, dtype=np.int64)
    write_cache(path, image_embeddings=SyntheticRows(n, d, False), text_embeddings=SyntheticRows(n, d, True),
                pairs=np.stack([k, k], 1), attrs={"model": "synthetic", "pretrained": "none",
                                                  "source": f"benchmarks/geometry.py {n}x{d}"})


def drop_page_cache() -> bool:
    """Start every measurement with the page cache empty (root only), so that each reads from disk
    what it needs and the ratios do not depend on what an earlier run left cached."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def measure(*args) -> dict:
    cold = drop_page_cache()
    out = subprocess.run([sys.executable, str(HERE / "_measure.py"), *map(str, args)], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    said = re.search(r"using about ([0-9.]+ [kMG]B)", out.stderr)
    result["said"] = said.group(1) if said else None
    result["cold"] = cold
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--engines", default="local,stream")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/clipscope-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the cache for a later run")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cache = args.workdir / f"synthetic-{args.n}x{args.dim}.h5"
    rows_bytes = 2 * args.n * args.dim * 4
    if not cache.exists():
        t0 = time.perf_counter()
        write_synthetic_cache(cache, args.n, args.dim)
        print(f"wrote {cache} block by block in {time.perf_counter() - t0:.0f} s")
    with open("/proc/meminfo") as fh:
        total = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("MemTotal:"))
    print(f"rows: 2 x {args.n:,} x {args.dim} float32 = {rows_bytes / 1e9:.2f} GB; machine memory {total / 1e9:.1f} GB, "
          f"{os.cpu_count()} CPUs")
    for command in ("gap", "uniformity"):
        read = measure("--read-only", cache)
        rate = read["bytes_read"] / read["seconds"]
        print(f"{'read once':<22} {read['seconds']:7.1f} s   ({rate / 1e9:.2f} GB/s; every row read and normalised, "
              f"block by block; peak resident {read['peak_rss_mb']:.0f} MB)")
        if command == "gap":
            print("every run starts with the page cache dropped" if read["cold"] else
                  "the page cache could not be dropped (not root): runs may find rows an earlier run left cached")
        for engine in args.engines.split(","):
            (args.workdir / f"{command}-{engine}" / f"{command}.json").unlink(missing_ok=True)
            if engine == "local" and 2.2 * rows_bytes > 0.8 * total:
                print(f"{command + ' ' + engine:<22} skipped: the rows do not fit in memory")
                continue
            r = measure(command, cache, "--out", args.workdir / f"{command}-{engine}", "--quiet", "--engine", engine,
                        "--no-plots")
            said = f"; said it would use {r['said']}" if r["said"] else ""
            print(f"{command + ' ' + engine:<22} {r['seconds']:7.1f} s = {r['seconds'] / read['seconds']:4.2f}x the read   "
                  f"peak resident {r['peak_rss_mb']:6.0f} MB, extra {r['peak_extra_mb']:6.0f} MB = "
                  f"{r['peak_extra_mb'] * 2**20 / rows_bytes:.2f}x the rows{said}")
        reports = {e: json.loads((args.workdir / f"{command}-{e}" / f"{command}.json").read_text())
                   for e in args.engines.split(",") if (args.workdir / f"{command}-{e}" / f"{command}.json").exists()}
        if len(reports) > 1:
            values = [{k: m["value"] for k, m in r["metrics"].items()} for r in reports.values()]
            worst = max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-12) for a, b in zip(values, values[1:]) for k in a
                        if isinstance(a[k], float) and a[k] == a[k])
            print(f"{command + ' engines agree':<22} largest relative difference {worst:.1e}")
    if not args.keep:
        cache.unlink()


if __name__ == "__main__":
    main()
