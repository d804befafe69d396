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
    "compare": """## The decision rule

For every metric with a direction (`higher_is_better` in its spec: `commands/<command>.md` lists
them), compare computes the change `delta = new - base` and, when both reports carry a 95%
interval, a one-sided z-test of the change in the bad direction on the two standard errors
(`se = interval width / 3.92`, the intervals being independent across the two runs).

- `--rule both` (default): a **regression** is a change in the bad direction that is larger than
  the metric's tolerance (its spec's, else `--tolerance`, else 0.02; `--metric NAME=TOL`) **and**
  significant after **Holm's correction** over every tested metric of the comparison (all reports
  of the two folders together) at `--alpha` (0.05). The chance that two runs of an unchanged model
  fail the gate is therefore at most `--alpha`, however many metrics are gated; a change below the
  tolerance never fails it however large the data.
- `--rule significance`: significant after Holm, whatever its size.
- `--rule tolerance`: larger than the tolerance, whatever the noise (the behaviour before
  version 0.1's gate issue; its error rate is uncontrolled, see below).

A metric with an interval on one side only, or none (e.g. `mce`), cannot be tested: under `both`
it is gated on its tolerance alone, unless its report states why no valid interval exists on
this data (`no_interval`, e.g. `relative_alignment` with class prompts) and then it is listed as
`not gated`. An interval of zero width (a statistic over fixed class prompts) has no sampling
error: any change of it beyond the tolerance is a regression.

## Like with like

A metric is **incomparable** (listed, never a regression or an improvement, and a gate failure:
exit 3 unless `--allow-incomparable`) when the two reports

- have different sample sizes (`images`, `texts`, `pairs`, `cases`, `classes` in `data.counts`);
- differ in a configuration key that defines the metric: the command's own (uniformity: `t`;
  robustness: `templates`, `max_images`; invert: its optimisation settings; blindpairs: the
  thresholds and reference; drift: `k`; compose: its benchmarks; direction: its groups) or the
  metric's (`defined_by` in its spec: the corruption cells of `mce`, `noise_max_pairs` of the noise
  model, ...);
- report a different `coverage` of it (an ImageNet-C tree with 10 of 75 cells against a full one).

Two reports of other data of the same size (other data fingerprints) are compared as two samples
of one population, which the intervals are for; the table says so. A metric the baseline has and
the new report lacks (or has as null, NaN or infinity) is a regression, unless the new run was
not asked for it (its spec's `requires`: e.g. `noise_*` without `--noise-model`): then it is
listed as `not run`. The table and the JSON output state the rule, the correction and how many
metrics were tested.

## Measured error rate and power

`python benchmarks/gate_simulation.py` draws pairs of samples from the three populations of
`tests/simulate.py` (d = 64, a gap between the modalities, correlated pairs), writes their gap and
uniformity reports and compares them as `clipscope compare` does; measured on this project's
machine (2 CPU cores), 400 comparisons per layout at n = 200 units, 100 per planted change at
n = 1000:

| layout | any regression flagged, same population: rule both | significance | tolerance |
|---|---|---|---|
| 1:1 pairs | 0.018 | 0.018 | 0.688 |
| 3 captions per image | 0.015 | 0.018 | 0.550 |
| 10 fixed class prompts | 0.020 | 0.020 | 0.645 |

| layout | planted change | flagged (rule both) |
|---|---|---|
| 1:1 pairs | centroid distance +0.050 | 1.000 |
| 1:1 pairs | paired cosine -0.035 | 1.000 |
| 3 captions per image | centroid distance +0.049 | 1.000 |
| 3 captions per image | paired cosine -0.036 | 1.000 |
| 10 fixed class prompts | centroid distance +0.050 | 1.000 |

The suite checks the same on every run (tests/test_gate.py: at most 0.05 plus its binomial
margin over 100 comparisons per layout; at least 0.9 of planted changes flagged), and that the
95% intervals of every gated gap and uniformity metric cover 0.90-0.99 on the three layouts
(tests/test_coverage.py).

## A worked example

Two gap reports of one model on two samples of the same population (300 pairs each; made with
`tests/simulate.py`): every metric moves a little, nothing is both beyond its tolerance and
significant after Holm, so the gate passes (exit 0):

```
$ clipscope compare a/gap.json b/gap.json
report  metric               base      new       delta       tolerance  p (Holm)  status
------  -------------------  --------  --------  ----------  ---------  --------  ------
gap     centroid_distance    0.444     0.4516    +0.007537   0.02       0.589     ok
gap     centroid_cosine      0.007041  -0.01085  -0.01789    0.02                 ok
gap     paired_distance      0.9166    0.926     +0.009412   0.02       0.589     ok
gap     paired_cosine        0.5765    0.5673    -0.00925    0.02       0.589     ok
gap     paired_angle         54.62     55.24     +0.621      1          0.589     ok
gap     rmg                  0.3198    0.3249    +0.005106   0.02       0.589     ok
gap     cone_image           0.11      0.1098    -0.0002026  0.02       0.589     ok
gap     cone_text            0.08859   0.09197   +0.003382   0.02       0.589     ok
gap     linear_separability  0.9667    0.9917    +0.025      0.02       0.589     ok
warning: gap: the data differ (fingerprint da40a459b2b8b847 vs 6063e76a7bcd752d): compared as two samples of one population; gate a release on the baseline's own data to compare the models alone
rule: both (a bad change beyond its tolerance and significant in a one-sided z-test; family-wise error 0.05 by Holm over 8 tested metric(s))
no regression
```

With `--rule tolerance` the same pair fails (exit 3) on `linear_separability`, which moved by
+0.025 against its tolerance of 0.02: the false alarm the default rule controls.
""",
    "export": """## Parquet schema

One row per image, then one per text. Columns that no run in --runs fills for this cache's rows
are null; export names them, with why, in one line on stderr and under `empty_columns` in the metadata. The file's
metadata key `clipscope` holds the model, weights, data spec, projection and the runs used.

{SCHEMA_TABLE}

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
    if "{SCHEMA_TABLE}" in extra:
        from clipscope.export import schema_table

        extra = extra.replace("{SCHEMA_TABLE}", schema_table())
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
