"""The offline end-to-end run on the bundled tiny model and the procedural probes (``clipscope
demo``, ``make demo``): every command once, then the HTML report. A user of the commands, not a
part of any: a new command needs no change here."""

from __future__ import annotations

from pathlib import Path

from clipscope.api import run


def run_demo(out="demo-out", *, device: str = "auto", overwrite: bool = False, progress: bool = False, log=None) -> Path:
    """The offline end-to-end run on the bundled tiny model and the procedural probes: extract,
    gap, uniformity, a small OTI, blind pairs on the probe benchmark, robustness on five
    corruptions, compositional probes (binding, spatial, counting, word order), the red-minus-blue
    direction, and the HTML report. Returns the report's path. ``log(step, seconds)`` is called
    after each step."""
    import shutil
    import time

    from clipscope.data import open_source
    from clipscope.extract import extract
    from clipscope.fileio import atomic_write_text
    from clipscope.models import load_encoder
    from clipscope.report.html import render

    out = Path(out)
    if overwrite:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache.h5"
    steps = [
        ("extract", lambda: extract(open_source("probes:256"), load_encoder("clipscope-tiny", device=device), cache,
                                    progress=progress)),
        ("gap", lambda: run("gap", cache, noise_model=True, progress=progress).save(out / "gap")),
        ("uniformity", lambda: run("uniformity", cache, progress=progress).save(out / "uniformity")),
        ("invert", lambda: run("invert", cache, model="clipscope-tiny", mode="oti", steps=40, device=device,
                               progress=progress).save(out / "invert")),
        ("blindpairs", lambda: run("blindpairs", model="clipscope-tiny", benchmark="probes", device=device,
                                   progress=progress).save(out / "blindpairs")),
        ("robustness", lambda: run("robustness", model="clipscope-tiny", data="probes:64:1", workers=0,
                                   corruptions="gaussian_noise,defocus_blur,fog,contrast,jpeg_compression",
                                   severities="1,3,5", device=device, progress=progress).save(out / "robustness")),
        ("compose", lambda: run("compose", model="clipscope-tiny", benchmark="probes:32", device=device,
                                progress=progress).save(out / "compose")),
        ("direction", lambda: run("direction", cache, a="class:red circle", b="class:blue circle",
                                  text_a="a red shape|a photo of something red",
                                  text_b="a blue shape|a photo of something blue", device=device,
                                  progress=progress).save(out / "direction")),
    ]
    import sys

    from tqdm import tqdm

    # the steps' own bars (extraction batches, optimisation steps, corruption cells) sit under this one
    overall = tqdm(steps, desc="demo", unit="step", file=sys.stderr, disable=not progress, position=0)
    for name, step in overall:
        overall.set_postfix_str(name)
        t0 = time.time()
        step()
        if log:
            log(name, time.time() - t0)
    overall.close()
    page = out / "report.html"
    atomic_write_text(page, render(out, "clipscope demo"))
    return page
