"""`extract`, `import`, `info`: making and reading embedding caches."""

from __future__ import annotations

import json

import click

from clipscope.cli.commands import shared_options


@click.command("extract")
@shared_options("model", "encoding", "data")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="The cache file to write (.h5).")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "float16"]),
              help="Storage type of the embeddings.")
@click.option("--overwrite", is_flag=True, help="Start over: replace the cache and any unfinished extraction.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or summary.")
@click.option("--engine", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="local: this process; ray: shards on a Ray cluster (pip install 'clipscope-diagnostics[distributed]').")
@click.option("--address", default=None, metavar="auto|ray://HOST:PORT", help="Ray cluster to join (default: start a local one).")
@click.option("--num-shards", default=None, type=click.IntRange(1), help="Shards for --engine ray (default: GPUs, else CPUs).")
@click.option("--merge", is_flag=True, help="With --engine ray: one merged file instead of virtual datasets over the shards.")
def extract_cmd(model, pretrained, weights, device, precision, batch_size, workers, decode, data, verify, classnames,
                out, dtype, overwrite, quiet, engine, address, num_shards, merge):
    """Encode a data set with a model into an HDF5 embedding cache (resumable).

    \b
    Example:
      clipscope extract --model ViT-B-32 --pretrained openai --data folder:./imgs --out cache.h5
      clipscope extract --model clipscope-tiny --data probes:512 --out probes.h5

    Rerunning an interrupted command continues after the last flushed batch. With --engine ray
    the input is split into deterministic shards, one Ray task each; a rerun skips finished shards.
    """
    from clipscope.data import open_source
    from clipscope.extract import extract
    from clipscope.models import load_encoder
    from clipscope.runtime import default_workers

    if not model:
        raise click.UsageError("--model is required (e.g. --model ViT-B-32, or clipscope-tiny offline)")
    if not data:
        raise click.UsageError("--data is required (e.g. --data folder:./imgs or --data probes)")
    if engine == "ray":
        from clipscope.distributed import extract_sharded

        if weights:
            raise click.UsageError("--weights is not supported with --engine ray yet; pass the file as --pretrained")
        if classnames:
            raise click.UsageError("--classnames is not supported with --engine ray yet")
        summary = extract_sharded(model=model, pretrained=pretrained, data=data, out=out, num_shards=num_shards,
                                  address=address, batch_size=batch_size, dtype=dtype, device=device,
                                  precision=precision, merge=merge, overwrite=overwrite, progress=not quiet,
                                  verify=verify, decode=decode)
        if not quiet:
            click.echo(f"extract: done on Ray: {summary['cache']} ({summary['shards']} shards, "
                       f"{summary['skipped_shards']} already done, {'merged' if merge else 'virtual datasets'})")
            click.echo(f"  images {summary['images']}, texts {summary['texts']}, pairs {summary['pairs']}, "
                       f"failed {summary['failed']}")
        return
    source = open_source(data, verify=verify, classnames=classnames)
    encoder = load_encoder(model, pretrained, device=device, precision=precision, weights=weights)
    summary = extract(source, encoder, out, batch_size=batch_size,
                      workers=default_workers(encoder.device) if workers is None else workers, dtype=dtype,
                      overwrite=overwrite, progress=not quiet, decode=decode)
    if not quiet:
        prov = encoder.provenance
        state = "already complete, nothing to do" if summary["skipped"] else ("resumed and finished" if summary["resumed"] else "done")
        click.echo(f"extract: {state}: {summary['cache']}")
        click.echo(f"  model {prov['model']} (pretrained: {prov['pretrained']}), dim {prov['embed_dim']}, device {encoder.device}")
        click.echo(f"  images {summary['images']}, texts {summary['texts']}, pairs {summary['pairs']}, failed {summary['failed']}")
        if summary["failed"]:
            click.echo("  failed inputs are listed in /failed (see: clipscope info --failed)")


@click.command("import")
@click.option("--pair-array", type=click.Path(dir_okay=False), help="(2, N, D) .npy: [0] images, [1] texts, row i pairs row i.")
@click.option("--image-embeddings", type=click.Path(dir_okay=False), help="(N, D) .npy of image rows.")
@click.option("--text-embeddings", type=click.Path(dir_okay=False), help="(M, D) .npy of text rows.")
@click.option("--pairs", type=click.Path(dir_okay=False), help="(P, 2) int .npy of (image row, text row).")
@click.option("--ids", type=click.Path(dir_okay=False), help="Text file: one image id per line.")
@click.option("--captions", type=click.Path(dir_okay=False), help="Text file: one caption per text row.")
@click.option("--labels", type=click.Path(dir_okay=False), help="(N,) int .npy of image labels.")
@click.option("--clip-retrieval", type=click.Path(file_okay=False), help="Output folder of clip-retrieval inference.")
@click.option("--model-name", default=None, help="Provenance: the model that made the embeddings.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The cache file to write (.h5).")
@click.option("--overwrite", is_flag=True, help="Replace an existing cache.")
def import_cmd(pair_array, image_embeddings, text_embeddings, pairs, ids, captions, labels, clip_retrieval,
               model_name, out, overwrite):
    """Bring embeddings made elsewhere into a cache.

    \b
    Examples:
      clipscope import --pair-array features.npy --out cache.h5
      clipscope import --image-embeddings img.npy --text-embeddings txt.npy --out cache.h5
      clipscope import --clip-retrieval ./embeddings_folder --out cache.h5
    """
    from pathlib import Path

    from clipscope import importers
    from clipscope.errors import ClipscopeError

    given = [x for x in (pair_array, image_embeddings, clip_retrieval) if x]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --pair-array, --image-embeddings or --clip-retrieval")
    if Path(out).exists() and not overwrite:
        raise ClipscopeError(f"{out} already exists; choose another --out or pass --overwrite")
    if pair_array:
        summary = importers.import_pair_array(pair_array, out, model_name=model_name)
    elif clip_retrieval:
        summary = importers.import_clip_retrieval(clip_retrieval, out, model_name=model_name)
    else:
        summary = importers.import_arrays(out, image_embeddings=image_embeddings, text_embeddings=text_embeddings,
                                          pairs=pairs, ids=ids, captions=captions, labels=labels, model_name=model_name)
    click.echo(f"import: {summary['cache']}: images {summary['images']}, texts {summary['texts']}, pairs {summary['pairs']}")


@click.command("info")
@click.argument("cache", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--failed", "show_failed", is_flag=True, help="List the inputs that could not be read.")
def info_cmd(cache, as_json, show_failed):
    """Show what a cache holds: provenance and counts.

    \b
    Example:
      clipscope info cache.h5
    """
    from clipscope.cache import Cache

    with Cache.open(cache) as c:
        s = c.summary()
        failed = c.failed
        pre = c.attrs.get("preprocess")
    if as_json:
        s["failed_inputs"] = [{"id": a, "reason": b} for a, b in failed] if show_failed else None
        click.echo(json.dumps(s, indent=2))
        return
    click.echo(f"{s['path']}  (cache schema {s['schema']}, {s['source']}, {s['created_utc']})")
    click.echo(f"  model       {s['model']}  pretrained: {s['pretrained']}  dim {s['embed_dim']}  dtype {s['dtype']}")
    click.echo(f"  data        {s['data_spec']}")
    click.echo(f"  images      {s['images']}" + (f"  labelled, {s['classes']} classes" if s["labels"] else ""))
    click.echo(f"  texts       {s['texts']}")
    click.echo(f"  pairs       {s['pairs']}")
    click.echo(f"  failed      {s['failed']}")
    if pre:
        click.echo(f"  preprocess  {json.dumps(pre)}")
    if s["extra"]:
        click.echo(f"  also        {', '.join(s['extra'])}")
    if show_failed:
        for a, b in failed:
            click.echo(f"  failed: {a}: {b}")
