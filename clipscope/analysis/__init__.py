"""Pure analysis functions over arrays: no file I/O, no printing, no click."""

from __future__ import annotations


def metric(value, *, higher_is_better=None, description: str = "", ci95=None, **extra) -> dict:
    """One report metric: ``{"value", "ci95", "higher_is_better", "description"}`` (+ extras)."""
    out = {"value": None if value is None else float(value),
           "ci95": None if ci95 is None else [float(ci95[0]), float(ci95[1])],
           "higher_is_better": higher_is_better, "description": description}
    out.update(extra)
    return out
