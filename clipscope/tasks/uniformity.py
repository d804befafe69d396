"""`uniformity`: uniformity and alignment of a cache (Wang & Isola 2020 and cross-modal variants)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from clipscope.analysis import geometry
from clipscope.analysis.pairwise import DEFAULT_MAX_PAIRS, DEFAULT_SAMPLE_PAIRS
from clipscope.errors import ClipscopeError
from clipscope.linalg import DEFAULT_BLOCK
from clipscope.registry import Command, Option
from clipscope.tasks import TaskResult, choose_engine, title_of

# float64 arrays over the sampling units a streamed uniformity holds at its peak (cross uniformity):
# two pair sums, both modalities' units joined and renumbered, the sampled subsets' tags, and the
# allocator's slack (benchmarks/geometry.py measures it: 1.27-1.36 GB beyond imports at 6,000,000 pairs)
UNIFORMITY_PER_UNIT_ARRAYS = 13


def evaluate(cache, *, t: float = 2.0, max_pairs: int = DEFAULT_MAX_PAIRS, sample_pairs: int = DEFAULT_SAMPLE_PAIRS,
             seed: int = 0, block: int = DEFAULT_BLOCK, device: str = "cpu", engine: str = "auto",
             address: str | None = None, num_shards: int | None = None, stream_block: int | None = None,
             announce=None) -> TaskResult:
    """``engine`` (see :func:`clipscope.tasks.choose_engine`): with ``stream`` and ``ray`` rows
    are read only where needed (the sampled estimates read their sample; exact mode, for up to
    --max-pairs pairs, reads the rows), and alignment and relative alignment's nearest
    negatives run over ``stream_block`` rows at a time from the file, or shard by shard on a
    Ray cluster (``address``; a local one by default); every engine gives the same values."""
    if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
        raise ClipscopeError(f"--t {t}: the kernel's temperature must be a positive number (Wang & Isola use 2)")
    import clipscope.tasks

    stream_block = stream_block or clipscope.tasks.STREAM_BLOCK
    engine, chosen, (I, T, Ip, Tp, pairs), units = choose_engine(cache, engine, per_unit_arrays=UNIFORMITY_PER_UNIT_ARRAYS)
    if chosen and announce:
        announce(f"uniformity: {chosen}")
    shards = {}
    if engine == "ray" and Ip is not None:
        from clipscope.distributed import RayRanges

        on = RayRanges(cache.path, num_shards=num_shards, address=address)
        shards = {"pair_stats": on.pair_sums(units),
                  "best_negatives": lambda Tq, pairing: on.best_negatives(Tq, pairing, block)}
    if engine == "stream":  # the sampled rows are kept as the passes over the rows go by
        from clipscope.analysis.pairwise import pair_mean_sample_rows

        for reader, u in ((I, units.image_unit), (T, units.text_unit)):
            reader.want(pair_mean_sample_rows(u, len(reader), max_pairs=max_pairs, sample_pairs=sample_pairs,
                                              seed=seed))
    if engine == "stream" and Ip is not None:
        from clipscope.analysis import gap_sums

        shards = {"pair_stats": gap_sums.pair_sums(gap_sums.Gather(I, pairs[:, 0]), gap_sums.Gather(T, pairs[:, 1]),
                                                   *gap_sums.pair_layout(pairs, units), units.n_units,
                                                   block=stream_block, keys=geometry.ALIGNMENT_SUMS),
                  "best_negatives": lambda Tq, pairing: geometry.best_negative_cosines_by_blocks(
            Tq, I, pairing, rows=stream_block, block=block, device=device)}
    metrics = geometry.uniformity_metrics(I, T, pairs, t=t, max_pairs=max_pairs, sample_pairs=sample_pairs,
                                          seed=seed, block=block, device=device, units=units, **shards)
    notes = [chosen] if chosen else []
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
                      plot_data={"I": I, "T": T, "Ip": Ip, "Tp": Tp, "pairs": pairs},
                      inputs={"I": I, "T": T, "pairs": pairs, "units": units})


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


def run(ctx, cache, *, t, max_pairs, sample_pairs, block, engine, address, num_shards):
    """`uniformity` on a cache (given, or extracted with the run's model and data)."""
    from clipscope.context import data_block
    from clipscope.report import model_block
    from clipscope.runtime import resolve_device

    with ctx.cache(cache) as c:
        if ctx.progress:
            announce_exact_cost(c, max_pairs)
        prov = c.provenance
        result = evaluate(c, t=t, max_pairs=max_pairs, sample_pairs=sample_pairs, seed=ctx.seed, block=block,
                          device=resolve_device(ctx.device), engine=engine, address=address, num_shards=num_shards,
                          announce=ctx.say)
        title = title_of(prov, prov.get("data_spec"))
        return ctx.report(result, model=model_block(prov), data=data_block(c),
                          figures=lambda plots, d: figures(result, d, title, seed=ctx.seed, plots=plots))


def announce_exact_cost(cache, max_pairs: int) -> None:
    """Say on stderr, before it starts, when exact uniformity will take more than a minute (timed
    on one tile of this machine), and how to get the sampled estimate instead."""
    import sys
    import time

    import torch

    n_i, n_t = cache.n_images, cache.n_texts
    per_metric = (n_i * (n_i - 1) // 2, n_t * (n_t - 1) // 2, (n_i + n_t) * (n_i + n_t - 1) // 2, n_i * n_t)
    # Each pair mean is exact or sampled on its own: only the exact ones cost all their pairs.
    pairs = sum(p for p in per_metric if p <= max_pairs)
    if pairs < 10**9:
        return
    d = cache.image_embeddings.shape[1]
    tile = torch.from_numpy(np.random.default_rng(0).normal(size=(2048, d)).astype(np.float32))
    t0 = time.perf_counter()
    (tile @ tile.T).mul_(4).sub_(4).exp_().sum(1)  # as the kernel sums do
    seconds = pairs / (2048 * 2048) * (time.perf_counter() - t0)  # pairs, at this tile's rate
    if seconds > 60:
        print(f"uniformity: exact mode over {pairs:.2e} pairs will take about {seconds / 60:.0f} min here; "
              f"--max-pairs {10**9} gives the sampled estimate with its interval in a fraction of that",
              file=sys.stderr, flush=True)


def _engine_options():
    from clipscope.tasks.gap import ENGINE

    return ENGINE


COMMAND = Command(
    name="uniformity", order=20, run=run,
    help="Uniformity and alignment, within and across modalities.",
    doc="""Uniformity and alignment (Wang & Isola 2020), union and cross-modal uniformity, relative alignment.

    \b
    Examples:
      clipscope uniformity cache.h5 --out runs/uniformity
      clipscope uniformity --model clipscope-tiny --data probes --json -
      clipscope uniformity big.h5 --engine stream --out runs/uniformity   # rows need not fit in memory
    """,
    options=(
        Option("t", kind="float", default=2.0, flag="--t", help="Kernel temperature t of exp(-t||x-y||^2)."),
        Option("max_pairs", kind="int", default=DEFAULT_MAX_PAIRS, min=1,
               help="Exact (blocked) up to this many pairs; above, an unbiased sample."),
        Option("sample_pairs", kind="int", default=DEFAULT_SAMPLE_PAIRS, min=100, help="Pairs drawn when sampling."),
        Option("block", kind="int", default=DEFAULT_BLOCK, min=16, help="Rows per similarity tile."),
        *_engine_options(),
    ),
    title_config=(("t", "t"),),
    summary=("uniformity_image", "uniformity_text", "uniformity_union", "uniformity_cross", "alignment",
             "relative_alignment"),
    outputs=("`uniformity.json` (metrics `uniformity_image`, `uniformity_text`, `uniformity_union`, "
            "`uniformity_cross`, `alignment`, `relative_alignment`, each with `exact` and `pairs_used`) and PNGs "
            "`uniformity_distances.png`, `uniformity_values.png`."),
)
