"""Suites: ``clipscope.check(suite)`` runs a declared suite of diagnostics and gates it.

A suite (TOML) names a model and data once, a list of runs (a command and its options each),
absolute thresholds and a baseline folder of reports. Every run is validated before the first
starts; each writes ``<out>/<run name>/<command>.json``; then the runs are compared with the
baseline as one family of decisions (:mod:`clipscope.report.compare`: the rule, Holm's
correction over every tested metric of the suite) and checked against the thresholds.

    [suite]
    model = "clipscope-tiny"      # model, pretrained, data, device: defaults for every run
    data = "probes:256"
    out = "runs/release-check"
    baseline = "reports/baseline"
    rule = "both"                 # both | significance | tolerance
    alpha = 0.05                  # family-wise error of the gate
    tolerance = 0.02              # default absolute tolerance
    allow_missing = false         # a metric missing from a run is a regression
    allow_incomparable = false    # a metric defined differently from the baseline's fails the gate

    [[run]]
    command = "gap"               # any command that writes a report
    options = { noise_model = true }

    [tolerances]                  # per-metric overrides
    linear_separability = 0.05

    [thresholds]                  # "<run>.<metric>" = { min = .., max = .. }
    "gap.centroid_distance" = { max = 1.0 }
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from clipscope.errors import ClipscopeError

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SUITE_KEYS = {"name", "model", "pretrained", "data", "device", "out", "baseline", "rule", "alpha", "tolerance",
              "allow_missing", "allow_incomparable", "cache"}


def suite_commands() -> tuple[str, ...]:
    """Every command that writes a report (a suite can run each)."""
    from clipscope.registry import commands

    return tuple(commands())


@dataclass
class CheckResult:
    rows: list
    warnings: list[str]
    summary: dict
    out: Path
    reports: dict[str, Path] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        from clipscope.report.compare import failed

        return failed(self.rows, self.summary)

    def text(self, fmt: str = "table") -> str:
        from clipscope.report.compare import format_rows

        return format_rows(self.rows, self.warnings, fmt, self.summary)


def load_suite(path: str | Path) -> dict:
    """Parse and validate a whole suite before any of it runs: every problem is one line."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    from clipscope.report.compare import RULES

    path = Path(path)
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
    unknown = sorted(set(s) - SUITE_KEYS)
    if unknown:
        raise ClipscopeError(f"{path}: [suite] has no key {unknown[0]!r} (keys: {', '.join(sorted(SUITE_KEYS))})")
    for key in ("tolerance", "alpha"):
        if key in s and not _is_number(s[key]):
            raise ClipscopeError(f"{path}: suite.{key} = {s[key]!r} must be a number")
    if "alpha" in s and not 0 < s["alpha"] < 1:
        raise ClipscopeError(f"{path}: suite.alpha = {s['alpha']} must lie between 0 and 1")
    if "rule" in s and s["rule"] not in RULES:
        raise ClipscopeError(f"{path}: suite.rule = {s['rule']!r}; use one of {', '.join(RULES)}")
    for key in ("allow_missing", "allow_incomparable"):
        if key in s and not isinstance(s[key], bool):
            raise ClipscopeError(f"{path}: suite.{key} must be true or false")
    tolerances = suite.get("tolerances", {})
    if not isinstance(tolerances, dict) or not all(_is_number(v) for v in tolerances.values()):
        bad = next((k for k, v in tolerances.items() if not _is_number(v)), "") if isinstance(tolerances, dict) else ""
        raise ClipscopeError(f"{path}: [tolerances] maps metric names to numbers ({bad or 'not a table'} is not)")
    names = set()
    commands = suite_commands()
    for k, run in enumerate(suite["run"]):
        if not isinstance(run, dict):
            raise ClipscopeError(f"{path}: run {k + 1} is not a table")
        name = run_name(run, k)
        if not RUN_NAME.fullmatch(name) or set(name) == {"."}:
            raise ClipscopeError(f"{path}: run name {name!r} must be a plain folder name (letters, digits, '.', '_', '-')")
        if name in names:
            raise ClipscopeError(f"{path}: two runs are named {name!r}; give each run a distinct name")
        names.add(name)
        if run.get("command") not in commands:
            raise ClipscopeError(f"{path}: run {name!r} has command {run.get('command')!r}; use {', '.join(commands)}")
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


def _resolve(p: str, base: Path) -> Path:
    """A relative path from the working directory when it exists there, else from the suite's folder."""
    q = Path(str(p)).expanduser()
    return q if q.exists() or q.is_absolute() else base / q


def run_arguments(run: dict, suite: dict, name: str, base: Path) -> tuple:
    """(cache, keyword arguments, plots) of one suite run for :func:`clipscope.run`; unknown
    options and missing caches are errors here, before any run starts."""
    from clipscope.registry import RUN
    from clipscope.registry import command as declared

    command = run["command"]
    cmd = declared(command)
    s = suite.get("suite", {})
    cache = run.get("cache", s.get("cache"))
    paths = []
    for c in (cache if isinstance(cache, list) else [cache] if cache else []):
        p = _resolve(c, base)
        if not p.exists():
            raise ClipscopeError(f"suite run {name!r}: no cache at {c}")
        paths.append(str(p))
    accepted = set(cmd.accepted()) | {o.name for o in RUN}
    kwargs = {}
    # Suite-wide settings go to the commands that take them (drift, for one, names two models
    # itself; compose's --data is extra captions, not its input: only a run's own data reaches it).
    for key in ("model", "pretrained", "data", "device"):
        value = run.get(key, None if key == "data" and not cmd.suite_data else s.get(key))
        # With a cache, only the commands that run the model need it; data comes from the cache.
        if value is not None and key in accepted and not (paths and key == "data") \
                and not (paths and key in ("model", "pretrained") and not cmd.model_with_cache):
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


def check(suite_file: str | Path, *, out: str | Path | None = None, baseline: str | Path | None = None,
          progress: bool = False, log=None) -> CheckResult:
    """Run the suite at ``suite_file`` and gate it (see the module docstring). ``log(line)``
    hears one line per run as it starts and ends."""
    from clipscope.api import run as run_command
    from clipscope.fileio import guard_outputs
    from clipscope.report import load_report
    from clipscope.report.compare import Row, compare_paths, decide

    path = Path(suite_file)
    suite = load_suite(path)
    s = suite.get("suite", {})
    out_dir = Path(out or s.get("out") or "clipscope-check")
    planned, commands = [], {}
    for k, run in enumerate(suite["run"]):  # every run's arguments are checked before the first runs
        name = run_name(run, k)
        commands[name] = run["command"]
        planned.append((name, run_arguments(run, suite, name, path.parent)))
    base = baseline or s.get("baseline")
    base_path = None if not base else (path.parent / base if not Path(base).is_absolute() and not Path(base).exists()
                                       else Path(base))
    if base_path is not None and not base_path.exists():
        raise ClipscopeError(f"baseline {base}: no such folder of reports (relative paths are read from the working "
                             f"directory, then from {path.parent})")
    base_reports = list(base_path.rglob("*.json")) if base_path is not None and base_path.is_dir() else \
        ([base_path] if base_path is not None else [])
    for name, command in commands.items():  # a rerun replaces its own reports, never the baseline's
        guard_outputs([("--out", out_dir / name / f"{command}.json")], inputs=[path, *base_reports],
                      report_command=command)
    reports = {}
    for name, (cache, kwargs, plots) in planned:
        if log:
            log(f"check: {name} ({commands[name]}) running")
        t0 = time.time()
        try:
            report = run_command(commands[name], cache, plots=plots, progress=progress, **kwargs)
            reports[name] = report.save(out_dir / name, plots=plots)
        except ClipscopeError as e:
            raise ClipscopeError(f"suite run '{name}' failed: {e}") from None
        if log:
            log(f"check: {name} ({commands[name]}) done in {time.time() - t0:.1f}s")
    rule, alpha = s.get("rule", "both"), s.get("alpha", 0.05)
    allow_incomparable = bool(s.get("allow_incomparable", False))
    rows, warnings, summary = [], [], decide([], rule=rule, alpha=alpha, allow_incomparable=allow_incomparable)
    if base_path is not None:
        rows, warnings, summary = compare_paths(base_path, out_dir, tolerance=s.get("tolerance"),
                                                overrides=suite.get("tolerances", {}), rule=rule, alpha=alpha,
                                                allow_missing=bool(s.get("allow_missing", False)),
                                                allow_incomparable=allow_incomparable,
                                                expected={f"{name}/{commands[name]}" for name in commands})
    allow_missing = bool(s.get("allow_missing", False))
    for key, bound in (suite.get("thresholds") or {}).items():
        rname, _, metric = key.partition(".")
        m = load_report(reports[rname], validate=True)["metrics"].get(metric)
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
    return CheckResult(rows, warnings, summary, out_dir, reports)
