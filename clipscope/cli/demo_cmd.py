"""`demo`: the whole toolkit, offline, on the bundled tiny model and the procedural probes."""

from __future__ import annotations

import time
from pathlib import Path

import click

# Each step is an ordinary clipscope command line; {out} is the demo folder.
DEMO_STEPS = [
    ("extract", ["extract", "--model", "clipscope-tiny", "--data", "probes:256", "--out", "{out}/cache.h5",
                 "--workers", "0", "--quiet"]),
    ("gap", ["gap", "{out}/cache.h5", "--out", "{out}/gap", "--bootstrap", "100", "--quiet"]),
    ("uniformity", ["uniformity", "{out}/cache.h5", "--out", "{out}/uniformity", "--quiet"]),
    ("invert", ["invert", "{out}/cache.h5", "--model", "clipscope-tiny", "--mode", "oti", "--steps", "40",
                "--out", "{out}/invert", "--quiet"]),
    ("blindpairs", ["blindpairs", "--model", "clipscope-tiny", "--benchmark", "probes", "--out", "{out}/blindpairs",
                    "--quiet"]),
    ("robustness", ["robustness", "--model", "clipscope-tiny", "--data", "probes:128:1",
                    "--corruptions", "gaussian_noise,defocus_blur,fog,contrast,jpeg_compression", "--severities", "1,3,5",
                    "--out", "{out}/robustness", "--workers", "0", "--quiet"]),
]


@click.command("demo")
@click.option("--out", "out", default="demo-out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the caches, reports, plots and report.html.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--overwrite", is_flag=True, help="Start from an empty folder (otherwise reuse what is there).")
def demo_cmd(out, device, overwrite):
    """Run extract, gap, uniformity, a small invert, blind pairs on the probe benchmark,
    robustness on a few corruptions, and report, offline, on the bundled tiny model.

    \b
    Example:
      clipscope demo --out demo-out        # then open demo-out/report.html
    """
    import shutil

    from clipscope.cli.main import main as cli_main
    from clipscope.errors import ClipscopeError

    out_dir = Path(out)
    if overwrite:
        shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    for name, args in DEMO_STEPS:
        t0 = time.time()
        argv = [a.format(out=out_dir) for a in args]
        if device != "auto" and name != "gap" and name != "uniformity":
            argv += ["--device", device]
        click.echo(f"demo: {name:<11}", nl=False)
        code = cli_main(argv)
        if code != 0:
            raise ClipscopeError(f"demo step '{name}' failed (exit {code}): clipscope {' '.join(argv)}")
        click.echo(f" done in {time.time() - t0:5.1f}s")
    code = cli_main(["report", str(out_dir), "-o", str(out_dir / "report.html"), "--title", "clipscope demo"])
    if code != 0:
        raise ClipscopeError("demo step 'report' failed")
    click.echo(f"demo: finished in {time.time() - t_all:.0f}s; open {out_dir / 'report.html'}")
