"""`drift`: how far the embedding space moved between two caches of the same items."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipscope.analysis import geometry, metric
from clipscope.analysis.drift import inter_modal_deviation, knn_overlap, similarity_kl
from clipscope.errors import ClipscopeError, UsageError
from clipscope.linalg import angle_degrees
from clipscope.registry import Command, Option
from clipscope.tasks import TaskResult, title_of


def _match(old_keys: list[str], new_keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    pos = {}
    for k, key in enumerate(new_keys):
        pos.setdefault(key, k)
    seen, a, b = set(), [], []
    for k, key in enumerate(old_keys):
        if key in pos and key not in seen:
            seen.add(key)
            a.append(k)
            b.append(pos[key])
    return np.asarray(a, np.int64), np.asarray(b, np.int64)


def _modality(name, X, Y, ids, *, k, top, device, metrics, tables, plot, query_rows, block, seed, search="exact",
              nprobe=None, recall_queries=2000):
    """The drift of one modality's matched rows X (old) and Y (new): arrays, or row readers read
    ``block`` rows at a time; the same passes and values either way."""
    from clipscope.analysis.drift import CrossProducts, aligned_rows

    n = len(X)
    cross = CrossProducts(X, Y, block)
    metrics[f"cka_{name}"] = metric(cross.cka(), detail=f"{n} rows")
    on = "" if len(query_rows) == n else f" on a seeded sample of {len(query_rows)} query rows"
    if search == "index":
        from clipscope.analysis import neighbours
        from clipscope.analysis.drift import neighbour_overlap

        found, recalls = [], []
        for Z in (X, Y):
            plan = neighbours.IndexPlan.for_rows(n, nprobe=nprobe, seed=seed)
            nz = neighbours.indexed_topk(neighbours.build_index(Z, plan), k, query_rows)
            found.append(nz)
            recalls.append(neighbours.knn_recall(Z, nz, query_rows, k, queries=recall_queries, seed=seed,
                                                 device=device))
        overlap = neighbour_overlap(*found)
        recall = neighbours.pooled(recalls)
        metrics[f"knn_search_recall_{name}"] = metric(recall.value, ci95=recall.ci95, n=recall.truth,
                                                      detail=recall.describe("exact neighbours (old and new)"))
        on += f"; neighbours by an index ({plan.describe()})"
        plot["index"] = plan.describe()
    else:
        overlap = knn_overlap(X, Y, k=k, query_rows=query_rows, device=device)
    metrics[f"knn_overlap_{name}"] = metric(overlap.mean(), detail=f"k = {k}{on}")
    plot[f"overlap_{name}"] = overlap
    if X.shape[1] == Y.shape[1]:
        R = cross.rotation()
        rows = aligned_rows(X, Y, R, block)
        raw, aligned = rows["raw"], rows["aligned"]
        metrics[f"procrustes_residual_{name}"] = metric(rows["residual"])
        metrics[f"aligned_angle_{name}"] = metric(angle_degrees(aligned).mean())
        metrics[f"raw_cosine_{name}"] = metric(raw.mean())
        angles = angle_degrees(raw)  # Mod-X's per-row rotation (rotation_angles) from the cosines at hand
        metrics[f"rotation_angle_{name}"] = metric(angles.mean())
        hist, edges = np.histogram(angles, bins=18, range=(0, 180))
        tables[f"rotation_angle_distribution_{name}"] = {"counts": hist.tolist(), "edges": edges.tolist()}
        plot[f"angles_{name}"] = angles
        drift = 1.0 - aligned
        order = np.argsort(-drift, kind="stable")[:top]
        tables[f"most_moved_{name}"] = [{"id": ids[i], "drift": float(drift[i]), "aligned_cosine": float(aligned[i]),
                                         "raw_cosine": float(raw[i])} for i in order]
        plot[f"drift_{name}"] = drift
        if name == "image":  # the projection's rows only: a seeded sample and the most moved
            from clipscope.report.plots import drift_sample

            plot["aligned_image"] = drift_sample(_Rotated(X, R), Y, order[:15], seed=seed)
    else:
        drift = 1.0 - overlap
        order = np.argsort(-drift, kind="stable")[:top]
        tables[f"most_moved_{name}"] = [{"id": ids[query_rows[i]], "drift": float(drift[i])} for i in order]
        plot[f"drift_{name}"] = drift
    hist, edges = np.histogram(drift, bins=20)
    tables[f"drift_distribution_{name}"] = {"counts": hist.tolist(), "edges": edges.tolist(),
                                            "quantiles": {q: float(np.quantile(drift, float(q))) for q in ("0.5", "0.9", "0.99")}}


class _Rotated:
    """``X @ R`` for the rows indexed (X: an array or a row reader)."""

    def __init__(self, X, R):
        self.X, self.R = X, R

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, idx):
        return np.asarray(self.X[idx]) @ self.R


def _queries(n: int, cap: int, seed: int, stream: int) -> np.ndarray:
    """Every row up to ``cap`` rows, else a seeded sample of ``cap`` (sorted)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, stream]).choice(n, cap, replace=False))


def evaluate(old, new, *, k: int = 10, top: int = 20, device: str = "cpu", kl_batch: int = 256,
             kl_temperature: float = 0.01, engine: str = "auto", max_queries: int = 20000, seed: int = 0,
             block: int | None = None, search: str = "auto", nprobe: int | None = None, recall_queries: int = 2000,
             announce=None) -> TaskResult:
    """Drift of the rows both caches hold (matched by image id and caption). ``engine``:
    ``local`` holds the matched rows in memory, ``stream`` reads them from the two cache files
    ``block`` rows at a time (CKA and Procrustes from d x d cross-products, per-row drift in a
    second pass), ``auto`` streams when they would not fit comfortably; the values are equal.
    The kNN overlap and backward-compatibility recall ask at most ``max_queries`` query rows (a
    seeded sample above that; neighbours and gallery are always every row); their neighbours
    come from ``search``: ``exact`` blocked products, ``index`` (faiss IVF-Flat, ``nprobe``
    cells per query, its recall against exact measured on ``recall_queries`` sampled queries),
    ``auto`` (exact up to :data:`clipscope.analysis.neighbours.EXACT_MAX_ROWS` matched rows)."""
    import clipscope.tasks
    from clipscope.analysis.neighbours import EXACT_MAX_ROWS
    from clipscope.runtime import IN_MEMORY_PEAK

    block = block or clipscope.tasks.STREAM_BLOCK
    metrics, tables, notes, plot = {}, {}, [], {}
    ia, ib = _match(old.image_ids, new.image_ids)
    if len(ia) == 0:
        raise ClipscopeError(f"{old.path} and {new.path} share no image ids; drift compares two caches of the same data")
    if len(ia) <= k:
        raise ClipscopeError(f"only {len(ia)} matched images: need more than --k {k}")
    ta = tb = np.zeros(0, np.int64)
    if old.n_texts and new.n_texts:
        ta, tb = _match(old.text_captions, new.text_captions)
    d_old, d_new = int(old.image_embeddings.shape[1]), int(new.image_embeddings.shape[1])
    rows = (len(ia) + len(ta)) * (d_old + d_new) * 4
    per_row = 8 * 12 * (len(ia) + len(ta))  # per-row drift, cosines, angles, overlaps, KL (float64)
    engine, chosen = clipscope.tasks.pick_engine(
        engine, int(IN_MEMORY_PEAK * rows),
        per_row + 6 * min(block, len(ia)) * (d_old + d_new) * 8 + 2 * min(max_queries, len(ia)) * (d_old + d_new) * 4,
        f"{old.path} and {new.path}: {len(ia):,} matched image and {len(ta):,} matched text rows x "
        f"{d_old} and {d_new}", ray=False)
    if chosen:
        notes.append(chosen)
        if announce:
            announce(f"drift: {chosen}")

    def rows_of(cache, modality, idx):
        if engine == "local":
            X = cache.normalized_image_embeddings() if modality == "image" else cache.normalized_text_embeddings()
            return X if len(idx) == len(X) and np.array_equal(idx, np.arange(len(X))) else X[idx]
        return cache.rows(modality).take(idx)

    Xi, Yi = rows_of(old, "image", ia), rows_of(new, "image", ib)
    old_ids = old.image_ids  # a property that reads every id: once
    ids = [old_ids[i] for i in ia]
    if search == "auto":
        search = "exact" if len(ia) <= EXACT_MAX_ROWS else "index"
    if search == "index":  # the index holds one release's rows at a time: refused before it is built
        from clipscope.analysis.neighbours import IndexPlan
        from clipscope.runtime import require_memory

        n_rows = max(len(ia), len(ta))
        require_memory(IndexPlan.for_rows(n_rows).memory(n_rows, max(d_old, d_new)),
                       f"{old.path}: an index of {n_rows:,} rows x {max(d_old, d_new)}",
                       "run it where there is more memory, or pass --search exact (on at most --max-queries queries)")
    common = dict(k=k, top=top, device=device, metrics=metrics, tables=tables, plot=plot, block=block, seed=seed,
                  search=search, nprobe=nprobe, recall_queries=recall_queries)
    _modality("image", Xi, Yi, ids, query_rows=_queries(len(ia), max_queries, seed, 0), **common)
    counts = {"images_old": old.n_images, "images_new": new.n_images, "images_matched": len(ia)}
    if d_old == d_new and len(ia) < 4 * d_old:
        notes.append(f"{len(ia)} rows in {d_old} dimensions: an orthogonal map has ~D^2/2 free parameters, "
                     "so Procrustes aligns almost any two spaces this small; read its residual and aligned drift "
                     "with care, CKA and kNN overlap are not affected")
    if old.n_texts and new.n_texts:
        counts["texts_matched"] = len(ta)
        if len(ta) > k:
            Xt, Yt = rows_of(old, "text", ta), rows_of(new, "text", tb)
            captions = old.text_captions
            _modality("text", Xt, Yt, [captions[i] for i in ta],
                      query_rows=_queries(len(ta), max_queries, seed, 1), **common)
            pairs = _matched_pairs(old.pairs, ia, ta)
            counts["pairs_matched"] = len(pairs)
            if len(pairs):
                _paired(Xi, Xt, Yi, Yt, pairs, metrics=metrics, plot=plot, kl_batch=kl_batch,
                        kl_temperature=kl_temperature, max_queries=max_queries, seed=seed, device=device)
                if d_old != d_new:
                    notes.append("the models differ in dimension: Procrustes, per-row cosines and backward "
                                 "compatibility need equal D; drift per row is 1 - kNN overlap")
    config = {"k": k, "top": top, "kl_batch": kl_batch, "kl_temperature": kl_temperature, "engine": engine,
              "max_queries": max_queries, "search": search, **({"index": plot["index"]} if "index" in plot else {}),
              "old": {"model": old.attrs.get("model"), "pretrained": old.attrs.get("pretrained")},
              "new": {"model": new.attrs.get("model"), "pretrained": new.attrs.get("pretrained")}}
    return TaskResult(metrics, tables, notes, config=config, counts=counts, plot_data=plot)


def _matched_pairs(old_pairs: np.ndarray, ia: np.ndarray, ta: np.ndarray) -> np.ndarray:
    """The old cache's pairs whose image and text are both matched, in matched-row coordinates."""
    pos_i = np.full(int(ia.max(initial=-1)) + 1, -1, np.int64)
    pos_i[ia] = np.arange(len(ia))
    pos_t = np.full(int(ta.max(initial=-1)) + 1, -1, np.int64)
    pos_t[ta] = np.arange(len(ta))
    p = np.asarray(old_pairs, np.int64).reshape(-1, 2)
    p = p[(p[:, 0] < len(pos_i)) & (p[:, 1] < len(pos_t))]
    out = np.stack([pos_i[p[:, 0]], pos_t[p[:, 1]]], 1)
    return out[(out >= 0).all(1)]


def _paired(Xi, Xt, Yi, Yt, pairs, *, metrics, plot, kl_batch, kl_temperature, max_queries, seed, device):
    """What needs the pairs: each release's gap and paired cosine, backward compatibility, Mod-X's
    inter-modal deviation and similarity KL."""
    from clipscope.analysis.retrieval import recall_at_k

    for tag, (I, T) in {"old": (Xi, Xt), "new": (Yi, Yt)}.items():
        metrics[f"gap_{tag}"] = metric(geometry.centroid_distance(I, T))
        metrics[f"paired_cosine_{tag}"] = metric(float(geometry.pair_dots(I, T, pairs[:, 0], pairs[:, 1]).mean()))
    metrics["gap_change"] = metric(metrics["gap_new"]["value"] - metrics["gap_old"]["value"])
    metrics["paired_cosine_change"] = metric(metrics["paired_cosine_new"]["value"] - metrics["paired_cosine_old"]["value"])
    if Xi.shape[1] != Yi.shape[1]:
        return
    # Backward compatibility: text queries from one model against the other's images (every image).
    texts = np.unique(pairs[:, 1])
    asked = texts[_queries(len(texts), max_queries, seed, 2)]
    local = {int(t): q for q, t in enumerate(asked)}
    keep = np.isin(pairs[:, 1], asked)
    correct = np.stack([[local[int(t)] for t in pairs[keep, 1]], pairs[keep, 0]], 1).reshape(-1, 2)
    on = "" if len(asked) == len(texts) else f" on a seeded sample of {len(asked)} query texts"
    for name, queries, gallery in (("compat_new_text_old_image", Yt, Xi), ("compat_old_text_new_image", Xt, Yi)):
        recall = recall_at_k(np.asarray(queries[asked]), gallery, correct, (1, 5), device=device)
        for kk in (1, 5):
            metrics[f"{name}_recall@{kk}"] = metric(recall[kk], detail=on.strip() or None)
    dev = inter_modal_deviation(plot["angles_image"], plot["angles_text"], pairs)
    metrics["inter_modal_deviation"] = metric(dev.mean(), detail=f"{len(pairs)} pairs")
    kl = similarity_kl(Xi, Xt, Yi, Yt, pairs, batch=kl_batch, temperature=kl_temperature)
    metrics["similarity_kl"] = metric(kl.mean(), detail=f"temperature {kl_temperature:g}, consecutive batches of "
                                                        f"{kl_batch} pairs")


def figures(result: TaskResult, out_dir: Path, title: str, *, seed: int = 0, plots=None, **_) -> dict:
    """Lay out the drift figures on ``plots`` (the plotting module, or a recorder of figure specs)."""
    from clipscope.report import plots as plotting

    plots = plots or plotting

    d = result.plot_data
    out = {}
    series = {name: d[f"drift_{name}"] for name in ("image", "text") if f"drift_{name}" in d}
    out["drift_histogram"] = plots.histogram(series, out_dir / "drift_rows.png", title=f"Per-row drift: {title}",
                                             xlabel="1 - cosine(old aligned, new)")
    ov = {name: d[f"overlap_{name}"] for name in ("image", "text") if f"overlap_{name}" in d}
    out["knn_overlap"] = plots.histogram(ov, out_dir / "drift_knn_overlap.png", title=f"Neighbourhood overlap: {title}",
                                         xlabel="Jaccard overlap of k nearest neighbours", bins=12)
    if "aligned_image" in d:
        smp = d["aligned_image"]
        out["projection"] = plots.drift_projection(smp["X"], smp["Y"], smp["moved"], out_dir / "drift_projection.png",
                                                   title=f"Old (aligned) and new image rows, most moved: {title}", seed=seed)
    return {k: Path(v).name for k, v in out.items()}


def run(ctx, cache, *, old_model, old_pretrained, new_model, new_pretrained, k, top, engine, max_queries, search,
        nprobe, recall_queries):
    """Two caches (OLD NEW), or two models extracted on the run's data."""
    from clipscope.context import open_cache
    from clipscope.report import model_block
    from clipscope.runtime import resolve_device

    if cache:
        if not isinstance(cache, (list, tuple)) or len(cache) != 2 or None in cache:
            raise UsageError("drift compares two caches: give OLD and NEW")
        old, new = open_cache(cache[0]), open_cache(cache[1])
    else:
        if not (old_model and new_model and ctx.data):
            raise UsageError("without caches, give --old-model, --new-model and --data")
        old = ctx.cache(None, model=old_model, pretrained=old_pretrained)
        new = ctx.cache(None, model=new_model, pretrained=new_pretrained)
    with old, new:
        result = evaluate(old, new, k=k, top=top, device=resolve_device(ctx.device), engine=engine,
                          max_queries=max_queries, seed=ctx.seed, search=search, nprobe=nprobe,
                          recall_queries=recall_queries, announce=ctx.say)
        po, pn = old.provenance, new.provenance
        title = f"{title_of(po, None).split(' on ')[0]} -> {title_of(pn, po.get('data_spec'))}"
        model = model_block(pn)
        model["old"] = model_block(po)
        data = {"spec": pn.get("data_spec"), "fingerprint": pn.get("data_fingerprint"), "cache": str(new.path),
                "counts": {}}
        return ctx.report(result, model=model, data=data,
                          figures=lambda plots, d: figures(result, d, title, seed=ctx.seed, plots=plots))



def row_values(report, cache, rows) -> dict:
    """Per row in drift's most-moved tables (images by id, texts by caption): how far it moved."""
    tables = (report or {}).get("tables", {})
    image = rows.images({r["id"]: r for r in tables.get("most_moved_image") or []})
    text = rows.texts({r["id"]: r for r in tables.get("most_moved_text") or []})
    return {"drift": ([r and r["drift"] for r in image], [r and r["drift"] for r in text]),
            "drift_aligned_cosine": ([r and r.get("aligned_cosine") for r in image],
                                     [r and r.get("aligned_cosine") for r in text])}


def _index_options():
    from clipscope.tasks.blindpairs import INDEX_OPTIONS

    return INDEX_OPTIONS


COMMAND = Command(
    name="drift", order=60, run=run, inputs="two-caches", groups=("encoding", "data"),
    help="How far the space moved between two model releases.",
    doc="""Representation drift between two models on the same data: linear CKA, Procrustes,
    kNN overlap, per-row drift, backward compatibility and the change of the gap.

    \b
    Examples:
      clipscope drift old.h5 new.h5 --out runs/drift
      clipscope drift old.h5 new.h5 --engine stream --out runs/drift   # rows need not fit in memory
      clipscope drift --old-model ViT-B-32 --old-pretrained openai --new-model ViT-B-32 \\
          --new-pretrained laion2b_s34b_b79k --data folder:./imgs --out runs/drift
    """,
    options=(
        Option("old_model", show_default=False, help="Old model (extracts through the content-keyed cache)."),
        Option("old_pretrained", show_default=False, help="Old model's weights."),
        Option("new_model", show_default=False, help="New model."),
        Option("new_pretrained", show_default=False, help="New model's weights."),
        Option("k", kind="int", default=10, min=1, flag="--k", help="Neighbours for the kNN overlap."),
        Option("top", kind="int", default=20, min=1, help="Most-moved rows listed."),
        Option("max_queries", kind="int", default=20000, min=1,
               help="Query rows of the kNN overlap and the backward-compatibility recall: every row up to this many, "
                    "else a seeded sample (their neighbours are searched among every row)."),
        Option("engine", kind="choice", default="auto", choices=("auto", "local", "stream"),
               help="local: the matched rows of both caches in memory; stream: read from the cache files in blocks "
                    "(CKA and Procrustes from d x d cross-products, per-row drift in a second pass); auto: local when "
                    "they fit comfortably in memory, else stream (the report says which). Same values on both."),
        Option("search", kind="choice", default="auto", choices=("auto", "exact", "index"),
               help="How the kNN overlap's neighbours are found: exact (blocked products); index (faiss IVF-Flat, "
                    "its recall against exact measured on sampled queries and reported); auto: exact up to 100,000 "
                    "matched rows, else index."),
        *_index_options(),
    ),
    row_columns=(("drift", "double", "from drift.json (most_moved tables): how far the row moved between the releases"),
                 ("drift_aligned_cosine", "double", "its cosine after Procrustes alignment")),
    row_values=row_values,
    title_config=(("k", "k"),),
    summary=("cka_image", "cka_text", "knn_overlap_image", "knn_overlap_text", "procrustes_residual_image",
           "aligned_angle_image", "gap_change", "compat_new_text_old_image_recall@1"),
    outputs=("`drift.json` (metrics `cka_*`, `knn_overlap_*` (and `knn_search_recall_*` with `--search index`), `procrustes_residual_*`, `aligned_angle_*`, "
            "`raw_cosine_*` per modality, `gap_old`, `gap_new`, `gap_change`, `paired_cosine_*`, "
            "`compat_new_text_old_image_recall@k`, `compat_old_text_new_image_recall@k`; tables `most_moved_*`, "
            "`drift_distribution_*`) and PNGs `drift_rows.png`, `drift_knn_overlap.png`, `drift_projection.png`."),
)
