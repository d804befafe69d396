"""`invert`: OTI / OVI (Cross the Gap)."""

from __future__ import annotations

import click

from clipscope.cli.options import data_block, data_options, emit, model_options, output_options


@click.command("invert")
@click.argument("cache", required=False, type=click.Path(dir_okay=False))
@model_options
@data_options
@output_options
@click.option("--mode", required=True, type=click.Choice(["oti", "ovi"]),
              help="oti: image -> text encoder; ovi: text -> image encoder.")
@click.option("--tokens", type=click.IntRange(1), default=None, help="Pseudo tokens per row (default 1).")
@click.option("--steps", type=click.IntRange(1), default=None, help="Optimisation steps (default: OTI 150, OVI 1000).")
@click.option("--lr", type=float, default=None, help="AdamW learning rate (default 2e-2).")
@click.option("--weight-decay", type=float, default=None, help="AdamW weight decay (default 0.01).")
@click.option("--template", default=None, help="OTI template with {} for the pseudo tokens (default 'a photo of {}').")
@click.option("--inv-batch-size", "inv_batch_size", type=click.IntRange(1), default=None,
              help="Rows optimised together (default 64).")
@click.option("--inv-seed", "inv_seed", type=int, default=None, help="Seed of the token initialisation (default 42).")
@click.option("--gallery", default=None, metavar="SPEC|CACHE", help="Separate gallery: a data spec or a cache file.")
def invert_cmd(cache, mode, tokens, steps, lr, weight_decay, template, inv_batch_size, inv_seed, gallery, **opts):
    """Modality inversion (Mistretta et al., ICLR 2025): OTI maps each image into the text
    encoder's input space, OVI each text into the image encoder's; with labels, intra-modal
    retrieval is compared with the inverted (inter-modal) retrieval.

    The model that made the cache is needed to optimise. Defaults equal the reference code's.

    \b
    Examples:
      clipscope invert --model clipscope-tiny --data probes:200 --mode oti --out runs/invert
      clipscope invert cache.h5 --model ViT-B-32 --pretrained openai --mode ovi --out runs/ovi
    """
    from pathlib import Path

    from clipscope.cache import Cache
    from clipscope.cli.options import resolve_cache
    from clipscope.models import load_encoder
    from clipscope.report import model_block
    from clipscope.tasks import invert, title_of

    if not opts["model"]:
        raise click.UsageError("invert optimises through the model: give --model (and --pretrained) "
                               "matching the cache, or --model with --data")
    config = invert.with_overrides(mode, tokens=tokens, steps=steps, lr=lr, weight_decay=weight_decay,
                                   template=template, batch_size=inv_batch_size, seed=inv_seed)
    if mode == "oti" and "{}" not in config.template:
        raise click.UsageError("--template must contain {} where the pseudo tokens go")
    encoder = load_encoder(opts["model"], opts["pretrained"], device=opts["device"], precision=opts["precision"],
                           weights=opts["weights"])
    common = dict(pretrained=opts["pretrained"], device=opts["device"], precision=opts["precision"],
                  batch_size=opts["batch_size"], workers=opts["workers"], quiet=opts["quiet"], encoder=encoder,
                  verify=opts["verify"])
    if cache:
        c = Cache.open(cache)
    else:
        c = resolve_cache(None, model=opts["model"], data=opts["data"], **common)
    g = None
    if gallery:
        g = Cache.open(gallery) if Path(gallery).is_file() else resolve_cache(None, model=opts["model"], data=gallery, **common)
    with c:
        result = invert.evaluate(c, encoder, mode=mode, config=config, gallery=g, progress=not opts["quiet"])
        prov = c.provenance
        data = data_block(c)
    if g is not None:
        g.close()
    title = title_of(prov, prov.get("data_spec"))
    figures = None if opts["no_plots"] else (lambda r, d: invert.figures(r, d, title))
    emit("invert", result, model=model_block(encoder.provenance), data=data, seed=opts["seed"], out=opts["out"],
         json_out=opts["json_out"], quiet=opts["quiet"], figures=figures, summary_keys=invert.SUMMARY)
