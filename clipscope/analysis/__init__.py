"""Pure analysis functions over arrays: no file I/O, no printing, no click."""

from __future__ import annotations


def metric(value, *, ci95=None, detail: str | None = None, **extra) -> dict:
    """One report metric: its value and 95% interval, what this run adds to its description
    (``detail``: sample sizes, settings) and extras. What it measures, its direction, unit and
    source are its spec's (:mod:`clipscope.metric_specs`), joined when the report is built."""
    out = {"value": None if value is None else float(value),
           "ci95": None if ci95 is None else [float(ci95[0]), float(ci95[1])]}
    if detail:
        out["detail"] = detail
    out.update(extra)
    return out
