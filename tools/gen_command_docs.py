"""Write commands/<name>.md from the click definitions plus the outputs described here.

Run after changing a command's options: ``python tools/gen_command_docs.py``.
tests/test_docs.py fails when a page misses a subcommand or an option.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUTPUTS = {
    "extract": "An HDF5 cache at `--out` (layout in the README and `reports/schema/cache.md`); while running, a journal "
               "folder `<out>.partial/` that a rerun resumes from. Exit 0 also when some inputs were unreadable: they "
               "are listed in `/failed` (see `clipscope info CACHE --failed`).",
    "import": "An HDF5 cache at `--out` with the given rows; ids default to the row index.",
    "info": "Provenance and counts on stdout (`--json` for machine-readable output).",
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
}

COMMON = ("Exit codes: 0 ok, 1 error (one line `Error: ...`; `--debug` before the command shows the traceback), "
          "2 usage, 3 regression (compare, check).")


def page(name: str, cmd: click.Command) -> str:
    from clipscope.registry import commands

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
    declared = commands().get(name)
    outputs = declared.outputs if declared is not None else OUTPUTS[name]
    lines += ["", "## Outputs", "", outputs, "", COMMON, "", "## Examples", ""]
    text = cmd.help or ""
    if "Example" in text:
        ex = text.split("Example", 1)[1].split(":", 1)[1]
        lines += ["```", *[ln.strip() if not ln.startswith("          ") else "    " + ln.strip() for ln in ex.strip("\n").splitlines() if ln.strip()], "```"]
    specs = metric_table(name)
    if specs:
        lines += ["", *specs]
    extra = declared.docs if declared is not None else EXTRA.get(name, "")
    if extra:
        lines += ["", extra.rstrip("\n")]
    return "\n".join(lines) + "\n"


def table_cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe ends a markdown table cell, even inside code


def metric_table(command: str) -> list[str]:
    """The command's metrics from the registry (clipscope/metric_specs.py): name, unit, source."""
    from clipscope.metric_specs import display, specs_for

    specs = specs_for(command)
    if not specs:
        return []
    rows = ["## Metrics", "", "Names are regular expressions for families of metrics ({m} in a description is the "
            "family member's part of the name). Every report repeats the description and the source in each metric; "
            "better: whether higher or lower values are better (the gate's direction), - when neither.", "",
            "| metric | what it measures | better | unit | compare tolerance | source |", "|---|---|---|---|---|---|"]
    for s in specs:
        tol = "default" if s.tolerance is None else f"{s.tolerance:g}"
        better = {True: "higher", False: "lower", None: "-"}[s.higher_is_better]
        rows.append(f"| `{table_cell(display(s))}` | {table_cell(s.description.replace('{{', '{').replace('}}', '}'))} | {better} | {s.unit or '-'} | {tol} | "
                    f"{table_cell(s.source)} |")
    return rows


def main():
    from clipscope.cli.main import cli, command_names

    out = ROOT / "commands"
    out.mkdir(exist_ok=True)
    ctx = click.Context(cli)
    names = command_names()
    for name in names:
        (out / f"{name}.md").write_text(page(name, cli.get_command(ctx, name)))
    print(f"wrote {len(names)} pages to {out}")
    # reports/schema/ is a generated copy of the schemas the package ships (one source).
    from clipscope.report import schema

    for kind in ("report", "cache"):
        path = ROOT / "reports" / "schema" / f"{kind}.schema.json"
        path.write_text(json.dumps(schema(kind), indent=1) + "\n")
    print("wrote reports/schema/{report,cache}.schema.json from clipscope/report/schemas/")


if __name__ == "__main__":
    main()
