"""`uniformity`: uniformity and alignment of a cache (Wang & Isola 2020 and cross-modal variants)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from clipscope.analysis import geometry
from clipscope.analysis.pairwise import DEFAULT_MAX_PAIRS, DEFAULT_SAMPLE_PAIRS
from clipscope.errors import ClipscopeError
from clipscope.linalg import DEFAULT_BLOCK
from clipscope.tasks import TaskResult, modality_rows


def evaluate(cache, *, t: float = 2.0, max_pairs: int = DEFAULT_MAX_PAIRS, sample_pairs: int = DEFAULT_SAMPLE_PAIRS,
             seed: int = 0, block: int = DEFAULT_BLOCK, device: str = "cpu", engine: str = "local",
             address: str | None = None, num_shards: int | None = None) -> TaskResult:
    """``engine="ray"``: rows are read only where needed (the sampled estimates read their
    sample from every shard; exact mode, for up to --max-pairs pairs, reads the rows), and
    alignment and relative alignment's nearest negatives run shard by shard on a Ray cluster
    (``address``; a local one by default); the values equal a local run's."""
    if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
        raise ClipscopeError(f"--t {t}: the kernel's temperature must be a positive number (Wang & Isola use 2)")
    from clipscope.analysis.units import Units

    on_ray = engine == "ray"
    I, T, Ip, Tp, pairs = modality_rows(cache, lazy=on_ray)
    units = Units.from_pairs(pairs, len(I), len(T))
    shards = {}
    if on_ray and Ip is not None:
        from clipscope.distributed import RayRanges

        on = RayRanges(cache.path, num_shards=num_shards, address=address)
        shards = {"pair_stats": on.pair_sums(units),
                  "best_negatives": lambda Tq, pairing: on.best_negatives(Tq, pairing, block)}
    metrics = geometry.uniformity_metrics(I, T, pairs, t=t, max_pairs=max_pairs, sample_pairs=sample_pairs,
                                          seed=seed, block=block, device=device, units=units, **shards)
    notes = []
    sampled = [k for k, v in metrics.items() if v.get("exact") is False]
    if sampled:
        notes.append(f"above --max-pairs {max_pairs}: {', '.join(sampled)} estimated from an unbiased seeded "
                     f"sample of about {sample_pairs} pairs; ci95 from {10} disjoint subsets of sampling units")
    notes.append(f"ci95 ({units.layout}, exact mode): first-order influences per sampling unit of the U-statistics "
                 f"(pairs within one unit are left out), delta method for the log; population: {units.population()}")
    return TaskResult(metrics, {}, notes,
                      config={"t": t, "max_pairs": max_pairs, "sample_pairs": sample_pairs, "block": block,
                              "engine": engine, "layout": units.layout, "units": units.n_units},
                      counts={"images": len(I), "texts": len(T), "pairs": 0 if pairs is None else len(pairs)},
                      plot_data={"I": I, "T": T, "Ip": Ip, "Tp": Tp, "pairs": pairs})


def figures(result: TaskResult, out_dir: Path, title: str, *, seed: int = 0, plots=None, **_) -> dict:
    """Lay out the figures on ``plots`` (the plotting module, or a recorder of figure specs)."""
    from clipscope.report import plots as plotting

    plots = plots or plotting

    d = result.plot_data
    rng = np.random.default_rng(seed)

    def sq_dists(A, B, k=20000):
        a, b = rng.integers(0, len(A), k), rng.integers(0, len(B), k)
        keep = a != b if A is B else slice(None)
        return (2 - 2 * np.einsum("ij,ij->i", A[a], B[b]))[keep]

    series = {"image-image": sq_dists(d["I"], d["I"]), "text-text": sq_dists(d["T"], d["T"])}
    if d["Ip"] is not None:
        from clipscope.pairing import sample_unpaired

        a, b = sample_unpaired(d["pairs"], len(d["I"]), len(d["T"]), 20000, rng)  # not in /pairs
        series["image-text (unpaired)"] = 2 - 2 * np.einsum("ij,ij->i", d["I"][a], d["T"][b])
        k = min(len(d["Ip"]), 20000)
        series["image-text (paired)"] = 2 - 2 * np.einsum("ij,ij->i", d["Ip"][:k], d["Tp"][:k])
    out = {"distance_histograms": plots.histogram(series, out_dir / "uniformity_distances.png",
                                                  title=f"Squared distances: {title}", xlabel="||x - y||^2")}
    names = [k for k in ("uniformity_image", "uniformity_text", "uniformity_union", "uniformity_cross") if k in result.metrics]
    out["uniformity_bars"] = plots.bars({k.replace("uniformity_", ""): result.metrics[k]["value"] for k in names},
                                        out_dir / "uniformity_values.png", title=f"Uniformity (lower = more uniform): {title}",
                                        ylabel="log E exp(-2||x-y||^2)",
                                        errors={k.replace("uniformity_", ""): result.metrics[k]["ci95"] for k in names})
    return {k: Path(v).name for k, v in out.items()}


SUMMARY = ("uniformity_image", "uniformity_text", "uniformity_union", "uniformity_cross", "alignment", "relative_alignment")
