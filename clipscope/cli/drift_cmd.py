"""`drift`: how far the space moved between two model releases."""

from __future__ import annotations

import click

from clipscope.cli.options import data_options, emit, output_options


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
    from clipscope.cache import Cache
    from clipscope.cli.options import resolve_cache
    from clipscope.report import model_block
    from clipscope.runtime import resolve_device
    from clipscope.tasks import drift, title_of

    if bool(old_cache) != bool(new_cache):
        raise click.UsageError("give two caches (OLD NEW), or --old-model and --new-model with --data")
    common = dict(data=opts["data"], device=device, precision=precision, batch_size=batch_size, workers=workers,
                  quiet=opts["quiet"], verify=opts["verify"])
    if old_cache:
        old, new = Cache.open(old_cache), Cache.open(new_cache)
    else:
        if not (old_model and new_model and opts["data"]):
            raise click.UsageError("without caches, give --old-model, --new-model and --data")
        old = resolve_cache(None, model=old_model, pretrained=old_pretrained, **common)
        new = resolve_cache(None, model=new_model, pretrained=new_pretrained, **common)
    with old, new:
        result = drift.evaluate(old, new, k=k, top=top, device=resolve_device(device))
        po, pn = old.provenance, new.provenance
        title = f"{title_of(po, None).split(' on ')[0]} -> {title_of(pn, po.get('data_spec'))}"
        figures = None if opts["no_plots"] else (lambda r, d: drift.figures(r, d, title, seed=opts["seed"]))
        model = model_block(pn)
        model["old"] = model_block(po)
        data = {"spec": pn.get("data_spec"), "fingerprint": pn.get("data_fingerprint"), "cache": str(new.path), "counts": {}}
        emit("drift", result, model=model, data=data, seed=opts["seed"], out=opts["out"], json_out=opts["json_out"],
             quiet=opts["quiet"], figures=figures, summary_keys=drift.SUMMARY)
