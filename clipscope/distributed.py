"""Sharded extraction on Ray, joined without copying through an HDF5 virtual dataset.

The input is split into contiguous, deterministic shards whose boundaries are multiples of the
batch size, so every shard encodes exactly the batches a single process would. Each Ray task
runs the ordinary :func:`clipscope.extract.extract` on its shard into
``<out>.shards/shard-KKKKK-of-NNNNN.h5`` (same journal, same resume guarantees); a rerun skips
finished shards, and Ray retries tasks whose worker died. The result ``<out>`` maps
``/image/embeddings`` and ``/text/embeddings`` onto the shard files as virtual datasets
(relative paths, so the folder can move) and holds the small datasets (ids, captions, labels,
pairs, failures) itself; ``merge=True`` writes one self-contained file instead. Either reads
exactly like a single-process cache.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from clipscope.errors import ClipscopeError
from clipscope.pairing import drop_rows
from clipscope.runtime import utc_now


def plan_shards(n: int, num_shards: int, batch_size: int) -> list[tuple[int, int]]:
    """Contiguous [lo, hi) ranges over n items, boundaries on multiples of batch_size."""
    batches = (n + batch_size - 1) // batch_size
    num_shards = max(1, min(num_shards, batches))
    edges = [min(n, batch_size * ((batches * k) // num_shards)) for k in range(num_shards + 1)]
    return [(edges[k], edges[k + 1]) for k in range(num_shards) if edges[k] < edges[k + 1]]


def shard_source(source, img: tuple[int, int], txt: tuple[int, int], k: int, n: int):
    """The part of a data source one shard encodes (no pairs: they are joined globally)."""
    lo, hi = img
    parent_load, parent_bytes = source.load_image, source.load_bytes
    return replace(
        source, spec=f"{source.spec}#shard{k}of{n}", image_ids=source.image_ids[lo:hi],
        load_image=lambda i: parent_load(lo + i),
        load_bytes=None if parent_bytes is None else (lambda i: parent_bytes(lo + i)), texts=source.texts[txt[0]:txt[1]],
        pairs=np.zeros((0, 2), np.int64), labels=None if source.labels is None else source.labels[lo:hi],
        paths=None if source.paths is None else source.paths[lo:hi],
        fingerprint_parts=[source.fingerprint, list(img), list(txt)])


def _shard_name(k: int, n: int) -> str:
    return f"shard-{k:05d}-of-{n:05d}.h5"


def _run_shard(model, pretrained, device, precision, spec, k, n, img, txt, batch_size, dtype, path, with_classes,
               verify=False, decode="auto"):
    from clipscope.data import open_source
    from clipscope.extract import extract
    from clipscope.models import load_encoder

    source = open_source(spec, verify=verify)
    encoder = load_encoder(model, pretrained, device=device, precision=precision)
    sub = shard_source(source, img, txt, k, n)
    return extract(sub, encoder, path, batch_size=batch_size, workers=0, dtype=dtype, progress=False,
                   with_classes=with_classes, extra_attrs={"shard": f"{k}/{n}"}, decode=decode)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ClipscopeError("--engine ray needs Ray: pip install 'clipscope-diagnostics[distributed]'") from None
    return ray


def _init_ray(ray, address: str | None, num_cpus: int | None = None) -> None:
    if not ray.is_initialized():
        import logging

        kwargs = {"address": address} if address else {"num_cpus": num_cpus}
        ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False, logging_level=logging.ERROR,
                 **kwargs)


def extract_sharded(*, model: str, pretrained: str | None, data: str, out: str | os.PathLike, num_shards: int | None = None,
                    address: str | None = None, batch_size: int = 64, dtype: str = "float32", device: str = "auto",
                    precision: str = "auto", merge: bool = False, overwrite: bool = False, progress: bool = True,
                    verify: bool = False, decode: str = "auto",
                    num_cpus: int | None = None) -> dict:
    """Extract ``data`` with ``model`` on a Ray cluster into ``out`` (see the module docstring)."""
    import shutil

    from clipscope.cache import Cache
    from clipscope.data import open_source

    ray = _import_ray()
    out = Path(out)
    shard_dir = Path(str(out) + ".shards")
    if overwrite:
        shutil.rmtree(shard_dir, ignore_errors=True)
        out.unlink(missing_ok=True)
    source = open_source(data, verify=verify)
    _init_ray(ray, address, num_cpus)
    n = num_shards or max(1, int(ray.cluster_resources().get("GPU", 0)) or int(ray.cluster_resources().get("CPU", 1)))
    img_ranges = plan_shards(len(source.image_ids), n, batch_size)
    n = len(img_ranges)
    txt_ranges = plan_shards(len(source.texts), n, batch_size) if source.texts else []
    txt_ranges += [(len(source.texts), len(source.texts))] * (n - len(txt_ranges))
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_gpus=gpus, max_retries=3)(_run_shard)
    shard_dir.mkdir(parents=True, exist_ok=True)
    paths = [shard_dir / _shard_name(k, n) for k in range(n)]
    refs = [task.remote(model, pretrained, device if gpus else "cpu", precision, data, k, n, img_ranges[k],
                        txt_ranges[k], batch_size, dtype, str(paths[k]), k == 0, verify, decode) for k in range(n)]
    summaries = []
    for k, ref in enumerate(refs):
        summaries.append(ray.get(ref))
        if progress:
            import click

            click.echo(f"shard {k + 1}/{n} {'already done' if summaries[-1].get('skipped') else 'done'}", err=True)
    from clipscope.fileio import exclusive

    with exclusive(out, quiet=not progress):
        join_shards(paths, out, source, merge=merge)
    with Cache.open(out) as c:
        counts = {"images": c.n_images, "texts": c.n_texts, "pairs": int(len(c.pairs)), "failed": len(c.failed)}
    return {"cache": str(out), "shards": n, "skipped_shards": sum(bool(s.get("skipped")) for s in summaries),
            "merged": merge, **counts}


def join_shards(paths: list[Path], out: Path, source, *, merge: bool = False) -> Path:
    """Join shard caches into one cache: virtual datasets over the shards, or one merged file."""
    import h5py

    from clipscope.cache import Cache, write_cache

    caches = [Cache.open(p) for p in paths]
    try:
        first = caches[0].attrs
        attrs = {k: v for k, v in first.items() if k not in ("shard", "clipscope_schema", "clipscope_version")}
        attrs.update(data_spec=source.spec, data_fingerprint=source.fingerprint, shards=len(paths),
                     engine="ray", created_utc=utc_now())
        # Global rows: shards are contiguous and in order; each dropped its own unreadable inputs.
        pos = {i: k for k, i in enumerate(source.image_ids)}
        ok_global = np.asarray([pos[i] for c in caches for i in c.image_ids], np.int64)
        failed = [f for c in caches for f in c.failed] + list(source.failed)
        ok = np.zeros(len(source.image_ids), bool)
        ok[ok_global] = True
        n_txt = sum(c.n_texts for c in caches)
        pairs = drop_rows(source.pairs, len(ok), ok, column=0) if n_txt else np.zeros((0, 2), np.int64)
        labels = source.labels[ok_global] if source.labels is not None else None
        cls_emb = caches[0]["classes/embeddings"][:] if "classes/embeddings" in caches[0] else None
        cls_prompts = [v.decode() if isinstance(v, bytes) else v for v in caches[0]["classes/prompts"][:]] if cls_emb is not None else None
        dim = int(first["embed_dim"])
        dtype = np.float16 if first.get("dtype") == "float16" else np.float32
        if merge:
            img = np.concatenate([c.image_embeddings[:] for c in caches]) if ok_global.size else np.zeros((0, dim), dtype)
            txt = np.concatenate([c.text_embeddings[:] for c in caches if c.text_embeddings is not None]) if n_txt else None
            write_cache(out, attrs=attrs, image_embeddings=img, image_ids=[source.image_ids[i] for i in ok_global],
                        image_labels=labels, classnames=source.classnames, text_embeddings=txt,
                        text_captions=source.texts if n_txt else None, pairs=pairs, failed=failed,
                        class_embeddings=cls_emb, class_prompts=cls_prompts, dtype=dtype)
            return out
        # Virtual datasets: the small parts as a normal cache plus the two mappings, built under a
        # temporary name in the same folder (same relative paths) and renamed when complete.
        from clipscope.cache import _write_strings

        tmp = out.with_name(out.name + ".joining")
        write_cache(tmp, attrs=attrs, image_embeddings=np.zeros((0, dim), dtype), image_ids=[],
                    classnames=source.classnames, pairs=pairs, failed=failed, class_embeddings=cls_emb,
                    class_prompts=cls_prompts, dtype=dtype)
        with h5py.File(tmp, "a") as f:
            for key in ("image/embeddings", "image/ids"):
                del f[key]
            _virtual(f, "image/embeddings", caches, paths, out, dim, dtype)
            _write_strings(f["image"], "ids", [source.image_ids[i] for i in ok_global])
            if labels is not None:
                f["image"].create_dataset("labels", data=labels, track_times=False)
            if n_txt:
                _virtual(f, "text/embeddings", caches, paths, out, dim, dtype)
                _write_strings(f["text"], "captions", source.texts)
        os.replace(tmp, out)  # built under its own name above: relative virtual paths must stay valid
    finally:
        for c in caches:
            c.close()
    return out


def _virtual(f, key: str, caches, paths, out: Path, dim: int, dtype) -> None:
    import h5py

    sizes = [c[key].shape[0] if key in c else 0 for c in caches]
    layout = h5py.VirtualLayout(shape=(sum(sizes), dim), dtype=dtype)
    row = 0
    for size, p in zip(sizes, paths):
        if size:
            rel = os.path.relpath(p, out.parent)  # relative: resolved from the virtual file's folder
            layout[row:row + size] = h5py.VirtualSource(rel, key, shape=(size, dim))
            row += size
    f.create_virtual_dataset(key, layout, fillvalue=np.nan)


# --------------------------------------------------------------------------- gap statistics on Ray


def row_ranges(cache, key: str, num_shards: int) -> list[tuple[int, int]]:
    """Row ranges of a cache's dataset: its shards' when it is a virtual dataset over shard
    files (each task then reads one file), else ``num_shards`` near-equal ranges."""
    ds = cache[key]
    n = int(ds.shape[0])
    if ds.is_virtual:
        bounds = sorted((int(v.vspace.get_select_bounds()[0][0]), int(v.vspace.get_select_bounds()[1][0]) + 1)
                        for v in ds.virtual_sources())
        if bounds and bounds[0][0] == 0 and bounds[-1][1] == n:
            return [b for b in bounds if b[1] > b[0]]
    return even_ranges(n, num_shards)


def even_ranges(n: int, k: int) -> list[tuple[int, int]]:
    """0..n cut into at most k near-equal non-empty ranges."""
    edges = np.linspace(0, n, max(1, min(k, n)) + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _round1_task(path, r0, r1, modality, units, alone_from):
    from clipscope.analysis import gap_sums
    from clipscope.cache import Cache

    with Cache.open(path) as cache:
        return gap_sums.modality_round1(cache.normalized_span(modality, r0, r1), units, r0, alone_from=alone_from)


def _round2_task(path, r0, r1, modality, centroids, units, n_units):
    from clipscope.analysis import gap_sums
    from clipscope.cache import Cache

    with Cache.open(path) as cache:
        return gap_sums.modality_round2(cache.normalized_span(modality, r0, r1), centroids, units, n_units, r0,
                                        text=modality == "text")


def _pairs_task(path, k0, k1, pair_units, attached, n_units):
    from clipscope.analysis import gap_sums
    from clipscope.cache import Cache

    with Cache.open(path) as cache:
        pairs = cache.pairs[k0:k1]
        Ip, Tp = cache.rows("image")[pairs[:, 0]], cache.rows("text")[pairs[:, 1]]
    return gap_sums.pair_sums(Ip, Tp, pair_units, attached, n_units, k0)


def _best_negatives_task(path, r0, r1, Tq, pairing, block):
    from clipscope.analysis.geometry import best_negative_cosines
    from clipscope.cache import Cache

    with Cache.open(path) as cache:
        return best_negative_cosines(Tq, cache.normalized_span("image", r0, r1), pairing, offset=r0, block=block)


class RayRanges:
    """A cache's row ranges on a Ray cluster (joined, or started locally when ``address`` is
    None): the tasks behind `gap` and `uniformity` with ``--engine ray``."""

    def __init__(self, path, *, num_shards: int | None = None, address: str | None = None, num_cpus: int | None = None):
        from clipscope.cache import Cache

        if not Path(path).is_file():  # e.g. clipscope.from_arrays: held in this process's memory only
            raise ClipscopeError(f"--engine ray reads the cache from its tasks, but {path} is not a file: "
                                 "write it first (clipscope import) or use --engine local")
        self.ray = _import_ray()
        _init_ray(self.ray, address, num_cpus)
        self.path = str(Path(path).resolve())
        n = num_shards or max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        with Cache.open(self.path) as cache:
            self.image = row_ranges(cache, "image/embeddings", n)
            self.text = row_ranges(cache, "text/embeddings", n)
            self.pairs = even_ranges(int(len(cache.pairs)), n)

    def map(self, fn, ranges, *args) -> list:
        task = self.ray.remote(fn)
        return self.ray.get([task.remote(self.path, a, b, *args) for a, b in ranges])

    def pair_sums(self, units) -> dict | None:
        """:func:`clipscope.analysis.gap_sums.pair_sums` of every pair, per sampling unit."""
        from clipscope.analysis import gap_sums

        with self._cache() as cache:
            pu, attached = gap_sums.pair_layout(cache.pairs, units)
        parts = self.map(_pairs_task, self.pairs, pu, attached, units.n_units)
        return gap_sums.combine(parts) if parts else None

    def _cache(self):
        from clipscope.cache import Cache

        return Cache.open(self.path)

    def best_negatives(self, Tq, pairing, block: int) -> np.ndarray:
        """:func:`clipscope.analysis.geometry.best_negative_cosines` over every image shard."""
        return np.maximum.reduce(self.map(_best_negatives_task, self.image, np.asarray(Tq), pairing, block))


def gap_sums_on_ray(path, *, units, steps_of=None, num_shards: int | None = None, address: str | None = None,
                    num_cpus: int | None = None):
    """The :class:`clipscope.analysis.gap_sums.GapSums` of a cache, computed shard by shard on
    Ray (two rounds of tasks; each reads only its rows) and added on the driver: equal to
    ``gap_sums.local`` on the whole rows up to float64 summation order. The products among a
    unit's several texts (COCO) are read here, unit by unit."""
    from clipscope.analysis import gap_sums
    from clipscope.analysis.units import unit_groups

    on = RayRanges(path, num_shards=num_shards, address=address, num_cpus=num_cpus)
    U = units.n_units
    r1_i = gap_sums.combine(on.map(_round1_task, on.image, "image", units.image_unit, None))
    r1_t = gap_sums.combine(on.map(_round1_task, on.text, "text", units.text_unit, units.n_images))
    c = gap_sums.Centroids.of(r1_i, r1_t, steps_of)
    r2_i = gap_sums.combine(on.map(_round2_task, on.image, "image", c, units.image_unit, U))
    r2_t = gap_sums.combine(on.map(_round2_task, on.text, "text", c, units.text_unit, U))
    with on._cache() as cache:
        within = gap_sums.within_units(cache.rows("text"), unit_groups(units.text_unit), units.text_unit, U)
    return gap_sums.GapSums(r1_i, r1_t, r2_i, r2_t, on.pair_sums(units) if on.pairs else None, within, c, units)


# --------------------------------------------------------------------------- exact mining on Ray


def _mine_tiles_task(path, t0, t1, rows, tiles, threshold, block):
    from clipscope.analysis.blindpairs import exact_similar_pairs
    from clipscope.cache import Cache

    with Cache.open(path) as cache:
        clip = cache.rows("image").take(rows)
        return list(exact_similar_pairs(clip, threshold, block=block, tiles=tiles[t0:t1]))


def similar_pairs_on_ray(path, rows: np.ndarray, threshold: float, *, block: int, num_tasks: int | None = None,
                         address: str | None = None, num_cpus: int | None = None) -> list:
    """Every pair above ``threshold`` among the cache's image ``rows``, exactly: the upper-triangle
    tiles of one process's walk (same corners, same products) split into contiguous runs over Ray
    tasks, each reading only the rows of its tiles; the batches come back in the walk's order,
    so the pairs equal one process's."""
    from clipscope.analysis.blindpairs import upper_tiles

    if not Path(path).is_file():
        raise ClipscopeError(f"--search ray reads the cache from its tasks, but {path} is not a file: write it first "
                             "(clipscope import) or use --search exact")
    ray = _import_ray()
    _init_ray(ray, address, num_cpus)
    tiles = upper_tiles(len(rows), block)
    k = num_tasks or 4 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    task = ray.remote(_mine_tiles_task)
    rows_ref, tiles_ref = ray.put(np.asarray(rows, np.int64)), ray.put(tiles)
    parts = ray.get([task.remote(str(Path(path).resolve()), a, b, rows_ref, tiles_ref, threshold, block)
                     for a, b in even_ranges(len(tiles), k)])
    return [batch for part in parts for batch in part]
