"""`demo`: the whole toolkit, offline, on the bundled tiny model and the procedural probes."""

from __future__ import annotations

import time

import click


@click.command("demo")
@click.option("--out", "out", default="demo-out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the caches, reports, plots and report.html.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--overwrite", is_flag=True, help="Start from an empty folder (otherwise reuse what is there).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars on stderr.")
def demo_cmd(out, device, overwrite, quiet):
    """Run extract, gap, uniformity, a small invert, blind pairs on the probe benchmark,
    robustness on a few corruptions, and report, offline, on the bundled tiny model.

    \b
    Example:
      clipscope demo --out demo-out        # then open demo-out/report.html
    """
    from clipscope.api import demo

    t_all = time.time()
    page = demo(out, device=device, overwrite=overwrite, progress=not quiet,
                log=lambda name, seconds: click.echo(f"demo: {name:<11} done in {seconds:5.1f}s"))
    click.echo(f"report: {page}")
    click.echo(f"demo: finished in {time.time() - t_all:.0f}s; open {page}")
