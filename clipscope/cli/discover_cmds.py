"""`models` and `cache`: what can be loaded, and what the content-keyed cache holds."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click


@click.command("models")
@click.option("--filter", "pattern", default=None, metavar="TEXT", help="Only architectures or tags containing TEXT.")
@click.option("--cached", is_flag=True, help="Only weights already on this machine (Hugging Face cache).")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models_cmd(pattern, cached, as_json):
    """The models clipscope can load: the bundled one, every open_clip architecture with its
    pretrained tags (marked when the weights are cached here), and timm reference encoders.

    \b
    Examples:
      clipscope models --filter ViT-B-32
      clipscope models --cached
    """
    from clipscope.models import BUNDLED, import_open_clip

    open_clip = import_open_clip()
    rows = [{"model": name, "pretrained": "bundled", "cached": True, "source": str(path)} for name, path in BUNDLED.items()]
    for arch, tag in open_clip.list_pretrained():
        if arch in BUNDLED:
            continue
        cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
        rows.append({"model": arch, "pretrained": tag, "cached": _hf_cached(cfg.get("hf_hub", "")),
                     "source": cfg.get("hf_hub") or cfg.get("url") or ""})
    if pattern:
        rows = [r for r in rows if pattern.lower() in f"{r['model']} {r['pretrained']}".lower()]
    if cached:
        rows = [r for r in rows if r["cached"]]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max([len(r["model"]) for r in rows] + [5])
    click.echo(f"{'model':<{width}}  pretrained (* = cached here)")
    by_model: dict[str, list[str]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r["pretrained"] + ("*" if r["cached"] else ""))
    for model, tags in by_model.items():
        click.echo(f"{model:<{width}}  {', '.join(tags)}")
    from clipscope.models import accepted_names

    click.echo(f"\n{len(by_model)} architecture(s), {len(rows)} weight set(s). Any open_clip architecture also takes "
               f"--pretrained none (random init) or --pretrained TAG --weights FILE. Model names: {accepted_names()}.")


def _hf_cached(hub_id: str) -> bool:
    """Whether a Hugging Face repository is in the local hub cache (no network)."""
    if not hub_id:
        return False
    from clipscope.models import _set_hub_mode

    _set_hub_mode()
    from huggingface_hub import constants

    repo = hub_id.strip("/").split("/")
    folder = Path(constants.HF_HUB_CACHE) / ("models--" + "--".join(repo[:2]))
    return (folder / "snapshots").is_dir() and any((folder / "snapshots").iterdir())


@click.group("cache")
def cache_group():
    """The content-keyed cache that analyses extract into (~/.cache/clipscope, or CLIPSCOPE_CACHE_DIR).

    \b
    Examples:
      clipscope cache list
      clipscope cache clean --older-than 30
    """


@cache_group.command("path")
def cache_path_cmd():
    """Print the cache folder."""
    from clipscope.extract import cache_dir

    click.echo(str(cache_dir()))


@cache_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def cache_list_cmd(as_json):
    """Each cached extraction: model, weights, data, rows, size and date."""
    from clipscope.cache import Cache
    from clipscope.errors import ClipscopeError
    from clipscope.extract import cache_dir

    rows = []
    for path in sorted(cache_dir().glob("*.h5")):
        row = {"file": path.name, "size_mb": round(path.stat().st_size / 1e6, 2)}
        try:
            with Cache.open(path) as c:
                a = c.attrs
                row.update(model=a.get("model"), pretrained=a.get("pretrained"), data=a.get("data_spec"),
                           images=c.n_images, texts=c.n_texts, created=a.get("created_utc"))
        except ClipscopeError as e:
            row["error"] = str(e)
        rows.append(row)
    partial = sorted(p.name for p in cache_dir().glob("*.h5.partial"))
    if as_json:
        click.echo(json.dumps({"folder": str(cache_dir()), "caches": rows, "unfinished": partial}, indent=2))
        return
    click.echo(f"{cache_dir()}: {len(rows)} cache(s), {sum(r['size_mb'] for r in rows):.1f} MB")
    for r in rows:
        if "error" in r:
            click.echo(f"  {r['file']}  unreadable: {r['error']}")
        else:
            click.echo(f"  {r['file']}  {r['model']} (pretrained: {r['pretrained']})  {r['data']}  "
                       f"{r['images']} images, {r['texts']} texts  {r['size_mb']} MB  {r['created']}")
    for p in partial:
        click.echo(f"  {p}  unfinished extraction (rerun the same command to resume)")


@cache_group.command("clean")
@click.option("--older-than", type=click.FloatRange(min=0), default=None, metavar="DAYS",
              help="Remove caches not modified for this many days.")
@click.option("--all", "remove_all", is_flag=True, help="Remove every cache and unfinished extraction.")
@click.option("--dry-run", is_flag=True, help="List what would be removed.")
def cache_clean_cmd(older_than, remove_all, dry_run):
    """Remove cached extractions. A cache another process is writing is left alone."""
    import shutil

    from clipscope.extract import cache_dir
    from clipscope.fileio import LockBusy, exclusive

    if older_than is None and not remove_all:
        raise click.UsageError("say what to remove: --older-than DAYS or --all")
    cutoff = time.time() - (older_than or 0) * 86400
    removed, freed = 0, 0
    for path in sorted(cache_dir().glob("*.h5")) + sorted(cache_dir().glob("*.h5.partial")):
        target = Path(str(path).removesuffix(".partial"))
        if not remove_all and path.stat().st_mtime > cutoff:
            continue
        try:
            with exclusive(target, quiet=True, wait=False):
                size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
                if not dry_run:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed, freed = removed + 1, freed + size
        except LockBusy:
            click.echo(f"  skipped {path.name}: another process is writing it", err=True)
    click.echo(f"{'would remove' if dry_run else 'removed'} {removed} item(s), {freed / 1e6:.1f} MB from {cache_dir()}")
