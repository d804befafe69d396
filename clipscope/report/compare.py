"""Compare reports metric by metric and decide, with a controlled error rate, whether the new one
regressed.

The decision rule (``rule``):

- ``both`` (default): a change is a regression when it goes in the metric's bad direction, is
  larger than the metric's tolerance (practical significance), and is significant under a
  one-sided z-test on the two reports' standard errors (se = ci95 width / 3.92) after Holm's
  correction over every metric tested in this comparison (all reports together), so the chance
  that a comparison of two runs of one unchanged model flags anything is at most ``alpha``;
- ``significance``: significant after Holm, whatever the size;
- ``tolerance``: larger than the tolerance, whatever the noise (no error control).

A metric with an interval on one side only, or none, cannot be tested: under ``both`` it is
gated on its tolerance alone, unless its report says why no valid interval exists on this data
(``no_interval``), and then it is listed, not gated; under ``significance`` it is listed.
An interval of zero width (a statistic over fixed rows, e.g. class prompts) has no sampling
error: any change of it is significant.

Like with like: two reports whose data fingerprint or counts differ, or whose configuration
defines a metric differently (the command's own keys and the metric's ``defined_by`` in
:mod:`clipscope.metric_specs`: templates, corruption cells, thresholds, steps), or whose
``coverage`` of a metric differs, are *incomparable* on those metrics: listed, never gated,
and a failure of the gate (exit 3) unless ``allow_incomparable``.

A gate must not be fooled by a broken run: a metric the baseline has a finite value for is a
regression when the new report lacks it, or has it as null (NaN on writing), NaN or +-infinity,
unless ``allow_missing``, or unless the new report was not asked for it (its spec's
``requires`` is unset in the new configuration: e.g. gap run without --noise-model). Both
reports are validated against the report schema first; a malformed one is an error, not a pass.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from clipscope.errors import ClipscopeError
from clipscope.report import load_report, reports_under

DEFAULT_TOLERANCE = 0.02
RULES = ("both", "significance", "tolerance")
Z95 = 1.959963984540054
# The counts that are sample sizes (others, such as encoder calls, describe how a run went).
SAMPLE_COUNTS = ("images", "texts", "pairs", "cases", "classes")


@dataclass
class Row:
    report: str
    metric: str
    base: float | None
    new: float | None
    delta: float | None
    higher_is_better: bool | None
    tolerance: float
    p_value: float | None  # one-sided, in the bad direction (None: not testable)
    status: str  # ok, regression, improvement, changed, missing, not run, new, undefined, incomparable, not gated
    reason: str | None = None  # why a row has its status when the values alone do not say
    p_adjusted: float | None = None  # Holm-adjusted


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _se(ci) -> float | None:
    if not ci or not all(_finite(c) for c in ci):
        return None
    return (ci[1] - ci[0]) / (2 * Z95)


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


def _bad_p(delta: float, hib: bool, sb: float, sn: float) -> float:
    """One-sided p-value of the change in its bad direction (1 when it goes the good way)."""
    bad = -delta if hib else delta
    s = math.hypot(sb, sn)
    if s == 0:
        return 0.0 if bad > 0 else 1.0
    return 0.5 * math.erfc(bad / s / math.sqrt(2))


def comparability(base: dict, new: dict) -> tuple[str | None, str | None]:
    """``(why the reports cannot be compared, what to note)``: other sample sizes make every
    metric incomparable (estimates such as a nearest-neighbour maximum depend on n); other data
    of the same size are compared as two samples of one population, which the intervals are
    for, and the table says so."""
    cb, cn = base["data"].get("counts") or {}, new["data"].get("counts") or {}
    differ = [k for k in SAMPLE_COUNTS if k in cb and k in cn and cb[k] != cn[k]]
    if differ:
        return "the sample sizes differ (" + ", ".join(f"{k} {cb[k]} vs {cn[k]}" for k in differ) + ")", None
    fb, fn = base["data"].get("fingerprint"), new["data"].get("fingerprint")
    if fb and fn and fb != fn:
        return None, (f"the data differ (fingerprint {fb} vs {fn}): compared as two samples of one population; "
                      "gate a release on the baseline's own data to compare the models alone")
    return None, None


def _definition_change(name: str, command: str, base: dict, new: dict) -> str | None:
    """Why ``name`` means something else in the two reports (a defining config key or its
    coverage differs), or None."""
    from clipscope.metric_specs import COMMAND_DEFINES, spec_of

    spec = spec_of(name)
    keys = list(COMMAND_DEFINES.get(command, ())) + list(spec.defined_by if spec else ())
    for k in keys:
        vb, vn = base["config"].get(k), new["config"].get(k)
        if json.dumps(vb, sort_keys=True, default=str) != json.dumps(vn, sort_keys=True, default=str):
            show = lambda v: (json.dumps(v, default=str)[:60] + "...") if len(json.dumps(v, default=str)) > 63 \
                else json.dumps(v, default=str)  # noqa: E731
            return f"config {k} differs ({show(vb)} vs {show(vn)})"
    cov_b = (base["metrics"].get(name) or {}).get("coverage")
    cov_n = (new["metrics"].get(name) or {}).get("coverage")
    if cov_b is not None and cov_n is not None and cov_b != cov_n:
        return f"coverage differs ({json.dumps(cov_b)} vs {json.dumps(cov_n)})"
    return None


def _was_asked(name: str, new: dict) -> bool:
    """Whether the new report's configuration asked for ``name`` (its spec's ``requires``)."""
    from clipscope.metric_specs import spec_of

    spec = spec_of(name)
    return spec is None or all(new["config"].get(k) for k in spec.requires)


def compare_reports(base: dict, new: dict, *, tolerance: float | None = None, overrides: dict | None = None,
                    label: str | None = None, allow_missing: bool = False) -> list[Row]:
    """Rows of one pair of reports, before the family-wise decision (see :func:`decide`): each
    testable row carries its one-sided p-value and a provisional status."""
    if base["command"] != new["command"]:
        raise ClipscopeError(f"cannot compare a '{base['command']}' report with a '{new['command']}' report")
    overrides = overrides or {}
    label = label or base["command"]
    apart, _ = comparability(base, new)
    rows = []
    for name in list(dict.fromkeys([*base["metrics"], *new["metrics"]])):
        b, n = base["metrics"].get(name), new["metrics"].get(name)
        tol = tolerance_for(name, tolerance, overrides)
        bv, nv = (b or {}).get("value"), (n or {}).get("value")
        hib = (n or {}).get("higher_is_better")
        hib = (b or {}).get("higher_is_better") if hib is None else hib
        why_apart = apart or (_definition_change(name, base["command"], base, new) if b and n else None)
        if why_apart and b is not None and n is not None:
            rows.append(Row(label, name, bv if _finite(bv) else None, nv if _finite(nv) else None,
                            nv - bv if _finite(bv) and _finite(nv) else None, hib, tol, None, "incomparable", why_apart))
            continue
        if not (_finite(bv) and _finite(nv)):
            rows.append(_undefined_row(label, name, b, n, bv, nv, hib, tol, allow_missing, new))
            continue
        delta = nv - bv
        sb, sn = _se(b.get("ci95")), _se(n.get("ci95"))
        p = _bad_p(delta, hib, sb, sn) if hib is not None and sb is not None and sn is not None else None
        reason = None
        if p is None and hib is not None:
            reason = (n or {}).get("no_interval") or (b or {}).get("no_interval")
        rows.append(Row(label, name, bv, nv, delta, hib, tol, p, "ok", reason))
    return rows


def _undefined_row(label, name, b, n, bv, nv, hib, tol, allow_missing, new) -> Row:
    """A row where at least one side has no finite value."""
    shown = lambda v: v if _finite(v) else None  # noqa: E731  (JSON output stays valid)
    if b is None:
        return Row(label, name, None, shown(nv), None, hib, tol, None, "new")
    if not _finite(bv):
        return Row(label, name, None, shown(nv), None, hib, tol, None, "new" if _finite(nv) else "undefined",
                   "the baseline has no finite value")
    if n is None and not _was_asked(name, new):
        return Row(label, name, bv, None, None, hib, tol, None, "not run",
                   "the new run was not asked for it (see the metric's options)")
    if n is None:
        why = "missing from the new report"
    elif nv is None:
        why = "null in the new report (not computed, or NaN)"
    else:
        why = f"{nv} in the new report"
    return Row(label, name, bv, None, None, hib, tol, None, "missing" if allow_missing else "regression", why)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control at any level)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda k: p_values[k])
    out, running = [0.0] * m, 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[k]))
        out[k] = running
    return out


def decide(rows: list[Row], *, rule: str = "both", alpha: float = 0.05, allow_incomparable: bool = False) -> dict:
    """Set each row's final status under ``rule`` with Holm's correction over every testable
    row; returns a summary of the rule (for the output)."""
    if rule not in RULES:
        raise ClipscopeError(f"--rule {rule!r}: use one of {', '.join(RULES)}")
    tested = [r for r in rows if r.status == "ok" and r.p_value is not None]
    for r, adj in zip(tested, holm([r.p_value for r in tested])):
        r.p_adjusted = adj
    for r in rows:
        if r.status == "incomparable" and allow_incomparable:
            r.reason = f"{r.reason} (allowed)"
        if r.status != "ok":
            continue
        if r.higher_is_better is None:
            r.status = "changed" if abs(r.delta) > r.tolerance else "ok"
            continue
        bad = (r.delta < 0) if r.higher_is_better else (r.delta > 0)
        beyond = abs(r.delta) > r.tolerance
        significant = r.p_adjusted is not None and r.p_adjusted < alpha
        if rule == "tolerance":
            flag = beyond
        elif r.p_value is None:  # no interval on one side
            if rule == "significance" or r.reason:
                r.status = "not gated" if bad and beyond else "ok"
                r.reason = r.reason or "no interval on both sides: not tested"
                continue
            flag = beyond
        else:
            flag = significant and (beyond or rule == "significance")
        if flag:
            r.status = "regression" if bad else "improvement"
    return {"rule": rule, "alpha": alpha, "tested": len(tested),
            "correction": f"Holm over {len(tested)} tested metric(s)" if rule != "tolerance" else "none",
            "allow_incomparable": allow_incomparable}


def failed(rows: list[Row], summary: dict) -> bool:
    """Whether the gate fails: a regression, or (unless allowed) an incomparable metric."""
    return any(r.status == "regression" or (r.status == "incomparable" and not summary["allow_incomparable"])
               for r in rows)


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


def compare_paths(base: str | Path, new: str | Path, *, rule: str = "both", alpha: float = 0.05,
                  allow_incomparable: bool = False, expected: set[str] | None = None,
                  **kw) -> tuple[list[Row], list[str], dict]:
    """Compare two report files, or two run folders (reports matched by relative path), and
    decide under ``rule``. ``expected``: the relative paths of the new run's reports (a suite's
    runs): a baseline report outside it is not a run of this comparison. Returns (rows,
    warnings, the rule's summary)."""
    b, n = _reports_in(Path(base)), _reports_in(Path(new))
    warnings = []
    if Path(base).is_file() != Path(new).is_file():
        raise ClipscopeError("compare two report files or two run folders, not one of each")
    if Path(base).is_file():
        pairs = [(next(iter(b.values())), next(iter(n.values())), next(iter(b)))]
    else:
        common = sorted(k for k in set(b) & set(n) if expected is None or k in expected)
        if not common:
            raise ClipscopeError(f"{base} and {new} hold no reports with the same relative paths")
        for missing in sorted(set(b) - set(n)):
            if expected is None or missing in expected:
                warnings.append(f"{missing}: in the baseline only")
        pairs = [(b[k], n[k], k) for k in common]
    rows = []
    for (rb, _), (rn, _), key in pairs:
        note = comparability(rb, rn)[1]
        if note:
            warnings.append(f"{key}: {note}")
        rows += compare_reports(rb, rn, label=key, **kw)
    summary = decide(rows, rule=rule, alpha=alpha, allow_incomparable=allow_incomparable)
    return rows, warnings, summary


def _num(v) -> str:
    return "" if v is None else (f"{v:+.4g}" if isinstance(v, float) and v != 0 else f"{v:.4g}" if isinstance(v, float) else str(v))


def verdict(rows: list[Row], summary: dict) -> str:
    regressions = [r for r in rows if r.status == "regression"]
    apart = [r for r in rows if r.status == "incomparable"]
    parts = []
    if regressions:
        parts.append(f"{len(regressions)} regression(s): " + ", ".join(f"{r.report}.{r.metric}" for r in regressions))
    if apart:
        parts.append(f"{len(apart)} metric(s) not comparable{' (allowed)' if summary['allow_incomparable'] else ''}: "
                     + ", ".join(f"{r.report}.{r.metric}" for r in apart[:6]) + (" ..." if len(apart) > 6 else ""))
    return "; ".join(parts) if parts else "no regression"


def rule_line(summary: dict) -> str:
    if summary["rule"] == "tolerance":
        return "rule: tolerance (a bad change beyond the metric's tolerance; no error control)"
    what = "beyond its tolerance and " if summary["rule"] == "both" else ""
    return (f"rule: {summary['rule']} (a bad change {what}significant in a one-sided z-test; "
            f"family-wise error {summary['alpha']:g} by {summary['correction']})")


def format_rows(rows: list[Row], warnings: list[str], fmt: str = "table", summary: dict | None = None) -> str:
    summary = summary or decide([], rule="both")
    warnings = list(warnings) + [f"{r.report}.{r.metric}: {r.reason}" for r in rows if r.reason and r.status != "not run"]
    head = verdict(rows, summary)
    if fmt == "json":
        return json.dumps({"regressions": sum(r.status == "regression" for r in rows),
                           "incomparable": sum(r.status == "incomparable" for r in rows), "verdict": head,
                           "rule": summary, "warnings": warnings, "rows": [asdict(r) for r in rows]}, indent=2)
    header = ["report", "metric", "base", "new", "delta", "tolerance", "p (Holm)", "status"]
    lines = []
    for r in rows:
        p = "" if r.p_value is None else f"{r.p_adjusted if r.p_adjusted is not None else r.p_value:.3g}"
        lines.append([r.report, r.metric, "" if r.base is None else f"{r.base:.4g}", "" if r.new is None else f"{r.new:.4g}",
                      _num(r.delta), f"{r.tolerance:g}", p, r.status])
    if fmt == "markdown":
        icon = {"regression": "❌ regression", "improvement": "✅ improvement", "incomparable": "⚠️ incomparable"}
        md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(icon.get(c, c) if k == 7 else c.replace("|", "\\|") for k, c in enumerate(line)) + " |"
               for line in lines]
        out = [f"### clipscope compare: {head}", "", rule_line(summary), "", *md]
        out += [f"- warning: {w}" for w in warnings]
        return "\n".join(out)
    widths = [max(len(header[k]), *(len(line[k]) for line in lines)) if lines else len(header[k]) for k in range(len(header))]
    fmt_line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [fmt_line(header), fmt_line(["-" * w for w in widths])] + [fmt_line(line) for line in lines]
    out += [f"warning: {w}" for w in warnings] + [rule_line(summary), head]
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
