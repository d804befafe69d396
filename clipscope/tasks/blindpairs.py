"""`blindpairs`: mine CLIP-blind pairs from two caches, or score a pair benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipscope.analysis import metric
from clipscope.analysis.blindpairs import mine_blind_pairs, score_pairs
from clipscope.errors import ClipscopeError, UsageError
from clipscope.registry import Command, Option
from clipscope.tasks import TaskResult, title_of


def align_by_ids(cache, ref) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rows of both caches for the image ids they share (in the CLIP cache's order)."""
    ids, ref_ids = cache.image_ids, ref.image_ids
    pos = {i: k for k, i in enumerate(ref_ids)}
    rows = [(k, pos[i]) for k, i in enumerate(ids) if i in pos]
    if not rows:
        raise ClipscopeError(f"{cache.path} and {ref.path} share no image ids; the reference cache must hold "
                             "embeddings of the same images (extract both from the same --data)")
    a = np.array([r[0] for r in rows])
    b = np.array([r[1] for r in rows])
    return a, b, [ids[k] for k in a]


def mine(cache, ref, *, clip_threshold: float = 0.95, ref_threshold: float = 0.6, top: int | None = 1000,
         device: str = "cpu", source=None, search: str = "auto", nprobe: int | None = None,
         recall_queries: int = 2000, seed: int = 0, address: str | None = None, num_tasks: int | None = None,
         announce=None) -> TaskResult:
    """Mine CLIP-blind pairs between ``cache`` and a reference cache of the same images.
    ``source``: the data source, when the caller has it open (for the contact sheet's images).

    ``search`` finds the CLIP pairs above the threshold: ``exact`` (blocked products, O(n^2 d)),
    ``index`` (faiss IVF-Flat with ``nprobe`` cells per query, its recall measured against exact
    on ``recall_queries`` seeded queries), ``ray`` (the exact tiles on a Ray cluster at
    ``address``), ``auto`` (exact up to :data:`neighbours.EXACT_MAX_ROWS` rows, else index)."""
    from clipscope.analysis import neighbours
    from clipscope.linalg import DEFAULT_BLOCK

    rows, ref_rows, ids = align_by_ids(cache, ref)
    n = len(ids)
    chosen = search
    if search == "auto":
        chosen = "exact" if n <= neighbours.EXACT_MAX_ROWS else "index"
    notes, extra, config = [], {}, {"search": chosen}
    candidates = None
    if chosen == "exact":
        clip = cache.normalized_image_embeddings()[rows]
        reference = ref.normalized_image_embeddings()[ref_rows]
    else:
        clip = cache.rows("image").take(rows)
        reference = ref.rows("image").take(ref_rows)
    if chosen == "index":
        neighbours.import_faiss()  # missing: one line, before anything is announced
        plan = neighbours.IndexPlan.for_rows(n, nprobe=nprobe, seed=seed)
        _check_index_memory(cache, n, clip.shape[1], plan)
        if announce:
            announce(f"blindpairs: {n:,} images: indexed search ({plan.describe()})"
                     + (f" (chosen: more than {neighbours.EXACT_MAX_ROWS:,} rows)" if search == "auto" else ""))
        index = neighbours.build_index(clip, plan)
        recall = neighbours.range_recall(index, clip_threshold, queries=recall_queries, seed=seed, device=device)
        candidates = neighbours.indexed_range_pairs(index, clip_threshold)
        extra["search_recall"] = metric(recall.value, ci95=recall.ci95, n=recall.truth,
                                        detail=recall.describe(f"pairs above {clip_threshold}"))
        notes.append(f"CLIP pairs above {clip_threshold} found by an index ({plan.describe()}); "
                     f"{recall.describe(f'pairs above {clip_threshold}')}; candidates from {clip_threshold - neighbours.MARGIN:g}"
                     " re-scored exactly")
        config.update(index=plan.describe(), nlist=plan.nlist, nprobe=plan.nprobe, recall_queries=recall_queries)
    elif chosen == "ray":
        from clipscope.distributed import similar_pairs_on_ray

        candidates = similar_pairs_on_ray(cache.path, rows, clip_threshold, block=DEFAULT_BLOCK, num_tasks=num_tasks,
                                          address=address)
        notes.append("CLIP pairs above the threshold found exactly, the similarity tiles spread over Ray tasks")
    bp = mine_blind_pairs(clip, reference, clip_threshold=clip_threshold, ref_threshold=ref_threshold, top=top,
                          device=device, candidates=candidates)
    n = len(ids)
    metrics = {
        "n_blind_pairs": metric(bp.n_blind, detail=f"CLIP cosine > {clip_threshold}, reference cosine < {ref_threshold}"),
        "blind_pair_fraction": metric(bp.n_blind / max(1, n * (n - 1) // 2), detail=f"{n} images"),
        "images_in_blind_pair": metric(float(bp.in_any.mean()), detail=f"{n} images"),
        "n_clip_similar_pairs": metric(bp.n_clip_similar, detail=f"CLIP cosine > {clip_threshold}"),
    }
    source = source if source is not None else _source_of(cache)
    paths = dict(zip(source.image_ids, source.paths)) if source is not None and source.paths else {}
    table = []
    for a, b, c, r in zip(bp.a, bp.b, bp.clip_cosine, bp.reference_cosine):
        row = {"a": ids[a], "b": ids[b], "clip_cosine": float(c), "reference_cosine": float(r)}
        if paths:
            row["a_path"], row["b_path"] = paths.get(ids[a]), paths.get(ids[b])
        table.append(row)
    metrics.update(extra)
    notes.insert(0, f"reference: {ref.attrs.get('model')} (pretrained: {ref.attrs.get('pretrained')}); "
                    f"{n} images matched by id")
    if top is not None and bp.n_blind > len(table):
        notes.append(f"tables.blind_pairs lists the top {len(table)} of {bp.n_blind} by clip_cosine - reference_cosine")
    return TaskResult(metrics, {"blind_pairs": table}, notes,
                      config={**config, "clip_threshold": clip_threshold, "ref_threshold": ref_threshold, "top": top,
                              "reference_model": ref.attrs.get("model"), "reference_pretrained": ref.attrs.get("pretrained")},
                      counts={"images": n}, plot_data={"source": source, "pairs": table[:12]})


def _check_index_memory(cache, n: int, d: int, plan) -> None:
    """Refuse, before building it, an index (plus a slab of queries) that would not fit."""
    from clipscope.analysis.neighbours import SLAB
    from clipscope.runtime import require_memory

    require_memory(plan.memory(n, d) + 8 * SLAB * d * 4 + 16 * n,
                   f"{cache.path}: an index of {n:,} rows x {d} ({plan.nlist} cells)",
                   "run it where there is more memory, or pass --search ray (exact, the tiles spread over a cluster)")


def _source_of(cache):
    """The data source a cache was extracted from, when it can still be opened (else None)."""
    from clipscope.data import open_source

    try:
        return open_source(cache.attrs.get("data_spec") or "")
    except (ClipscopeError, OSError):  # data moved, or an import: no paths and no contact sheet
        return None


def score_benchmark(encoder, pairs: list[dict], *, benchmark: str, batch_size: int = 64) -> TaskResult:
    """Score a pair benchmark with a live model (MMVP-VLM rule, see :func:`score_pairs`)."""
    from clipscope.data import open_image_file
    from clipscope.data.mmvp import targets_of

    images = [im for p in pairs for im in p["images"]]
    texts = [s for p in pairs for s in p["statements"]]
    feats = []
    for i in range(0, len(images), batch_size):
        batch = [im if not isinstance(im, (str, Path)) else open_image_file(im) for im in images[i:i + batch_size]]
        feats.append(encoder.embed_pil(batch))
    img = np.concatenate(feats).reshape(len(pairs), 2, -1)
    txt = encoder.embed_texts(texts, batch_size).reshape(len(pairs), 2, -1)
    patterns = [p["pattern"] for p in pairs]
    res = score_pairs(img, txt, patterns, logit_scale=encoder.logit_scale, targets=targets_of(pairs))
    metrics = {"pair_accuracy_mean": metric(res["mean"], detail="the mean over patterns")}
    for p, acc in sorted(res["per_pattern"].items()):
        key = "pair_accuracy_" + "".join(ch if ch.isalnum() else "_" for ch in p.lower()).strip("_")
        metrics[key] = metric(acc, detail=f"pattern '{p}'")
    table = [{"pattern": p["pattern"], "ids": list(p["ids"]), "statements": list(p["statements"]),
              "img1_prob": [float(x) for x in res["img1_prob"][k]], "correct": bool(res["correct"][k])}
             for k, p in enumerate(pairs)]
    return TaskResult(metrics, {"pair_scores": table, "per_pattern": res["per_pattern"]},
                      [f"benchmark {benchmark}: {res['pairs_correct']} of {res['pairs']} pairs fully right; "
                       "chance is 25% per pair"],
                      config={"benchmark": benchmark}, counts={"pairs": len(pairs)},
                      plot_data={"per_pattern": res["per_pattern"], "pairs": pairs[:8], "table": table[:8]})


def figures(result: TaskResult, out_dir: Path, title: str, *, plots=None, **_) -> dict:
    """Lay out the figures on ``plots`` (the plotting module, or a recorder of figure specs)."""
    from clipscope.report import plots as plotting

    plots = plots or plotting

    d = result.plot_data
    out = {}
    if "per_pattern" in d:
        out["per_pattern"] = plots.bars(d["per_pattern"], out_dir / "blindpairs_patterns.png",
                                        title=f"Pair accuracy per pattern (chance 25%): {title}", ylabel="pair accuracy (%)")
        imgs, caps = [], []
        for p, row in zip(d["pairs"], d["table"]):
            for k in range(2):
                im = p["images"][k]
                if isinstance(im, (str, Path)):
                    from clipscope.data import open_image_file

                    im = open_image_file(im)
                imgs.append(im)
                caps.append(f"{p['statements'][k][11:]}\nP(img1)={row['img1_prob'][k]:.2f} "
                            f"{'ok' if row['correct'] else 'wrong'}")
        out["examples"] = plots.image_grid(imgs, caps, out_dir / "blindpairs_examples.png",
                                           title=f"Pair probes: {title}")
    elif d.get("pairs"):
        sheet = contact_sheet(d["source"], d["pairs"], out_dir / "blindpairs_contact_sheet.png", title, plots=plots)
        if sheet:
            out["contact_sheet"] = sheet
    return {k: Path(v).name for k, v in out.items()}


def contact_sheet(src, rows: list[dict], path: Path, title: str, *, plots=None) -> str | None:
    """Both images of the top pairs (thumbnails), with both cosines, when the images can be read."""
    from clipscope.report import plots as plotting

    plots = plots or plotting
    if src is None:
        return None
    index = {i: k for k, i in enumerate(src.image_ids)}
    imgs, caps = [], []
    for r in rows:
        if r["a"] not in index or r["b"] not in index:
            continue
        try:
            pair = [src.load_image(index[r["a"]]), src.load_image(index[r["b"]])]
        except Exception:  # an image that can no longer be read is left out of the sheet
            continue
        for im in pair:
            im.thumbnail((256, 256))
        imgs += pair
        caps += [f"{r['a'][-30:]}\nclip {r['clip_cosine']:.3f}", f"{r['b'][-30:]}\nref {r['reference_cosine']:.3f}"]
    if not imgs:
        return None
    return plots.image_grid(imgs, caps, path, title=f"Top CLIP-blind pairs: {title}", ncols=4)


def run(ctx, cache, *, reference, reference_pretrained, reference_cache, clip_threshold, ref_threshold, top, benchmark,
        search, nprobe, recall_queries, address, num_shards):
    """Mining against a reference (an encoder or a cache), or scoring a pair benchmark."""
    from clipscope.context import data_block, open_cache
    from clipscope.report import model_block
    from clipscope.runtime import resolve_device

    if benchmark:
        if not ctx.model:
            raise UsageError("--benchmark scores a model: give --model (and --pretrained)")
        from clipscope.data.mmvp import open_benchmark

        pairs = open_benchmark(benchmark)
        encoder = ctx.encoder()
        result = score_benchmark(encoder, pairs, benchmark=benchmark, batch_size=ctx.batch_size)
        title = title_of(encoder.provenance, benchmark)
        return ctx.report(result, model=model_block(encoder.provenance),
                          data={"spec": f"benchmark:{benchmark}", "counts": {"pairs": len(pairs)}},
                          figures=lambda plots, d: figures(result, d, title, plots=plots))
    if not reference and not reference_cache:
        raise UsageError("mining needs a reference: --reference ENCODER or --reference-cache REF.h5")
    with ctx.cache(cache) as c:
        source = None
        if reference_cache is not None:
            ref = open_cache(reference_cache)
        else:
            spec = ctx.data or c.attrs.get("data_spec")
            source = ctx.source(spec)  # opened once: the reference extraction and the contact sheet share it
            ref = ctx.cache(None, data=spec, encoder=ctx.encoder(reference, reference_pretrained))
        with ref:
            result = mine(c, ref, clip_threshold=clip_threshold, ref_threshold=ref_threshold, top=top,
                          device=resolve_device(ctx.device), source=source, search=search, nprobe=nprobe,
                          recall_queries=recall_queries, seed=ctx.seed, address=address, num_tasks=num_shards,
                          announce=ctx.say)
            prov = c.provenance
            title = title_of(prov, prov.get("data_spec"))
            return ctx.report(result, model=model_block(prov), data=data_block(c),
                              figures=lambda plots, d: figures(result, d, title, plots=plots))



def row_values(report, cache, rows) -> dict:
    """Per image: its CLIP-blind partner with the largest clip - reference cosine gap."""
    best = {}
    for r in ((report or {}).get("tables", {}).get("blind_pairs") or []):
        for me, other in (("a", "b"), ("b", "a")):
            gap = r["clip_cosine"] - r["reference_cosine"]
            if r[me] not in best or gap > best[r[me]][3]:
                best[r[me]] = (r[other], r["clip_cosine"], r["reference_cosine"], gap)
    found = rows.images(best)
    return {name: ([b[k] if b else None for b in found], None)
            for k, name in enumerate(("blind_partner", "blind_clip_cosine", "blind_reference_cosine"))}


BLINDPAIRS_SCALE_DOCS = """## Which search, and what it costs

`--search auto` (the default) is exact up to 100,000 images and indexed above.

- `exact`: the upper triangle of the CLIP similarity matrix in tiles, O(n^2 d); every pair.
- `index`: IVF-Flat (`pip install 'clipscope-diagnostics[index]'` for faiss): about sqrt(n)
  spherical k-means cells trained on a seeded sample, each row assigned its `--nprobe` nearest
  cells (by default 1/64 of them, at least 8), and the search run cell by cell as matrix products
  of the rows probing a cell with the rows it holds. Candidates from the threshold less 1e-4 are
  re-scored with the exact product, so every pair kept is an exact pair. The exact search runs for
  `--recall-queries` seeded query images and the report gives `search_recall` (the share of their
  exact pairs the index compares) with its 95% interval, and the index's parameters in `config`.
  The rows are held in memory (n x d float32); a run that would not fit is refused before the
  index is built.
- `ray`: exact at any size; the tiles of the one-process walk are split over Ray tasks, each
  reading only its rows from the cache, and give the same pairs as one process.

Measured with `benchmarks/mining.py` on the 2-core, 24 GB development machine (CLIP d = 512,
reference d = 768, planted clusters of near-duplicates: 0.3 pairs above 0.95 per row):

| rows | search | time | peak memory | pairs found |
|---|---|---|---|---|
| 100,000 | exact | 51.6 s | 0.84 GB beyond the process's imports | all 30,000 pairs above 0.95; 15,000 blind |
| 100,000 | index (256 cells, 8 searched) | 7.8 s: 6.6x faster | 0.79 GB beyond the imports | 29,991 of the 30,000 (recall 0.9997; the report estimated 1.000, 95% CI 0.997-1.000); none that exact does not find |
| 100,000 | ray (a local 2-CPU cluster) | 43.9 s | - | the same pairs and counts as exact |
| 1,000,000 | index (1,024 cells, 16 searched) | 189.5 s | 3.60 GB resident in all | 299,992 of the 300,000 planted pairs (0.99997; estimated 1.000, 0.997-1.000) |
| 1,000,000 | exact | about 1.4 h (100,000 rows' time x 100) | - | - |
"""

def _ray_address():
    from clipscope.tasks.gap import RAY_ADDRESS

    return RAY_ADDRESS


# The indexed search's settings, shared with drift's kNN overlap.
INDEX_OPTIONS = (
    Option("nprobe", kind="int", min=1, show_default=False,
           help="With --search index: cells searched per query (default: 1/64 of the about sqrt(n) cells, at least "
                "8; all of them makes the index exhaustive)."),
    Option("recall_queries", kind="int", default=2000, min=1,
           help="With --search index: seeded query rows on which its recall is measured against exact."),
)

COMMAND = Command(
    name="blindpairs", order=40, run=run,
    help="Mine CLIP-blind pairs; score MMVP-style pair benchmarks.",
    doc="""CLIP-blind pairs (Tong et al., CVPR 2024): image pairs a CLIP model embeds almost
    identically (cosine > --clip-threshold) while a vision-only model sees them as different
    (cosine < --ref-threshold). With --benchmark, score MMVP-style statement pairs instead.

    \b
    Examples:
      clipscope blindpairs --model ViT-B-32 --data folder:./imgs \\
          --reference timm:vit_large_patch14_dinov2.lvd142m --out runs/blind
      clipscope blindpairs clip.h5 --reference-cache dino.h5 --out runs/blind
      clipscope blindpairs --model clipscope-tiny --benchmark probes --out runs/mmvp
    """,
    options=(
        Option("reference", metavar="ENCODER", show_default=False,
               help="Vision-only reference encoder: timm:NAME, or an open_clip model name (image tower)."),
        Option("reference_pretrained", metavar="TAG|PATH|none", show_default=False,
               help="Weights of the reference encoder."),
        Option("reference_cache", kind="path", show_default=False,
               help="A cache with reference image embeddings of the same image ids."),
        Option("clip_threshold", kind="float", default=0.95, help="CLIP cosine above which a pair looks the same."),
        Option("ref_threshold", kind="float", default=0.6, help="Reference cosine below which it differs."),
        Option("top", kind="int", default=1000, min=1, help="Pairs listed in the report (counts cover all)."),
        Option("benchmark", metavar="mmvp:DIR|probes[:N]", show_default=False,
               help="Score a pair benchmark instead of mining."),
        Option("search", kind="choice", default="auto", choices=("auto", "exact", "index", "ray"),
               help="How the CLIP pairs above the threshold are found: exact (blocked products, O(n^2 d)); index "
                    "(faiss IVF-Flat, its recall measured on sampled queries and reported); ray (exact, the tiles on a "
                    "Ray cluster); auto: exact up to 100,000 images, else index."),
        *INDEX_OPTIONS,
        _ray_address(),
        Option("num_shards", kind="int", min=1, show_default=False,
               help="With --search ray: tasks the tiles are split into (default: 4 per CPU of the cluster)."),
    ),
    row_columns=(("blind_partner", "string", "from blindpairs.json: the CLIP-blind partner with the largest clip - reference "
                  "cosine gap"),
                 ("blind_clip_cosine", "double", "that pair's CLIP cosine"),
                 ("blind_reference_cosine", "double", "that pair's reference-encoder cosine")),
    row_values=row_values,
    title_config=(("clip_threshold", "clip threshold"), ("ref_threshold", "ref threshold"),
                  ("reference_model", "reference model")),
    docs=BLINDPAIRS_SCALE_DOCS,
    summary=("n_blind_pairs", "images_in_blind_pair", "n_clip_similar_pairs", "pair_accuracy_mean"),
    outputs=("`blindpairs.json`. Mining: metrics `n_blind_pairs`, `blind_pair_fraction`, `images_in_blind_pair`, "
            "`n_clip_similar_pairs` (and `search_recall` with `--search index`; `config.search`, `config.index`); table `blind_pairs` (objects with `a`, `b`, `clip_cosine`, "
            "`reference_cosine`, paths when known); `blindpairs_contact_sheet.png`. Benchmark: metrics "
            "`pair_accuracy_mean` and `pair_accuracy_<pattern>`; tables `pair_scores`, `per_pattern`; PNGs "
            "`blindpairs_patterns.png`, `blindpairs_examples.png`."),
)
