"""`direction`: the residual direction between two groups of rows (RAVE), per modality.

A selection (``--a``, ``--b``) is one of:
  ``label:N``       image rows with label N
  ``class:NAME``    image rows of the class NAME (the cache's class names)
  ``ids:FILE``      image rows whose ids are listed in FILE (one per line)
  ``text:P1|P2``    a prompt set: its prompts' text embeddings (encoded with the cache's model)
  ``prompts:FILE``  a prompt set from a file (one prompt per line)
Image-row selections give an image group and a text group (the texts paired with those images
in ``/pairs``); a prompt set gives a text group.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipscope.analysis import metric
from clipscope.analysis.direction import direction_stats, rave_direction
from clipscope.errors import ClipscopeError, UsageError
from clipscope.registry import Command, Option
from clipscope.tasks import TaskResult, title_of

RAVE = "RAVE (CLIP-guided image enhancement), MACderRu/RAVE train_rave.py: normalised group means subtracted, normalised"
KINDS = ("label", "class", "ids", "text", "prompts")


def parse_selection(spec: str) -> tuple[str, str]:
    kind, _, value = str(spec).partition(":")
    if kind not in KINDS or not value:
        raise UsageError(f"selection {spec!r}: use label:N, class:NAME, ids:FILE, text:PROMPT|PROMPT or prompts:FILE")
    return kind, value


def is_prompt_set(spec: str) -> bool:
    return parse_selection(spec)[0] in ("text", "prompts")


def prompts_of(spec: str) -> list[str]:
    kind, value = parse_selection(spec)
    if kind == "text":
        out = [p.strip() for p in value.split("|") if p.strip()]
    else:
        out = _lines(value, "prompts", "a file of one prompt per line")
    if not out:
        raise ClipscopeError(f"selection {spec!r} holds no prompts")
    return out


def _lines(path: str, kind: str, what: str) -> list[str]:
    """The non-empty lines of a UTF-8 text file, or a one-line error naming the file."""
    try:
        return [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as e:
        raise ClipscopeError(f"{kind}:{path}: cannot read it ({e.strerror}); give {what}") from None
    except UnicodeDecodeError:
        raise ClipscopeError(f"{kind}:{path} is not UTF-8 text; give {what}, saved as UTF-8") from None


def image_rows(cache, spec: str) -> np.ndarray:
    """The image rows an image selection names (sorted, non-empty)."""
    kind, value = parse_selection(spec)
    if kind == "label":
        labels = cache.image_labels
        if labels is None:
            raise ClipscopeError(f"{cache.path} holds no image labels; select with ids:FILE instead of {spec}")
        try:
            rows = np.flatnonzero(labels == int(value))
        except ValueError:
            raise UsageError(f"selection {spec!r}: a label is an integer") from None
    elif kind == "class":
        names = cache.classnames or []
        if value not in names or cache.image_labels is None:
            raise ClipscopeError(f"selection {spec!r}: no class {value!r} in {cache.path}"
                                 + (f" (classes: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''})" if names else ""))
        rows = np.flatnonzero(cache.image_labels == names.index(value))
    else:
        wanted = set(_lines(value, "ids", "a file of image ids, one per line"))
        ids = cache.image_ids
        rows = np.asarray([i for i, x in enumerate(ids) if x in wanted], np.int64)
        missing = wanted - {ids[i] for i in rows}
        if missing:
            raise ClipscopeError(f"ids:{value}: {len(missing)} id(s) not in {cache.path}, e.g. {sorted(missing)[0]!r}")
    if not len(rows):
        raise ClipscopeError(f"selection {spec!r} matches no image row of {cache.path}")
    return rows


def paired_text_rows(cache, rows: np.ndarray) -> np.ndarray:
    pairs = cache.pairs
    return np.unique(pairs[np.isin(pairs[:, 0], rows), 1]) if len(pairs) else np.zeros(0, np.int64)


def evaluate(cache, a: str, b: str, *, encode_texts=None, text_a: str | None = None, text_b: str | None = None,
             top: int = 20) -> TaskResult:
    """The direction from group ``b`` to group ``a`` in each modality both groups have rows in.
    ``encode_texts``: list of prompts -> normalised text embeddings with the cache's model (for
    prompt-set selections and the text direction ``text_a`` - ``text_b``)."""
    def prompts_embedded(spec):
        if encode_texts is None:
            raise UsageError(f"{spec} is a prompt set: it needs the cache's model to encode it (give --model)")
        return encode_texts(prompts_of(spec))

    groups = {"image": {}, "text": {}}
    for name, spec in (("a", a), ("b", b)):
        if is_prompt_set(spec):
            groups["text"][name] = (prompts_embedded(spec), None)
        else:
            rows = image_rows(cache, spec)
            groups["image"][name] = (None, rows)
            if cache.text_embeddings is not None:
                t = paired_text_rows(cache, rows)
                if len(t):
                    groups["text"][name] = (None, t)
    text_dir = None
    if text_a or text_b:
        if not (text_a and text_b):
            raise UsageError("give both --text-a and --text-b (two prompt sets) for the text direction")
        text_dir = rave_direction(prompts_embedded(f"text:{text_a}"), prompts_embedded(f"text:{text_b}"))[0]
    metrics, tables, notes, plot = {}, {}, [], {}
    for modality, g in groups.items():
        if set(g) != {"a", "b"}:
            continue
        X = cache.normalized_image_embeddings() if modality == "image" else cache.normalized_text_embeddings()
        rows = {k: r for k, (_, r) in g.items()}
        if rows["a"] is not None and rows["b"] is not None:
            shared = np.intersect1d(rows["a"], rows["b"])
            if len(shared):
                raise ClipscopeError(f"the two selections share {len(shared)} {modality} row(s); a direction needs "
                                     "disjoint groups")
        A = g["a"][0] if rows["a"] is None else X[rows["a"]]
        B = g["b"][0] if rows["b"] is None else X[rows["b"]]
        st = direction_stats(A, B, text_direction=text_dir)
        sizes = f"{len(A)} vs {len(B)} {modality} rows"
        metrics[f"direction_angle_{modality}"] = metric(st["angle"], n_a=len(A), n_b=len(B), detail=sizes)
        metrics[f"direction_mean_distance_{modality}"] = metric(st["estimate"], ci95=st["ci95"],
                                                                plug_in=st["mean_distance"], detail=sizes)
        if st["auroc"] is None:
            notes.append(f"direction_auroc_{modality}: a group has a single {modality} row, so separating the groups "
                         "by the direction made from them is trivial; it needs 2 rows per group")
        metrics[f"direction_auroc_{modality}"] = metric(st["auroc"], detail=sizes)
        if "text_cosine" in st:
            metrics[f"direction_text_cosine_{modality}"] = metric(st["text_cosine"])
        tables[f"direction_{modality}"] = [float(v) for v in st["vector"].astype(np.float32)]
        scores = X @ st["vector"].astype(np.float32)
        labels = cache.image_ids if modality == "image" else cache.text_captions
        order = np.argsort(scores, kind="stable")
        member = {int(r): k for k in ("a", "b") if rows[k] is not None for r in rows[k]}
        pick = list(order[::-1][:top]) + list(order[:top][::-1])
        tables[f"furthest_{modality}"] = [
            {"row": int(r), "id" if modality == "image" else "caption": labels[r] if r < len(labels) else str(r),
             "score": float(scores[r]), "group": member.get(int(r), "-"), "end": "a" if k < min(top, len(order)) else "b"}
            for k, r in enumerate(pick)]
        plot[modality] = {"a": st["scores_a"], "b": st["scores_b"]}
    if not metrics:
        raise ClipscopeError("the two selections share no modality: an image selection against a prompt set compares "
                             "texts, which needs /pairs in the cache")
    return TaskResult(metrics, tables, notes, config={"a": a, "b": b, "text_a": text_a, "text_b": text_b, "top": top},
                      counts={f"{m}_{k}": len(plot[m][k]) for m in plot for k in ("a", "b")}, plot_data=plot)


def figures(result: TaskResult, out_dir: Path, title: str, *, plots=None, **_) -> dict:
    from clipscope.report import plots as plotting

    plots = plots or plotting
    out = {}
    for modality, s in result.plot_data.items():
        auc = result.metrics[f"direction_auroc_{modality}"]["value"]
        auc = "one row per group" if auc is None else f"AUROC {auc:.3f}"
        out[f"scores_{modality}"] = plots.histogram(
            {"group A": s["a"], "group B": s["b"]}, out_dir / f"direction_{modality}.png",
            title=f"Projection onto the {modality} direction ({auc}): {title}",
            xlabel="<x, r / ||r||>")
    return {k: Path(v).name for k, v in out.items()}


def run(ctx, cache, *, a, b, text_a, text_b, top):
    """The direction between two groups of a cache's rows (prompt sets encoded with its model)."""
    from clipscope.context import data_block
    from clipscope.report import model_block

    with ctx.cache(cache) as c:
        prov = c.provenance
        needs_model = is_prompt_set(a) or is_prompt_set(b) or text_a or text_b
        loaded = []  # the cache's model, loaded once for every prompt set

        def encode_texts(prompts):
            if not loaded:
                loaded.append(ctx.cache_encoder(prov, "a prompt set is encoded"))
            return loaded[0].embed_texts(prompts, ctx.batch_size)

        result = evaluate(c, a, b, encode_texts=encode_texts if needs_model else None, text_a=text_a,
                          text_b=text_b, top=top)
        title = title_of(prov, prov.get("data_spec"))
        return ctx.report(result, model=model_block(prov), data=data_block(c),
                          figures=lambda plots, d: figures(result, d, title, plots=plots))


def save_vectors(report, out_dir) -> None:
    """direction_<modality>.npy: the unit directions themselves, for reuse as guidance."""
    from clipscope.fileio import atomic_path

    for modality in ("image", "text"):
        if f"direction_{modality}" in report.tables:
            with atomic_path(Path(out_dir) / f"direction_{modality}.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, np.asarray(report.tables[f"direction_{modality}"], np.float32))


SELECTION = "label:N, class:NAME, ids:FILE (image ids), text:PROMPT|PROMPT or prompts:FILE (a prompt set)"

COMMAND = Command(
    name="direction", order=80, run=run, artifacts=save_vectors,
    help="The residual direction between two groups of rows (RAVE).",
    doc="""The residual direction between two groups of rows, per modality, as RAVE computes it:
    the normalised difference of the groups' normalised mean embeddings; the angle between the
    groups, the raw centroid distance with a bias-corrected interval, how well projecting onto
    the direction separates the groups (AUROC, in sample), its cosine with a text direction,
    the rows furthest along it; saved (unit length) as direction_<modality>.npy in --out for
    reuse as guidance.

    \b
    Examples:
      clipscope direction cache.h5 --a class:cat --b class:dog --out runs/dir
      clipscope direction cache.h5 --a ids:well_lit.txt --b ids:backlit.txt \\
          --text-a 'a well-lit photo|a bright photo' --text-b 'a backlit photo|a dark photo' --out runs/dir
    """,
    options=(
        Option("a", flag="--a", required=True, metavar="SELECTION", show_default=False,
               help=f"Group A (the direction points to it): {SELECTION}."),
        Option("b", flag="--b", required=True, metavar="SELECTION", show_default=False, help=f"Group B: {SELECTION}."),
        Option("text_a", metavar="PROMPT|PROMPT", show_default=False,
               help="Prompts for the matching text direction (made from these and --text-b the same way), e.g. "
                    "'a well-lit photo'."),
        Option("text_b", metavar="PROMPT|PROMPT", show_default=False, help="The other prompt set of the text direction."),
        Option("top", kind="int", default=20, min=0, help="Rows listed at each end of the direction."),
    ),
    title_config=(("a", "A ="), ("b", "B =")),  # the direction points from B to A
    summary=("direction_angle_image", "direction_auroc_image", "direction_text_cosine_image", "direction_angle_text",
           "direction_auroc_text", "direction_text_cosine_text"),
    outputs=("`direction.json` (metrics `direction_angle_<modality>`, `direction_mean_distance_<modality>` with "
            "`ci95` and `plug_in`, `direction_auroc_<modality>`, with --text-a/--text-b "
            "`direction_text_cosine_<modality>`; tables `direction_<modality>` (the unit vector, float32 values) "
            "and `furthest_<modality>` (rows at each end: `row`, `id` or `caption`, `score`, `group`, `end`)), "
            "`direction_<modality>.npy` (RAVE's unit residual direction from B to A, float32, for reuse as "
            "guidance) and PNGs `direction_<modality>.png`."),
)
