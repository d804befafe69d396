"""The library's one entry: ``clipscope.run(command, ...)`` gives a :class:`Report`.

Every command walks the same way: resolve a cache (a given file, or extraction on demand into
the content-keyed cache), evaluate one task on arrays, build and validate the report. The CLI,
``check``, ``demo`` and a notebook all enter here; nothing in this module knows about click.

>>> import clipscope
>>> r = clipscope.run("gap", model="clipscope-tiny", data="probes:64")
>>> r.metrics["centroid_distance"].value
>>> r.save("runs/gap")            # gap.json and the PNGs
"""

from __future__ import annotations

from clipscope.context import RunContext, data_block, open_cache  # noqa: F401  (re-exported: the library's API)
from clipscope.report.result import Metric, Report  # noqa: F401


def from_arrays(*args, **kwargs):
    """An in-memory cache of embeddings you already have (see :func:`clipscope.cache.from_arrays`);
    any number of runs can share it."""
    from clipscope.cache import from_arrays as build

    return build(*args, **kwargs)


def run(command: str, cache=None, *, progress: bool = False, plots: bool = True, **options) -> Report:
    """Run one diagnostic and return its :class:`Report` (nothing is written until ``save``).

    Parameters
    ----------
    command : the name of a command that writes a report (``clipscope.registry.commands()``:
        gap, uniformity, invert, blindpairs, robustness, drift, compose, direction).
    cache : a cache file or an open cache (e.g. :func:`from_arrays`; for drift ``[old, new]``), or
        None to extract ``data`` with ``model`` first into the content-keyed cache.
    progress : progress bars on stderr.
    plots : lay out the figures (drawn by :meth:`Report.save`).
    options : the command's options with their CLI names in Python form, each validated against
        its declaration (type, range, choices): the shared ones (model, pretrained, weights,
        device, precision, batch_size, workers, decode, data, verify, classnames, seed, as the
        command takes them) and its own (e.g. ``noise_model=True`` for gap); see
        ``clipscope <command> --help`` or ``commands/<command>.md``.

    Returns
    -------
    Report

    Example
    -------
    >>> r = run("uniformity", "cache.h5", t=2.0)
    >>> r.metrics["uniformity_image"].value, r.metrics["uniformity_image"].ci95
    """
    from clipscope.registry import GROUPS, resolve
    from clipscope.registry import command as declared

    cmd = declared(command)
    values = resolve(cmd, options)
    shared = {o.name for g in (*cmd.groups, "run") for o in GROUPS[g]}
    ctx = RunContext(command, progress=progress, plots=plots, **{k: values[k] for k in shared})
    return cmd.run(ctx, cache, **{k: v for k, v in values.items() if k not in shared})


def demo(*args, **kwargs):
    """The offline end-to-end run (see :func:`clipscope.demo.run_demo`)."""
    from clipscope.demo import run_demo

    return run_demo(*args, **kwargs)


__all__ = ["Metric", "Report", "data_block", "demo", "from_arrays", "open_cache", "run"]
