"""`invert`: OTI / OVI over a cache, stored beside the originals, with retrieval evaluation."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from clipscope.analysis import metric
from clipscope.analysis.inversion import OTI_DEFAULTS, OVI_DEFAULTS, InversionConfig, invert_batch
from clipscope.analysis.retrieval import label_retrieval
from clipscope.cache import add_datasets, partial_dir
from clipscope.errors import ClipscopeError, UsageError
from clipscope.fileio import atomic_json
from clipscope.journal import Journal
from clipscope.linalg import l2_normalize
from clipscope.registry import Command, Option
from clipscope.tasks import TaskResult, title_of

RETRIEVAL_KEYS = {"mAP": "map", "mAP@R": "map_at_r", "precision@R": "precision_at_r", "recall@1": "recall_at_1"}


def defaults(mode: str) -> InversionConfig:
    return OTI_DEFAULTS if mode == "oti" else OVI_DEFAULTS


def check_same_model(cache, encoder) -> None:
    a, p = cache.attrs, encoder.provenance
    keys = ("model", "pretrained", "init_seed", "weights_sha256")
    diff = [k for k in keys if (a.get(k) if a.get(k) != "" else None) != p.get(k)]
    if diff:
        raise ClipscopeError(f"{cache.path} was made by {a.get('model')} (pretrained: {a.get('pretrained')}), "
                             f"not {p.get('model')} (pretrained: {p.get('pretrained')}); inversion needs the model "
                             "that made the cache: pass the same --model/--pretrained")


def run_inversion(cache, encoder, *, mode: str, config: InversionConfig, progress: bool = True):
    """Invert every target row, resumably; store the results in the cache. Returns (features, history stats)."""
    src_key = "image/embeddings" if mode == "oti" else "text/embeddings"
    group = "image" if mode == "oti" else "text"
    if src_key not in cache:
        raise ClipscopeError(f"{cache.path} has no {src_key}; {mode.upper()} inverts "
                             f"{'images' if mode == 'oti' else 'texts'}")
    out_key = f"{group}/{mode}_embeddings"
    cfg = asdict(config)
    if out_key in cache and cache.attrs.get(f"{mode}_config") == cfg:  # already done with this configuration
        return cache[out_key][:], cache[f"{group}/{mode}_curve"][:], cache[f"{group}/{mode}_cosine"][:]

    from clipscope.fileio import exclusive, remove_stale_temps

    with exclusive(cache.path, quiet=not progress):
        remove_stale_temps(cache.path)
        _check_unchanged(cache)
        targets = np.asarray(cache[src_key][:], np.float32)
        rows = _invert_rows(cache, encoder, targets, mode=mode, config=config, progress=progress)
        feats, hist = rows[:, :targets.shape[1]], rows[:, targets.shape[1]:]  # hist: (n, steps + 1) cosines
        loss = 1.0 - hist
        curve = np.stack([loss.mean(0), loss.std(0), np.percentile(loss, 10, axis=0), np.percentile(loss, 90, axis=0)], 1)
        cos_first_last = np.stack([hist[:, 0], hist[:, -1]], 1)
        add_datasets(cache.path, {out_key: feats, f"{group}/{mode}_cosine": cos_first_last.astype(np.float32),
                                  f"{group}/{mode}_curve": curve.astype(np.float32)},
                     attrs={f"{mode}_config": cfg}, keep="the inversion's progress is kept: rerun to finish")
        shutil.rmtree(partial_dir(cache.path, mode), ignore_errors=True)
    return feats, curve, cos_first_last


def _check_unchanged(cache) -> None:
    """The file at ``cache.path`` is still the one this run opened (it may have been replaced
    while the run waited for the lock); inverting it would store results of other rows."""
    from clipscope.cache import Cache

    with Cache.open(cache.path) as now:
        if any(now.attrs.get(k) != cache.attrs.get(k) for k in ("created_utc", "data_fingerprint", "model")):
            raise ClipscopeError(f"{cache.path} was replaced by another process while this one waited; rerun the command")


def _invert_rows(cache, encoder, targets: np.ndarray, *, mode: str, config: InversionConfig, progress: bool) -> np.ndarray:
    """Inverted features and per-step cosines of every target row, as one (n, dim + steps + 1) array.

    Progress is a journal in ``<cache>.<mode>.partial/``: each batch's features and history are
    one row block, committed in one atomic step, so a crash can neither lose nor repeat a batch.
    The journal is keyed by the cache's content (its provenance and a hash of the target rows),
    so a cache re-extracted from other data never resumes another cache's inversions.
    """
    import hashlib

    import torch
    from tqdm import tqdm

    from clipscope.runtime import autocast_dtype

    n, dim = targets.shape
    a = cache.attrs
    manifest = {"config": asdict(config), "n": n, "mode": mode,
                "cache": {k: a.get(k) for k in ("model", "pretrained", "init_seed", "weights_sha256", "data_fingerprint",
                                                "created_utc")},
                "targets_sha256": hashlib.sha256(np.ascontiguousarray(targets).tobytes()).hexdigest()}
    folder = partial_dir(cache.path, mode)
    manifest_path = folder / "manifest.json"
    if folder.exists() and (not manifest_path.exists() or json.loads(manifest_path.read_text()) != manifest):
        shutil.rmtree(folder)  # another configuration or other content: its partial results do not apply
    folder.mkdir(parents=True, exist_ok=True)
    atomic_json(manifest_path, manifest)
    journal = Journal(folder, "rows", dim + config.steps + 1)
    # one tick per optimisation step of each row: a batch of 64 rows x 1000 OVI steps moves the bar as it goes
    done = journal.state["next_index"]
    bar = tqdm(total=n * config.steps, initial=done * config.steps, desc=f"{mode.upper()} ({n} rows x {config.steps} steps)",
               unit="step", file=sys.stderr, disable=not progress, leave=False)
    dtype = autocast_dtype(encoder.precision, encoder.device)
    for start in range(journal.state["next_index"], n, config.batch_size):
        stop = min(n, start + config.batch_size)
        feats, hist = invert_batch(encoder.model, torch.from_numpy(targets[start:stop]), mode=mode, config=config,
                                   tokenizer=encoder.tokenizer, device=encoder.device, precision_dtype=dtype,
                                   generator_seed=config.seed * 1_000_003 + start // config.batch_size,
                                   on_step=lambda rows=stop - start: bar.update(rows))
        journal.commit(np.concatenate([feats.numpy(), hist.T], 1), stop, [])
    bar.close()
    return np.array(journal.rows())


def text_labels(cache) -> np.ndarray | None:
    """A text's label is its paired images' label when they agree; -1 otherwise."""
    labels = cache.image_labels
    if labels is None or cache.n_texts == 0:
        return None
    out = np.full(cache.n_texts, -2, np.int64)
    for img, txt in cache.pairs:
        lab = labels[img]
        out[txt] = lab if out[txt] in (-2, lab) else -1
    out[out == -2] = -1
    return out


def evaluate(cache, encoder, *, mode: str, config: InversionConfig, gallery=None, progress: bool = True) -> TaskResult:
    if mode not in ("oti", "ovi"):
        raise ClipscopeError(f"--mode {mode}: use oti (image to text) or ovi (text to image)")
    check_same_model(cache, encoder)
    if gallery is not None:
        check_same_model(gallery, encoder)
    feats, curve, cos = run_inversion(cache, encoder, mode=mode, config=config, progress=progress)
    desc_dir = "image feature to the text encoder" if mode == "oti" else "text feature to the image encoder"
    metrics = {
        "initial_cosine": metric(cos[:, 0].mean(), detail=f"at the first step ({mode.upper()}: {desc_dir})"),
        "final_cosine": metric(cos[:, 1].mean(), detail=f"after {config.steps} steps ({mode.upper()}: {desc_dir})"),
    }
    tables = {"loss_curve": [{"step": int(s), "mean": float(r[0]), "std": float(r[1]), "p10": float(r[2]), "p90": float(r[3])}
                             for s, r in enumerate(curve) if s % max(1, len(curve) // 100) == 0 or s == len(curve) - 1]}
    notes = []
    plot = {"curve": curve, "mode": mode}
    # Retrieval with labels: intra-modal baseline against the inverted (inter-modal) queries.
    if mode == "oti":
        q_lab = cache.image_labels
        base_q = cache.normalized_image_embeddings()
        names = ("image_to_image", "oti_to_image")
    else:
        q_lab = text_labels(cache)
        base_q = cache.normalized_text_embeddings()
        names = ("text_to_text", "ovi_to_text")
    inv_q = l2_normalize(feats)
    if q_lab is None:
        notes.append("no labels: retrieval metrics need a labelled source (folder:, or a label column)")
    else:
        if gallery is not None:
            g_emb = gallery.normalized_image_embeddings() if mode == "oti" else gallery.normalized_text_embeddings()
            g_lab = gallery.image_labels if mode == "oti" else text_labels(gallery)
            if g_lab is None:
                raise ClipscopeError(f"--gallery {gallery.path} has no labels; label-based retrieval needs them")
            same = False
        keep = q_lab >= 0
        if gallery is None:  # query i's own row leaves the gallery
            g_emb, g_lab, same = base_q[keep], q_lab[keep], True
        base = label_retrieval(base_q[keep], g_emb, q_lab[keep], g_lab, same_set=same, per_query=True)
        inv = label_retrieval(inv_q[keep], g_emb, q_lab[keep], g_lab, same_set=same, per_query=True)
        if same and not keep.all():
            notes.append("texts paired with images of different labels were left out of retrieval")
        for name, res in zip(names, (base, inv)):
            for k, short in RETRIEVAL_KEYS.items():
                metrics[f"{name}_{short}"] = metric(res[k])
        classnames = cache.classnames or [str(c) for c in range(int(q_lab.max()) + 1)]
        gains = []
        for c in np.unique(q_lab[keep]):
            sel = q_lab[keep] == c
            if np.isnan(base["ap"][sel]).all() or np.isnan(inv["ap"][sel]).all():
                continue
            b, i = np.nanmean(base["ap"][sel]), np.nanmean(inv["ap"][sel])
            gains.append({"class": classnames[c] if c < len(classnames) else str(c), "baseline_ap": float(b),
                          "inverted_ap": float(i), "gain": float(i - b)})
        tables["per_class_gain"] = gains
        plot["gains"] = gains
        if base["no_relevant"]:
            notes.append(f"{base['no_relevant']} of {int(keep.sum())} queries have no relevant row in the gallery "
                         "(e.g. one text per class): they count as 0 in mAP, precision@R and recall@1, and mAP@R "
                         "averages over the others")
    counts = {"images": cache.n_images, "texts": cache.n_texts, "inverted": len(feats)}
    if q_lab is not None:
        counts["queries_without_relevant"] = int(base["no_relevant"])
    return TaskResult(metrics, tables, notes, config={"mode": mode, **asdict(config)}, counts=counts, plot_data=plot)


def figures(result: TaskResult, out_dir: Path, title: str, *, plots=None, **_) -> dict:
    """Lay out the figures on ``plots`` (the plotting module, or a recorder of figure specs)."""
    from clipscope.report import plots as plotting

    plots = plots or plotting

    d = result.plot_data
    curve = d["curve"]
    steps = np.arange(len(curve))
    mode = d["mode"].upper()
    out = {"loss_curve": plots.lines(steps, {f"{mode} loss (mean)": curve[:, 0]}, out_dir / f"invert_{d['mode']}_loss.png",
                                     title=f"{mode} loss 1 - cos (band: 10th-90th percentile): {title}",
                                     xlabel="optimisation step", ylabel="1 - cosine",
                                     bands={f"{mode} loss (mean)": (curve[:, 2], curve[:, 3])})}
    if d.get("gains"):
        gains = sorted(d["gains"], key=lambda g: -g["gain"])[:30]
        out["per_class_gain"] = plots.bars({g["class"]: g["gain"] for g in gains}, out_dir / f"invert_{d['mode']}_gains.png",
                                           title=f"Per-class AP gain of {mode} queries over intra-modal queries: {title}",
                                           ylabel="AP gain (points)")
    return {k: Path(v).name for k, v in out.items()}


def run(ctx, cache, *, mode, tokens, steps, lr, weight_decay, template, inv_batch_size, inv_seed, gallery):
    """`invert` through the run's model on a cache (given, or extracted with it)."""
    from pathlib import Path as _Path

    from clipscope.cache import Cache
    from clipscope.context import data_block, open_cache
    from clipscope.report import model_block

    if not ctx.model:
        raise UsageError("invert optimises through the model: give --model (and --pretrained) matching the cache, "
                         "or --model with --data")
    config = with_overrides(mode, tokens=tokens, steps=steps, lr=lr, weight_decay=weight_decay, template=template,
                            batch_size=inv_batch_size, seed=inv_seed)
    if mode == "oti" and "{}" not in config.template:
        raise UsageError("--template must contain {} where the pseudo tokens go")
    encoder = ctx.encoder()
    if encoder.kind != "open_clip":
        raise ClipscopeError(f"invert optimises through open_clip's text and image towers; {encoder.provenance['model']} "
                             f"is a {encoder.kind} model: extract and analyse it with the other commands")
    c = open_cache(cache) if cache is not None else ctx.cache(None, encoder=encoder)
    g = None
    try:
        if gallery:
            g = open_cache(gallery) if isinstance(gallery, Cache) or _Path(gallery).is_file() else \
                ctx.cache(None, data=gallery, encoder=encoder)
        result = evaluate(c, encoder, mode=mode, config=config, gallery=g, progress=ctx.progress)
        prov = c.provenance
        title = title_of(prov, prov.get("data_spec"))
        return ctx.report(result, model=model_block(encoder.provenance), data=data_block(c),
                          figures=lambda plots, d: figures(result, d, title, plots=plots))
    finally:
        c.close()
        if g is not None:
            g.close()



def row_values(report, cache, rows) -> dict:
    """The final OTI (images) / OVI (texts) cosine stored in the cache, when invert has run on it."""
    def last(key, n):
        if key in cache:
            values = np.asarray(cache[key][:], np.float64)[:, -1]
            if len(values) == n:
                return values.tolist()
        return None

    return {"inversion_cosine": (last("image/oti_cosine", rows.n_images), last("text/ovi_cosine", rows.n_texts))}


COMMAND = Command(
    name="invert", order=30, run=run, model_with_cache=True,
    help="Modality inversion OTI / OVI (Cross the Gap).",
    doc="""Modality inversion (Mistretta et al., ICLR 2025): OTI maps each image into the text
    encoder's input space, OVI each text into the image encoder's; with labels, intra-modal
    retrieval is compared with the inverted (inter-modal) retrieval.

    The model that made the cache is needed to optimise. Defaults equal the reference code's.

    \b
    Examples:
      clipscope invert --model clipscope-tiny --data probes:200 --mode oti --out runs/invert
      clipscope invert cache.h5 --model ViT-B-32 --pretrained openai --mode ovi --out runs/ovi
    """,
    options=(
        Option("mode", kind="choice", choices=("oti", "ovi"), required=True,
               help="oti: image -> text encoder; ovi: text -> image encoder."),
        Option("tokens", kind="int", min=1, show_default=False, help="Pseudo tokens per row (default 1)."),
        Option("steps", kind="int", min=1, show_default=False, help="Optimisation steps (default: OTI 150, OVI 1000)."),
        Option("lr", kind="float", show_default=False, help="AdamW learning rate (default 2e-2)."),
        Option("weight_decay", kind="float", show_default=False, help="AdamW weight decay (default 0.01)."),
        Option("template", show_default=False, help="OTI template with {} for the pseudo tokens (default 'a photo of {}')."),
        Option("inv_batch_size", kind="int", min=1, show_default=False, help="Rows optimised together (default 64)."),
        Option("inv_seed", kind="int", show_default=False, help="Seed of the token initialisation (default 42)."),
        Option("gallery", metavar="SPEC|CACHE", show_default=False,
               help="Separate gallery: a data spec or a cache file."),
    ),
    row_columns=(("inversion_cosine", "double", "the cache's final OTI (images) or OVI (texts) cosine, when invert has run"),),
    row_values=row_values,
    title_config=(("mode", "mode"), ("steps", "steps")),
    summary=("initial_cosine", "final_cosine", "image_to_image_map", "oti_to_image_map", "text_to_text_map",
             "ovi_to_text_map"),
    outputs=("`invert.json` (metrics `initial_cosine`, `final_cosine`; with labels `image_to_image_*` vs "
            "`oti_to_image_*` or `text_to_text_*` vs `ovi_to_text_*` for map, map_at_r, precision_at_r, "
            "recall_at_1; tables `loss_curve`, `per_class_gain`), PNGs `invert_<mode>_loss.png`, "
            "`invert_<mode>_gains.png`; the inverted features are stored in the cache as `/image/oti_embeddings` "
            "or `/text/ovi_embeddings` with `*_cosine` (first and last step) and `*_curve`."),
)


def with_overrides(mode: str, **overrides) -> InversionConfig:
    return replace(defaults(mode), **{k: v for k, v in overrides.items() if v is not None})
