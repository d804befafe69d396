"""`blindpairs`: CLIP-blind pair mining and MMVP-style pair scoring."""

from __future__ import annotations

import click

from clipscope.cli.options import data_block, data_options, emit, model_options, output_options, resolve_cache


@click.command("blindpairs")
@click.argument("cache", required=False, type=click.Path(dir_okay=False))
@model_options
@data_options
@output_options
@click.option("--reference", default=None, metavar="ENCODER",
              help="Vision-only reference encoder: timm:NAME, or an open_clip model name (image tower).")
@click.option("--reference-pretrained", default=None, metavar="TAG|PATH|none", help="Weights of the reference encoder.")
@click.option("--reference-cache", type=click.Path(dir_okay=False), default=None,
              help="A cache with reference image embeddings of the same image ids.")
@click.option("--clip-threshold", default=0.95, show_default=True, type=float, help="CLIP cosine above which a pair looks the same.")
@click.option("--ref-threshold", default=0.6, show_default=True, type=float, help="Reference cosine below which it differs.")
@click.option("--top", default=1000, show_default=True, type=click.IntRange(1), help="Pairs listed in the report (counts cover all).")
@click.option("--benchmark", default=None, metavar="mmvp:DIR|probes[:N]", help="Score a pair benchmark instead of mining.")
def blindpairs_cmd(cache, reference, reference_pretrained, reference_cache, clip_threshold, ref_threshold, top,
                   benchmark, **opts):
    """CLIP-blind pairs (Tong et al., CVPR 2024): image pairs a CLIP model embeds almost
    identically (cosine > --clip-threshold) while a vision-only model sees them as different
    (cosine < --ref-threshold). With --benchmark, score MMVP-style statement pairs instead.

    \b
    Examples:
      clipscope blindpairs --model ViT-B-32 --data folder:./imgs \\
          --reference timm:vit_large_patch14_dinov2.lvd142m --out runs/blind
      clipscope blindpairs clip.h5 --reference-cache dino.h5 --out runs/blind
      clipscope blindpairs --model clipscope-tiny --benchmark probes --out runs/mmvp
    """
    from clipscope.cache import Cache
    from clipscope.report import model_block
    from clipscope.runtime import resolve_device
    from clipscope.tasks import blindpairs, title_of

    common = dict(device=opts["device"], precision=opts["precision"], batch_size=opts["batch_size"],
                  workers=opts["workers"], quiet=opts["quiet"], verify=opts["verify"])
    if benchmark:
        if not opts["model"]:
            raise click.UsageError("--benchmark scores a model: give --model (and --pretrained)")
        from clipscope.data.mmvp import open_benchmark
        from clipscope.models import load_encoder

        pairs = open_benchmark(benchmark)
        encoder = load_encoder(opts["model"], opts["pretrained"], device=opts["device"], precision=opts["precision"],
                               weights=opts["weights"])
        result = blindpairs.score_benchmark(encoder, pairs, benchmark=benchmark, batch_size=opts["batch_size"])
        title = title_of(encoder.provenance, benchmark)
        figures = None if opts["no_plots"] else (lambda r, d: blindpairs.figures(r, d, title))
        emit("blindpairs", result, model=model_block(encoder.provenance),
             data={"spec": f"benchmark:{benchmark}", "counts": {"pairs": len(pairs)}}, seed=opts["seed"],
             out=opts["out"], json_out=opts["json_out"], quiet=opts["quiet"], figures=figures,
             summary_keys=blindpairs.SUMMARY)
        return
    if not reference and not reference_cache:
        raise click.UsageError("mining needs a reference: --reference ENCODER or --reference-cache REF.h5")
    with resolve_cache(cache, model=opts["model"], pretrained=opts["pretrained"], data=opts["data"],
                       weights=opts["weights"], **common) as c:
        if reference_cache:
            ref = Cache.open(reference_cache)
        else:
            from clipscope.data import open_source
            from clipscope.extract import ensure_cache
            from clipscope.models import load_encoder
            from clipscope.runtime import default_workers

            spec = opts["data"] or c.attrs.get("data_spec")
            source = open_source(spec, verify=opts["verify"])
            ref_encoder = load_encoder(reference, reference_pretrained, device=opts["device"], precision=opts["precision"])
            path = ensure_cache(ref_encoder, source, batch_size=opts["batch_size"], progress=not opts["quiet"],
                                workers=default_workers(ref_encoder.device) if opts["workers"] is None else opts["workers"])
            ref = Cache.open(path)
        with ref:
            device = resolve_device(opts["device"])
            result = blindpairs.mine(c, ref, clip_threshold=clip_threshold, ref_threshold=ref_threshold, top=top,
                                     device=device)
            prov = c.provenance
            title = title_of(prov, prov.get("data_spec"))
            figures = None if opts["no_plots"] else (lambda r, d: blindpairs.figures(r, d, title))
            emit("blindpairs", result, model=model_block(prov), data=data_block(c), seed=opts["seed"], out=opts["out"],
                 json_out=opts["json_out"], quiet=opts["quiet"], figures=figures, summary_keys=blindpairs.SUMMARY)
