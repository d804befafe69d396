"""Options shared by every command, spelled the same way everywhere, and the input/output walk."""

from __future__ import annotations

import functools

import click


def model_options(fn):
    @click.option("--model", "model", default=None, metavar="NAME",
                  help="open_clip name (ViT-B-32), hf-hub:org/repo, local-dir:PATH, transformers:ORG/NAME|PATH, or "
                       "clipscope-tiny (bundled).")
    @click.option("--pretrained", default=None, metavar="TAG|PATH|none",
                  help="open_clip tag, local checkpoint file, or 'none' (random init); for transformers: the hub revision. "
                       "Default: the model's first tag.")
    @click.option("--weights", default=None, type=click.Path(dir_okay=False), metavar="PATH",
                  help="Local checkpoint of the tag named by --pretrained (keeps its QuickGELU/mean/std/resize).")
    @click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
    @click.option("--precision", default="auto", show_default=True,
                  type=click.Choice(["auto", "fp32", "fp16", "bf16"]), help="auto: fp32 on CPU, autocast on GPU.")
    @click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1), help="Items per batch.")
    @click.option("--workers", default=None, type=click.IntRange(0), help="DataLoader workers (default: 0 on CPU, up to 8 on GPU).")
    @click.option("--decode", default="auto", show_default=True, type=click.Choice(["auto", "gpu", "cpu", "tensor"]),
                  help="Image input path: gpu decodes JPEG batches on the GPU and preprocesses there; cpu uses PIL in "
                       "the workers; auto is gpu when the model is on CUDA; tensor is the GPU path on any device "
                       "(torchvision's CPU decoder on a CPU).")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def data_options(fn):
    @click.option("--data", "data", default=None, metavar="SPEC",
                  help="folder:DIR, images:DIR, captions:FILE, coco:ANN.json[:DIR], wds:PATTERN or probes[:N[:SEED]].")
    @click.option("--verify", is_flag=True,
                  help="Key the cache on each input file's SHA-256 (default: size, mtime, ctime and inode).")
    @click.option("--classnames", default=None, type=click.Path(dir_okay=False), metavar="FILE",
                  help="Class names of folder: data (JSON folder->name, or 'folder name' lines). Default: ImageNet's "
                       "names when the folders are WordNet ids, else the folder names.")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def output_options(fn):
    @click.option("--out", "out", default=None, type=click.Path(file_okay=False), metavar="DIR",
                  help="Folder for the JSON report and the plots.")
    @click.option("--json", "json_out", default=None, metavar="PATH|-", help="Also write the report here ('-' = stdout).")
    @click.option("--seed", default=0, show_default=True, type=int, help="Seed for every random choice.")
    @click.option("--no-plots", is_flag=True, help="Skip the PNGs.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bars or summary.")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from clipscope.fileio import check_writable

        # Fail before any work, not after minutes of it.
        if kwargs.get("out"):
            check_writable(kwargs["out"], folder=True)
        if kwargs.get("json_out") not in (None, "-"):
            check_writable(kwargs["json_out"], folder=False)
        return fn(*args, **kwargs)

    return wrapper


def run_and_write(command: str, cache, opts: dict, **options):
    """The whole of an analysis command: check the outputs can be written, run the library
    (:func:`clipscope.run`), save the report and plots, print a short summary on stdout."""
    from clipscope.api import run
    from clipscope.fileio import atomic_write_text

    from clipscope.fileio import guard_outputs, input_paths

    out, json_out = opts.pop("out", None), opts.pop("json_out", None)
    quiet, no_plots = opts.pop("quiet", False), opts.pop("no_plots", False)
    if out is None and json_out is None:
        raise click.UsageError("give --out DIR (report and plots) and/or --json PATH|-")
    from pathlib import Path

    guard_outputs([("--json", json_out), ("--out", None if out is None else Path(out) / f"{command}.json")],
                  inputs=input_paths([cache, *opts.values(), *options.values()]), report_command=command)
    plots = out is not None and not no_plots
    report = run(command, cache, progress=not quiet, plots=plots, **opts, **options)
    if out is not None:
        report.save(out, plots=plots, progress=not quiet)
    if json_out == "-":
        click.echo(report.to_json(with_figures=plots), nl=False)
    elif json_out:
        atomic_write_text(json_out, report.to_json(with_figures=plots))
    if not quiet and json_out != "-":
        click.echo(report.summary(out))
    return report
