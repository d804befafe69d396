"""Blind-pair mining and drift's kNN overlap at scale: exact, indexed (faiss IVF-Flat) and exact
on Ray, measured in one run.

Data: CLIP rows (d = 512) with planted near-duplicate clusters (rows r with r % 20 < 4 form
clusters of 4 whose CLIP cosines are about 0.975; random Gaussian rows have no pair above 0.95)
and reference rows (d = 768) in which half the clusters differ (blind pairs) and half do not.
Caches are written block by block from a seeded generator (no copy of the rows is held).

Printed, measured in this run:
- N_small rows (default 100,000): exact and indexed mining, their times and ratio, the indexed
  pairs' true recall against exact (goal >= 0.99) and the recall the report estimated;
  Ray exact on a local 2-CPU cluster, its time and whether its pairs equal one process's.
- N_large rows (default 1,000,000): indexed mining's time and peak memory (goals <= 10 min,
  <= 8 GB) with the report's recall estimate; exact's time extrapolated from N_small (n^2).
- drift between two N_large caches (the second a perturbed copy) with --search index: time,
  peak memory and its kNN recall against exact on sampled queries.

Usage: python benchmarks/mining.py [--small 100000] [--large 1000000] [--workdir /tmp/clipscope-mining]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CLUSTER_EVERY, CLUSTER_SIZE = 20, 4


class PlantedRows:
    """Rows generated when sliced: unit Gaussian rows, except that rows r with r % 20 < 4 are a
    shared centre (seeded by the cluster r // 20) plus small noise. ``alike``: which clusters
    are near-duplicates in this space (all, or every other one: the reference's)."""

    dtype = np.dtype(np.float32)

    def __init__(self, n: int, d: int, seed: int, *, noise: float = 0.007, alike: str = "all", jitter: float = 0.0):
        self.n, self.d, self.seed, self.noise, self.alike, self.jitter = n, d, seed, noise, alike, jitter
        self.shape = (n, d)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, sl: slice) -> np.ndarray:
        i, j, _ = sl.indices(self.n)
        rng = np.random.default_rng([self.seed, i])
        out = rng.standard_normal((j - i, self.d), np.float32)
        r = np.arange(i, j)
        planted = r % CLUSTER_EVERY < CLUSTER_SIZE
        if self.alike == "even":
            planted &= (r // CLUSTER_EVERY) % 2 == 0
        for c in np.unique(r[planted] // CLUSTER_EVERY):
            centre = np.random.default_rng([self.seed, 10**9 + int(c)]).standard_normal(self.d).astype(np.float32)
            centre /= np.linalg.norm(centre)
            rows = np.flatnonzero(planted & (r // CLUSTER_EVERY == c))
            out[rows] = centre + self.noise * out[rows]
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        if self.jitter:  # a perturbed release of the same rows
            out += self.jitter * np.random.default_rng([self.seed, 7, i]).standard_normal(out.shape, np.float32)
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


def write(path: Path, rows) -> Path:
    from clipscope.cache import write_cache

    if not path.exists():
        write_cache(path, image_embeddings=rows, image_ids=[f"img{k:08d}" for k in range(len(rows))],
                    attrs={"model": path.stem, "pretrained": "none", "source": "benchmarks/mining.py"})
    return path


def measure(*args) -> dict:
    out = subprocess.run([sys.executable, str(HERE / "_measure.py"), *map(str, args)], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def mine(workdir: Path, name: str, clip: Path, ref: Path, *extra) -> tuple[dict, dict]:
    out = workdir / name
    r = measure("blindpairs", clip, "--reference-cache", ref, "--out", out, "--quiet", "--no-plots", "--top", "1000000",
                *extra)
    return r, json.loads((out / "blindpairs.json").read_text())


def recall_text(metric: dict) -> str:
    """The recall sentence of a search_recall metric's description (without its spec's source)."""
    return metric["description"].split(" (source:")[0].split("; ")[-1]


def pairs_of(report: dict) -> set:
    return {(p["a"], p["b"]) for p in report["tables"]["blind_pairs"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--large", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/clipscope-mining"))
    ap.add_argument("--skip", default="", help="comma list of parts to skip: small, ray, large, drift")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    args.workdir.mkdir(parents=True, exist_ok=True)
    caches = {}
    for n in (args.small, args.large):
        caches[n] = (write(args.workdir / f"clip-{n}.h5", PlantedRows(n, 512, 1)),
                     write(args.workdir / f"ref-{n}.h5", PlantedRows(n, 768, 2, noise=0.01, alike="even")))
    print(f"machine: {os.cpu_count()} CPUs; planted clusters of {CLUSTER_SIZE} in every {CLUSTER_EVERY} rows")
    t_exact = None
    if "small" not in skip:
        n = args.small
        clip, ref = caches[n]
        ex, ex_rep = mine(args.workdir, f"exact-{n}", clip, ref, "--search", "exact")
        ix, ix_rep = mine(args.workdir, f"index-{n}", clip, ref, "--search", "index")
        t_exact = ex["seconds"]
        truth, found = pairs_of(ex_rep), pairs_of(ix_rep)
        sim_e = ex_rep["metrics"]["n_clip_similar_pairs"]["value"]
        sim_i = ix_rep["metrics"]["n_clip_similar_pairs"]["value"]
        print(f"{n:,} rows, exact:   {ex['seconds']:7.1f} s, peak extra {ex['peak_extra_mb']:6.0f} MB; "
              f"{int(sim_e):,} pairs above 0.95, {len(truth):,} blind")
        print(f"{n:,} rows, indexed: {ix['seconds']:7.1f} s, peak extra {ix['peak_extra_mb']:6.0f} MB; "
              f"{ix_rep['config']['index']}; {ex['seconds'] / ix['seconds']:.1f}x faster")
        print(f"  true recall: pairs above 0.95 {sim_i / sim_e:.4f}, blind pairs {len(found & truth) / len(truth):.4f} "
              f"(goal >= 0.99); none outside exact's: {found <= truth}")
        print(f"  the report's estimate: {recall_text(ix_rep['metrics']['search_recall'])}")
        if "ray" not in skip:
            ry, ry_rep = mine(args.workdir, f"ray-{n}", clip, ref, "--search", "ray")
            same = pairs_of(ry_rep) == truth and all(
                ry_rep["metrics"][k]["value"] == ex_rep["metrics"][k]["value"]
                for k in ("n_blind_pairs", "n_clip_similar_pairs", "images_in_blind_pair"))
            print(f"{n:,} rows, exact on Ray (local cluster, {os.cpu_count()} CPUs): {ry['seconds']:7.1f} s; "
                  f"equal to one process: {same}")
    if "large" not in skip:
        n = args.large
        clip, ref = caches[n]
        ix, ix_rep = mine(args.workdir, f"index-{n}", clip, ref, "--search", "index")
        print(f"{n:,} rows, indexed: {ix['seconds']:7.1f} s = {ix['seconds'] / 60:.1f} min (goal <= 10), peak resident "
              f"{ix['peak_rss_mb'] / 1024:.2f} GB (goal <= 8); {ix_rep['config']['index']}")
        print(f"  {int(ix_rep['metrics']['n_clip_similar_pairs']['value']):,} pairs above 0.95, "
              f"{int(ix_rep['metrics']['n_blind_pairs']['value']):,} blind; the report's estimate: "
              f"{recall_text(ix_rep['metrics']['search_recall'])}")
        if t_exact:
            est = t_exact * (n / args.small) ** 2
            print(f"  exact, extrapolated from {args.small:,} rows (n^2): {est:7.0f} s = {est / 3600:.1f} h "
                  f"({est / ix['seconds']:.0f}x the indexed run)")
    if "drift" not in skip:
        n = args.large
        new = write(args.workdir / f"clip-new-{n}.h5", PlantedRows(n, 512, 1, jitter=0.02))
        r = measure("drift", caches[n][0], new, "--out", args.workdir / f"drift-{n}", "--quiet", "--no-plots",
                    "--search", "index", "--max-queries", str(n))
        rep = json.loads((args.workdir / f"drift-{n}" / "drift.json").read_text())
        m = rep["metrics"]
        print(f"drift, {n:,} rows, every row a kNN query, --search index: {r['seconds']:7.1f} s, peak resident "
              f"{r['peak_rss_mb'] / 1024:.2f} GB; knn_overlap_image {m['knn_overlap_image']['value']:.4f}; "
              f"{recall_text(m['knn_search_recall_image'])}")


if __name__ == "__main__":
    main()
