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

ORDER = ["extract", "gap", "uniformity", "invert", "blindpairs", "robustness", "drift"]
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
.plots{display:flex;flex-wrap:wrap;gap:12px}.plots figure{margin:0;max-width:640px}.plots img{max-width:100%;border:1px solid #e3e6ec}
figcaption{font-size:12px;color:#555}.badge{display:inline-block;padding:1px 6px;border-radius:8px;font-size:11px;background:#e8ecf3}
.warn{color:#a00}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)[:200]
    return str(v)


def _metrics_table(metrics: dict) -> str:
    rows = []
    for name, m in metrics.items():
        ci = f"[{_fmt(m['ci95'][0])}, {_fmt(m['ci95'][1])}]" if m.get("ci95") else ""
        hib = {True: "higher", False: "lower", None: ""}[m.get("higher_is_better")]
        unit = {"%": " %", "degrees": "°", "nats": " nats"}.get(m.get("unit") or "", "")
        value = "n/a" if m.get("value") is None else _fmt(m["value"]) + unit
        rows.append(f"<tr><td><code>{esc(name)}</code></td><td class=num>{esc(value)}</td><td class=num>{esc(ci)}</td>"
                    f"<td>{esc(hib)}</td><td>{esc(m.get('description', ''))}</td></tr>")
    return ("<table><tr><th>metric</th><th>value</th><th>95% interval</th><th>better</th><th>definition</th></tr>"
            + "".join(rows) + "</table>")


def _generic_table(name: str, rows) -> str:
    if isinstance(rows, dict):
        if "rows" in rows and isinstance(rows["rows"], list):
            rows = rows["rows"]
        else:
            items = "".join(f"<tr><td>{esc(k)}</td><td>{esc(_fmt(v))}</td></tr>" for k, v in list(rows.items())[:MAX_TABLE_ROWS])
            return f"<h3>{esc(name)}</h3><table>{items}</table>"
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
        return ""
    cols = list(dict.fromkeys(k for r in rows[:MAX_TABLE_ROWS] for k in r))
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{esc(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>"
                   for r in rows[:MAX_TABLE_ROWS])
    more = f"<p class=prov>{len(rows) - MAX_TABLE_ROWS} more rows in the JSON report</p>" if len(rows) > MAX_TABLE_ROWS else ""
    return f"<h3>{esc(name)}</h3><table><tr>{head}</tr>{body}</table>{more}"


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


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


def section(report: dict, base: Path | None = None, root: Path | None = None) -> str:
    """One report as an HTML card; its PNGs are embedded when ``base`` (its folder) and ``root``
    (the run folder they must lie in) are given."""
    m, d = report["model"], report["data"]
    pre = m.get("pretrained", "none")
    badge = "<span class='badge warn'>random init: not a pretrained result</span>" if pre == "none" else ""
    sha = m.get("weights_sha256")
    prov = (f"<p class=prov>model <code>{esc(m.get('name'))}</code> pretrained <code>{esc(pre)}</code> {badge}"
            + (f" weights sha256 <code>{esc(sha[:16])}…</code>" if sha else "")
            + f"<br>data <code>{esc(d.get('spec'))}</code> fingerprint <code>{esc(d.get('fingerprint'))}</code> "
            + " ".join(f"{esc(k)}={esc(v)}" for k, v in d.get("counts", {}).items())
            + f"<br>seed {esc(report['seed'])} · clipscope {esc(report['clipscope_version'])} · {esc(report['created_utc'])}</p>")
    notes = "".join(f"<div class=note>{esc(n)}</div>" for n in report.get("notes", []))
    figs = []
    for name, rel in (report.get("artifacts", {}) if base is not None else {}).items():
        p = embeddable(rel, base, root)
        if p is not None:
            figs.append(f"<figure><img alt='{esc(name)}' src='{_image(p)}'><figcaption>{esc(name)}</figcaption></figure>")
    tables = "".join(_generic_table(k, v) for k, v in report.get("tables", {}).items())
    cmd = report["command"]
    return (f"<section id='{esc(cmd)}'><h2>{esc(cmd)}</h2>{prov}{notes}{_metrics_table(report['metrics'])}"
            f"<div class=plots>{''.join(figs)}</div>{tables}</section>")


def find_reports(run_dir: Path) -> list[tuple[dict, Path]]:
    found = [(rep, p.parent) for rep, p in reports_under(run_dir)]
    for rep, _ in found:
        validate_report(rep)
    found.sort(key=lambda rp: (ORDER.index(rp[0]["command"]) if rp[0]["command"] in ORDER else 99, str(rp[1])))
    return found


def render(run_dir: str | Path, title: str | None = None) -> str:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ClipscopeError(f"{run_dir} is not a folder; give the --out folder of clipscope runs")
    reports = find_reports(run_dir)
    if not reports:
        raise ClipscopeError(f"no clipscope reports (<command>.json) under {run_dir}")
    nav = "".join(f"<a href='#{esc(r['command'])}'>{esc(r['command'])}</a>" for r, _ in reports)
    first = reports[0][0]
    sub = f"{first['model'].get('name')} (pretrained: {first['model'].get('pretrained')}) · {len(reports)} report(s)"
    body = "".join(section(r, base, run_dir) for r, base in reports)
    t = esc(title or f"clipscope report: {run_dir.name}")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{t}</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head>"
            f"<body><header><h1>{t}</h1><p>{esc(sub)}</p></header><nav>{nav}</nav>{body}</body></html>")
