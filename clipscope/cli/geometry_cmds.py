"""`gap` and `uniformity`."""

from __future__ import annotations

import click

from clipscope.cli.options import data_options, model_options, output_options, run_and_write


def engine_options(f):
    """--engine/--address/--num-shards: the O(n d) work shard by shard on a Ray cluster."""
    f = click.option("--num-shards", default=None, type=click.IntRange(1),
                     help="With --engine ray: row ranges per modality (default: the cache's shards, else the "
                          "cluster's CPUs).")(f)
    f = click.option("--address", default=None, metavar="auto|HOST:PORT",
                     help="With --engine ray: the cluster to join (default: start a local one).")(f)
    return click.option("--engine", default="local", show_default=True, type=click.Choice(["local", "ray"]),
                        help="ray: the O(n d) statistics shard by shard on a Ray cluster; only sampled rows are "
                             "read here, so the rows need not fit in memory.")(f)


@click.command("gap")
@click.argument("cache", required=False, type=click.Path(dir_okay=False))
@model_options
@data_options
@output_options
@click.option("--projection", default="pca", show_default=True, type=click.Choice(["pca", "umap"]),
              help="2-D projection plot: pca (fast) or umap (compiles on first use: ~15 s more).")
@click.option("--sweep-max-rows", default=5000, show_default=True, type=click.IntRange(10), help="Pairs used by the shift sweep.")
@click.option("--shift-deltas", default=None, metavar="START:STOP:STEP|a,b,..",
              help="Absolute shift deltas instead of fractions of the gap; '-5:5:0.25' is the reference grid.")
@click.option("--noise-model", is_flag=True,
              help="Also model the paired differences as noise (MacCap): per-dimension moments, normality tests, "
                   "the fitted sigma, and whether adding N(0, sigma^2) to the texts closes the gap.")
@click.option("--noise-alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Level of the per-dimension normality tests.")
@click.option("--noise-max-pairs", default=20000, show_default=True, type=click.IntRange(20),
              help="Seeded sample of pairs for the noise model.")
@click.option("--subregions", is_flag=True,
              help="Also encode a seeded grid of crops at two scales per image (MacCap): how often a caption is "
                   "closer to a crop than to its whole image. Needs the images (--data, or the cache's own data "
                   "spec); the crop embeddings are stored in the cache.")
@click.option("--subregion-max-images", default=500, show_default=True, type=click.IntRange(1),
              help="Seeded sample of paired images for --subregions.")
@engine_options
def gap_cmd(cache, projection, sweep_max_rows, shift_deltas, noise_model, noise_alpha, noise_max_pairs,
            subregions, subregion_max_images, engine, address, num_shards, **opts):
    """The modality gap: centroid distance and cosine, paired distance and cosine, RMG, cone,
    linear separability, per-dimension gap and the shift sweep.

    \b
    Examples:
      clipscope gap cache.h5 --out runs/gap
      clipscope gap --model ViT-B-32 --pretrained none --data folder:./imgs --out runs/gap
      clipscope gap big.h5 --engine ray --address auto --out runs/gap   # rows need not fit in memory
    """
    run_and_write("gap", cache, opts, projection=projection, sweep_max_rows=sweep_max_rows,
                  shift_deltas=shift_deltas, engine=engine, address=address, num_shards=num_shards,
                  noise_model=noise_model, noise_alpha=noise_alpha, noise_max_pairs=noise_max_pairs,
                  subregions=subregions, subregion_max_images=subregion_max_images)


@click.command("uniformity")
@click.argument("cache", required=False, type=click.Path(dir_okay=False))
@model_options
@data_options
@output_options
@click.option("--t", "t", default=2.0, show_default=True, type=float, help="Kernel temperature t of exp(-t||x-y||^2).")
@click.option("--max-pairs", default=5_000_000_000, show_default=True, type=click.IntRange(1),
              help="Exact (blocked) up to this many pairs; above, an unbiased sample.")
@click.option("--sample-pairs", default=200_000_000, show_default=True, type=click.IntRange(100),
              help="Pairs drawn when sampling.")
@click.option("--block", default=4096, show_default=True, type=click.IntRange(16), help="Rows per similarity tile.")
@engine_options
def uniformity_cmd(cache, t, max_pairs, sample_pairs, block, engine, address, num_shards, **opts):
    """Uniformity and alignment (Wang & Isola 2020), union and cross-modal uniformity, relative alignment.

    \b
    Examples:
      clipscope uniformity cache.h5 --out runs/uniformity
      clipscope uniformity --model clipscope-tiny --data probes --json -
      clipscope uniformity big.h5 --engine ray --address auto --out runs/uniformity
    """
    run_and_write("uniformity", cache, opts, t=t, max_pairs=max_pairs, sample_pairs=sample_pairs, block=block,
                  engine=engine, address=address, num_shards=num_shards)
