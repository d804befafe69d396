"""`robustness`: corruptions, accuracy drop, embedding drift, calibration, OOD."""

from __future__ import annotations

import click

from clipscope.cli.options import data_options, emit, model_options, output_options


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
    from clipscope.data import open_source
    from clipscope.models import load_encoder
    from clipscope.report import model_block
    from clipscope.tasks import robustness, title_of

    if not opts["model"] or not opts["data"]:
        raise click.UsageError("robustness runs a model on images: give --model and --data (labelled)")
    names = robustness.parse_corruptions(corruptions)
    sevs = robustness.parse_severities(severities)
    tmpl = robustness.read_templates(templates)
    baseline = None
    if baseline_report:
        from clipscope.errors import ClipscopeError
        from clipscope.report import load_report

        baseline = load_report(baseline_report, validate=True)
        if baseline["command"] != "robustness" or "accuracy_clean" not in baseline["metrics"]:
            raise ClipscopeError(f"--baseline {baseline_report} is not a robustness report; pass the robustness.json "
                                 "of the baseline model")
    source = open_source(opts["data"], verify=opts["verify"])
    ood = open_source(ood_data, verify=opts["verify"]) if ood_data else None
    encoder = load_encoder(opts["model"], opts["pretrained"], device=opts["device"], precision=opts["precision"],
                           weights=opts["weights"])
    result = robustness.evaluate(encoder, source, corruptions=names, severities=sevs, templates=tmpl, ood_source=ood,
                                 batch_size=opts["batch_size"], max_images=max_images, seed=opts["seed"],
                                 progress=not opts["quiet"], baseline=baseline, published=jpeg_round_trip,
                                 frost_dir=frost_dir)
    title = title_of(encoder.provenance, source.spec)
    figures = None if opts["no_plots"] else (lambda r, d: robustness.figures(r, d, title))
    data = {"spec": source.spec, "fingerprint": source.fingerprint, "counts": source.counts()}
    emit("robustness", result, model=model_block(encoder.provenance), data=data, seed=opts["seed"], out=opts["out"],
         json_out=opts["json_out"], quiet=opts["quiet"], figures=figures, summary_keys=robustness.SUMMARY)
