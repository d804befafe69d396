"""`report`, `compare`, `check`: reading runs and gating releases."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from clipscope.cli.main import EXIT_REGRESSION


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="The HTML file to write (default RUN_DIR/report.html).")
@click.option("--title", default=None, help="Page title.")
def report_cmd(run_dir, output, title):
    """One self-contained HTML report (plots embedded) of every report found in RUN_DIR.

    \b
    Example:
      clipscope report runs/ -o report.html
    """
    from clipscope.report import atomic_write_text
    from clipscope.report.html import render

    page = render(run_dir, title)
    path = Path(output) if output else Path(run_dir) / "report.html"
    atomic_write_text(path, page)
    click.echo(f"report: {path}")


@click.command("compare")
@click.argument("base", type=click.Path())
@click.argument("new", type=click.Path())
@click.option("--tolerance", type=float, default=None, help="Absolute tolerance for every metric (default: per metric).")
@click.option("--metric", "metric_overrides", multiple=True, metavar="NAME=TOL", help="Tolerance of one metric (repeatable).")
@click.option("--alpha", default=0.05, show_default=True, type=float, help="Level of the z-test when both sides have intervals.")
@click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "markdown", "json"]))
def compare_cmd(base, new, tolerance, metric_overrides, alpha, fmt):
    """Compare two reports (or two run folders) metric by metric.

    A change in the bad direction (from higher_is_better) beyond its tolerance, or significant
    under a z-test when both sides have 95% intervals, is a regression: exit code 3.

    \b
    Examples:
      clipscope compare baseline/gap.json runs/gap/gap.json
      clipscope compare reports/baseline runs/ --format markdown
    """
    from clipscope.report.compare import compare_paths, format_rows, parse_metric_overrides

    rows, warnings = compare_paths(base, new, tolerance=tolerance, overrides=parse_metric_overrides(metric_overrides),
                                   alpha=alpha)
    click.echo(format_rows(rows, warnings, fmt))
    if any(r.status == "regression" for r in rows):
        raise click.exceptions.Exit(EXIT_REGRESSION)


def _load_suite(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    from clipscope.errors import ClipscopeError

    try:
        suite = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClipscopeError(f"no suite file at {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ClipscopeError(f"{path} is not valid TOML ({e})") from None
    if "run" not in suite or not isinstance(suite["run"], list):
        raise ClipscopeError(f"{path} declares no [[run]] tables; each names a command and its options")
    return suite


def _args_for(run: dict, suite: dict, out: Path) -> list[str]:
    from clipscope.errors import ClipscopeError

    command = run.get("command")
    if command not in ("gap", "uniformity", "invert", "blindpairs", "robustness", "drift"):
        raise ClipscopeError(f"suite run has command {command!r}; use gap, uniformity, invert, blindpairs, robustness or drift")
    from clipscope.cli.main import cli

    s = suite.get("suite", {})
    accepted = {o for p in cli.get_command(click.Context(cli), command).params for o in getattr(p, "opts", [])}
    args = [command]
    cache = run.get("cache", s.get("cache"))
    if cache:  # one cache, or a list (drift takes OLD and NEW)
        args += [str(c) for c in cache] if isinstance(cache, list) else [str(cache)]
    # Suite-wide settings go to the commands that take them (drift, for one, names two models itself).
    for key in ("model", "pretrained", "data", "device"):
        value = run.get(key, s.get(key))
        if value is not None and f"--{key}" in accepted and not (cache and key == "data"):
            args += [f"--{key}", str(value)]
    for key, value in (run.get("options") or {}).items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not False and value is not None:
            args += [flag, str(value)]
    return args + ["--out", str(out), "--quiet"]


@click.command("check")
@click.argument("suite_file", type=click.Path(dir_okay=False))
@click.option("--out", "out", default=None, type=click.Path(file_okay=False), help="Run folder (default from the suite).")
@click.option("--baseline", default=None, type=click.Path(), help="Baseline run folder (overrides the suite's).")
@click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "markdown", "json"]))
@click.option("--summary", type=click.Path(dir_okay=False), default=None, help="Also write the summary to this file.")
def check_cmd(suite_file, out, baseline, fmt, summary):
    """Run a declared suite (model, data, commands, thresholds, baseline) and gate it:
    exit 3 when a threshold is violated or a metric regressed against the baseline.

    \b
    Example:
      clipscope check examples/release-suite.toml --format markdown --summary summary.md
    """
    from clipscope.cli.main import main as cli_main
    from clipscope.errors import ClipscopeError
    from clipscope.report import atomic_write_text, load_report
    from clipscope.report.compare import Row, compare_paths, format_rows

    path = Path(suite_file)
    suite = _load_suite(path)
    s = suite.get("suite", {})
    out_dir = Path(out or s.get("out") or "clipscope-check")
    rows: list[Row] = []
    warnings: list[str] = []
    commands = {}  # run name -> command (a run's report is <out>/<name>/<command>.json)
    for k, run in enumerate(suite["run"]):
        name = run.get("name") or run.get("command", f"run{k}")
        commands[name] = run.get("command")
        args = _args_for(run, suite, out_dir / name)
        click.echo(f"check: clipscope {' '.join(shlex.quote(a) for a in args)}", err=True)
        code = cli_main(args)
        if code != 0:
            raise ClipscopeError(f"suite run '{name}' failed (exit {code}); see the error above")
    base = baseline or s.get("baseline")
    if base:
        base_path = (path.parent / base) if not Path(base).is_absolute() and not Path(base).exists() else Path(base)
        r, w = compare_paths(base_path, out_dir, tolerance=s.get("tolerance"), overrides=suite.get("tolerances", {}),
                             alpha=s.get("alpha", 0.05))
        rows += r
        warnings += w
    for key, bound in (suite.get("thresholds") or {}).items():
        run_name, _, metric = key.partition(".")
        report_path = out_dir / run_name / f"{commands.get(run_name, run_name)}.json"
        if not report_path.exists():
            raise ClipscopeError(f"threshold {key}: no report at {report_path}")
        m = load_report(report_path)["metrics"].get(metric)
        if m is None or m.get("value") is None:
            raise ClipscopeError(f"threshold {key}: the '{run_name}' report has no metric {metric}")
        v = m["value"]
        lo, hi = bound.get("min"), bound.get("max")
        bad = (lo is not None and v < lo) or (hi is not None and v > hi)
        rows.append(Row(f"{run_name} (threshold)", metric, lo if lo is not None else hi, v, None, m.get("higher_is_better"),
                        0.0, None, "regression" if bad else "ok"))
    text = format_rows(rows, warnings, fmt)
    click.echo(text)
    if summary:
        atomic_write_text(summary, text + "\n")
    if any(r.status == "regression" for r in rows):
        raise click.exceptions.Exit(EXIT_REGRESSION)
