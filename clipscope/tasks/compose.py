"""`compose`: compositional understanding benchmarks scored with a live model.

Each benchmark is read from local files (:mod:`clipscope.data.compose_benchmarks`) and scored
by its reference's rule (:mod:`clipscope.analysis.compose`). Every unique caption and every
unique image (with its crop) is encoded once across all benchmarks of a run; the report counts
the encoder calls.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipscope.analysis import compose as rules
from clipscope.analysis import metric
from clipscope.analysis.geometry import wilson_interval
from clipscope.errors import ClipscopeError, UsageError
from clipscope.registry import Command, Option
from clipscope.tasks import TaskResult, title_of

KINDS = ("sugarcrepe", "aro-relation", "aro-attribution", "aro-order", "winoground", "mmvp", "probes")
CHANCE = {"sugarcrepe": 0.5, "aro": 0.5, "winoground_text": 0.25, "winoground_image": 0.25,
          "winoground_group": 1 / 6, "probes": 0.5}
DEFAULT_PROBES = 64  # per kind
COLLAPSE_COSINE = 0.99
DOCS = """## Published numbers to check a setup against

SugarCrepe, ViT-B-32 with `--pretrained openai`, accuracy in percent, as published by the benchmark's
authors (RAIVNLab/sugar-crepe, `assets/sugarcrepe_eval.png` and `assets/re_eval.png` at commit
`0047054`, the tables of Hsieh et al. 2023). A run of
`clipscope compose --model ViT-B-32 --pretrained openai --benchmark sugarcrepe:sugar-crepe/data --images coco/val2017`
reports the same quantities as fractions (`sugarcrepe_<subset>`, `sugarcrepe_<family>`).

| replace_obj | replace_att | replace_rel | swap_obj | swap_att | add_obj | add_att |
|---|---|---|---|---|---|---|
| 90.92 | 80.08 | 69.20 | 61.38 | 63.96 | 77.21 | 68.79 |

| replace | swap | add |
|---|---|---|
| 80.76 | 63.27 | 75.09 |

The family columns pool the cases of their subsets (80.76 is the case-weighted mean of the three
replace subsets; their plain mean is 80.07), and so does clipscope. The published swap_obj number
was computed on 246 cases; the data now has 245 (commit `546eb51` removed a case with a wrong
caption), so a run on today's data may differ from 61.38 by up to 0.4 points.

ARO and Winoground are cited, not copied, because no primary copy of their tables could be read
on the machine this page was written on and a number written from memory could be wrong:

| clipscope metric | published in (paper, table, model row, column) |
|---|---|
| `aro_relation` | Yuksekgonul et al. 2023 (ICLR; arXiv 2210.01936 v3), the main ARO results table, row CLIP (ViT-B/32, OpenAI), column VG-Relation (macro accuracy) |
| `aro_attribution` | the same table and row, column VG-Attribution |
| `aro_order_coco_karpathy_test` | the same table and row, column COCO-Order |
| `aro_order_flickr30k_karpathy_test` | the same table and row, column Flickr30k-Order |
| `winoground_text`, `winoground_image`, `winoground_group` | Thrush et al. 2022 (CVPR), the main results table, row CLIP (ViT-B/32), columns Text, Image, Group |

`python benchmarks/published_numbers.py --aro-dir ARO --coco-order coco_karpathy_test.json
--winoground WINOGROUND` computes them from the real weights and data, printed beside these
citations.
"""


def parse_benchmarks(specs) -> list[tuple[str, str]]:
    """``NAME:PATH`` specs into (kind, path) pairs."""
    out = []
    for spec in specs:
        kind, sep, path = str(spec).partition(":")
        if kind == "probes":  # built in: probes[:N per kind]
            if path and (not path.isdigit() or int(path) < 1):
                raise UsageError(f"--benchmark {spec}: probes takes a number of cases per kind (at least 1), e.g. "
                                 "probes:64")
            out.append((kind, path or str(DEFAULT_PROBES)))
            continue
        if not sep or kind not in KINDS or not path:
            raise UsageError(f"--benchmark {spec}: expected NAME:PATH with NAME one of {', '.join(KINDS)}, "
                             "or probes[:N]")
        out.append((kind, path))
    if not out:
        raise UsageError("give at least one --benchmark NAME:PATH")
    return out


class _Encoded:
    """Embeddings of unique captions and images (path and crop box), each encoded once."""

    def __init__(self, encoder, batch_size: int):
        self.encoder, self.batch_size = encoder, batch_size
        self.text, self.image = {}, {}
        self.calls = {"text_batches": 0, "image_batches": 0}

    def texts(self, captions: list[str]) -> np.ndarray:
        new = list(dict.fromkeys(c for c in captions if c not in self.text))
        for i in range(0, len(new), self.batch_size):
            batch = new[i:i + self.batch_size]
            self.text.update(zip(batch, self.encoder.embed_texts(batch, len(batch))))
            self.calls["text_batches"] += 1
        return np.stack([self.text[c] for c in captions])

    def images(self, keys: list[tuple], load=None) -> np.ndarray:
        """Rows for image keys: (path, crop box or None) read from files, or any key that
        ``load(key)`` turns into a PIL image (the built-in probes)."""
        import torch

        new = list(dict.fromkeys(k for k in keys if k not in self.image))
        for i in range(0, len(new), self.batch_size):
            batch = new[i:i + self.batch_size]
            pixels = [self.encoder.preprocess((load or _open_cropped)(key)) for key in batch]
            self.image.update(zip(batch, self.encoder.embed_images(torch.stack(pixels))))
            self.calls["image_batches"] += 1
        return np.stack([self.image[k] for k in keys])


def _open_cropped(key):
    from clipscope.data import open_image_file

    path, box = key
    try:
        im = open_image_file(path)
    except (OSError, ValueError) as e:
        raise ClipscopeError(f"compose: cannot read image {path} ({e}); check --images or the benchmark's image "
                             "folder") from None
    return im.crop(box) if box is not None else im


def _option_scores(enc: _Encoded, cases: list[dict], image_key, options, load=None) -> np.ndarray:
    """(cases x options) cosines of each case's image with its caption options."""
    img = enc.images([image_key(c) for c in cases], load)
    opts = [options(c) for c in cases]
    k = len(opts[0])
    txt = enc.texts([t for o in opts for t in o]).reshape(len(cases), k, -1)
    return np.einsum("nd,nkd->nk", img, txt)


def _accuracy_metric(correct: np.ndarray) -> dict:
    acc = float(np.mean(correct)) if len(correct) else float("nan")
    return metric(acc, ci95=wilson_interval(acc, len(correct)), n=int(len(correct)), detail=f"{len(correct)} cases")


def _text_side(enc: _Encoded, pairs: list[tuple[str, str]], captions: list[str], seed: int) -> dict:
    """Text-side diagnostics (no images): how often a hard negative's text embedding is all but
    the positive's (cosine > 0.99), and how much the text encoder ignores word order (mean
    cosine of a caption with its trigram-shuffled self, ARO's shuffle_trigrams)."""
    out = {}
    if pairs:
        a, b = enc.texts([p for p, _ in pairs]), enc.texts([n for _, n in pairs])
        cos = np.einsum("nd,nd->n", a, b)
        share = float((cos > COLLAPSE_COSINE).mean())
        out["text_negative_collapse"] = metric(share, ci95=wilson_interval(share, len(cos)), n=len(cos),
                                               detail=f"{len(cos)} pairs")
    texts = captions or list(dict.fromkeys(p for p, _ in pairs))
    texts = [t for t in texts if len(t.split()) > 3]  # at least two trigrams to reorder
    if texts:
        from clipscope.data.text_perturb import reorder_trigrams

        shuffled = [reorder_trigrams(t, np.random.default_rng([seed, k])) for k, t in enumerate(texts)]
        cos = np.einsum("nd,nd->n", enc.texts(texts), enc.texts(shuffled))
        out["text_order_cosine"] = metric(float(cos.mean()), n=len(cos), detail=f"{len(cos)} captions")
    return out


def evaluate(encoder, benchmarks, *, images=None, captions: list[str] | None = None, batch_size: int = 64,
             top_failures: int = 20, seed: int = 0) -> TaskResult:
    """Score ``benchmarks`` ((kind, path) pairs, see :func:`parse_benchmarks`) with ``encoder``.
    ``images``: SugarCrepe's COCO val2017 folder (its files name images only by file name), or
    ARO order's image root (default: the JSON file's folder);
    ``captions``: more captions for the text-side diagnostics (e.g. a plain text file's lines)."""
    from clipscope.data.compose_benchmarks import load_aro, load_aro_order, load_sugarcrepe, load_winoground

    enc = _Encoded(encoder, batch_size)
    metrics, categories, failures, notes = {}, [], [], []
    n_cases = 0
    pairs_for_text = []  # (positive, hard negative) captions, for the text-side diagnostics
    probe_images = {}  # rendered probe images by id, for the failures' contact sheet

    def category(kind, name, correct, ties, **extra):
        acc = float(np.mean(correct))
        categories.append({"benchmark": kind, "category": name, "accuracy": acc, "ci95": wilson_interval(acc, len(correct)),
                           "n": int(len(correct)), "ties": int(ties), **extra})

    def failed(kind, names, correct, scores, options, truth: int, image):
        """A row per wrong case: the option that won, and by how much it beat the true one."""
        for k in np.flatnonzero(~correct):
            chosen = int(np.argmax(scores[k]))
            failures.append({"benchmark": kind, "category": names[k], "image": image[k], "caption": options[k][truth],
                             "chosen": options[k][chosen], "margin": float(scores[k][chosen] - scores[k][truth])})

    def record(kind, name, correct, scores, options, truth: int, image):
        category(kind, name, correct, rules.ties(scores).sum())
        failed(kind, [name] * len(correct), correct, scores, options, truth, image)

    for kind, path in benchmarks:
        if kind == "sugarcrepe":
            if images is None:
                raise UsageError("sugarcrepe names its images by file name only: give --images COCO_VAL2017_DIR")
            subsets = load_sugarcrepe(path, images)
            correct_by_subset = {}
            for subset, cases in subsets.items():
                s = _option_scores(enc, cases, lambda c: (c["image"], None), lambda c: [c["negative"], c["positive"]])
                correct = rules.sugarcrepe_correct(s[:, 1], s[:, 0])
                metrics[f"sugarcrepe_{subset}"] = _accuracy_metric(correct)
                correct_by_subset[subset] = correct
                record(kind, subset, correct, s, [[c["negative"], c["positive"]] for c in cases], 1,
                       [c["image"] for c in cases])
                pairs_for_text += [(c["positive"], c["negative"]) for c in cases]
                n_cases += len(cases)
            for family, correct in rules.sugarcrepe_families(correct_by_subset).items():
                metrics[f"sugarcrepe_{family}"] = _accuracy_metric(correct)
        elif kind in ("aro-relation", "aro-attribution"):
            which = kind.split("-")[1]
            cases = load_aro(path, which)
            s = _option_scores(enc, cases, lambda c: (c["image"], c["box"]), lambda c: c["options"])
            correct = rules.aro_binary_correct(s)
            groups = [c["group"] for c in cases]
            pairs_for_text += [(c["options"][1], c["options"][0]) for c in cases]
            agg = rules.aro_relation_accuracy(correct, groups) if which == "relation" else \
                rules.aro_attribution_accuracy(correct, groups)
            rule = ("relations, without the reference's symmetric ones" if which == "relation"
                    else f"attribute pairs with >= {rules.ARO_MIN_ATTRIBUTE_CASES} cases")
            metrics[f"aro_{which}"] = metric(agg["macro"], groups=agg["groups"], detail=f"the groups: {rule}")
            for group in sorted(agg["per_group"]):
                mask = np.array(groups) == group
                category(kind, group, correct[mask], rules.ties(s[mask]).sum(), in_macro=agg["per_group"][group][2])
            failed(kind, groups, correct, s, [c["options"] for c in cases], 1, [c["image"] for c in cases])
            if agg["groups"] == 0:
                notes.append(f"aro_{which}: no group qualifies ({rule})")
            n_cases += len(cases)
        elif kind == "aro-order":
            from clipscope.data.text_perturb import order_options, pos_tagger

            cases = load_aro_order(path, images)
            tagger = pos_tagger()
            options, names = [], []
            for k, case in enumerate(cases):  # seeded per case: any subset reproduces its perturbations
                opts, names = order_options(case["caption"], np.random.default_rng([seed, k]), tagger)
                options.append(opts)
            s = _option_scores(enc, list(range(len(cases))), lambda k, cases=cases: (cases[k]["image"], None),
                               lambda k, options=options: options[k])
            correct = rules.aro_order_correct(s)
            name = "aro_order_" + "".join(ch if ch.isalnum() else "_" for ch in Path(path).stem.lower())
            metrics[name] = _accuracy_metric(correct)
            metrics[name]["detail"] += f"; perturbations: {', '.join(names)} (chance {1 / (1 + len(names)):.3g})"
            record(kind, Path(path).stem, correct, s, options, 0, [c["image"] for c in cases])
            if tagger is None:
                notes.append(f"{name}: spaCy's en_core_web_sm is not installed, so only the two trigram perturbations "
                             "ran (pip install spacy && python -m spacy download en_core_web_sm for all four)")
            pairs_for_text += [(o[0], p) for o in options for p in o[1:]]
            n_cases += len(cases)
        elif kind == "probes":
            from clipscope.data.probes import COMPOSE_KINDS, compose_probe

            cases = [compose_probe(seed, i) for i in range(int(path) * len(COMPOSE_KINDS))]
            by_id = {c["id"]: c["image"] for c in cases}
            probe_images.update(by_id)
            s = _option_scores(enc, cases, lambda c: ("probe", c["id"]), lambda c: c["options"],
                               load=lambda key, by_id=by_id: by_id[key[1]])
            correct = rules.sugarcrepe_correct(s[:, 1], s[:, 0])
            for probe_kind in COMPOSE_KINDS:
                mask = np.array([c["kind"] == probe_kind for c in cases])
                metrics[f"probe_{probe_kind}"] = _accuracy_metric(correct[mask])
                record(kind, probe_kind, correct[mask], s[mask], [c["options"] for c in cases if c["kind"] == probe_kind],
                       1, [c["id"] for c in cases if c["kind"] == probe_kind])
            pairs_for_text += [tuple(c["options"][::-1]) for c in cases]
            n_cases += len(cases)
        elif kind == "mmvp":  # the MMVP-VLM rule of blindpairs, with this run's once-per-item encodings
            from clipscope.analysis.blindpairs import score_pairs
            from clipscope.data.mmvp import load_mmvp, targets_of

            pairs = load_mmvp(path)
            img = enc.images([(p, None) for pr in pairs for p in pr["images"]]).reshape(len(pairs), 2, -1)
            txt = enc.texts([t for pr in pairs for t in pr["statements"]]).reshape(len(pairs), 2, -1)
            patterns = [pr["pattern"] for pr in pairs]
            res = score_pairs(img, txt, patterns, logit_scale=encoder.logit_scale, targets=targets_of(pairs))
            metrics["mmvp_pair_accuracy_mean"] = metric(res["mean"], detail=f"{len(pairs)} pairs")
            for pattern in sorted(set(patterns)):
                mask = np.array(patterns) == pattern
                category(kind, pattern, res["correct"][mask], 0)
            n_cases += len(pairs)
        else:  # winoground
            cases = load_winoground(path)
            img = enc.images([(p, None) for c in cases for p in c["images"]]).reshape(len(cases), 2, -1)
            txt = enc.texts([t for c in cases for t in c["captions"]]).reshape(len(cases), 2, -1)
            S = np.einsum("ncd,nid->nci", txt, img)  # S[k, caption, image]
            pairs_for_text += [tuple(c["captions"]) for c in cases]
            res = rules.winoground_scores(S)
            for score in ("text", "image", "group"):
                metrics[f"winoground_{score}"] = _accuracy_metric(res[score])
                metrics[f"winoground_{score}"]["detail"] += f" (chance {CHANCE[f'winoground_{score}']:.3g})"
            tags = [c["tag"] or "untagged" for c in cases]
            for tag in sorted(set(tags)):  # accuracy: the group score; text and image scores beside it
                mask = np.array(tags) == tag
                category(kind, tag, res["group"][mask], rules.winoground_ties(S[mask]).sum(),
                         text=float(res["text"][mask].mean()), image=float(res["image"][mask].mean()))
            n_cases += len(cases)
    scored_captions = len(enc.text)  # the text-side diagnostics below encode shuffled captions too
    metrics.update(_text_side(enc, pairs_for_text, [t for t in captions or []], seed))
    failures.sort(key=lambda r: -r["margin"])
    calls = enc.calls["text_batches"] + enc.calls["image_batches"]
    notes.append(f"{n_cases} cases: {len(enc.image)} unique images and {scored_captions} unique captions, each encoded "
                 f"once; with the text-side diagnostics' {len(enc.text) - scored_captions} perturbed captions, "
                 f"{calls} encoder calls of up to {batch_size}")
    notes.append("ci95: Wilson intervals over cases; macro accuracies (families, ARO) have none")
    return TaskResult(metrics, {"categories": categories, "hardest_failures": failures[:top_failures]}, notes,
                      config={"benchmarks": [f"{k}:{p}" for k, p in benchmarks], "top_failures": top_failures,
                              "extra_captions": len(captions or [])},
                      counts={"cases": n_cases, "unique_images": len(enc.image), "unique_captions": scored_captions,
                              "encoder_calls": calls},
                      plot_data={"categories": categories,
                                 "failures": _failure_thumbnails(failures[:CONTACT_SHEET], probe_images)})


CONTACT_SHEET = 8


def _failure_thumbnails(rows: list[dict], probe_images: dict) -> list[tuple]:
    """(image, caption) for the hardest failures whose image can be shown."""
    from clipscope.data import open_image_file

    out = []
    for r in rows:
        try:
            im = probe_images.get(r["image"]) or open_image_file(r["image"])
        except (OSError, ValueError):
            continue
        im = im.copy()
        im.thumbnail((160, 160))
        out.append((im, f"{r['benchmark']}: {r['category']}\ntrue: {r['caption']}\nchose: {r['chosen']}"))
    return out


def figures(result: TaskResult, out_dir: Path, title: str, *, plots=None, **_) -> dict:
    """One bar chart of category accuracies per benchmark, and a contact sheet of the hardest
    failures (image, true caption, chosen caption)."""
    from clipscope.report import plots as plotting

    plots = plots or plotting
    out = {}
    by_kind: dict[str, dict] = {}
    for row in result.plot_data["categories"]:
        by_kind.setdefault(row["benchmark"], {})[row["category"]] = row["accuracy"]
    for kind, values in by_kind.items():
        name = f"compose_{kind.replace('-', '_')}.png"
        out[kind] = plots.bars(values, out_dir / name, title=f"{kind}: accuracy per category: {title}",
                               ylabel="accuracy")
    thumbs = result.plot_data.get("failures") or []
    if thumbs:
        out["failures"] = plots.image_grid([t[0] for t in thumbs], [t[1] for t in thumbs],
                                           out_dir / "compose_failures.png",
                                           title=f"Hardest failures (largest margin for the wrong caption): {title}")
    return {k: Path(v).name for k, v in out.items()}


def run(ctx, cache, *, benchmark, images, captions, top_failures):
    """The run's model on benchmark files (and the run's --data captions for the text side)."""
    from clipscope.report import model_block

    if cache is not None:
        raise UsageError("compose scores a model on benchmark files: give --model and --benchmark, not a cache")
    benchmarks = parse_benchmarks([benchmark] if isinstance(benchmark, str) else benchmark)
    if not ctx.model:
        raise UsageError("compose scores a model: give --model (and --pretrained)")
    lines = None
    if captions is not None:  # a plain text file, one caption per line, for the text-side diagnostics
        try:
            lines = [t.strip() for t in Path(captions).read_text(encoding="utf-8").splitlines() if t.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ClipscopeError(f"--captions {captions}: cannot read it as UTF-8 text ({e})") from None
    if ctx.data:  # a data source's captions feed the text-side diagnostics as well
        lines = (lines or []) + list(ctx.source(ctx.data).texts or [])
    encoder = ctx.encoder()
    result = evaluate(encoder, benchmarks, images=images, captions=lines, batch_size=ctx.batch_size,
                      top_failures=top_failures, seed=ctx.seed)
    title = title_of(encoder.provenance, ", ".join(k for k, _ in benchmarks))
    return ctx.report(result, model=model_block(encoder.provenance),
                      data={"spec": "; ".join(f"{k}:{p}" for k, p in benchmarks), "counts": {}},
                      figures=lambda plots, d: figures(result, d, title, plots=plots))


COMMAND = Command(
    name="compose", order=70, run=run, inputs="model", suite_data=False,
    help="Compositional benchmarks: SugarCrepe, ARO, Winoground.",
    doc="""Compositional understanding: how often the model prefers the right caption over one with
    the same words recombined (SugarCrepe, ARO VG-Relation / VG-Attribution / order, Winoground,
    and built-in two-object probes), each scored with its reference's rule, ties included, plus
    text-side diagnostics. Files are read locally, never downloaded.

    \b
    Examples:
      clipscope compose --model clipscope-tiny --benchmark probes --out runs/compose
      clipscope compose --model ViT-B-32 --pretrained openai --benchmark sugarcrepe:sugar-crepe/data \\
          --images coco/val2017 --out runs/compose
      clipscope compose --model ViT-B-32 --pretrained openai --benchmark winoground:winoground \\
          --benchmark aro-relation:aro/visual_genome_relation.json --out runs/compose
    """,
    options=(
        Option("benchmark", multiple=True, required=True, metavar="NAME:PATH", default=(), show_default=False,
               help="Repeatable: sugarcrepe:DATA_DIR, aro-relation:FILE, aro-attribution:FILE, aro-order:KARPATHY_JSON, "
                    "winoground:DIR, mmvp:DIR (MMVP-VLM, scored as blindpairs does), or "
                    "probes[:N] (built-in two-object scenes, N per kind; offline)."),
        Option("images", kind="dir", show_default=False,
               help="Image root: COCO val2017 for SugarCrepe; for aro-order the Karpathy paths' root (default: the "
                    "file's folder)."),
        Option("captions", kind="path", show_default=False,
               help="A text file of captions (one per line) for the text-side diagnostics (--data's captions count "
                    "too)."),
        Option("top_failures", kind="int", default=20, min=0, help="Rows of the hardest-failures table."),
    ),
    summary=("probe_binding", "probe_spatial", "probe_counting", "probe_word_order", "sugarcrepe_replace", "sugarcrepe_swap", "sugarcrepe_add", "aro_relation", "aro_attribution",
           "winoground_text", "winoground_image", "winoground_group"),
    outputs=("`compose.json` (metrics `sugarcrepe_<subset>` and `sugarcrepe_<family>`, `aro_relation`, "
            "`aro_attribution`, `winoground_text`, `winoground_image`, `winoground_group`, "
            "`mmvp_pair_accuracy_mean`; tables `categories` (objects with `benchmark`, `category`, `accuracy`, "
            "`n`, `ties`) and `hardest_failures`; counts of cases, unique images and captions, encoder calls) and"
            " one PNG per benchmark, `compose_<benchmark>.png`."),
    docs=DOCS,
)
