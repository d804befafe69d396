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
@click.option("--templates", default=None, metavar="openai|simple|FILE",
              help="Prompt templates, ensembled as CLIP_benchmark does: OpenAI's 80 ImageNet templates, the 7 simple "
                   "ones, or a file (one per line with {c}). Default: openai on ImageNet classes, else 'a photo of a "
                   "{c}.'.")
@click.option("--benchmark", multiple=True, metavar="NAME:DIR",
              help="Repeatable: a published set on disk: imagenet:VAL_DIR, imagenet-v2:DIR, imagenet-sketch:DIR, "
                   "imagenet-r:DIR, imagenet-a:DIR (logits over their 200 classes), imagenet-c:DIR "
                   "(<corruption>/<severity>/<wnid>/). --max-images caps each set and each ImageNet-C cell.")
@click.option("--ood-data", default=None, metavar="SPEC", help="Out-of-distribution images for MCM OOD detection.")
@click.option("--max-images", default=1000, show_default=True, type=click.IntRange(0),
              help="Seeded sample of the data, of each --benchmark set and of each ImageNet-C cell; 0: every image "
                   "(benchmarks stream in batches; --data holds its 224-px crops in memory).")
@click.option("--baseline", "baseline_report", default=None, type=click.Path(dir_okay=False), metavar="REPORT",
              help="A robustness.json of a baseline model: corruption errors are normalised by its errors (mCE).")
@click.option("--jpeg-round-trip/--no-jpeg-round-trip", default=True, show_default=True,
              help="Truncate to uint8 and JPEG-encode (q85) corrupted images as the published ImageNet-C was made.")
@click.option("--frost-dir", default=None, type=click.Path(file_okay=False, exists=True), metavar="DIR",
              help="The reference's frost photographs (frost1.png ... frost6.jpg); default: a procedural texture.")
def robustness_cmd(corruptions, severities, templates, benchmark, ood_data, max_images, baseline_report,
                   jpeg_round_trip, frost_dir, **opts):
    """Zero-shot robustness: accuracy under the 15 ImageNet-C corruptions, embedding drift,
    calibration (ECE, NLL) and OOD detection (MCM).

    \b
    Examples:
      clipscope robustness --model clipscope-tiny --data probes:300 --corruptions fog,contrast --out runs/rob
      clipscope robustness --model ViT-B-32 --data folder:./val --ood-data folder:./ood --out runs/rob
      clipscope robustness --model ViT-B-32 --pretrained openai --benchmark imagenet:./val \
          --benchmark imagenet-r:./imagenet-r --benchmark imagenet-c:./ImageNet-C --out runs/rob
    """
    run_and_write("robustness", None, opts, corruptions=corruptions, severities=severities, templates=templates,
                  ood_data=ood_data, max_images=max_images, baseline=baseline_report, jpeg_round_trip=jpeg_round_trip,
                  frost_dir=frost_dir, benchmark=benchmark)
