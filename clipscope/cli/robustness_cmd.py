"""`robustness`: corruptions, accuracy drop, embedding drift, calibration, OOD."""

from __future__ import annotations

import click

from clipscope.cli.options import data_options, model_options, output_options, run_and_write


@click.command("robustness")
@model_options
@data_options
@output_options
@click.option("--corruptions", default="all", show_default=True, help="'all' or a comma list, e.g. gaussian_noise,fog.")
@click.option("--severities", default="1-5", show_default=True, help="A range (1-5) or a list (1,3,5).")
@click.option("--templates", type=click.Path(dir_okay=False), default=None,
              help="File of prompt templates, one per line with {c}; ensembled as CLIP_benchmark does.")
@click.option("--ood-data", default=None, metavar="SPEC", help="Out-of-distribution images for MCM OOD detection.")
@click.option("--max-images", default=1000, show_default=True, type=click.IntRange(1), help="Seeded sample of the data.")
@click.option("--baseline", "baseline_report", default=None, type=click.Path(dir_okay=False), metavar="REPORT",
              help="A robustness.json of a baseline model: corruption errors are normalised by its errors (mCE).")
@click.option("--jpeg-round-trip/--no-jpeg-round-trip", default=True, show_default=True,
              help="Truncate to uint8 and JPEG-encode (q85) corrupted images as the published ImageNet-C was made.")
@click.option("--frost-dir", default=None, type=click.Path(file_okay=False, exists=True), metavar="DIR",
              help="The reference's frost photographs (frost1.png ... frost6.jpg); default: a procedural texture.")
def robustness_cmd(corruptions, severities, templates, ood_data, max_images, baseline_report, jpeg_round_trip,
                   frost_dir, **opts):
    """Zero-shot robustness: accuracy under the 15 ImageNet-C corruptions, embedding drift,
    calibration (ECE, NLL) and OOD detection (MCM).

    \b
    Examples:
      clipscope robustness --model clipscope-tiny --data probes:300 --corruptions fog,contrast --out runs/rob
      clipscope robustness --model ViT-B-32 --data folder:./val --ood-data folder:./ood --out runs/rob
    """
    run_and_write("robustness", None, opts, corruptions=corruptions, severities=severities, templates=templates,
                  ood_data=ood_data, max_images=max_images, baseline=baseline_report, jpeg_round_trip=jpeg_round_trip,
                  frost_dir=frost_dir)
