"""Options shared by every command, spelled the same way everywhere, and the input/output walk."""

from __future__ import annotations

import functools
from pathlib import Path

import click


def model_options(fn):
    @click.option("--model", "model", default=None, metavar="NAME",
                  help="open_clip name (ViT-B-32), hf-hub:org/repo, local-dir:PATH, or clipscope-tiny (bundled).")
    @click.option("--pretrained", default=None, metavar="TAG|PATH|none",
                  help="open_clip tag, local checkpoint file, or 'none' (random init). Default: the model's first tag.")
    @click.option("--weights", default=None, type=click.Path(dir_okay=False), metavar="PATH",
                  help="Local checkpoint of the tag named by --pretrained (keeps its QuickGELU/mean/std/resize).")
    @click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
    @click.option("--precision", default="auto", show_default=True,
                  type=click.Choice(["auto", "fp32", "fp16", "bf16"]), help="auto: fp32 on CPU, autocast on GPU.")
    @click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1), help="Items per batch.")
    @click.option("--workers", default=None, type=click.IntRange(0), help="DataLoader workers (default: 0 on CPU, up to 8 on GPU).")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def data_options(fn):
    @click.option("--data", "data", default=None, metavar="SPEC",
                  help="folder:DIR, images:DIR, captions:FILE, coco:ANN.json[:DIR], wds:PATTERN or probes[:N[:SEED]].")
    @click.option("--verify", is_flag=True,
                  help="Key the cache on each input file's SHA-256 (default: size, mtime, ctime and inode).")
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


def resolve_cache(cache_path, *, model, pretrained, data, device, precision, batch_size, workers, quiet, encoder=None,
                  verify=False, weights=None):
    """The walk every analysis command shares: a given cache, or extraction on demand into the
    content-keyed cache (reused by the next run with the same model, weights and data).
    ``encoder``: an already loaded encoder of ``model`` to extract with (else it is loaded)."""
    from clipscope.cache import Cache

    if cache_path and (model or data):
        raise click.UsageError("give either a CACHE or --model/--data, not both")
    if cache_path:
        return Cache.open(cache_path)
    if not model:
        raise click.UsageError("give a CACHE file, or --model NAME (with --data SPEC) to extract first")
    from clipscope.data import open_source
    from clipscope.extract import ensure_cache
    from clipscope.models import load_encoder
    from clipscope.runtime import default_workers

    source = open_source(data or "probes", verify=verify)
    encoder = encoder or load_encoder(model, pretrained, device=device, precision=precision, weights=weights)
    path = ensure_cache(encoder, source, batch_size=batch_size,
                        workers=default_workers(encoder.device) if workers is None else workers, progress=not quiet)
    return Cache.open(path)


def data_block(cache) -> dict:
    a = cache.attrs
    return {"spec": a.get("data_spec"), "fingerprint": a.get("data_fingerprint"), "cache": str(cache.path),
            "counts": {"images": cache.n_images, "texts": cache.n_texts, "pairs": int(len(cache.pairs)),
                       "failed": len(cache.failed)}}


def emit(command: str, result, *, model: dict, data: dict, seed: int, out, json_out, quiet: bool,
         figures=None, summary_keys=(), extra_config: dict | None = None) -> dict:
    """Build, validate and write a report (and its figures); print a short summary on stdout."""
    from clipscope.report import atomic_write_text, build_report, dumps, validate_report

    if out is None and json_out is None:
        raise click.UsageError("give --out DIR (report and plots) and/or --json PATH|-")
    data = {**data, "counts": {**data.get("counts", {}), **result.counts}}
    artifacts = {}
    if out is not None and figures is not None:
        artifacts = figures(result, Path(out))
    report = build_report(command, model=model, data=data, seed=seed, config={**result.config, **(extra_config or {})},
                          metrics=result.metrics, tables=result.tables, artifacts=artifacts, notes=result.notes)
    validate_report(report)
    unsourced = [k for k, m in report["metrics"].items() if "source" not in m]
    if unsourced:  # a programming error: every number says where it comes from
        raise RuntimeError(f"metrics without a registered source: {', '.join(unsourced)} (clipscope/metric_sources.py)")
    text = dumps(report)
    if out is not None:
        atomic_write_text(Path(out) / f"{command}.json", text)
    if json_out == "-":
        click.echo(text, nl=False)
    elif json_out:
        atomic_write_text(json_out, text)
    if not quiet and json_out != "-":
        click.echo(summary_text(command, report, summary_keys, out))
    return report


def summary_text(command: str, report: dict, keys, out) -> str:
    m = report["model"]
    lines = [f"{command}: {m['name']} (pretrained: {m['pretrained']}) on {report['data'].get('spec')}"]
    for k in keys or report["metrics"]:
        if k in report["metrics"] and report["metrics"][k]["value"] is not None:
            v = report["metrics"][k]
            ci = f"  [{v['ci95'][0]:.4f}, {v['ci95'][1]:.4f}]" if v["ci95"] else ""
            value = f"{int(v['value'])}" if k.startswith("n_") else f"{v['value']:.4f}"
            lines.append(f"  {k:<28} {value}{ci}")
    for note in report.get("notes", []):
        lines.append(f"  note: {note}")
    if out is not None:
        lines.append(f"  report: {Path(out) / (command + '.json')}")
    return "\n".join(lines)
