"""Compare two reports metric by metric and decide whether the new one regressed.

A change is a regression when it goes in the bad direction (from ``higher_is_better``) and
either exceeds the metric's absolute tolerance, or, when both reports carry 95% intervals, is
significant under a two-sided z-test on the two standard errors (se = interval width / 3.92)
at level ``alpha``. Metrics without a direction are listed but never regress on their value.

A gate must not be fooled by a broken run: a metric the baseline has a finite value for is a
regression when the new report lacks it, or has it as null (NaN on writing), NaN or +-infinity,
whatever its direction, unless ``allow_missing``. When the baseline itself has no finite value
there is nothing to regress from: the row says ``undefined``. Both reports are validated
against the report schema first; a malformed one is an error, not a pass.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from clipscope.errors import ClipscopeError
from clipscope.report import load_report, reports_under

DEFAULT_TOLERANCE = 0.02


@dataclass
class Row:
    report: str
    metric: str
    base: float | None
    new: float | None
    delta: float | None
    higher_is_better: bool | None
    tolerance: float
    p_value: float | None
    status: str  # ok, regression, improvement, changed, missing, new, undefined
    reason: str | None = None  # why a row is a regression when its value alone does not say


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _se(ci) -> float | None:
    if not ci or not all(_finite(c) for c in ci):
        return None
    return (ci[1] - ci[0]) / (2 * 1.959963984540054)


def tolerance_for(name: str, default: float | None, overrides: dict) -> float:
    """``--metric NAME=TOL``, else the metric's registered tolerance (metric_specs, set where the
    general one does not fit its unit: percent, degrees, counts), else ``--tolerance`` or 0.02."""
    from clipscope.metric_specs import spec_of

    if name in overrides:
        return overrides[name]
    spec = spec_of(name)
    if spec is not None and spec.tolerance is not None:
        return spec.tolerance
    return DEFAULT_TOLERANCE if default is None else default


def compare_reports(base: dict, new: dict, *, tolerance: float | None = None, overrides: dict | None = None,
                    alpha: float = 0.05, label: str | None = None, allow_missing: bool = False) -> list[Row]:
    if base["command"] != new["command"]:
        raise ClipscopeError(f"cannot compare a '{base['command']}' report with a '{new['command']}' report")
    overrides = overrides or {}
    label = label or base["command"]
    rows = []
    for name in list(dict.fromkeys([*base["metrics"], *new["metrics"]])):
        b, n = base["metrics"].get(name), new["metrics"].get(name)
        tol = tolerance_for(name, tolerance, overrides)
        bv, nv = (b or {}).get("value"), (n or {}).get("value")
        hib = (n or {}).get("higher_is_better")
        hib = (b or {}).get("higher_is_better") if hib is None else hib
        if not (_finite(bv) and _finite(nv)):
            rows.append(_undefined_row(label, name, b, n, bv, nv, hib, tol, allow_missing))
            continue
        delta = nv - bv
        p = None
        sb, sn = _se(b.get("ci95")), _se(n.get("ci95"))
        if sb is not None and sn is not None:
            s = math.hypot(sb, sn)
            p = 1.0 if s == 0 else math.erfc(abs(delta) / s / math.sqrt(2))
        bad = (hib is True and delta < 0) or (hib is False and delta > 0)
        significant = p is not None and p < alpha and delta != 0
        if hib is None:
            status = "changed" if abs(delta) > tol else "ok"
        elif bad and (abs(delta) > tol or significant):
            status = "regression"
        elif not bad and delta != 0 and (abs(delta) > tol or significant):
            status = "improvement"
        else:
            status = "ok"
        rows.append(Row(label, name, bv, nv, delta, hib, tol, p, status))
    return rows


def _undefined_row(label, name, b, n, bv, nv, hib, tol, allow_missing) -> Row:
    """A row where at least one side has no finite value."""
    shown = lambda v: v if _finite(v) else None  # noqa: E731  (JSON output stays valid)
    if b is None:
        return Row(label, name, None, shown(nv), None, hib, tol, None, "new")
    if not _finite(bv):
        return Row(label, name, None, shown(nv), None, hib, tol, None, "new" if _finite(nv) else "undefined",
                   "the baseline has no finite value")
    if n is None:
        why = "missing from the new report"
    elif nv is None:
        why = "null in the new report (not computed, or NaN)"
    else:
        why = f"{nv} in the new report"
    status = "missing" if allow_missing else "regression"
    return Row(label, name, bv, None, None, hib, tol, None, status, why)


def _reports_in(path: Path) -> dict[str, tuple[dict, Path]]:
    if path.is_file():
        r = load_report(path, validate=True)
        return {r["command"]: (r, path)}
    if not path.is_dir():
        raise ClipscopeError(f"{path}: no such report file or run folder")
    out = {str(p.relative_to(path).with_suffix("")): (r, p) for r, p in reports_under(path, validate=True)}
    if not out:
        raise ClipscopeError(f"no clipscope reports under {path}")
    return out


def compare_paths(base: str | Path, new: str | Path, **kw) -> tuple[list[Row], list[str]]:
    """Compare two report files, or two run folders (reports matched by relative path)."""
    b, n = _reports_in(Path(base)), _reports_in(Path(new))
    warnings = []
    if Path(base).is_file() != Path(new).is_file():
        raise ClipscopeError("compare two report files or two run folders, not one of each")
    if Path(base).is_file():
        pairs = [(next(iter(b.values())), next(iter(n.values())), next(iter(b)))]
    else:
        common = sorted(set(b) & set(n))
        if not common:
            raise ClipscopeError(f"{base} and {new} hold no reports with the same relative paths")
        for missing in sorted(set(b) - set(n)):
            warnings.append(f"{missing}: in the baseline only")
        pairs = [(b[k], n[k], k) for k in common]
    rows = []
    for (rb, _), (rn, _), key in pairs:
        if rb["data"].get("fingerprint") and rn["data"].get("fingerprint") and rb["data"]["fingerprint"] != rn["data"]["fingerprint"]:
            warnings.append(f"{key}: the data fingerprints differ ({rb['data']['fingerprint']} vs {rn['data']['fingerprint']})")
        rows += compare_reports(rb, rn, label=key, **kw)
    return rows, warnings


def _num(v) -> str:
    return "" if v is None else (f"{v:+.4g}" if isinstance(v, float) and v != 0 else f"{v:.4g}" if isinstance(v, float) else str(v))


def format_rows(rows: list[Row], warnings: list[str], fmt: str = "table") -> str:
    regressions = [r for r in rows if r.status == "regression"]
    warnings = list(warnings) + [f"{r.report}.{r.metric}: {r.reason}" for r in rows if r.reason]
    if fmt == "json":
        return json.dumps({"regressions": len(regressions), "warnings": warnings, "rows": [asdict(r) for r in rows]}, indent=2)
    header = ["report", "metric", "base", "new", "delta", "tolerance", "p", "status"]
    lines = []
    for r in rows:
        lines.append([r.report, r.metric, "" if r.base is None else f"{r.base:.4g}", "" if r.new is None else f"{r.new:.4g}",
                      _num(r.delta), f"{r.tolerance:g}", "" if r.p_value is None else f"{r.p_value:.3g}", r.status])
    verdict = (f"{len(regressions)} regression(s): " + ", ".join(f"{r.report}.{r.metric}" for r in regressions)
               if regressions else "no regression")
    if fmt == "markdown":
        icon = {"regression": "❌ regression", "improvement": "✅ improvement"}
        md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(icon.get(c, c) if k == 7 else c.replace("|", "\\|") for k, c in enumerate(line)) + " |"
               for line in lines]
        out = [f"### clipscope compare: {verdict}", "", *md]
        out += [f"- warning: {w}" for w in warnings]
        return "\n".join(out)
    widths = [max(len(header[k]), *(len(line[k]) for line in lines)) if lines else len(header[k]) for k in range(len(header))]
    fmt_line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [fmt_line(header), fmt_line(["-" * w for w in widths])] + [fmt_line(line) for line in lines]
    out += [f"warning: {w}" for w in warnings] + [verdict]
    return "\n".join(out)


def parse_metric_overrides(items) -> dict:
    out = {}
    for item in items or ():
        name, sep, val = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(val)
        except ValueError:
            raise ClipscopeError(f"--metric {item!r}: use NAME=TOLERANCE, e.g. --metric centroid_distance=0.05") from None
    return out
