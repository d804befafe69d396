"""`drift`: how far the space moved between two model releases."""

from __future__ import annotations

import click

from clipscope.cli.options import data_options, output_options, run_and_write


@click.command("drift")
@click.argument("old_cache", required=False, type=click.Path(dir_okay=False))
@click.argument("new_cache", required=False, type=click.Path(dir_okay=False))
@data_options
@output_options
@click.option("--old-model", default=None, help="Old model (extracts through the content-keyed cache).")
@click.option("--old-pretrained", default=None, help="Old model's weights.")
@click.option("--new-model", default=None, help="New model.")
@click.option("--new-pretrained", default=None, help="New model's weights.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "fp16", "bf16"]))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=None, type=click.IntRange(0))
@click.option("--k", "k", default=10, show_default=True, type=click.IntRange(1), help="Neighbours for the kNN overlap.")
@click.option("--top", default=20, show_default=True, type=click.IntRange(1), help="Most-moved rows listed.")
def drift_cmd(old_cache, new_cache, old_model, old_pretrained, new_model, new_pretrained, device, precision,
              batch_size, workers, k, top, **opts):
    """Representation drift between two models on the same data: linear CKA, Procrustes,
    kNN overlap, per-row drift, backward compatibility and the change of the gap.

    \b
    Examples:
      clipscope drift old.h5 new.h5 --out runs/drift
      clipscope drift --old-model ViT-B-32 --old-pretrained openai --new-model ViT-B-32 \\
          --new-pretrained laion2b_s34b_b79k --data folder:./imgs --out runs/drift
    """
    if bool(old_cache) != bool(new_cache):
        raise click.UsageError("give two caches (OLD NEW), or --old-model and --new-model with --data")
    opts.update(device=device, precision=precision, batch_size=batch_size, workers=workers)
    run_and_write("drift", [old_cache, new_cache] if old_cache else None, opts, old_model=old_model,
                  old_pretrained=old_pretrained, new_model=new_model, new_pretrained=new_pretrained, k=k, top=top)
