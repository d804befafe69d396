"""One self-contained HTML file for every report in a run folder (plots embedded as data URIs).

Every string that comes from data (captions, ids, class names, paths, notes) goes through
:func:`html.escape`; nothing from a report is ever inserted as markup.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from clipscope.errors import ClipscopeError
from clipscope.report import reports_under, validate_report

MAX_TABLE_ROWS = 25

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9cfdb;font-size:13px}
nav{padding:8px 28px;background:#fff;border-bottom:1px solid #dde1e8;font-size:14px}nav a{margin-right:14px}
section{background:#fff;margin:18px 28px;padding:16px 22px;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{margin-top:0;font-size:19px}h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border-bottom:1px solid #e3e6ec;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f0f2f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.prov{font-size:13px;color:#444}.prov code{background:#f0f2f6;padding:1px 4px;border-radius:3px}
.note{font-size:13px;color:#6a4b00;background:#fff7e0;border-left:3px solid #e0b000;padding:4px 8px;margin:4px 0}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:14px}.plots figure{margin:0}
.plots img{width:100%;height:auto;border:1px solid #e3e6ec}.plots figure.wide{grid-column:span 2}
td.ci,td.num{white-space:nowrap}
.summary td,.summary th{white-space:nowrap}.summary td.status{white-space:normal;min-width:14em}
section{overflow-x:auto}tr.regressed td{background:#fdecec}.bad{color:#a00;font-weight:600}
details{margin:8px 0}summary{cursor:pointer;font-weight:600;font-size:14px}
figcaption{font-size:12px;color:#555}.badge{display:inline-block;padding:1px 6px;border-radius:8px;font-size:11px;background:#e8ecf3}
.warn{color:#a00}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(v) -> str:
    """A value for people: 4 significant digits, '–' for missing, yes/no for flags."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "–"
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v[:8]) + (" …" if len(v) > 8 else "")
    if isinstance(v, dict):
        return json.dumps(v)[:200]
    return str(v)


UNITS = {"%": " %", "degrees": "°", "nats": " nats"}


def _value(m: dict) -> str:
    if m.get("value") is None:
        return "n/a"
    return _fmt(m["value"]) + UNITS.get(m.get("unit") or "", "")


def _metrics_table(metrics: dict) -> str:
    rows = []
    for name, m in metrics.items():
        ci = f"[{_fmt(m['ci95'][0])}, {_fmt(m['ci95'][1])}]" if m.get("ci95") else ""
        hib = {True: "higher", False: "lower", None: ""}[m.get("higher_is_better")]
        value = _value(m)
        rows.append(f"<tr><td><code>{esc(name)}</code></td><td class=num>{esc(value)}</td><td class='num ci'>{esc(ci)}</td>"
                    f"<td>{esc(hib)}</td><td>{esc(m.get('description', ''))}</td></tr>")
    return ("<table><tr><th>metric</th><th>value</th><th>95% interval</th><th>better</th><th>definition</th></tr>"
            + "".join(rows) + "</table>")


def _generic_table(name: str, rows) -> str:
    """A report table, collapsed (click to open) when it is long."""
    title = name.replace("_", " ")
    if isinstance(rows, dict):
        if "rows" in rows and isinstance(rows["rows"], list):
            rows = rows["rows"]
        else:
            items = "".join(f"<tr><td>{esc(k)}</td><td class=num>{esc(_fmt(v))}</td></tr>"
                            for k, v in list(rows.items())[:MAX_TABLE_ROWS])
            return f"<details><summary>{esc(title)}</summary><table>{items}</table></details>"
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
        return ""
    cols = list(dict.fromkeys(k for r in rows[:MAX_TABLE_ROWS] for k in r))
    head = "".join(f"<th>{esc(c.replace('_', ' '))}</th>" for c in cols)
    cell = lambda v: f"<td class=num>{esc(_fmt(v))}</td>" if isinstance(v, (int, float)) else f"<td>{esc(_fmt(v))}</td>"  # noqa: E731
    body = "".join("<tr>" + "".join(cell(r.get(c)) for c in cols) + "</tr>" for r in rows[:MAX_TABLE_ROWS])
    more = f"<p class=prov>{len(rows) - MAX_TABLE_ROWS} more rows in the JSON report</p>" if len(rows) > MAX_TABLE_ROWS else ""
    table = f"<table><tr>{head}</tr>{body}</table>{more}"
    if len(rows) <= 8:
        return f"<h3>{esc(title)}</h3>{table}"
    return f"<details><summary>{esc(title)} ({len(rows)} rows)</summary>{table}</details>"


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, from its IHDR header."""
    import struct

    with open(path, "rb") as fh:
        head = fh.read(24)
    return struct.unpack(">II", head[16:24])


def _is_wide(path: Path) -> bool:
    """Figures drawn wider than one panel (two-panel plots, image grids whose captions must stay
    readable) get two grid columns: in one (about 380 px) their text would be too small to read."""
    w, h = _size(path)
    return w / max(h, 1) > 1.8 or w > 1200


def embeddable(rel: str, base: Path, root: Path) -> Path | None:
    """The PNG an artifact names, when it lies inside the run folder ``root`` (after resolving
    links) and is a PNG; None otherwise. A report is data: it must not pull arbitrary files
    (absolute paths, ``..``, links out of the folder) into a page that gets shared."""
    if Path(rel).is_absolute():
        return None
    p = (base / rel).resolve()
    if not p.is_relative_to(root.resolve()) or p.suffix.lower() != ".png" or not p.is_file():
        return None
    with open(p, "rb") as fh:
        return p if fh.read(8) == PNG_MAGIC else None


def run_title(report: dict, rel: str | None = None) -> str:
    """A run's title: its command, its folder, and the settings that tell runs apart."""
    from clipscope.registry import commands

    c = report.get("config", {})
    declared = commands().get(report["command"])
    keys = declared.title_config if declared is not None else ()
    bits = [f"{label} {_fmt(c[k])}" for k, label in keys if c.get(k) is not None]
    m = report["model"]
    model = f"{m.get('name')} ({m.get('pretrained')})"
    if "old" in m:
        model = f"{m['old'].get('name')} ({m['old'].get('pretrained')}) → {model}"
    where = f" · {rel}" if rel and rel not in (".", report["command"]) else ""
    return f"{report['command']}{where} · {model}" + (f" · {', '.join(bits)}" if bits else "")


def section(report: dict, base: Path | None = None, root: Path | None = None, *, sid: str | None = None,
            title: str | None = None) -> str:
    """One report as an HTML card; its PNGs are embedded when ``base`` (its folder) and ``root``
    (the run folder they must lie in) are given."""
    m, d = report["model"], report["data"]
    pre = m.get("pretrained", "none")
    badge = "<span class='badge warn'>random init: not a pretrained result</span>" if pre == "none" else ""
    sha = m.get("weights_sha256")
    prov = (f"<p class=prov>model <code>{esc(m.get('name'))}</code> pretrained <code>{esc(pre)}</code> {badge}"
            + (f" weights sha256 <code>{esc(sha[:16])}…</code>" if sha else "")
            + f"<br>data <code>{esc(d.get('spec'))}</code> "
            + (f"fingerprint <code>{esc(d['fingerprint'])}</code> " if d.get("fingerprint") else "")
            + " ".join(f"{esc(k)}={esc(v)}" for k, v in d.get("counts", {}).items())
            + f"<br>seed {esc(report['seed'])} · clipscope {esc(report['clipscope_version'])} · {esc(report['created_utc'])}</p>")
    notes = "".join(f"<div class=note>{esc(n)}</div>" for n in report.get("notes", []))
    figs = []
    for name, rel in (report.get("artifacts", {}) if base is not None else {}).items():
        p = embeddable(rel, base, root)
        if p is not None:
            wide = " class=wide" if _is_wide(p) else ""
            figs.append(f"<figure{wide}><img alt='{esc(name)}' src='{_image(p)}'><figcaption>{esc(name)}</figcaption></figure>")
    tables = "".join(_generic_table(k, v) for k, v in report.get("tables", {}).items())
    sid = sid or report["command"]
    return (f"<section id='{esc(sid)}'><h2>{esc(title or run_title(report))}</h2>{prov}{notes}"
            f"{_metrics_table(report['metrics'])}<div class=plots>{''.join(figs)}</div>{tables}</section>")


def find_reports(run_dir: Path) -> list[tuple[dict, Path]]:
    found = [(rep, p.parent) for rep, p in reports_under(run_dir)]
    for rep, _ in found:
        validate_report(rep)
    from clipscope.registry import commands

    order = list(commands())  # the declared commands' order
    found.sort(key=lambda rp: (order.index(rp[0]["command"]) if rp[0]["command"] in order else 99, str(rp[1])))
    return found


def _headline(report: dict) -> list[str]:
    from clipscope.tasks import summary_keys

    keys = [k for k in summary_keys(report["command"]) if k in report["metrics"]][:3]
    return [f"{k} {_value(report['metrics'][k])}" for k in keys]


def render(run_dir: str | Path, title: str | None = None, *, baseline: str | Path | None = None) -> str:
    """The page for every report under ``run_dir``: a summary row per run (with ``baseline``,
    the runs that regressed against it first), then one section per run."""
    from clipscope.report.compare import compare_reports, decide

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ClipscopeError(f"{run_dir} is not a folder; give the --out folder of clipscope runs")
    reports = find_reports(run_dir)
    if not reports:
        raise ClipscopeError(f"no clipscope reports (<command>.json) under {run_dir}")
    base_reports = {}
    if baseline is not None:
        if not Path(baseline).is_dir():
            raise ClipscopeError(f"--baseline {baseline}: no such folder of reports")
        base_reports = {str(p.relative_to(baseline).with_suffix("")): r for r, p in reports_under(baseline, validate=True)}
    runs, rows_by_key = [], {}
    for k, (rep, base) in enumerate(reports):
        rel = base.relative_to(run_dir).as_posix()
        key = (Path(rel) / rep["command"]).as_posix() if rel != "." else rep["command"]
        if key in base_reports and base_reports[key]["command"] == rep["command"]:
            rows_by_key[key] = compare_reports(base_reports[key], rep, label=key)
        sid = f"run-{k}-" + "".join(ch if ch.isalnum() else "-" for ch in key)
        runs.append({"report": rep, "base": base, "rel": rel, "sid": sid, "key": key, "compared": key in base_reports})
    decide([r for rows in rows_by_key.values() for r in rows])  # one family: the gate's own decision
    for run in runs:
        run["regressed"] = [r.metric for r in rows_by_key.get(run["key"], []) if r.status == "regression"]
    if base_reports:
        runs.sort(key=lambda r: not r["regressed"])  # regressions first
    rows = []
    for r in runs:
        status = ""
        if baseline is not None:
            status = (f"<span class=bad>{len(r['regressed'])} regression(s): {esc(', '.join(r['regressed']))}</span>"
                      if r["regressed"] else ("ok" if r["compared"] else "no baseline"))
        rows.append(f"<tr class='{'regressed' if r['regressed'] else ''}'><td><a href='#{esc(r['sid'])}'>"
                    f"{esc(run_title(r['report'], r['rel']))}</a></td><td>{esc(' · '.join(_headline(r['report'])))}</td>"
                    + (f"<td class=status>{status}</td>" if baseline is not None else "") + "</tr>")
    head = "<tr><th>run</th><th>headline metrics</th>" + ("<th>against the baseline</th>" if baseline is not None else "") + "</tr>"
    summary = f"<section id=summary><h2>Summary</h2><table class=summary>{head}{''.join(rows)}</table></section>"
    first = reports[0][0]
    n_bad = sum(bool(r["regressed"]) for r in runs)
    sub = (f"{first['model'].get('name')} (pretrained: {first['model'].get('pretrained')}) · {len(reports)} report(s)"
           + (f" · {n_bad} run(s) regressed against {baseline}" if baseline is not None else ""))
    body = "".join(section(r["report"], r["base"], run_dir, sid=r["sid"], title=run_title(r["report"], r["rel"]))
                   for r in runs)
    nav = "<a href='#summary'>summary</a>" + "".join(
        f"<a href='#{esc(r['sid'])}'>{esc(r['report']['command'])}{'' if r['rel'] in ('.', r['report']['command']) else ' (' + esc(r['rel']) + ')'}</a>"
        for r in runs)
    return _page(title or f"clipscope report: {run_dir.name}", esc(sub), nav + "", summary + body)


def _page(title: str, sub_html: str, nav_html: str, body_html: str) -> str:
    t = esc(title)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{t}</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head>"
            f"<body><header><h1>{t}</h1><p>{sub_html}</p></header><nav>{nav_html}</nav>{body_html}</body></html>")


def compare_page(rows, warnings: list[str], title: str, summary: dict) -> str:
    """``compare --format html``: the comparison as a page, regressions first."""
    from clipscope.report.compare import rule_line, verdict

    order = {"regression": 0, "incomparable": 1, "missing": 2, "improvement": 3, "changed": 4, "not gated": 5, "not run": 6,
             "new": 7, "undefined": 8, "ok": 9}
    rows = sorted(rows, key=lambda r: order.get(r.status, 9))
    head = "<tr><th>report</th><th>metric</th><th>base</th><th>new</th><th>delta</th><th>tolerance</th><th>p (Holm)</th><th>status</th></tr>"
    body = "".join(
        f"<tr class='{'regressed' if r.status == 'regression' else ''}'><td>{esc(r.report)}</td><td><code>{esc(r.metric)}</code></td>"
        f"<td class=num>{esc(_fmt(r.base))}</td><td class=num>{esc(_fmt(r.new))}</td><td class=num>{esc(_fmt(r.delta))}</td>"
        f"<td class=num>{esc(_fmt(r.tolerance))}</td><td class=num>{esc(_fmt(r.p_adjusted if r.p_adjusted is not None else r.p_value))}</td>"
        f"<td>{'<span class=bad>regression</span>' if r.status == 'regression' else esc(r.status)}</td></tr>" for r in rows)
    notes = "".join(f"<div class=note>{esc(w)}</div>" for w in [rule_line(summary), *warnings])
    head_line = verdict(rows, summary)
    return _page(title, esc(head_line), "", f"<section><h2>{esc(head_line)}</h2>{notes}<table>{head}{body}</table></section>")
