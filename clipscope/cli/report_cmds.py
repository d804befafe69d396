"""`report`, `compare`, `check`: reading runs and gating releases."""

from __future__ import annotations

from pathlib import Path

import click

from clipscope.cli.main import EXIT_REGRESSION


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="The HTML file to write (default RUN_DIR/report.html).")
@click.option("--title", default=None, help="Page title.")
@click.option("--baseline", default=None, type=click.Path(file_okay=False), metavar="DIR",
              help="Reports of a baseline release: the summary marks (and lists first) the runs that regressed.")
def report_cmd(run_dir, output, title, baseline):
    """One self-contained HTML report (plots embedded) of every report found in RUN_DIR: a
    summary row per run, then one section per run.

    \b
    Example:
      clipscope report runs/ -o report.html
      clipscope report runs/ --baseline reports/baseline -o report.html
    """
    from clipscope.fileio import check_writable, guard_outputs
    from clipscope.report import atomic_write_text
    from clipscope.report.html import render

    path = Path(output) if output else Path(run_dir) / "report.html"
    check_writable(path, folder=False)
    guard_outputs([("-o", path)], inputs=_report_files(run_dir, baseline))
    page = render(run_dir, title, baseline=baseline)
    atomic_write_text(path, page)
    click.echo(f"report: {path}")


def _report_files(*folders) -> list[Path]:
    """Every JSON file under the given folders (the reports a command reads)."""
    return [p for f in folders if f and Path(f).is_dir() for p in Path(f).rglob("*.json")]


@click.command("compare")
@click.argument("base", type=click.Path())
@click.argument("new", type=click.Path())
@click.option("--rule", default="both", show_default=True, type=click.Choice(["both", "significance", "tolerance"]),
              help="both: a bad change beyond its tolerance and significant; significance: significant alone; "
                   "tolerance: beyond its tolerance alone (no error control).")
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Family-wise error of the gate: Holm's correction over every metric tested in this comparison.")
@click.option("--tolerance", type=float, default=None, help="Absolute tolerance for every metric (default: per metric).")
@click.option("--metric", "metric_overrides", multiple=True, metavar="NAME=TOL", help="Tolerance of one metric (repeatable).")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "markdown", "json", "html"]))
@click.option("--allow-missing", is_flag=True,
              help="A metric missing, null, NaN or infinite in NEW is listed, not a regression.")
@click.option("--allow-incomparable", is_flag=True,
              help="Metrics defined differently in the two reports (other sample sizes, templates, corruption cells, "
                   "thresholds, steps) are listed without failing the gate.")
def compare_cmd(base, new, rule, alpha, tolerance, metric_overrides, fmt, allow_missing, allow_incomparable):
    """Compare two reports (or two run folders) metric by metric.

    By default (--rule both) a change is a regression when it goes in the metric's bad direction,
    exceeds its tolerance, and is significant in a one-sided z-test on the two 95% intervals after
    Holm's correction over every metric tested here, so two runs of an unchanged model fail the
    gate with probability at most --alpha. A metric the baseline has that NEW lacks, or has as
    null, NaN or infinity, is a regression too (--allow-missing lists it) unless NEW was not asked
    for it; metrics defined differently in the two reports are incomparable and fail the gate
    (--allow-incomparable lists them). Exit code 3 when the gate fails. Both sides are validated
    against the report schema first.

    \b
    Examples:
      clipscope compare baseline/gap.json runs/gap/gap.json
      clipscope compare reports/baseline runs/ --format markdown
    """
    from clipscope.report.compare import compare_paths, failed, format_rows, parse_metric_overrides

    rows, warnings, summary = compare_paths(base, new, tolerance=tolerance,
                                            overrides=parse_metric_overrides(metric_overrides), rule=rule, alpha=alpha,
                                            allow_missing=allow_missing, allow_incomparable=allow_incomparable)
    if fmt == "html":
        from clipscope.report.html import compare_page

        click.echo(compare_page(rows, warnings + [f"{r.report}.{r.metric}: {r.reason}" for r in rows if r.reason],
                                f"clipscope compare: {base} → {new}", summary))
    else:
        click.echo(format_rows(rows, warnings, fmt, summary))
    if failed(rows, summary):
        raise click.exceptions.Exit(EXIT_REGRESSION)


@click.command("check")
@click.argument("suite_file", type=click.Path(dir_okay=False))
@click.option("--out", "out", default=None, type=click.Path(file_okay=False), help="Run folder (default from the suite).")
@click.option("--baseline", default=None, type=click.Path(), help="Baseline run folder (overrides the suite's).")
@click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "markdown", "json"]))
@click.option("--summary", type=click.Path(dir_okay=False), default=None,
              help="Also write the summary to this file, on every exit path (an error included).")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def check_cmd(suite_file, out, baseline, fmt, summary, quiet):
    """Run a declared suite (model, data, commands, thresholds, baseline) and gate it:
    exit 3 when a threshold is violated, a metric regressed against the baseline, or a metric
    is not comparable with it (see clipscope compare). Every command that writes a report can
    be a run.

    \b
    Example:
      clipscope check examples/release-suite.toml --format markdown --summary summary.md
    """
    from clipscope.errors import ClipscopeError
    from clipscope.fileio import check_writable, guard_outputs
    from clipscope.report import atomic_write_text
    from clipscope.suite import check

    if summary:
        check_writable(summary, folder=False)
        guard_outputs([("--summary", summary)], inputs=[Path(suite_file)])
    try:
        result = check(suite_file, out=out, baseline=baseline, progress=not quiet,
                       log=None if quiet else lambda line: click.echo(line, err=True))
    except BaseException as e:  # noqa: BLE001 - re-raised: the summary a workflow posts exists whatever happened
        if summary:
            why = str(e) if isinstance(e, ClipscopeError) else f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            atomic_write_text(summary, f"### clipscope check: error\n\n{why}\n")
        raise
    text = result.text(fmt)
    click.echo(text)
    if summary:
        atomic_write_text(summary, text + "\n")
    if result.failed:
        raise click.exceptions.Exit(EXIT_REGRESSION)
