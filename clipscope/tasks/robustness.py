"""`robustness`: zero-shot accuracy under corruptions, embedding drift, calibration, OOD (MCM)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from clipscope.analysis import metric
from clipscope.analysis.calibration import (
    auroc,
    expected_calibration_error,
    fpr_at_tpr,
    mcm_score,
    negative_log_likelihood,
    softmax,
)
from clipscope.errors import ClipscopeError, UsageError
from clipscope.linalg import l2_normalize
from clipscope.registry import Command, Option
from clipscope.robustness.mce import corruption_errors, is_imagenet_val
from clipscope.tasks import TaskResult, title_of

DEFAULT_TEMPLATES = ("a photo of a {c}.",)
DOCS = """## Published numbers to check a setup against

Zero-shot top-1 accuracy (%) of ViT-B-32 with `--pretrained openai`, OpenAI's 80 templates
ensembled, the model's own preprocessing, from CLIP_benchmark's published results
(LAION-AI/CLIP_benchmark `benchmark/benchmark.csv`, commit `48de38c`). A run of
`clipscope robustness --model ViT-B-32 --pretrained openai --benchmark imagenet:VAL --benchmark imagenet-v2:DIR ...
--max-images 0` evaluates the same way (`--max-images 0`: every image) and reports fractions
(`accuracy_imagenet`, `accuracy_imagenet_v2`, ...).

| ImageNet val | ImageNet-V2 | ImageNet-Sketch | ImageNet-R | ImageNet-A |
|---|---|---|---|---|
| 63.33 | 55.96 | 42.30 | 69.32 | 31.37 |

ImageNet-R and ImageNet-A are scored over their 200 classes, as there. Compare these with
`accuracy_imagenet...` or `accuracy_zero_shot` (the model's own preprocessing), never with
`accuracy_clean` (the ImageNet-C view: 256/224 crop first).

ImageNet-C: the mCE is defined by Hendrycks & Dietterich 2019 (ICLR)
(errors normalised by AlexNet's, `clipscope/robustness/mce.py`); the CLIP paper (Radford et al.
2021) publishes no ImageNet-C mCE for ViT-B/32, and no primary copy of another table with one
could be read on the machine this page was written on, so none is cited.
`python benchmarks/published_numbers.py --imagenet-c DIR --imagenet-val VAL` computes it (and the
relative mCE) from the real weights and the published images.
"""
CROP = 224


def parse_corruptions(value: str) -> list[str]:
    from clipscope.robustness import CORRUPTIONS

    if value in ("all", ""):
        return list(CORRUPTIONS)
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in CORRUPTIONS]
    if bad:
        raise ClipscopeError(f"unknown corruption(s) {', '.join(bad)}; choose from {', '.join(CORRUPTIONS)} or 'all'")
    return names


def parse_severities(value: str) -> list[int]:
    try:
        if "-" in value:
            lo, hi = (int(v) for v in value.split("-"))
            out = list(range(lo, hi + 1))
        else:
            out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ClipscopeError(f"--severities {value!r}: use a range like 1-5 or a list like 1,3,5") from None
    if not out or any(s < 1 or s > 5 for s in out):
        raise ClipscopeError(f"--severities {value!r}: severities run from 1 to 5")
    return out


def read_templates(value: str | None, imagenet: bool = False) -> tuple[list[str], str]:
    """Prompt templates and their name: ``openai`` (80) or ``simple`` (7) ImageNet templates,
    a file (one per line with ``{c}``), or, by default, OpenAI's 80 on ImageNet classes and
    ``a photo of a {c}.`` elsewhere."""
    from clipscope.data import imagenet as inet

    if value in (None, "", "auto"):
        return (inet.templates("openai"), "openai") if imagenet else (list(DEFAULT_TEMPLATES), "default")
    if value in ("openai", "simple"):
        return inet.templates(value), value
    path = value
    if not Path(path).is_file():
        raise ClipscopeError(f"--templates {path}: use openai, simple or a file of templates (no such file)")
    try:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    except UnicodeDecodeError:
        raise ClipscopeError(f"--templates {path} is not UTF-8 text; save the templates as UTF-8") from None
    if not lines or any("{c}" not in ln for ln in lines):
        raise ClipscopeError(f"--templates {path}: one template per line, each with {{c}} for the class name")
    for n, line in enumerate(lines, 1):
        try:
            line.format(c="x")
        except (KeyError, IndexError, ValueError) as e:
            raise ClipscopeError(f"--templates {path}: template {n} ({line!r}) has a placeholder other than {{c}} "
                                 f"({type(e).__name__}: {e}); write literal braces as {{{{ and }}}}") from None
    return lines, f"file {Path(path).name}"


def class_embeddings(encoder, classnames: list[str], templates: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot classifier as CLIP_benchmark builds it: each prompt normalised, averaged over
    templates, renormalised. Returns (ensemble (C, D), per-template (T, C, D))."""
    per = np.stack([encoder.embed_texts([t.format(c=c) for c in classnames], len(classnames)) for t in templates])
    return l2_normalize(per.mean(0)), per


def _crop224(img):
    """ImageNet-C protocol: shorter side to 256, centre crop 224. Images smaller than 256 px
    (e.g. the 128-px probes) are resized to 224 on the shorter side instead, so the crop does
    not cut off content that was never there to spare."""
    from torchvision.transforms import functional as TF

    img = TF.resize(img, 256 if min(img.size) >= 256 else CROP)
    return TF.center_crop(img, CROP)


def _encode_tensor_batch(encoder, x) -> np.ndarray:
    """Encode a (B, 3, 224, 224) [0, 1] batch through the model's own preprocessing."""
    import torch
    from PIL import Image

    pil = [Image.fromarray(a) for a in (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()]
    return encoder.embed_pil(pil)


def _template_detail(templates: list[str]) -> str:
    """The template set a zero-shot number was computed with, as it ran (not as documented)."""
    from clipscope.data import imagenet as inet

    for kind, label in (("openai", "OpenAI's"), ("simple", "the simple")):
        if list(templates) == inet.templates(kind):
            return f"{label} {len(templates)} ImageNet templates"
    return f"{len(templates)} template(s), first {templates[0]!r}"


def _encode_originals(encoder, source, rows, batch_size: int) -> np.ndarray:
    """The images ``rows`` of ``source`` through the model's own preprocessing alone."""
    return np.concatenate([encoder.embed_pil([source.load_image(int(r)) for r in rows[i:i + batch_size]])
                           for i in range(0, len(rows), batch_size)])


def _load_crops(source, max_images: int | None, seed: int):
    import torch
    from torchvision.transforms import functional as TF

    idx = np.arange(len(source.image_ids))
    if max_images and len(idx) > max_images:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_images, replace=False))
    crops, keep = [], []
    for i in idx:
        try:
            crops.append(TF.to_tensor(_crop224(source.load_image(int(i)))))
            keep.append(i)
        except Exception:  # unreadable inputs are skipped, as in extraction
            continue
    if not crops:
        raise ClipscopeError(f"no readable images in {source.spec}")
    return torch.stack(crops), np.asarray(keep)


def evaluate(encoder, source, *, corruptions: list[str], severities: list[int], templates: list[str],
             ood_source=None, batch_size: int = 64, max_images: int | None = 1000, seed: int = 0,
             progress: bool = True, baseline: dict | None = None, published: bool = True,
             frost_dir=None) -> TaskResult:
    """Zero-shot robustness of ``encoder`` on ``source``. ``baseline``: another robustness
    report whose errors normalise the corruption errors (mCE); without one, on the 1,000-class
    ImageNet validation set, AlexNet's published errors do. ``published``: corrupted images go
    through the published set's uint8 truncation and JPEG q85 round trip; ``frost_dir``: the
    reference's frost photographs (else a procedural frost texture)."""
    from tqdm import tqdm

    from clipscope.robustness import corrupt_batch

    if source.labels is None or not source.classnames:
        raise ClipscopeError(f"robustness needs labelled data (folder:DIR, a captions file with a label column, or "
                             f"probes); {source.spec} has no labels")
    if not encoder.has_text:
        raise ClipscopeError("robustness needs a model with a text tower for zero-shot classification")
    crops, rows = _load_crops(source, max_images, seed)
    labels = source.labels[rows]
    classes, per_template = class_embeddings(encoder, source.classnames, templates)
    scale = encoder.logit_scale

    def encode_all(x):
        return np.concatenate([_encode_tensor_batch(encoder, x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    clean = encode_all(crops)
    sims = clean @ classes.T
    predicted = {"clean": sims.argmax(1)}
    acc_clean = float((predicted["clean"] == labels).mean())
    # the model's own preprocessing of the original images, as CLIP_benchmark and published numbers do
    own = _encode_originals(encoder, source, rows, batch_size)
    predicted["zero_shot"] = (own @ classes.T).argmax(1)
    acc_own = float((predicted["zero_shot"] == labels).mean())
    probs = softmax(scale * sims)
    ece, reliability = expected_calibration_error(probs, labels)
    nll = negative_log_likelihood(probs, labels)

    table = []
    strip = {}
    row_drift = np.zeros(len(crops))  # per image: cosine(clean, corrupted) summed over the cells
    total = len(corruptions) * len(severities) * ((len(crops) + batch_size - 1) // batch_size)
    bar = tqdm(total=total, desc="corruptions", unit="batch", file=sys.stderr, disable=not progress, leave=False)
    for ci, name in enumerate(corruptions):
        for sev in severities:
            feats = []
            for bi, i in enumerate(range(0, len(crops), batch_size)):
                rng = np.random.default_rng([seed, ci, sev, bi])
                xb = corrupt_batch(crops[i:i + batch_size].to(encoder.device), name, sev, rng, published=published,
                                   frost_dir=frost_dir)
                if bi == 0 and sev == max(severities):
                    strip[name] = (xb[0].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
                feats.append(_encode_tensor_batch(encoder, xb))
                bar.update(1)
            feats = np.concatenate(feats)
            row_cos = np.einsum("ij,ij->i", feats, clean)
            row_drift += row_cos
            cell_pred = (feats @ classes.T).argmax(1)
            predicted[f"{name}/{sev}"] = cell_pred
            table.append({"corruption": name, "severity": sev, "accuracy": float((cell_pred == labels).mean()),
                          "drift": float(row_cos.mean())})
    bar.close()
    mean_corr = float(np.mean([r["accuracy"] for r in table])) if table else float("nan")
    from clipscope.analysis.geometry import wilson_interval

    metrics = {
        "accuracy_zero_shot": metric(acc_own, ci95=wilson_interval(acc_own, len(labels)), n=len(labels),
                                     detail=f"{len(labels)} images; {_template_detail(templates)}"),
        "accuracy_clean": metric(acc_clean, ci95=wilson_interval(acc_clean, len(labels)), n=len(labels),
                                 detail=f"{len(labels)} images, 256/224 crops; {_template_detail(templates)}"),
        "mean_corruption_accuracy": metric(mean_corr, detail=f"{len(table)} corruption cells"),
        "relative_drop": metric((acc_clean - mean_corr) / acc_clean if acc_clean > 0 else None),
        "mean_drift": metric(float(np.mean([r["drift"] for r in table])) if table else None),
        "ece": metric(ece),
        "nll": metric(nll),
    }
    notes = [f"{len(crops)} images (224-pixel centre crops, ImageNet-C protocol; images under 256 px resized to 224 "
             f"without loss); {len(templates)} template(s); "
             f"logit scale {scale:.2f}"]
    tables = {"corruptions": table, "reliability": reliability,
              # per image, for `clipscope export`: what each protocol and corruption cell predicted
              "predictions": [{"id": source.image_ids[int(r)], "label": source.classnames[int(labels[j])],
                               **{k: source.classnames[int(v[j])] for k, v in predicted.items()}}
                              for j, r in enumerate(rows)]}
    if table:  # per image, for `clipscope export`: its mean clean-vs-corrupted cosine over the cells
        tables["per_image_drift"] = [{"id": source.image_ids[int(i)], "drift": float(d / len(table))}
                                     for i, d in zip(rows, row_drift)]
    if len(templates) > 1:
        accs = [float(((clean @ t.T).argmax(1) == labels).mean()) for t in per_template]
        tables["templates"] = [{"template": t, "accuracy": a} for t, a in zip(templates, accs)]
        metrics["prompt_accuracy_std"] = metric(float(np.std(accs)), detail=f"{len(accs)} templates")
        metrics["prompt_accuracy_range"] = metric(float(np.max(accs) - np.min(accs)), detail=f"{len(accs)} templates")
    if baseline is not None or is_imagenet_val(source):
        b_table = None if baseline is None else baseline["tables"].get("corruptions", [])
        b_clean = None if baseline is None else baseline["metrics"]["accuracy_clean"]["value"]
        ce_rows, mce, rel = corruption_errors(table, acc_clean, baseline_table=b_table, baseline_clean_accuracy=b_clean,
                                              alexnet=baseline is None)
        against = (f"the baseline {baseline['model']['name']} (pretrained: {baseline['model']['pretrained']})"
                   if baseline is not None else "AlexNet's published errors")
        tables["corruption_errors"] = ce_rows
        metrics["mce"] = metric(mce, detail=f"the baseline: {against}")
        metrics["relative_mce"] = metric(rel, detail=f"the baseline: {against}")
        if any(not np.isfinite(r["relative_ce"]) for r in ce_rows):
            notes.append("relative mCE: the baseline's accuracy did not drop under some corruption, so its "
                         "degradation is zero and the relative CE is undefined there (reported as null)")
        if not ce_rows:
            notes.append("mCE: no corruption has baseline errors for the cells that were run "
                         "(AlexNet's need all five severities)")
    plot = {"table": table, "reliability": reliability, "strip": strip, "clean_strip": (crops[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)}
    if ood_source is not None:
        ood_crops, _ = _load_crops(ood_source, max_images, seed)
        ood = encode_all(ood_crops)
        id_s, ood_s = mcm_score(clean, classes), mcm_score(ood, classes)
        metrics["ood_auroc"] = metric(auroc(id_s, ood_s), detail=f"OOD: {ood_source.spec}")
        metrics["ood_fpr95"] = metric(fpr_at_tpr(id_s, ood_s), detail=f"OOD: {ood_source.spec}")
        plot["ood"] = (id_s, ood_s)
        notes.append(f"OOD: {ood_source.spec}, {len(ood_crops)} images")
    counts = {"images": len(crops), "classes": len(source.classnames)}
    config = {"corruptions": corruptions, "severities": severities, "templates": templates, "max_images": max_images,
              "jpeg_round_trip": published, "frost": "reference photographs" if frost_dir else "procedural texture",
              "ood_data": ood_source.spec if ood_source is not None else None,
              "baseline": bool(baseline)}
    if "frost" in corruptions and not frost_dir:
        notes.append("frost uses a procedural texture, not the reference's photographs (pass --frost-dir with "
                     "hendrycks/robustness ImageNet-C/create_c/frost*.png|jpg for the published frost)")
    return TaskResult(metrics, tables, notes, config=config, counts=counts, plot_data=plot)


def figures(result: TaskResult, out_dir: Path, title: str, *, plots=None, **_) -> dict:
    """Lay out the figures on ``plots`` (the plotting module, or a recorder of figure specs)."""
    from clipscope.report import plots as plotting

    plots = plots or plotting

    d = result.plot_data
    out = {}
    table = d.get("table")
    if d.get("published"):
        pub = d["published"]
        clean = d.get("published_clean")
        if clean is None:
            clean = result.metrics.get("accuracy_clean", {}).get("value")
        out["published"] = plots.bars(pub, out_dir / "robustness_published.png", ylabel="zero-shot top-1 accuracy",
                                      title=f"Published sets and ImageNet-C families vs clean accuracy "
                                            f"({'n/a' if clean is None else f'{clean:.3f}'}): {title}")
    if table:
        sevs = sorted({r["severity"] for r in table})
        names = list(dict.fromkeys(r["corruption"] for r in table))
        acc = {n: [next(r["accuracy"] for r in table if r["corruption"] == n and r["severity"] == s) for s in sevs] for n in names}
        out["accuracy_vs_severity"] = plots.lines(sevs, acc, out_dir / "robustness_accuracy.png",
                                                  title=f"Zero-shot accuracy under corruption: {title}",
                                                  xlabel="severity", ylabel="accuracy")
        drift = np.array([[next(r["drift"] for r in table if r["corruption"] == n and r["severity"] == s) for s in sevs]
                          for n in names])
        out["drift_heatmap"] = plots.heatmap(drift, names, [str(s) for s in sevs], out_dir / "robustness_drift.png",
                                             title=f"Cosine(clean, corrupted) embedding: {title}", cbar="mean cosine")
        imgs = [d["clean_strip"]] + [d["strip"][n] for n in names]
        out["corruption_strip"] = plots.image_grid(imgs, ["clean"] + names, out_dir / "robustness_strip.png",
                                                   title=f"One image under every corruption (severity {max(sevs)})",
                                                   ncols=min(8, len(imgs)))
    if "reliability" not in d:
        return {k: Path(v).name for k, v in out.items()}
    out["reliability"] = plots.reliability(d["reliability"], out_dir / "robustness_reliability.png",
                                           title=f"Reliability diagram (ECE {result.metrics['ece']['value']:.3f}; "
                                                 f"images per bin above the bars): {title}")
    if "ood" in d:
        out["ood_scores"] = plots.histogram({"in-distribution": d["ood"][0], "out-of-distribution": d["ood"][1]},
                                            out_dir / "robustness_ood.png", title=f"MCM scores: {title}",
                                            xlabel="MCM score (max softmax of cosines, T = 1)")
    return {k: Path(v).name for k, v in out.items()}




# The published evaluation sets (--benchmark NAME:DIR).
BENCHMARKS = ("imagenet", "imagenet-c", *("imagenet-v2", "imagenet-sketch", "imagenet-r", "imagenet-a"))


def parse_benchmarks(values) -> list[tuple[str, Path]]:
    out = []
    for v in values or ():
        name, _, path = str(v).partition(":")
        if name not in BENCHMARKS or not path:
            raise ClipscopeError(f"--benchmark {v}: use NAME:DIR with NAME one of {', '.join(BENCHMARKS)}")
        out.append((name, Path(path).expanduser()))
    return out


def _sample(n: int, max_images: int | None, seed) -> np.ndarray:
    idx = np.arange(n)
    if max_images and n > max_images:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_images, replace=False))
    return idx


class _ZeroShot:
    """ImageNet zero-shot classifiers (template ensembles), built once per class and shared by
    every set; a set with a class subset has its logits restricted to it."""

    def __init__(self, encoder, templates: list[str], batch_size: int):
        self.encoder, self.templates, self.batch_size = encoder, templates, batch_size
        self.rows: dict[str, np.ndarray] = {}

    def classifier(self, ids) -> np.ndarray:
        from clipscope.data import imagenet as inet

        todo = [w for w in ids if w not in self.rows]
        for i in range(0, len(todo), 100):
            chunk = todo[i:i + 100]
            emb, _ = class_embeddings(self.encoder, inet.classnames_of(chunk), self.templates)
            self.rows.update(zip(chunk, emb))
        return np.stack([self.rows[w] for w in ids])

    def accuracy(self, paths: list[Path], labels: list[str], subset) -> tuple[float, int, int]:
        """Top-1 accuracy over ``subset``'s classes; unreadable files are skipped and counted."""
        import torch

        from clipscope.data import open_image_file

        W = self.classifier(subset)
        index = {w: k for k, w in enumerate(subset)}
        correct, n, skipped = 0, 0, 0
        for i in range(0, len(paths), self.batch_size):
            pixels, y = [], []
            for p, w in zip(paths[i:i + self.batch_size], labels[i:i + self.batch_size]):
                try:
                    pixels.append(self.encoder.preprocess(open_image_file(p)))
                    y.append(index[w])
                except Exception:  # noqa: BLE001 - unreadable inputs are skipped, as in extraction
                    skipped += 1
            if pixels:
                f = self.encoder.embed_images(torch.stack(pixels))
                correct += int(((f @ W.T).argmax(1) == np.asarray(y)).sum())
                n += len(y)
        return (correct / n if n else float("nan")), n, skipped


def evaluate_published(encoder, benchmarks: list[tuple[str, Path]], *, templates: list[str], batch_size: int = 64,
                       max_images: int | None = 1000, seed: int = 0, progress: bool = True) -> TaskResult:
    """Zero-shot accuracy on the published ImageNet sets found on disk: ImageNet val
    (``imagenet``), the natural shifts (V2, Sketch, R, A; R and A over their 200 classes), and
    ImageNet-C's corruption and severity cells, with mCE against AlexNet's published errors.
    ``max_images`` caps each set and each ImageNet-C cell (a seeded sample)."""
    from tqdm import tqdm

    from clipscope.analysis.geometry import wilson_interval
    from clipscope.data import imagenet as inet

    zs = _ZeroShot(encoder, templates, batch_size)
    metrics, tables, notes, accs = {}, {}, [], {}
    names = [n for n, _ in benchmarks]
    if len(set(names)) != len(names):
        raise ClipscopeError("give each --benchmark set once")
    bar = tqdm(total=len(benchmarks), desc="benchmarks", unit="set", file=sys.stderr, disable=not progress, leave=False)
    for k, (name, root) in enumerate(benchmarks):
        if name == "imagenet-c":
            continue
        paths, ids = inet.class_folder_set(root, "imagenet" if name == "imagenet" else name)
        idx = _sample(len(paths), max_images, [seed, k])
        acc, n, skipped = zs.accuracy([paths[i] for i in idx], [ids[i] for i in idx], inet.subset_wnids(name))
        key = "accuracy_" + name.replace("-", "_")
        accs[name] = acc
        subset = len(inet.subset_wnids(name))
        metrics[key] = metric(acc, ci95=wilson_interval(acc, n), n=n,
                              detail=f"{n} images{f' sampled of {len(paths)}' if len(idx) < len(paths) else ''}; "
                                     f"logits over its {subset} classes; {_template_detail(templates)}")
        if skipped:
            notes.append(f"{name}: {skipped} unreadable image(s) skipped")
        bar.update(1)
    shifts = [s for s in inet.SHIFTS if s in accs]
    if shifts:
        metrics["mean_shift_accuracy"] = metric(float(np.mean([accs[s] for s in shifts])), detail=", ".join(shifts))
        if "imagenet" in accs:
            for s in shifts:
                metrics["shift_drop_" + s.replace("-", "_")] = metric(accs["imagenet"] - accs[s], detail=s)
            metrics["mean_shift_drop"] = metric(accs["imagenet"] - metrics["mean_shift_accuracy"]["value"],
                                                detail="the mean over " + ", ".join(shifts))
    if "imagenet-c" in names:
        root = dict(benchmarks)["imagenet-c"]
        cells, ignored = inet.imagenet_c_cells(root)
        rows, unreadable = [], 0
        for (c, s), folder in cells.items():
            paths, ids = inet.class_folder_set(folder, "imagenet")
            idx = _sample(len(paths), max_images, [seed, 1000 + len(rows)])
            acc, n, skipped = zs.accuracy([paths[i] for i in idx], [ids[i] for i in idx], inet.wnids())
            rows.append({"corruption": c, "severity": s, "accuracy": acc, "n": n})
            unreadable += skipped
        bar.update(1)
        tables["imagenet_c"] = rows
        from clipscope.robustness.corruptions import CORRUPTIONS

        standard = [r for r in rows if r["corruption"] in CORRUPTIONS]
        covered = f"{len(standard)} of the {5 * len(CORRUPTIONS)} cells (15 corruptions x 5 severities)"
        metrics["imagenet_c_mean_accuracy"] = metric(
            float(np.mean([r["accuracy"] for r in standard])) if standard else float("nan"),
            coverage={"cells": len(standard), "of": 5 * len(CORRUPTIONS)}, detail=covered)
        if ignored:
            notes.append(f"ImageNet-C: folder(s) {', '.join(ignored)} are not ImageNet-C corruptions and were left out")
        extra = sorted({r["corruption"] for r in rows} - set(CORRUPTIONS))
        if extra:
            notes.append(f"ImageNet-C: the held-out corruption(s) {', '.join(extra)} are in the table, not in the mean "
                         "accuracy")
        if unreadable:
            notes.append(f"imagenet-c: {unreadable} unreadable image(s) skipped")
        clean = accs.get("imagenet", float("nan"))
        ce_rows, mce, rel = corruption_errors(rows, clean, alexnet=True)
        tables["imagenet_c_errors"] = ce_rows
        metrics["imagenet_c_mce"] = metric(mce)
        metrics["imagenet_c_relative_mce"] = metric(rel)
        if not np.isfinite(clean):
            notes.append("imagenet_c_relative_mce needs the clean error: add --benchmark imagenet:VAL_DIR")
        partial = sorted({c for c, _ in cells} - {r["corruption"] for r in ce_rows})
        if partial:
            notes.append(f"ImageNet-C: {', '.join(partial)} not in the mCE (AlexNet's errors need all five severities "
                         "of one of the 15 corruptions)")
    bar.close()
    labels = {"imagenet": "ImageNet val (clean)", "imagenet-v2": "ImageNet-V2", "imagenet-sketch": "ImageNet-Sketch",
              "imagenet-r": "ImageNet-R", "imagenet-a": "ImageNet-A"}
    plot = {"published": {labels[n]: accs[n] for n in labels if n in accs}, "published_clean": accs.get("imagenet")}
    if "imagenet_c" in tables:
        for fam, members in inet.FAMILIES.items():
            got = [r["accuracy"] for r in tables["imagenet_c"] if r["corruption"] in members]
            if got:
                plot["published"][f"C: {fam}"] = float(np.mean(got))
    config = {"benchmarks": [f"{n}:{p}" for n, p in benchmarks], "max_images": max_images}
    return TaskResult(metrics, tables, notes, config=config, counts={"benchmarks": len(benchmarks)}, plot_data=plot)


def run(ctx, cache, *, corruptions, severities, templates, ood_data, max_images, baseline, jpeg_round_trip, frost_dir,
        benchmark):
    """The run's model on its labelled data (corrupted) and/or on published sets on disk."""
    from clipscope.report import load_report, model_block

    if cache is not None:
        raise UsageError("robustness runs the model on images: give --model and --data, not a cache")
    benchmarks = parse_benchmarks([benchmark] if isinstance(benchmark, str) else benchmark)
    if not ctx.model or not (ctx.data or benchmarks):
        raise UsageError("robustness runs a model on images: give --model and --data (labelled) and/or "
                         "--benchmark NAME:DIR")
    names = parse_corruptions(corruptions) if isinstance(corruptions, str) else list(corruptions)
    sevs = parse_severities(severities) if isinstance(severities, str) else list(severities)
    if baseline is not None and not isinstance(baseline, dict):
        path = baseline
        baseline = load_report(path, validate=True)
        if baseline["command"] != "robustness" or "accuracy_clean" not in baseline["metrics"]:
            raise ClipscopeError(f"--baseline {path} is not a robustness report; pass the robustness.json of the "
                                 "baseline model")
    source = ctx.source(ctx.data) if ctx.data else None
    tmpl, tmpl_name = read_templates(templates, imagenet=source is None or source.class_naming == "imagenet")
    ood = ctx.source(ood_data) if ood_data else None
    encoder = ctx.encoder()
    parts = []
    if source is not None:
        parts.append(evaluate(encoder, source, corruptions=names, severities=sevs, templates=tmpl, ood_source=ood,
                              batch_size=ctx.batch_size, max_images=max_images, seed=ctx.seed, progress=ctx.progress,
                              baseline=baseline, published=jpeg_round_trip, frost_dir=frost_dir))
    if benchmarks:
        parts.append(evaluate_published(encoder, benchmarks, templates=tmpl, batch_size=ctx.batch_size,
                                        max_images=max_images, seed=ctx.seed, progress=ctx.progress))
    result = parts[0]
    for more in parts[1:]:
        result.merge(more)
    result.config.update(template_set=tmpl_name, templates=tmpl,
                         class_names=(source.class_naming or source.kind) if source is not None else "imagenet")
    spec = source.spec if source is not None else ", ".join(f"{n}:{p}" for n, p in benchmarks)
    title = title_of(encoder.provenance, spec)
    data = ({"spec": source.spec, "fingerprint": source.fingerprint, "counts": source.counts()} if source is not None
            else {"spec": spec, "counts": {}})
    return ctx.report(result, model=model_block(encoder.provenance), data=data,
                      figures=lambda plots, d: figures(result, d, title, plots=plots))



def row_values(report, cache, rows) -> dict:
    """Per image: its clean-vs-corrupted cosine and what the model predicted for it."""
    tables = (report or {}).get("tables", {})
    drift = rows.images({r["id"]: r["drift"] for r in tables.get("per_image_drift") or []})
    predicted = rows.images({r["id"]: r for r in tables.get("predictions") or []})

    def still_right(p):
        cells = [v for c, v in (p or {}).items() if "/" in c]  # the corruption/severity cells
        return float(np.mean([v == p["label"] for v in cells])) if cells else None

    return {"corruption_cosine": (drift, None),
            "zero_shot_prediction": ([p and p.get("zero_shot") for p in predicted], None),
            "corruption_correct_share": ([still_right(p) for p in predicted], None)}


COMMAND = Command(
    name="robustness", order=50, run=run, inputs="model",
    help="Corruptions, accuracy drop, drift, calibration, OOD.",
    doc="""Zero-shot robustness: accuracy under the 15 ImageNet-C corruptions, embedding drift,
    calibration (ECE, NLL) and OOD detection (MCM).

    \b
    Examples:
      clipscope robustness --model clipscope-tiny --data probes:300 --corruptions fog,contrast --out runs/rob
      clipscope robustness --model ViT-B-32 --data folder:./val --ood-data folder:./ood --out runs/rob
      clipscope robustness --model ViT-B-32 --pretrained openai --benchmark imagenet:./val \\
          --benchmark imagenet-r:./imagenet-r --benchmark imagenet-c:./ImageNet-C --out runs/rob
    """,
    options=(
        Option("corruptions", default="all", help="'all' or a comma list, e.g. gaussian_noise,fog."),
        Option("severities", default="1-5", help="A range (1-5) or a list (1,3,5)."),
        Option("templates", metavar="openai|simple|FILE", show_default=False,
               help="Prompt templates, ensembled as CLIP_benchmark does: OpenAI's 80 ImageNet templates, the 7 simple "
                    "ones, or a file (one per line with {c}). Default: openai on ImageNet classes, else 'a photo of a "
                    "{c}.'."),
        Option("benchmark", multiple=True, metavar="NAME:DIR", default=(), show_default=False,
               help="Repeatable: a published set on disk: imagenet:VAL_DIR, imagenet-v2:DIR, imagenet-sketch:DIR, "
                    "imagenet-r:DIR, imagenet-a:DIR (logits over their 200 classes), imagenet-c:DIR "
                    "(<corruption>/<severity>/<wnid>/). --max-images caps each set and each ImageNet-C cell."),
        Option("ood_data", metavar="SPEC", show_default=False, help="Out-of-distribution images for MCM OOD detection."),
        Option("max_images", kind="int", default=1000, min=0,
               help="Seeded sample of the data, of each --benchmark set and of each ImageNet-C cell; 0: every image "
                    "(benchmarks stream in batches; --data holds its 224-px crops in memory)."),
        Option("baseline", kind="path", metavar="REPORT", show_default=False,
               help="A robustness.json of a baseline model: corruption errors are normalised by its errors (mCE)."),
        Option("jpeg_round_trip", kind="bool", default=True, secondary="--no-jpeg-round-trip",
               help="Truncate to uint8 and JPEG-encode (q85) corrupted images as the published ImageNet-C was made."),
        Option("frost_dir", kind="dir", metavar="DIR", show_default=False,
               help="The reference's frost photographs (frost1.png ... frost6.jpg); default: a procedural texture."),
    ),
    row_columns=(("corruption_cosine", "double", "from robustness.json (per_image_drift): the image's mean cosine between "
                  "its clean and corrupted embeddings over the corruption cells"),
                 ("zero_shot_prediction", "string", "from robustness.json (predictions): the class the model predicts "
                  "for the image through its own preprocessing (CLIP_benchmark's protocol)"),
                 ("corruption_correct_share", "double", "from robustness.json (predictions): the share of corruption "
                  "cells in which the image is still classified correctly")),
    row_values=row_values,
    title_config=(("severities", "severities"),),
    summary=("accuracy_zero_shot", "accuracy_clean", "mean_corruption_accuracy", "relative_drop", "mean_drift", "ece", "nll", "ood_auroc",
             "ood_fpr95"),
    outputs=("`robustness.json` (metrics `accuracy_zero_shot` (the model's own preprocessing: compare this one "
             "with published numbers), `accuracy_clean` (the ImageNet-C view the corruptions start from), "
             "`mean_corruption_accuracy`, `relative_drop`, "
            "`mean_drift`, `ece`, `nll`, with --ood-data `ood_auroc`, `ood_fpr95`, with several templates "
            "`prompt_accuracy_std`, `prompt_accuracy_range`; tables `corruptions` (objects with `corruption`, "
            "`severity`, `accuracy`, `drift`), `reliability`, `templates`) and PNGs `robustness_accuracy.png`, "
            "`robustness_drift.png`, `robustness_strip.png`, `robustness_reliability.png`, `robustness_ood.png`; "
            "table `per_image_drift` (`id`, `drift`: each image's mean clean-vs-corrupted cosine); table "
            "`predictions` (`id`, `label`, `zero_shot`, `clean` and one `corruption/severity` column each: the "
            "predicted class names, which `export` carries). With "
            "--benchmark: metrics `accuracy_imagenet`, `accuracy_imagenet_v2`, `accuracy_imagenet_sketch`, "
            "`accuracy_imagenet_r`, `accuracy_imagenet_a`, `mean_shift_accuracy`, `shift_drop_*`, "
            "`imagenet_c_mean_accuracy`, `imagenet_c_mce`, `imagenet_c_relative_mce`; tables `imagenet_c`, "
            "`imagenet_c_errors`; `robustness_published.png`."),
    docs=DOCS,
)
