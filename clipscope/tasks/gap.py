"""`gap`: the modality gap of a cache (see :mod:`clipscope.analysis.geometry`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipscope.analysis import gap_sums, geometry
from clipscope.errors import UsageError
from clipscope.registry import Command, Option
from clipscope.tasks import TaskResult, choose_engine, class_text, title_of

# float64 arrays over the sampling units that a streamed gap holds at its peak (finalize's start):
# round 2's four per modality, six pair sums, and finalize's first temporaries (benchmarks/geometry.py
# measures it: 1.24 GB beyond imports at 6,000,000 pairs)
GAP_PER_UNIT_ARRAYS = 17


def evaluate(cache, *, seed: int = 0, sweep_max_rows: int = 5000, top_dims: int = 20, shift_deltas=None,
             engine: str = "auto", address: str | None = None, num_shards: int | None = None,
             noise_model: bool = False, noise_alpha: float = 0.05, noise_max_pairs: int = 20000,
             block: int | None = None, announce=None) -> TaskResult:
    """``engine`` (see :func:`clipscope.tasks.choose_engine`): ``local`` holds the rows in
    memory; ``stream`` reads them from the cache ``block`` rows at a time into the O(n d) sums
    (:mod:`clipscope.analysis.gap_sums`) and reads only sampled rows otherwise; ``ray`` computes
    the same sums shard by shard on a Ray cluster (``address``; a local one by default);
    ``auto`` streams when the rows would not fit comfortably in memory (``announce(line)`` is
    told). Every engine gives the same values. ``noise_model``: the paired differences as
    noise (:mod:`clipscope.analysis.noise_model`) on a seeded sample of ``noise_max_pairs``
    pairs, with the noise-injection test."""
    import clipscope.tasks
    from clipscope.pairing import Pairing

    block = block or clipscope.tasks.STREAM_BLOCK
    engine, chosen, (I, T, Ip, Tp, pairs), units = choose_engine(cache, engine, per_unit_arrays=GAP_PER_UNIT_ARRAYS)
    if chosen and announce:
        announce(f"gap: {chosen}")
    if engine == "stream":  # the samples read later are kept as the passes go by (no scattered reads)
        for reader, rows in zip((I, T), geometry.separability_rows(len(I), len(T), seed=seed)):
            reader.want(rows)
        if pairs is not None:
            sample = geometry.sweep_pairs(pairs, sweep_max_rows, seed)
            I.want(sample[:, 0])
            T.want(sample[:, 1])
    steps_of = lambda gap: geometry.sweep_steps(geometry.sweep_plan(gap, deltas=shift_deltas))  # noqa: E731
    if engine == "ray":
        from clipscope.distributed import gap_sums_on_ray

        sums = gap_sums_on_ray(cache.path, units=units, steps_of=steps_of, num_shards=num_shards, address=address)
    else:  # two passes over the rows (in memory or block by block from the file) give every O(n d) statistic
        sums = gap_sums.local(I, T, pairs, units, steps_of=steps_of, block=block)
    second_moment = lambda: gap_sums.z_second_moment(I, T, units, sums.centroids)  # noqa: E731
    metrics = geometry.gap_metrics(I, T, pairs, seed=seed, units=units, sums=sums, second_moment=second_moment)
    notes = [chosen] if chosen else []
    pairing = None if pairs is None else Pairing(pairs[:, 0], pairs[:, 1], len(I), len(T))  # ~0.7 s per million
    c = sums.centroids
    per_dim = geometry.per_dimension_gap(I, T, top=top_dims, diff=c.gap)
    sweep = geometry.shift_sweep(I, T, pairs, class_text=class_text(cache), labels=cache.image_labels,
                                 deltas=shift_deltas, max_rows=sweep_max_rows, seed=seed, diff=c.gap,
                                 centroids=sums.sweep_centroids(), pairing=pairing)
    notes += [m.pop("why_undefined") for m in metrics.values() if "why_undefined" in m]
    if Ip is None:
        notes.append("no image-text pairs: paired metrics (paired_*, rmg) and the sweep's recall were skipped")
    if sweep["pairs_used"] < sweep["pairs_total"]:
        notes.append(f"shift sweep on a seeded sample of {sweep['pairs_used']} of {sweep['pairs_total']} pairs")
    notes.append(f"ci95 ({units.layout}): first-order influences per sampling unit (an image with its texts); "
                 f"population: {units.population()}; separability: Wilson over its test rows")
    tables = {
        "per_dimension_gap": {"rows": per_dim["rows"], "top_share": per_dim["top_share"]},
        "shift_sweep": sweep["rows"],
    }
    plot_data = {"I": I, "T": T, "pairs": pairs, "Ip": Ip, "Tp": Tp, "per_dim": per_dim, "sweep": sweep}
    if noise_model:
        if Ip is None or len(Ip) < 20:
            notes.append("noise model: needs at least 20 image-text pairs")
        else:
            extra, tables["noise_model"], tables["noise_injection"], plot_data["noise"] = _noise_model(
                Ip, Tp, c.gap, alpha=noise_alpha, max_pairs=noise_max_pairs, seed=seed)
            metrics.update(extra)
            notes.append("noise model: fitting sigma, the normality tests and the injection test are clipscope's own "
                         "diagnostics on MacCap's observation (MacCap injects a fixed variance of 0.016 and fits "
                         "none); the per-dimension means of x - t - g are zero by construction once the gap g is "
                         "removed, so the Gaussian shape and the isotropy are what is tested, not the zero mean")
    return TaskResult(metrics, tables, notes, inputs={"I": I, "T": T, "pairs": pairs, "units": units},
                      config={"sweep_max_rows": sweep_max_rows, "top_dims": top_dims, "engine": engine,
                              "noise_model": noise_model, "noise_alpha": noise_alpha, "noise_max_pairs": noise_max_pairs,
                              "shift_deltas": None if shift_deltas is None else [float(d) for d in shift_deltas],
                              "layout": units.layout, "units": units.n_units},
                      counts={"images": len(I), "texts": len(T), "pairs": 0 if pairs is None else len(pairs)},
                      plot_data=plot_data)


def _noise_model(Ip, Tp, gap, *, alpha: float, max_pairs: int, seed: int):
    """Metrics, per-dimension table, injection table and plot data of the noise model."""
    from clipscope.analysis import metric
    from clipscope.analysis import noise_model as nm

    fit = nm.noise_model(Ip, Tp, gap, alpha=alpha, max_pairs=max_pairs, seed=seed)
    on = f"{fit['pairs_used']} pairs" + (f" (seeded sample of {fit['pairs_total']})"
                                          if fit["pairs_used"] < fit["pairs_total"] else "")
    x = np.asarray(Ip[fit["index"]], np.float32)
    t = np.asarray(Tp[fit["index"]], np.float32)
    one_to_one = geometry.identity_pairs(len(x))
    before = geometry.gap_metrics(x, t, one_to_one, seed=seed)
    after = {"": geometry.gap_metrics(x, nm.inject_noise(t, fit["sigma"], seed), one_to_one, seed=seed),
             "_maccap": geometry.gap_metrics(x, nm.inject_noise(t, np.sqrt(nm.MACCAP_VARIANCE), seed), one_to_one,
                                             seed=seed)}
    how = {"": "N(0, sigma^2 I) with the fitted sigma",
           "_maccap": f"N(0, {nm.MACCAP_VARIANCE} I) as MacCap trains (a variance: sigma {np.sqrt(nm.MACCAP_VARIANCE):.3f})"}
    metrics = {
        "noise_sigma": metric(fit["sigma"], detail=on),
        "noise_variance": metric(fit["sigma"] ** 2, detail=f"MacCap injects {nm.MACCAP_VARIANCE}; {on}"),
        "noise_gaussian_share": metric(fit["gaussian_share"], detail=f"p >= {alpha}, about {1 - alpha:.2f} for "
                                                                     f"Gaussian noise; {on}"),
        "noise_mean_abs_skew": metric(float(np.mean(np.abs(fit["skew"]))), detail=on),
        "noise_mean_excess_kurtosis": metric(float(np.mean(fit["excess_kurtosis"])), detail=on),
    }
    injection = []
    for name in ("centroid_distance", "paired_cosine", "linear_separability"):
        clean = before[name]["value"]
        row = {"metric": name, "text": clean}
        for tag, m in after.items():
            row[f"noisy_text{tag}"] = m[name]["value"]
            metrics[f"noisy_{name}{tag}"] = metric(m[name]["value"], ci95=m[name].get("ci95"),
                                                   detail=f"{how[tag]}; {clean:.4g} without the noise; {on}")
        injection.append(row)
    top = np.argsort(fit["sd"])[::-1][:4]
    rng = np.random.default_rng([seed, 13])
    keep = rng.choice(len(fit["differences"]), min(2000, len(fit["differences"])), replace=False)
    plot = {"dims": {f"dim {j}": fit["differences"][keep, j] for j in top},
            "fits": {f"dim {j}": (float(fit["mean"][j]), float(fit["sd"][j])) for j in top},
            "qq": nm.qq_points(fit["differences"], fit), "sigma": fit["sigma"], "share": fit["gaussian_share"]}
    per_dim = [{"dim": j, "mean": float(fit["mean"][j]), "sd": float(fit["sd"][j]), "skew": float(fit["skew"][j]),
                "excess_kurtosis": float(fit["excess_kurtosis"][j]), "normaltest_p": float(fit["normaltest_p"][j])}
               for j in range(len(fit["sd"]))]
    return metrics, per_dim, injection, plot


def figures(result: TaskResult, out_dir: Path, title: str, *, projection: str = "pca", seed: int = 0,
            plots=None) -> dict:
    """Lay out the gap figures on ``plots`` (the plotting module, or a recorder of figure specs)."""
    from clipscope.report import plots as plotting

    plots = plots or plotting
    d = result.plot_data
    smp = plotting.projection_sample(d["I"], d["T"], d["pairs"], seed=seed)
    out = {"projection": plots.projection(smp["I"], smp["T"], smp["pairs"], out_dir / "gap_projection.png",
                                          title=f"Joint space: {title}", method=projection, seed=seed,
                                          totals=smp["totals"])}
    if d["Ip"] is not None:
        from clipscope.pairing import sample_unpaired

        rng = np.random.default_rng(seed)
        k = min(len(d["Ip"]), 20000)
        a, b = sample_unpaired(d["pairs"], len(d["I"]), len(d["T"]), k, rng)  # not in /pairs
        paired = np.einsum("ij,ij->i", d["Ip"][:k], d["Tp"][:k])
        unpaired = np.einsum("ij,ij->i", d["I"][a], d["T"][b])
        out["cosine_histograms"] = plots.cosine_histograms(paired, unpaired, out_dir / "gap_cosines.png",
                                                           title=f"Paired vs unpaired cosines: {title}")
    out["per_dimension_gap"] = plots.per_dimension_bars(d["per_dim"], out_dir / "gap_dimensions.png",
                                                        title=f"Per-dimension gap: {title}")
    out["shift_sweep"] = plots.shift_sweep_curves(d["sweep"], out_dir / "gap_shift_sweep.png",
                                                  title=f"Shifting along the gap direction: {title}")
    if "noise" in d:
        nz = d["noise"]
        out["noise_model"] = plots.noise_model(
            nz["dims"], nz["fits"], nz["qq"], out_dir / "gap_noise_model.png",
            title=f"Paired differences as noise (sigma {nz['sigma']:.4f}; {nz['share']:.0%} of dimensions pass the "
                  f"normality test): {title}")
    return {k: Path(v).name for k, v in out.items()}


def run(ctx, cache, *, projection, sweep_max_rows, shift_deltas, engine, address, num_shards, noise_model, noise_alpha,
        noise_max_pairs, subregions, subregion_max_images):
    """`gap` on a cache (given, or extracted with the run's model and data)."""
    from clipscope.context import data_block
    from clipscope.report import model_block

    deltas = parse_deltas(shift_deltas) if isinstance(shift_deltas, str) else shift_deltas
    with ctx.cache(cache) as c:
        prov = c.provenance
        result = evaluate(c, seed=ctx.seed, sweep_max_rows=sweep_max_rows, shift_deltas=deltas, engine=engine,
                          address=address, num_shards=num_shards, noise_model=noise_model, noise_alpha=noise_alpha,
                          noise_max_pairs=noise_max_pairs, announce=ctx.say)
        if subregions:
            # the cache's spec with its paths made absolute at extraction: the same images from any folder
            spec = ctx.data or prov.get("data_spec_resolved") or prov.get("data_spec")
            if not spec:
                raise UsageError("--subregions crops the images: give --data SPEC (the data the cache was made from)")
            source = ctx.source(spec)
            encoder = ctx.cache_encoder(prov, "--subregions encodes the crops")
            extra, table, notes = subregion_test(c, source, encoder, max_images=subregion_max_images, seed=ctx.seed,
                                                 batch_size=ctx.batch_size, progress=ctx.progress)
            result.metrics.update(extra)
            result.tables["subregions"] = table
            result.notes.extend(notes)
        result.config.update(subregions=subregions, subregion_max_images=subregion_max_images)
        title = title_of(prov, prov.get("data_spec"))
        return ctx.report(result, model=model_block(prov), data=data_block(c),
                          figures=lambda plots, d: figures(result, d, title, seed=ctx.seed, plots=plots,
                                                           projection=projection))


def parse_deltas(text: str) -> list[float]:
    """``START:STOP:STEP`` (numpy.arange, the reference's construction) or a comma list."""
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            values = np.arange(start, stop, step).tolist()
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError("--shift-deltas: use START:STOP:STEP (e.g. -5:5:0.25) or a comma list") from None
    if not values:
        raise UsageError("--shift-deltas: no deltas in that range")
    return values


GAP_SCALE_DOCS = """## Caches larger than memory

`--engine auto` (the default) holds the rows in memory when they need less than 80% of the memory
budget (about 2.2x their float32 size; the kernel's MemAvailable, or `CLIPSCOPE_MEMORY_BUDGET`)
and otherwise streams them from the cache file (`--engine stream`): two passes in blocks of
16,384 rows into per-unit sums, O(n) memory, the samples kept as the blocks go by. The report's
notes and `config.engine` say which ran; the values are the same either way. Measured with
`benchmarks/geometry.py` on the 2-core, 24 GB development machine, every run starting with the
page cache dropped, each set against a read of every row measured just before it (this disk read
at 0.34 to 0.54 GB/s from one run to the next):

| rows | engine | time | peak memory |
|---|---|---|---|
| 2 x 1,000,000 x 512 (4.1 GB) | local | 15.4 s (2.6x one read of the rows) | 4.54 GB beyond the process's imports (1.16x the rows) |
| 2 x 1,000,000 x 512 | stream | 15.1 s (2.5x) | 0.85 GB (0.22x the rows) |
| 2 x 6,000,000 x 512 (24.6 GB: more than the machine's memory) | stream | 97.7 s: 1.50x one read of the rows (65.1 s, 0.38 GB/s); a second run 100.9 s, 1.78x (56.8 s, 0.43 GB/s) | 1.24 GB beyond the imports, 1.74 GB resident in all |

A run that would not fit any engine's memory is refused before it starts, in one line with the
size it needs, the budget and the option that avoids it.
"""

RAY_ADDRESS = Option("address", metavar="auto|HOST:PORT", show_default=False,
                     help="With Ray (--engine ray, --search ray): the cluster to join (default: start a local one).")

ENGINE = (
    Option("engine", kind="choice", default="auto", choices=("auto", "local", "stream", "ray"),
           help="local: every row in memory; stream: rows read from the cache file in blocks, holding only per-unit "
                "sums (caches larger than memory); ray: the same sums shard by shard on a Ray cluster; auto: local "
                "when the rows fit comfortably in memory, else stream (the report says which). Same values on all."),
    RAY_ADDRESS,
    Option("num_shards", kind="int", min=1, show_default=False,
           help="With --engine ray: row ranges per modality (default: the cache's shards, else the cluster's CPUs)."),
)

COMMAND = Command(
    name="gap", order=10, run=run,
    help="Modality gap: centroids, RMG, cone, separability, shift sweep.",
    doc="""The modality gap: centroid distance and cosine, paired distance and cosine, RMG, cone,
    linear separability, per-dimension gap and the shift sweep.

    \b
    Examples:
      clipscope gap cache.h5 --out runs/gap
      clipscope gap --model ViT-B-32 --pretrained none --data folder:./imgs --out runs/gap
      clipscope gap big.h5 --engine stream --out runs/gap   # rows need not fit in memory
      clipscope gap big.h5 --engine ray --address auto --out runs/gap
    """,
    options=(
        Option("projection", kind="choice", default="pca", choices=("pca", "umap"),
               help="2-D projection plot: pca (fast) or umap (compiles on first use: ~15 s more)."),
        Option("sweep_max_rows", kind="int", default=5000, min=10, help="Pairs used by the shift sweep."),
        Option("shift_deltas", metavar="START:STOP:STEP|a,b,..", show_default=False,
               help="Absolute shift deltas instead of fractions of the gap; '-5:5:0.25' is the reference grid."),
        Option("noise_model", kind="bool", default=False,
               help="Also model the paired differences as noise (MacCap): per-dimension moments, normality tests, "
                    "the fitted sigma, and whether adding N(0, sigma^2) to the texts closes the gap."),
        Option("noise_alpha", kind="float", default=0.05, min=0, max=1, min_open=True, max_open=True,
               help="Level of the per-dimension normality tests."),
        Option("noise_max_pairs", kind="int", default=20000, min=20, help="Seeded sample of pairs for the noise model."),
        Option("subregions", kind="bool", default=False,
               help="Also encode a seeded grid of crops at two scales per image (MacCap): how often a caption is "
                    "closer to a crop than to its whole image. Needs the images (--data, or the cache's own data "
                    "spec); the crop embeddings are stored in the cache."),
        Option("subregion_max_images", kind="int", default=500, min=1, help="Seeded sample of paired images for "
                                                                            "--subregions."),
        *ENGINE,
    ),
    summary=("centroid_distance", "centroid_cosine", "paired_cosine", "rmg", "cone_image", "cone_text",
             "linear_separability"),
    docs=GAP_SCALE_DOCS,
    outputs=("`gap.json` (metrics `centroid_distance`, `centroid_cosine`, `paired_distance`, `paired_cosine`, "
            "`rmg`, `cone_image`, `cone_text`, `linear_separability`; tables `per_dimension_gap`, `shift_sweep`) "
            "and PNGs `gap_projection.png`, `gap_cosines.png`, `gap_dimensions.png`, `gap_shift_sweep.png`. With "
            "`--noise-model`: metrics `noise_sigma`, `noise_variance`, `noise_gaussian_share`, `noise_mean_abs_skew`, "
            "`noise_mean_excess_kurtosis`, `noisy_centroid_distance`, `noisy_paired_cosine`, "
            "`noisy_linear_separability` (the fitted sigma) and the same three with `_maccap` (MacCap's variance 0.016); tables `noise_model` (per dimension: `dim`, `mean`, `sd`, `skew`, "
            "`excess_kurtosis`, `normaltest_p`) and `noise_injection`; `gap_noise_model.png`. With "
            "`--subregions`: metrics `subregion_win_share`, `subregion_mean_gain`; table `subregions` (per crop "
            "scale); the crop embeddings stored in the cache as `/image/crops/rows` and `/image/crops/embeddings`"
            " (keyed by the `crops_config` attribute)."),
)


def subregion_test(cache, source, encoder, *, max_images: int = 500, seed: int = 0, batch_size: int = 64,
               progress: bool = False) -> tuple[dict, list, list]:
    """MacCap's subregion test on a seeded sample of paired images (see
    :mod:`clipscope.analysis.subregions`). Crop embeddings are stored in the cache
    (``/image/crops/*``) keyed by what they were made from: the crop settings, the model, and the
    cache's ``cache_id`` and data fingerprint, so a rerun on the same rows encodes nothing and a
    rewritten cache or changed images never reuse them. ``source`` must hold the very images
    the cache was extracted from (its fingerprint is checked)."""
    import sys

    from tqdm import tqdm

    from clipscope.analysis import metric
    from clipscope.analysis import subregions as sr
    from clipscope.analysis.geometry import _mean_ci, wilson_interval
    from clipscope.errors import ClipscopeError

    pairs = cache.pairs
    if not len(pairs):
        return {}, [], ["subregions: the cache has no image-text pairs"]
    source = matching_source(cache, source)
    rows = np.unique(pairs[:, 0])
    if len(rows) > max_images:
        rows = np.sort(np.random.default_rng([seed, 22]).choice(rows, max_images, replace=False))
    p = encoder.provenance
    identity = rows_identity(cache.attrs)
    config = {"scales": list(sr.SCALES), "seed": seed, "model": p.get("model"), "pretrained": p.get("pretrained"),
              "weights_sha256": p.get("weights_sha256"), "init_seed": p.get("init_seed"),
              "preprocess": p.get("preprocess"), "rows": identity}
    have = {}
    if "image/crops/embeddings" in cache and cache.attrs.get("crops_config") == config:
        stored = cache["image/crops/rows"][:]
        emb = cache["image/crops/embeddings"][:]
        have = {int(r): emb[k] for k, r in enumerate(stored)}
    todo = [int(r) for r in rows if int(r) not in have]
    notes = []
    if todo:
        index = {x: k for k, x in enumerate(source.image_ids)}
        ids = cache.image_ids
        missing = [ids[r] for r in todo if ids[r] not in index]
        if missing:
            raise ClipscopeError(f"subregions: image {missing[0]!r} of the cache is not in {source.spec}; give the --data "
                                 "the cache was extracted from")
        per = len(sr.SCALES) * 4
        bar = tqdm(total=len(todo), desc="subregion crops", unit="image", file=sys.stderr, disable=not progress,
                   leave=False)
        import torch

        for s in range(0, len(todo), max(1, batch_size // per)):
            chunk = todo[s:s + max(1, batch_size // per)]
            pixels = []
            for r in chunk:
                im = source.load_image(index[ids[r]])
                pixels += [encoder.preprocess(sr.crop(im, b)) for b in sr.crop_boxes(r, seed)]
            feats = encoder.embed_images(torch.stack(pixels)).reshape(len(chunk), per, -1)
            have.update({r: f for r, f in zip(chunk, feats)})
            bar.update(len(chunk))
        bar.close()
        notes += _store_crops(cache, have, config, identity, progress=progress)
    else:
        notes.append(f"subregions: crop embeddings of all {len(rows)} sampled images read from the cache")
    I, T = cache.normalized_image_embeddings(), cache.normalized_text_embeddings()
    keep = pairs[np.isin(pairs[:, 0], rows)]
    whole = np.einsum("pd,pd->p", I[keep[:, 0]], T[keep[:, 1]])
    C = np.stack([have[int(r)] for r in keep[:, 0]])  # (P, K, D)
    crops = np.einsum("pkd,pd->pk", C, T[keep[:, 1]])
    sc = sr.subregion_scores(whole, crops)
    n = len(keep)
    on = f"{n} pairs of {len(rows)} sampled images, {crops.shape[1]} crops each (scales {', '.join(map(str, sr.SCALES))})"
    share = float(sc["win"].mean())
    metrics = {
        "subregion_win_share": metric(share, ci95=wilson_interval(share, n), n=n, detail=on),
        "subregion_mean_gain": metric(float(sc["gain"].mean()), ci95=_mean_ci(sc["gain"]), n=n, detail=on),
    }
    table = []
    for k, s in enumerate(sr.SCALES):
        part = crops[:, 4 * k:4 * k + 4].max(axis=1)
        table.append({"scale": s, "win_share": float((part > whole).mean()), "mean_gain": float((part - whole).mean())})
    return metrics, table, notes


def rows_identity(attrs: dict) -> dict:
    """What a cache's rows are: its ``cache_id`` (new on every write) and data fingerprint
    (older caches without an id: their creation time stands in)."""
    return {"cache_id": attrs.get("cache_id") or f"created {attrs.get('created_utc')}",
            "data_fingerprint": attrs.get("data_fingerprint")}


def matching_source(cache, source):
    """``source`` when it holds the images ``cache`` was extracted from (same data fingerprint;
    re-keyed on file contents when the cache was made with --verify), else a one-line error."""
    from clipscope.errors import ClipscopeError

    want = cache.attrs.get("data_fingerprint")
    if not want or source.fingerprint == want:
        return source
    if cache.attrs.get("data_verify") and not source.verify:
        from clipscope.data import open_source

        again = open_source(source.resolved_spec or source.spec, verify=True)
        if again.fingerprint == want:
            return again
    raise ClipscopeError(f"subregions: the data at {source.spec} is not what {cache.path} was extracted from (data "
                         f"fingerprint {source.fingerprint}, the cache's {want}): images were replaced, added or "
                         "removed since; re-extract the cache (extract --overwrite), or give --data naming the "
                         "original images (with the same --classnames and --verify)")


def _store_crops(cache, crops: dict, config: dict, identity: dict, *, progress: bool) -> list[str]:
    """Add the crop embeddings to the cache file, under its lock, only if the file still holds
    the rows they were computed for; returns notes on what was (not) stored."""
    import os

    from clipscope.cache import Cache, add_datasets
    from clipscope.errors import ClipscopeError
    from clipscope.fileio import exclusive, fault_point, remove_stale_temps

    path = cache.path
    if not path.is_file():
        return ["subregions: an in-memory cache; the crop embeddings were not stored"]
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)):
        return [f"subregions: {path} is read-only; the crop embeddings were computed for this run and not stored"]
    fault_point("subregions-before-store")
    keys = sorted(crops)
    try:
        with exclusive(path, quiet=not progress):
            remove_stale_temps(path)  # a copy left by a writer killed mid-write
            with Cache.open(path) as now:
                current = rows_identity(now.attrs)
            if current != identity:
                return [f"subregions: {path} was rewritten while the crops were encoded; they describe the rows "
                        "this report used and were not stored"]
            add_datasets(path, {"image/crops/rows": np.asarray(keys, np.int64),
                                "image/crops/embeddings": np.stack([crops[k] for k in keys]).astype(np.float32)},
                         attrs={"crops_config": config})
    except ClipscopeError as e:  # a full or read-only disk: the numbers stand, the crops are not kept
        return [f"subregions: the crop embeddings were not stored ({e})"]
    return []
