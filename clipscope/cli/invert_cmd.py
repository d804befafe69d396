"""`invert`: OTI / OVI (Cross the Gap)."""

from __future__ import annotations

import click

from clipscope.cli.options import data_options, model_options, output_options, run_and_write


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
    run_and_write("invert", cache, opts, mode=mode, tokens=tokens, steps=steps, lr=lr, weight_decay=weight_decay,
                  template=template, inv_batch_size=inv_batch_size, inv_seed=inv_seed, gallery=gallery)
