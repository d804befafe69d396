"""`direction`: the residual direction between two groups of rows (RAVE)."""

from __future__ import annotations

import click

from clipscope.cli.options import data_options, model_options, output_options, run_and_write

SELECTION = "label:N, class:NAME, ids:FILE (image ids), text:PROMPT|PROMPT or prompts:FILE (a prompt set)"


@click.command("direction")
@click.argument("cache", required=False, type=click.Path(dir_okay=False))
@model_options
@data_options
@output_options
@click.option("--a", "a", required=True, metavar="SELECTION", help=f"Group A (the direction points to it): {SELECTION}.")
@click.option("--b", "b", required=True, metavar="SELECTION", help=f"Group B: {SELECTION}.")
@click.option("--text-a", default=None, metavar="PROMPT|PROMPT",
              help="Prompts for the matching text direction (made from these and --text-b the same way), e.g. 'a well-lit photo'.")
@click.option("--text-b", default=None, metavar="PROMPT|PROMPT", help="The other prompt set of the text direction.")
@click.option("--top", default=20, show_default=True, type=click.IntRange(0),
              help="Rows listed at each end of the direction.")
def direction_cmd(cache, a, b, text_a, text_b, top, **opts):
    """The residual direction between two groups of rows, per modality, as RAVE computes it:
    the normalised difference of the groups' normalised mean embeddings; the angle between the
    groups, the raw centroid distance with a bias-corrected interval, how well projecting onto
    the direction separates the groups (AUROC, in sample), its cosine with a text direction,
    the rows furthest along it; saved (unit length) as direction_<modality>.npy in --out for
    reuse as guidance.

    \b
    Examples:
      clipscope direction cache.h5 --a class:cat --b class:dog --out runs/dir
      clipscope direction cache.h5 --a ids:well_lit.txt --b ids:backlit.txt \\
          --text-a 'a well-lit photo|a bright photo' --text-b 'a backlit photo|a dark photo' --out runs/dir
    """
    run_and_write("direction", cache, opts, a=a, b=b, text_a=text_a, text_b=text_b, top=top)
