"""`report`, `compare`, `check`: reading runs and gating releases."""

from __future__ import annotations

import math
import re
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
@click.option("--tolerance", type=float, default=None, help="Absolute tolerance for every metric (default: per metric).")
@click.option("--metric", "metric_overrides", multiple=True, metavar="NAME=TOL", help="Tolerance of one metric (repeatable).")
@click.option("--alpha", default=0.05, show_default=True, type=float, help="Level of the z-test when both sides have intervals.")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "markdown", "json", "html"]))
@click.option("--allow-missing", is_flag=True,
              help="A metric missing, null, NaN or infinite in NEW is listed, not a regression.")
def compare_cmd(base, new, tolerance, metric_overrides, alpha, fmt, allow_missing):
    """Compare two reports (or two run folders) metric by metric.

    A change in the bad direction (from higher_is_better) beyond its tolerance, or significant
    under a z-test when both sides have 95% intervals, is a regression: exit code 3. So is a
    metric the baseline has that NEW lacks or has as null, NaN or infinity (--allow-missing
    lists those instead). Both sides are validated against the report schema first.

    \b
    Examples:
      clipscope compare baseline/gap.json runs/gap/gap.json
      clipscope compare reports/baseline runs/ --format markdown
    """
    from clipscope.report.compare import compare_paths, format_rows, parse_metric_overrides

    rows, warnings = compare_paths(base, new, tolerance=tolerance, overrides=parse_metric_overrides(metric_overrides),
                                   alpha=alpha, allow_missing=allow_missing)
    if fmt == "html":
        from clipscope.report.html import compare_page

        click.echo(compare_page(rows, warnings + [f"{r.report}.{r.metric}: {r.reason}" for r in rows if r.reason],
                                f"clipscope compare: {base} → {new}"))
    else:
        click.echo(format_rows(rows, warnings, fmt))
    if any(r.status == "regression" for r in rows):
        raise click.exceptions.Exit(EXIT_REGRESSION)


SUITE_COMMANDS = ("gap", "uniformity", "invert", "blindpairs", "robustness", "drift")
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _load_suite(path: Path) -> dict:
    """Parse and validate a whole suite before any of it runs: every problem is one line, exit 1."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    from clipscope.errors import ClipscopeError

    try:
        suite = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClipscopeError(f"no suite file at {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ClipscopeError(f"{path} is not valid TOML ({e})") from None
    if "run" not in suite or not isinstance(suite["run"], list) or not suite["run"]:
        raise ClipscopeError(f"{path} declares no [[run]] tables; each names a command and its options")
    s = suite.get("suite", {})
    if not isinstance(s, dict):
        raise ClipscopeError(f"{path}: [suite] must be a table")
    for key in ("tolerance", "alpha"):
        if key in s and not _is_number(s[key]):
            raise ClipscopeError(f"{path}: suite.{key} = {s[key]!r} must be a number")
    if "allow_missing" in s and not isinstance(s["allow_missing"], bool):
        raise ClipscopeError(f"{path}: suite.allow_missing must be true or false")
    tolerances = suite.get("tolerances", {})
    if not isinstance(tolerances, dict) or not all(_is_number(v) for v in tolerances.values()):
        bad = next((k for k, v in tolerances.items() if not _is_number(v)), "") if isinstance(tolerances, dict) else ""
        raise ClipscopeError(f"{path}: [tolerances] maps metric names to numbers ({bad or 'not a table'} is not)")
    names = set()
    for k, run in enumerate(suite["run"]):
        if not isinstance(run, dict):
            raise ClipscopeError(f"{path}: run {k + 1} is not a table")
        name = run_name(run, k)
        if not RUN_NAME.fullmatch(name) or set(name) == {"."}:
            raise ClipscopeError(f"{path}: run name {name!r} must be a plain folder name (letters, digits, '.', '_', '-')")
        if name in names:
            raise ClipscopeError(f"{path}: two runs are named {name!r}; give each run a distinct name")
        names.add(name)
        if run.get("command") not in SUITE_COMMANDS:
            raise ClipscopeError(f"{path}: run {name!r} has command {run.get('command')!r}; use {', '.join(SUITE_COMMANDS)}")
        if not isinstance(run.get("options", {}), dict):
            raise ClipscopeError(f"{path}: run {name!r}: options must be a table")
    thresholds = suite.get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise ClipscopeError(f"{path}: [thresholds] must be a table of RUN.METRIC = {{min = .., max = ..}}")
    for key, bound in thresholds.items():
        run, _, metric = key.partition(".")
        if run not in names or not metric:
            raise ClipscopeError(f"{path}: threshold {key!r} must be RUN.METRIC with RUN one of {', '.join(sorted(names))}")
        if not isinstance(bound, dict) or not bound or set(bound) - {"min", "max"} or not all(_is_number(v) for v in bound.values()):
            raise ClipscopeError(f"{path}: threshold {key!r} must be a table with a numeric min and/or max")
    return suite


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def run_name(run: dict, k: int) -> str:
    return str(run.get("name") or run.get("command") or f"run{k}")


def _run_kwargs(run: dict, suite: dict, name: str, base: Path) -> tuple:
    """(cache, keyword arguments, plots) of one suite run for :func:`clipscope.run`; unknown
    options and missing caches are errors here, before any run starts. Relative cache paths are
    read from the suite file's folder when they do not exist from the working directory."""
    from clipscope.api import COMMON, OPTIONS
    from clipscope.errors import ClipscopeError

    command = run["command"]
    s = suite.get("suite", {})
    cache = run.get("cache", s.get("cache"))
    paths = []
    for c in (cache if isinstance(cache, list) else [cache] if cache else []):
        p = Path(str(c))
        p = p if p.exists() or p.is_absolute() else base / p
        if not p.exists():
            raise ClipscopeError(f"suite run {name!r}: no cache at {c}")
        paths.append(str(p))
    accepted = set(COMMON) | set(OPTIONS[command])
    kwargs = {}
    # Suite-wide settings go to the commands that take them (drift, for one, names two models itself).
    for key in ("model", "pretrained", "data", "device"):
        value = run.get(key, s.get(key))
        # With a cache, only invert needs the model (it optimises through it); data comes from the cache.
        if value is not None and key in accepted and not (paths and key == "data") \
                and not (paths and key in ("model", "pretrained") and command != "invert") \
                and not (command == "drift" and key in ("model", "pretrained")):
            kwargs[key] = value
    options = dict(run.get("options") or {})
    plots = not options.pop("no_plots", False)
    for key, value in options.items():
        if key not in accepted:
            flag = "--" + key.replace("_", "-")
            raise ClipscopeError(f"suite run {name!r}: {command} has no option {flag} (see clipscope {command} --help)")
        kwargs[key] = value
    cache_arg = paths if command == "drift" and paths else (paths[0] if paths else None)
    return cache_arg, kwargs, plots


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
    planned = []
    for k, run in enumerate(suite["run"]):  # every run's arguments are checked before the first runs
        name = run_name(run, k)
        commands[name] = run.get("command")
        planned.append((name, _run_kwargs(run, suite, name, path.parent)))
    allow_missing = bool(s.get("allow_missing", False))
    from clipscope.api import run as run_command

    for name, (cache, kwargs, plots) in planned:
        click.echo(f"check: {name}: clipscope.run({commands[name]!r}, {cache!r}, {kwargs})", err=True)
        try:
            run_command(commands[name], cache, plots=plots, **kwargs).save(out_dir / name, plots=plots)
        except ClipscopeError as e:
            raise ClipscopeError(f"suite run '{name}' failed: {e}") from None
    base = baseline or s.get("baseline")
    if base:
        base_path = (path.parent / base) if not Path(base).is_absolute() and not Path(base).exists() else Path(base)
        r, w = compare_paths(base_path, out_dir, tolerance=s.get("tolerance"), overrides=suite.get("tolerances", {}),
                             alpha=s.get("alpha", 0.05), allow_missing=allow_missing)
        rows += r
        warnings += w
    for key, bound in (suite.get("thresholds") or {}).items():
        rname, _, metric = key.partition(".")
        report_path = out_dir / rname / f"{commands[rname]}.json"
        if not report_path.exists():
            raise ClipscopeError(f"threshold {key}: no report at {report_path}")
        m = load_report(report_path, validate=True)["metrics"].get(metric)
        v = None if m is None else m.get("value")
        lo, hi = bound.get("min"), bound.get("max")
        if not (isinstance(v, (int, float)) and math.isfinite(v)):  # a threshold on nothing is not met
            rows.append(Row(f"{rname} (threshold)", metric, lo if lo is not None else hi, None, None,
                            None if m is None else m.get("higher_is_better"), 0.0, None,
                            "missing" if allow_missing else "regression",
                            f"threshold not checkable: {'no such metric' if m is None else 'value is null or not finite'}"))
            continue
        bad = (lo is not None and v < lo) or (hi is not None and v > hi)
        rows.append(Row(f"{rname} (threshold)", metric, lo if lo is not None else hi, v, None, m.get("higher_is_better"),
                        0.0, None, "regression" if bad else "ok"))
    text = format_rows(rows, warnings, fmt)
    click.echo(text)
    if summary:
        atomic_write_text(summary, text + "\n")
    if any(r.status == "regression" for r in rows):
        raise click.exceptions.Exit(EXIT_REGRESSION)
