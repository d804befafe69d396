"""`gap` and `uniformity`."""

from __future__ import annotations

import click

from clipscope.cli.options import data_block, data_options, emit, model_options, output_options, resolve_cache
from clipscope.report import model_block


def _run(command, task, cache, opts, evaluate_kw, figure_kw):
    from clipscope.tasks import title_of

    with resolve_cache(cache, model=opts["model"], pretrained=opts["pretrained"], data=opts["data"],
                       device=opts["device"], precision=opts["precision"], batch_size=opts["batch_size"],
                       workers=opts["workers"], quiet=opts["quiet"], verify=opts["verify"],
                       weights=opts["weights"]) as c:
        prov = c.provenance
        result = task.evaluate(c, seed=opts["seed"], **evaluate_kw)
        title = title_of(prov, prov.get("data_spec"))
        figures = None if opts["no_plots"] else (lambda r, d: task.figures(r, d, title, seed=opts["seed"], **figure_kw))
        emit(command, result, model=model_block(prov), data=data_block(c), seed=opts["seed"], out=opts["out"],
             json_out=opts["json_out"], quiet=opts["quiet"], figures=figures, summary_keys=task.SUMMARY)


@click.command("gap")
@click.argument("cache", required=False, type=click.Path(dir_okay=False))
@model_options
@data_options
@output_options
@click.option("--bootstrap", default=200, show_default=True, type=click.IntRange(0), help="Bootstrap replicates for ci95 (0: off).")
@click.option("--projection", default="umap", show_default=True, type=click.Choice(["umap", "pca"]), help="2-D projection plot.")
@click.option("--sweep-max-rows", default=5000, show_default=True, type=click.IntRange(10), help="Pairs used by the shift sweep.")
@click.option("--shift-deltas", default=None, metavar="START:STOP:STEP|a,b,..",
              help="Absolute shift deltas instead of fractions of the gap; '-5:5:0.25' is the reference grid.")
def gap_cmd(cache, bootstrap, projection, sweep_max_rows, shift_deltas, **opts):
    """The modality gap: centroid distance and cosine, paired distance and cosine, RMG, cone,
    linear separability, per-dimension gap and the shift sweep.

    \b
    Examples:
      clipscope gap cache.h5 --out runs/gap
      clipscope gap --model ViT-B-32 --pretrained none --data folder:./imgs --out runs/gap
    """
    from clipscope.tasks import gap

    deltas = _parse_deltas(shift_deltas) if shift_deltas else None
    _run("gap", gap, cache, opts, {"bootstrap": bootstrap, "sweep_max_rows": sweep_max_rows, "shift_deltas": deltas},
         {"projection": projection})


def _parse_deltas(text: str) -> list[float]:
    import numpy as np

    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            values = np.arange(start, stop, step).tolist()  # the reference's own construction
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("use START:STOP:STEP (e.g. -5:5:0.25) or a comma list", param_hint="--shift-deltas") from None
    if not values:
        raise click.BadParameter("no deltas in that range", param_hint="--shift-deltas")
    return values


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
def uniformity_cmd(cache, t, max_pairs, sample_pairs, block, **opts):
    """Uniformity and alignment (Wang & Isola 2020), union and cross-modal uniformity, relative alignment.

    \b
    Examples:
      clipscope uniformity cache.h5 --out runs/uniformity
      clipscope uniformity --model clipscope-tiny --data probes --json -
    """
    from clipscope.runtime import resolve_device
    from clipscope.tasks import uniformity

    device = resolve_device(opts["device"])
    _run("uniformity", uniformity, cache, opts,
         {"t": t, "max_pairs": max_pairs, "sample_pairs": sample_pairs, "block": block, "device": device}, {})


