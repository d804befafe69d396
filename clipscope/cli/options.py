"""The walk every report-writing command shares: check the outputs, run the library, write."""

from __future__ import annotations

from pathlib import Path

import click


def run_and_write(command: str, cache, values: dict):
    """The whole of an analysis command: check before any work that the outputs can be written
    and destroy nothing, run the library (:func:`clipscope.run`), save the report and plots,
    print a short summary on stdout."""
    from clipscope.api import run
    from clipscope.fileio import atomic_write_text, check_writable, guard_outputs, input_paths

    out, json_out = values.pop("out", None), values.pop("json_out", None)
    quiet, no_plots = values.pop("quiet", False), values.pop("no_plots", False)
    if out is None and json_out is None:
        raise click.UsageError("give --out DIR (report and plots) and/or --json PATH|-")
    if out:
        check_writable(out, folder=True)
    if json_out not in (None, "-"):
        check_writable(json_out, folder=False)
    guard_outputs([("--json", json_out), ("--out", None if out is None else Path(out) / f"{command}.json")],
                  inputs=input_paths([cache, *values.values()]), report_command=command)
    plots = out is not None and not no_plots
    values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}
    report = run(command, cache, progress=not quiet, plots=plots, **values)
    if out is not None:
        report.save(out, plots=plots, progress=not quiet)
    if json_out == "-":
        click.echo(report.to_json(with_figures=plots), nl=False)
    elif json_out:
        atomic_write_text(json_out, report.to_json(with_figures=plots))
    if not quiet and json_out != "-":
        click.echo(report.summary(out))
    return report
