"""`blindpairs`: CLIP-blind pair mining and MMVP-style pair scoring."""

from __future__ import annotations

import click

from clipscope.cli.options import data_options, model_options, output_options, run_and_write


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
    run_and_write("blindpairs", cache, opts, reference=reference, reference_pretrained=reference_pretrained,
                  reference_cache=reference_cache, clip_threshold=clip_threshold, ref_threshold=ref_threshold, top=top,
                  benchmark=benchmark)
