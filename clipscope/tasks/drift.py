"""`drift`: how far the embedding space moved between two caches of the same items."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipscope.analysis import geometry, metric
from clipscope.analysis.drift import (
    inter_modal_deviation,
    knn_overlap,
    linear_cka,
    procrustes,
    rotation_angles,
    row_cosines,
    similarity_kl,
)
from clipscope.analysis.retrieval import cross_modal_recall
from clipscope.errors import ClipscopeError, UsageError
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


def _modality(name, X, Y, ids, *, k, top, device, metrics, tables, plot):
    metrics[f"cka_{name}"] = metric(linear_cka(X, Y), detail=f"{len(X)} rows")
    overlap = knn_overlap(X, Y, k=k, device=device)
    metrics[f"knn_overlap_{name}"] = metric(overlap.mean(), detail=f"k = {k}")
    plot[f"overlap_{name}"] = overlap
    if X.shape[1] == Y.shape[1]:
        raw = row_cosines(X, Y)
        R, residual = procrustes(X, Y)
        aligned = row_cosines(X @ R, Y)
        metrics[f"procrustes_residual_{name}"] = metric(residual)
        metrics[f"aligned_angle_{name}"] = metric(np.degrees(np.arccos(np.clip(aligned, -1, 1))).mean())
        metrics[f"raw_cosine_{name}"] = metric(raw.mean())
        angles = rotation_angles(X, Y)
        metrics[f"rotation_angle_{name}"] = metric(angles.mean())
        hist, edges = np.histogram(angles, bins=18, range=(0, 180))
        tables[f"rotation_angle_distribution_{name}"] = {"counts": hist.tolist(), "edges": edges.tolist()}
        plot[f"angles_{name}"] = angles
        drift = 1.0 - aligned
        order = np.argsort(-drift, kind="stable")[:top]
        tables[f"most_moved_{name}"] = [{"id": ids[i], "drift": float(drift[i]), "aligned_cosine": float(aligned[i]),
                                         "raw_cosine": float(raw[i])} for i in order]
        plot[f"drift_{name}"] = drift
        plot[f"aligned_{name}"] = (X @ R, Y, order)
    else:
        drift = 1.0 - overlap
        order = np.argsort(-drift, kind="stable")[:top]
        tables[f"most_moved_{name}"] = [{"id": ids[i], "drift": float(drift[i])} for i in order]
        plot[f"drift_{name}"] = drift
    hist, edges = np.histogram(drift, bins=20)
    tables[f"drift_distribution_{name}"] = {"counts": hist.tolist(), "edges": edges.tolist(),
                                            "quantiles": {q: float(np.quantile(drift, float(q))) for q in ("0.5", "0.9", "0.99")}}


def evaluate(old, new, *, k: int = 10, top: int = 20, device: str = "cpu", kl_batch: int = 256,
             kl_temperature: float = 0.01) -> TaskResult:
    metrics, tables, notes, plot = {}, {}, [], {}
    ia, ib = _match(old.image_ids, new.image_ids)
    if len(ia) == 0:
        raise ClipscopeError(f"{old.path} and {new.path} share no image ids; drift compares two caches of the same data")
    if len(ia) <= k:
        raise ClipscopeError(f"only {len(ia)} matched images: need more than --k {k}")
    Xi = old.normalized_image_embeddings()[ia]
    Yi = new.normalized_image_embeddings()[ib]
    ids = [old.image_ids[i] for i in ia]
    _modality("image", Xi, Yi, ids, k=k, top=top, device=device, metrics=metrics, tables=tables, plot=plot)
    counts = {"images_old": old.n_images, "images_new": new.n_images, "images_matched": len(ia)}
    if Xi.shape[1] == Yi.shape[1] and len(ia) < 4 * Xi.shape[1]:
        notes.append(f"{len(ia)} rows in {Xi.shape[1]} dimensions: an orthogonal map has ~D^2/2 free parameters, "
                     "so Procrustes aligns almost any two spaces this small; read its residual and aligned drift "
                     "with care, CKA and kNN overlap are not affected")
    if old.n_texts and new.n_texts:
        ta, tb = _match(old.text_captions, new.text_captions)
        counts["texts_matched"] = len(ta)
        if len(ta) > k:
            Xt = old.normalized_text_embeddings()[ta]
            Yt = new.normalized_text_embeddings()[tb]
            _modality("text", Xt, Yt, [old.text_captions[i] for i in ta], k=k, top=top, device=device,
                      metrics=metrics, tables=tables, plot=plot)
            # Pairs present in both caches, in matched-row coordinates.
            pos_i = {int(r): n for n, r in enumerate(ia)}
            pos_t = {int(r): n for n, r in enumerate(ta)}
            pairs = np.array([(pos_i[a], pos_t[b]) for a, b in old.pairs if a in pos_i and b in pos_t], np.int64).reshape(-1, 2)
            counts["pairs_matched"] = len(pairs)
            if len(pairs):
                for tag, (I, T) in {"old": (Xi, Xt), "new": (Yi, Yt)}.items():
                    Ip, Tp = I[pairs[:, 0]], T[pairs[:, 1]]
                    metrics[f"gap_{tag}"] = metric(geometry.centroid_distance(I, T))
                    metrics[f"paired_cosine_{tag}"] = metric(geometry.paired_cosine(Ip, Tp))
                metrics["gap_change"] = metric(metrics["gap_new"]["value"] - metrics["gap_old"]["value"])
                metrics["paired_cosine_change"] = metric(metrics["paired_cosine_new"]["value"]
                                                         - metrics["paired_cosine_old"]["value"])
                if Xi.shape[1] == Yi.shape[1]:
                    # Backward compatibility: queries from one model against the other's gallery.
                    new_q = cross_modal_recall(Xi, Yt, pairs)  # old images x new texts
                    old_q = cross_modal_recall(Yi, Xt, pairs)  # new images x old texts
                    for kk in (1, 5):
                        metrics[f"compat_new_text_old_image_recall@{kk}"] = metric(new_q[f"t2i_recall@{kk}"])
                        metrics[f"compat_old_text_new_image_recall@{kk}"] = metric(old_q[f"t2i_recall@{kk}"])
                    dev = inter_modal_deviation(plot["angles_image"], plot["angles_text"], pairs)
                    metrics["inter_modal_deviation"] = metric(dev.mean(), detail=f"{len(pairs)} pairs")
                    kl = similarity_kl(Xi, Xt, Yi, Yt, pairs, batch=kl_batch, temperature=kl_temperature)
                    metrics["similarity_kl"] = metric(kl.mean(), detail=f"temperature {kl_temperature:g}, consecutive "
                                                                        f"batches of {kl_batch} pairs")
                else:
                    notes.append("the models differ in dimension: Procrustes, per-row cosines and backward "
                                 "compatibility need equal D; drift per row is 1 - kNN overlap")
    config = {"k": k, "top": top, "kl_batch": kl_batch, "kl_temperature": kl_temperature, "old": {"model": old.attrs.get("model"), "pretrained": old.attrs.get("pretrained")},
              "new": {"model": new.attrs.get("model"), "pretrained": new.attrs.get("pretrained")}}
    return TaskResult(metrics, tables, notes, config=config, counts=counts, plot_data=plot)


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
        X, Y, order = d["aligned_image"]
        smp = plotting.drift_sample(X, Y, order[:15], seed=seed)
        out["projection"] = plots.drift_projection(smp["X"], smp["Y"], smp["moved"], out_dir / "drift_projection.png",
                                                   title=f"Old (aligned) and new image rows, most moved: {title}", seed=seed)
    return {k: Path(v).name for k, v in out.items()}


def run(ctx, cache, *, old_model, old_pretrained, new_model, new_pretrained, k, top):
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
        result = evaluate(old, new, k=k, top=top, device=resolve_device(ctx.device))
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


COMMAND = Command(
    name="drift", order=60, run=run, inputs="two-caches", groups=("encoding", "data"),
    help="How far the space moved between two model releases.",
    doc="""Representation drift between two models on the same data: linear CKA, Procrustes,
    kNN overlap, per-row drift, backward compatibility and the change of the gap.

    \b
    Examples:
      clipscope drift old.h5 new.h5 --out runs/drift
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
    ),
    row_columns=(("drift", "double", "from drift.json (most_moved tables): how far the row moved between the releases"),
                 ("drift_aligned_cosine", "double", "its cosine after Procrustes alignment")),
    row_values=row_values,
    title_config=(("k", "k"),),
    summary=("cka_image", "cka_text", "knn_overlap_image", "knn_overlap_text", "procrustes_residual_image",
           "aligned_angle_image", "gap_change", "compat_new_text_old_image_recall@1"),
    outputs=("`drift.json` (metrics `cka_*`, `knn_overlap_*`, `procrustes_residual_*`, `aligned_angle_*`, "
            "`raw_cosine_*` per modality, `gap_old`, `gap_new`, `gap_change`, `paired_cosine_*`, "
            "`compat_new_text_old_image_recall@k`, `compat_old_text_new_image_recall@k`; tables `most_moved_*`, "
            "`drift_distribution_*`) and PNGs `drift_rows.png`, `drift_knn_overlap.png`, `drift_projection.png`."),
)
