"""`compose`: compositional understanding benchmarks (SugarCrepe, ARO, Winoground, probes)."""

from __future__ import annotations

import click

from clipscope.cli.options import data_options, model_options, output_options, run_and_write


@click.command("compose")
@model_options
@data_options
@output_options
@click.option("--benchmark", "benchmark", multiple=True, required=True, metavar="NAME:PATH",
              help="Repeatable: sugarcrepe:DATA_DIR, aro-relation:FILE, aro-attribution:FILE, aro-order:KARPATHY_JSON, "
                   "winoground:DIR, mmvp:DIR (MMVP-VLM, scored as blindpairs does), or "
                   "probes[:N] (built-in two-object scenes, N per kind; offline).")
@click.option("--images", default=None, type=click.Path(file_okay=False),
              help="Image root: COCO val2017 for SugarCrepe; for aro-order the Karpathy paths' root (default: the file's folder).")
@click.option("--captions", default=None, type=click.Path(dir_okay=False),
              help="A text file of captions (one per line) for the text-side diagnostics (--data's captions count too).")
@click.option("--top-failures", default=20, show_default=True, type=click.IntRange(0), help="Rows of the hardest-failures table.")
def compose_cmd(benchmark, images, captions, top_failures, **opts):
    """Compositional understanding: how often the model prefers the right caption over one with
    the same words recombined (SugarCrepe, ARO VG-Relation / VG-Attribution / order, Winoground,
    and built-in two-object probes), each scored with its reference's rule, ties included, plus
    text-side diagnostics. Files are read locally, never downloaded.

    \b
    Examples:
      clipscope compose --model clipscope-tiny --benchmark probes --out runs/compose
      clipscope compose --model ViT-B-32 --pretrained openai --benchmark sugarcrepe:sugar-crepe/data \\
          --images coco/val2017 --out runs/compose
      clipscope compose --model ViT-B-32 --pretrained openai --benchmark winoground:winoground \\
          --benchmark aro-relation:aro/visual_genome_relation.json --out runs/compose
    """
    run_and_write("compose", None, opts, benchmark=benchmark, images=images, captions=captions,
                  top_failures=top_failures)
