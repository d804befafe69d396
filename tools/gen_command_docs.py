"""Write commands/<name>.md from the click definitions plus the outputs described here.

Run after changing a command's options: ``python tools/gen_command_docs.py``.
tests/test_docs.py fails when a page misses a subcommand or an option.
"""

from __future__ import annotations

import sys
from pathlib import Path

import json

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUTPUTS = {
    "extract": "An HDF5 cache at `--out` (layout in the README and `reports/schema/cache.md`); while running, a journal "
               "folder `<out>.partial/` that a rerun resumes from. Exit 0 also when some inputs were unreadable: they "
               "are listed in `/failed` (see `clipscope info CACHE --failed`).",
    "import": "An HDF5 cache at `--out` with the given rows; ids default to the row index.",
    "info": "Provenance and counts on stdout (`--json` for machine-readable output).",
    "gap": "`gap.json` (metrics `centroid_distance`, `centroid_cosine`, `paired_distance`, `paired_cosine`, `rmg`, "
           "`cone_image`, `cone_text`, `linear_separability`; tables `per_dimension_gap`, `shift_sweep`) and PNGs "
           "`gap_projection.png`, `gap_cosines.png`, `gap_dimensions.png`, `gap_shift_sweep.png`. With "
           "`--noise-model`: metrics `noise_sigma`, `noise_gaussian_share`, `noise_mean_abs_skew`, "
           "`noise_mean_excess_kurtosis`, `noisy_centroid_distance`, `noisy_paired_cosine`, "
           "`noisy_linear_separability`; tables `noise_model` (per dimension: `dim`, `mean`, `sd`, `skew`, "
           "`excess_kurtosis`, `normaltest_p`) and `noise_injection`; `gap_noise_model.png`. With `--subregions`: "
           "metrics `subregion_win_share`, `subregion_mean_gain`; table `subregions` (per crop scale); the crop "
           "embeddings stored in the cache as `/image/crops/rows` and `/image/crops/embeddings` (keyed by the "
           "`crops_config` attribute).",
    "uniformity": "`uniformity.json` (metrics `uniformity_image`, `uniformity_text`, `uniformity_union`, "
                  "`uniformity_cross`, `alignment`, `relative_alignment`, each with `exact` and `pairs_used`) and PNGs "
                  "`uniformity_distances.png`, `uniformity_values.png`.",
    "invert": "`invert.json` (metrics `initial_cosine`, `final_cosine`; with labels `image_to_image_*` vs `oti_to_image_*` "
              "or `text_to_text_*` vs `ovi_to_text_*` for map, map_at_r, precision_at_r, recall_at_1; tables "
              "`loss_curve`, `per_class_gain`), PNGs `invert_<mode>_loss.png`, `invert_<mode>_gains.png`; the inverted "
              "features are stored in the cache as `/image/oti_embeddings` or `/text/ovi_embeddings` with "
              "`*_cosine` (first and last step) and `*_curve`.",
    "blindpairs": "`blindpairs.json`. Mining: metrics `n_blind_pairs`, `blind_pair_fraction`, `images_in_blind_pair`, "
                  "`n_clip_similar_pairs`; table `blind_pairs` (objects with `a`, `b`, `clip_cosine`, "
                  "`reference_cosine`, paths when known); `blindpairs_contact_sheet.png`. Benchmark: metrics "
                  "`pair_accuracy_mean` and `pair_accuracy_<pattern>`; tables `pair_scores`, `per_pattern`; PNGs "
                  "`blindpairs_patterns.png`, `blindpairs_examples.png`.",
    "robustness": "`robustness.json` (metrics `accuracy_clean`, `mean_corruption_accuracy`, `relative_drop`, "
                  "`mean_drift`, `ece`, `nll`, with --ood-data `ood_auroc`, `ood_fpr95`, with several templates "
                  "`prompt_accuracy_std`, `prompt_accuracy_range`; tables `corruptions` (objects with `corruption`, "
                  "`severity`, `accuracy`, `drift`), `reliability`, `templates`) and PNGs `robustness_accuracy.png`, "
                  "`robustness_drift.png`, `robustness_strip.png`, `robustness_reliability.png`, `robustness_ood.png`; "
                  "table `per_image_drift` (`id`, `drift`: each image's mean clean-vs-corrupted cosine). With "
                  "--benchmark: metrics `accuracy_imagenet`, `accuracy_imagenet_v2`, `accuracy_imagenet_sketch`, "
                  "`accuracy_imagenet_r`, `accuracy_imagenet_a`, `mean_shift_accuracy`, `shift_drop_*`, "
                  "`imagenet_c_mean_accuracy`, `imagenet_c_mce`, `imagenet_c_relative_mce`; tables `imagenet_c`, "
                  "`imagenet_c_errors`; `robustness_published.png`.",
    "drift": "`drift.json` (metrics `cka_*`, `knn_overlap_*`, `procrustes_residual_*`, `aligned_angle_*`, `raw_cosine_*` "
             "per modality, `gap_old`, `gap_new`, `gap_change`, `paired_cosine_*`, "
             "`compat_new_text_old_image_recall@k`, `compat_old_text_new_image_recall@k`; tables `most_moved_*`, "
             "`drift_distribution_*`) and PNGs `drift_rows.png`, `drift_knn_overlap.png`, `drift_projection.png`.",
    "compose": "`compose.json` (metrics `sugarcrepe_<subset>` and `sugarcrepe_<family>`, `aro_relation`, "
               "`aro_attribution`, `winoground_text`, `winoground_image`, `winoground_group`, `mmvp_pair_accuracy_mean`; "
               "tables `categories` "
               "(objects with `benchmark`, `category`, `accuracy`, `n`, `ties`) and `hardest_failures`; counts of "
               "cases, unique images and captions, encoder calls) and one PNG per benchmark, "
               "`compose_<benchmark>.png`.",
    "direction": "`direction.json` (metrics `direction_angle_<modality>`, `direction_mean_distance_<modality>` with "
                 "`ci95` and `plug_in`, `direction_auroc_<modality>`, with --text-a/--text-b "
                 "`direction_text_cosine_<modality>`; tables `direction_<modality>` (the unit vector, float32 values) "
                 "and `furthest_<modality>` (rows at each end: `row`, `id` or `caption`, `score`, `group`, `end`)), "
                 "`direction_<modality>.npy` (RAVE's unit residual direction from B to A, float32, for reuse as "
                 "guidance) and PNGs `direction_<modality>.png`.",
    "export": "A parquet file at `--out` (schema below), written atomically.",
    "explore": "atlas: `rows.parquet` in `--out` (or a temporary folder) and an Embedding Atlas server on "
               "`--host`:`--port` until Ctrl-C. tensorboard: `tensors.tsv`, `metadata.tsv`, `sprite.png` (when the "
               "images can be read) and `projector_config.pbtxt` in `--out`.",
    "report": "A self-contained HTML file (plots embedded; every string from data escaped).",
    "compare": "A per-metric table (text, markdown or JSON) on stdout. Exit 3 when anything regressed, 0 otherwise, "
               "1 on unreadable or incompatible reports.",
    "check": "The suite's reports under its run folder, a comparison table on stdout (and `--summary FILE`). Exit 3 on "
             "a regression or a violated threshold.",
    "demo": "`DIR/cache.h5`, one folder per step with its report and plots, and `DIR/report.html`.",
    "models": "A list on stdout (or JSON with `--json`): architecture, pretrained tags, `*` where the weights are "
              "in the local Hugging Face cache; nothing is downloaded.",
    "cache": "`list`: each cached extraction (model, weights, data, rows, size, date) and unfinished ones; `path`: "
             "the folder; `clean`: removes caches (never one another process is writing) and says how much was freed.",
}

# Sections that follow the metric table: what a user checks their setup against.
EXTRA = {
    "export": """## Parquet schema

One row per image, then one per text. Columns absent from the runs are null. The file's
metadata key `clipscope` holds the model, weights, data spec, projection and the runs used.

| column | type | meaning |
|---|---|---|
| `row` | `int64` | row index within its modality |\n| `modality` | `string` | image or text |\n| `id` | `string` | image id; text-<row> for texts |\n| `caption` | `string` | the caption (texts) |\n| `label` | `int64` | class label (images of labelled data) |\n| `classname` | `string` | its class name |\n| `text` | `string` | what Embedding Atlas searches: the caption, or the image id and class |\n| `embedding` | `fixed_size_list<element: float>[D]` | the L2-normalised embedding (float32, D = the model's width) |\n| `x` | `double` | 2-D projection of all rows together (--projection) |\n| `y` | `double` | the projection's second axis |\n| `paired_cosine` | `double` | mean cosine with the rows it is paired with in /pairs |\n| `relative_alignment` | `double` | mean over its pairs of 2 (max cosine with a row it is not paired with - paired cosine) (Oh et al. 2023, as uniformity) |\n| `blind_partner` | `string` | from blindpairs.json: the CLIP-blind partner with the largest clip - reference cosine gap |\n| `blind_clip_cosine` | `double` | that pair's CLIP cosine |\n| `blind_reference_cosine` | `double` | that pair's reference-encoder cosine |\n| `drift` | `double` | from drift.json (most_moved tables): how far the row moved between the releases |\n| `drift_aligned_cosine` | `double` | its cosine after Procrustes alignment |\n| `inversion_cosine` | `double` | the cache's final OTI (images) or OVI (texts) cosine, when invert has run |\n| `corruption_cosine` | `double` | from robustness.json (per_image_drift): the image's mean cosine between its clean and corrupted embeddings over the corruption cells |

Read it with `pandas.read_parquet`, DuckDB (`SELECT * FROM 'rows.parquet'`), or open it in
Embedding Atlas with `clipscope explore`.
""",
    "robustness": """## Published numbers to check a setup against

Zero-shot top-1 accuracy (%) of ViT-B-32 with `--pretrained openai`, OpenAI's 80 templates
ensembled, the model's own preprocessing, from CLIP_benchmark's published results
(LAION-AI/CLIP_benchmark `benchmark/benchmark.csv`, commit `48de38c`). A run of
`clipscope robustness --model ViT-B-32 --pretrained openai --benchmark imagenet:VAL --benchmark imagenet-v2:DIR ...
--max-images 0` evaluates the same way (`--max-images 0`: every image) and reports fractions
(`accuracy_imagenet`, `accuracy_imagenet_v2`, ...).

| ImageNet val | ImageNet-V2 | ImageNet-Sketch | ImageNet-R | ImageNet-A |
|---|---|---|---|---|
| 63.33 | 55.96 | 42.30 | 69.32 | 31.37 |

ImageNet-R and ImageNet-A are scored over their 200 classes, as there. No primary copy of a
ViT-B/32 (openai) ImageNet-C mCE could be read on the machine this page was written on, so none
is listed; AlexNet's published errors, which normalise the mCE, are in
`clipscope/robustness/mce.py`.
""",
    "compose": """## Published numbers to check a setup against

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

ARO and Winoground: the published ViT-B/32 (openai) numbers are in Table 1 of Yuksekgonul et al.
2023 (VG-Relation, VG-Attribution, COCO-Order, Flickr30k-Order) and in the results table of Thrush
et al. 2022 (text, image and group score). They are not copied here because no primary copy of
those tables could be read on the machine this page was written on, and a number written from
memory could be wrong.
""",
}

COMMON = ("Exit codes: 0 ok, 1 error (one line `Error: ...`; `--debug` before the command shows the traceback), "
          "2 usage, 3 regression (compare, check).")


def page(name: str, cmd: click.Command) -> str:
    ctx = click.Context(cmd, info_name=f"clipscope {name}")
    usage = cmd.get_usage(ctx).replace("Usage: ", "")
    doc = (cmd.help or "").replace("\b\n", "")
    lines = [f"# clipscope {name}", "", " ".join(doc.split("\n\n")[0].split()), "", "## Usage", "", "```", usage, "```",
             "", "## Options", "", "| option | meaning |", "|---|---|"]
    for p in cmd.params:
        if isinstance(p, click.Option):
            names = ", ".join(f"`{o}`" for o in p.opts + p.secondary_opts)
            unset = p.default is None or p.default is False or p.default == () or p.is_flag or "UNSET" in str(p.default)
            default = "" if unset else f" (default: `{p.default}`)"  # click 8.3 marks a missing default UNSET
            meaning = (p.help or "") + default
            if isinstance(p.type, click.Choice):
                meaning += f" One of {', '.join(f'`{c}`' for c in p.type.choices)}."
            lines.append(f"| {names} | {meaning.replace('|', '/')} |")
        else:
            lines.append(f"| `{p.name.upper()}` (argument) | {'required' if p.required else 'optional'} |")
    lines.append("| `--help` | Show the help and exit. |")
    if isinstance(cmd, click.Group):  # one options table per subcommand
        lines += ["", "## Subcommands"]
        for sub_name, sub in cmd.commands.items():
            lines += ["", f"### clipscope {name} {sub_name}", "", (sub.help or "").split("\n")[0], "",
                      "| option | meaning |", "|---|---|"]
            for p in sub.params:
                if isinstance(p, click.Option):
                    lines.append(f"| {', '.join(f'`{o}`' for o in p.opts)} | {(p.help or '').replace('|', '/')} |")
    lines += ["", "## Outputs", "", OUTPUTS[name], "", COMMON, "", "## Examples", ""]
    text = cmd.help or ""
    if "Example" in text:
        ex = text.split("Example", 1)[1].split(":", 1)[1]
        lines += ["```", *[ln.strip() if not ln.startswith("          ") else "    " + ln.strip() for ln in ex.strip("\n").splitlines() if ln.strip()], "```"]
    specs = metric_table(name)
    if specs:
        lines += ["", *specs]
    if name in EXTRA:
        lines += ["", EXTRA[name].rstrip("\n")]
    return "\n".join(lines) + "\n"


def table_cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe ends a markdown table cell, even inside code


def metric_table(command: str) -> list[str]:
    """The command's metrics from the registry (clipscope/metric_specs.py): name, unit, source."""
    from clipscope.metric_specs import specs_for

    specs = specs_for(command)
    if not specs:
        return []
    rows = ["## Metrics", "", "Names are regular expressions for families of metrics. Every report repeats the source "
            "in each metric's description.", "", "| metric | unit | compare tolerance | source |", "|---|---|---|---|"]
    for s in specs:
        tol = "default" if s.tolerance is None else f"{s.tolerance:g}"
        rows.append(f"| `{table_cell(s.pattern)}` | {s.unit or '-'} | {tol} | {table_cell(s.source)} |")
    return rows


def main():
    from clipscope.cli.main import COMMANDS, cli

    out = ROOT / "commands"
    out.mkdir(exist_ok=True)
    ctx = click.Context(cli)
    for name in COMMANDS:
        (out / f"{name}.md").write_text(page(name, cli.get_command(ctx, name)))
    print(f"wrote {len(COMMANDS)} pages to {out}")
    # reports/schema/ is a generated copy of the schemas the package ships (one source).
    from clipscope.report import schema

    for kind in ("report", "cache"):
        path = ROOT / "reports" / "schema" / f"{kind}.schema.json"
        path.write_text(json.dumps(schema(kind), indent=1) + "\n")
    print("wrote reports/schema/{report,cache}.schema.json from clipscope/report/schemas/")


if __name__ == "__main__":
    main()
