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

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from clipscope.errors import ClipscopeError, UsageError

COMMON = ("model", "pretrained", "weights", "data", "verify", "classnames", "device", "precision", "batch_size", "workers",
          "decode", "seed")
# The options each command takes besides COMMON (the CLI's option names; `check` validates suites with them).
OPTIONS = {
    "gap": ("projection", "sweep_max_rows", "shift_deltas", "engine", "address", "num_shards",
            "noise_model", "noise_alpha", "noise_max_pairs", "subregions", "subregion_max_images"),
    "uniformity": ("t", "max_pairs", "sample_pairs", "block", "engine", "address", "num_shards"),
    "invert": ("mode", "tokens", "steps", "lr", "weight_decay", "template", "inv_batch_size", "inv_seed", "gallery"),
    "blindpairs": ("reference", "reference_pretrained", "reference_cache", "clip_threshold", "ref_threshold", "top",
                   "benchmark"),
    "robustness": ("corruptions", "severities", "templates", "ood_data", "max_images", "baseline", "jpeg_round_trip",
                   "benchmark",
                   "frost_dir"),
    "drift": ("old_model", "old_pretrained", "new_model", "new_pretrained", "k", "top"),
    "compose": ("benchmark", "images", "captions", "top_failures"),
    "direction": ("a", "b", "text_a", "text_b", "top"),
}


@dataclass
class Metric:
    """One reported number: value, 95% interval, direction, and what it is (with its source)."""

    value: float | None
    ci95: list[float] | None = None
    higher_is_better: bool | None = None
    description: str = ""
    source: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "Metric":
        known = {"value", "ci95", "higher_is_better", "description", "source"}
        return cls(d.get("value"), d.get("ci95"), d.get("higher_is_better"), d.get("description", ""), d.get("source"),
                   {k: v for k, v in d.items() if k not in known})


@dataclass
class Report:
    """A command's result: metrics, tables, notes, provenance and its figures (as small specs,
    drawn when the report is saved). ``to_dict()`` is the JSON report (schema-validated)."""

    command: str
    model: dict
    data: dict
    seed: int
    config: dict
    metrics: dict
    tables: dict
    notes: list
    figures: list = field(default_factory=list, repr=False)  # (plot function, args, kwargs) specs
    figure_files: dict = field(default_factory=dict)  # figure name -> PNG file name
    summary_keys: tuple = ()
    _dict: dict | None = field(default=None, repr=False)

    def to_dict(self, *, with_figures: bool = True) -> dict:
        """The JSON report (as written to ``<command>.json``), validated against the schema."""
        if self._dict is None:
            from clipscope.report import build_report, validate_report

            self._dict = build_report(self.command, model=self.model, data=self.data, seed=self.seed, config=self.config,
                                      metrics={k: _metric_dict(m) for k, m in self.metrics.items()},
                                      tables=self.tables, artifacts=dict(self.figure_files), notes=self.notes)
            validate_report(self._dict)
            unsourced = [k for k, m in self._dict["metrics"].items() if "source" not in m]
            if unsourced:  # a programming error: every number says where it comes from
                raise RuntimeError(f"metrics without a registered source: {', '.join(unsourced)} "
                                   "(clipscope/metric_specs.py)")
        if with_figures:
            return self._dict
        return {**self._dict, "artifacts": {}}

    def to_json(self, *, with_figures: bool = True) -> str:
        from clipscope.report import dumps

        return dumps(self.to_dict(with_figures=with_figures))

    def save(self, out_dir, *, plots: bool = True, progress: bool = False) -> Path:
        """Write ``<command>.json`` (atomically) and, with ``plots``, the PNGs into ``out_dir``
        (a progress bar on stderr with ``progress``). Returns the JSON's path."""
        from clipscope.fileio import atomic_write_text
        from clipscope.report import plots as plotting

        out_dir = Path(out_dir)
        if plots and self.figures:
            plotting.draw(self.figures, out_dir, progress=progress)
        path = out_dir / f"{self.command}.json"
        atomic_write_text(path, self.to_json(with_figures=plots))
        if self.command == "direction":  # the directions themselves, for reuse as guidance
            import numpy as np

            from clipscope.fileio import atomic_path

            for modality in ("image", "text"):
                if f"direction_{modality}" in self.tables:
                    with atomic_path(out_dir / f"direction_{modality}.npy") as tmp:
                        with open(tmp, "wb") as fh:
                            np.save(fh, np.asarray(self.tables[f"direction_{modality}"], np.float32))
        return path

    def summary(self, out=None) -> str:
        """A few lines for a console: the headline metrics, notes and where the report went."""
        r = self.to_dict()
        lines = [f"{self.command}: {r['model']['name']} (pretrained: {r['model']['pretrained']}) on {r['data'].get('spec')}"]
        for k, v in r["metrics"].items():  # every metric, the headline ones first
            if v["value"] is None:
                lines.append(f"  {k:<32} n/a (see the notes)")
                continue
            ci = f"  [{v['ci95'][0]:.4f}, {v['ci95'][1]:.4f}]" if v["ci95"] else ""
            unit = {"%": " %", "degrees": " deg", "nats": " nats"}.get(v.get("unit") or "", "")
            value = f"{int(v['value'])}" if v.get("unit") == "count" else f"{v['value']:.4f}"
            lines.append(f"  {k:<32} {value}{unit}{ci}")
        lines += [f"  note: {n}" for n in r.get("notes", [])]
        if out is not None:
            lines.append(f"  report: {Path(out) / (self.command + '.json')}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The report's HTML card (metrics, provenance, notes, tables), for Jupyter."""
        from clipscope.report.html import CSS, section

        css = CSS.replace("body{", ".clipscope{")  # scoped: the notebook page keeps its own styles
        return f"<div class=clipscope><style>{css}</style>{section(self.to_dict(with_figures=False), None, None)}</div>"


def _metric_dict(m) -> dict:
    if isinstance(m, Metric):
        return {"value": m.value, "ci95": m.ci95, "higher_is_better": m.higher_is_better,
                "description": m.description, **({"source": m.source} if m.source else {}), **m.extra}
    return m


def open_cache(path):
    """Open an embedding cache read-only (see :class:`clipscope.cache.Cache`); an open Cache comes back
    as a borrowed view, so that closing it leaves the caller's cache open."""
    from clipscope.cache import Cache

    return path.borrowed() if isinstance(path, Cache) else Cache.open(path)


def from_arrays(*args, **kwargs):
    """An in-memory cache of embeddings you already have (see :func:`clipscope.cache.from_arrays`)."""
    from clipscope.cache import from_arrays as build

    return build(*args, **kwargs)


def run(command: str, cache=None, *, model: str | None = None, pretrained: str | None = None, weights=None,
        data: str | None = None, verify: bool = False, classnames: str | None = None, device: str = "auto",
        precision: str = "auto", batch_size: int = 64, workers: int | None = None, decode: str = "auto", seed: int = 0,
        progress: bool = False, plots: bool = True, **options) -> Report:
    """Run one diagnostic and return its :class:`Report` (nothing is written until ``save``).

    Parameters
    ----------
    command : "gap", "uniformity", "invert", "blindpairs", "robustness", "drift", "compose" or "direction".
    cache : a cache file (or, for drift, ``[old, new]``), or None to extract ``data`` with ``model``
        first into the content-keyed cache (reused by the next run).
    model, pretrained, weights : the encoder (see :func:`clipscope.models.load_encoder`).
    data : a data spec (``folder:DIR``, ``probes:64``, ...).
    verify : key the content cache on file contents (SHA-256) instead of file metadata.
    classnames : a file naming the class folders of ``folder:`` data (default: ImageNet's names
        for WordNet-id folders, else the folder names).
    device, precision, batch_size, workers : where and how to encode.
    decode : the image input path when extracting: ``auto`` (JPEGs decoded on the GPU when the
        model is on CUDA), ``gpu``, ``cpu`` (PIL) or ``tensor`` (see :mod:`clipscope.tensor_input`).
    seed : seed of every random choice.
    progress : progress bars on stderr.
    plots : lay out the figures (drawn by :meth:`Report.save`).
    options : the command's own options (``OPTIONS[command]``; e.g. ``noise_model=True`` for gap).

    Returns
    -------
    Report

    Example
    -------
    >>> r = run("uniformity", "cache.h5", t=2.0)
    >>> r.metrics["uniformity_image"].value, r.metrics["uniformity_image"].ci95
    """
    if command not in OPTIONS:
        raise UsageError(f"unknown command {command!r}; use {', '.join(OPTIONS)}")
    unknown = sorted(set(options) - set(OPTIONS[command]))
    if unknown:
        raise UsageError(f"{command} takes no option {', '.join(unknown)} (its options: {', '.join(OPTIONS[command])})")
    ctx = _Context(model=model, pretrained=pretrained, weights=weights, data=data, verify=verify,
                   classnames=classnames, device=device,
                   precision=precision, batch_size=batch_size, workers=workers, decode=decode, seed=seed,
                   progress=progress, plots=plots)
    return _RUNNERS[command](ctx, cache, **options)


@dataclass
class _Context:
    model: str | None
    pretrained: str | None
    weights: object
    data: str | None
    verify: bool
    classnames: str | None
    device: str
    precision: str
    batch_size: int
    workers: int | None
    decode: str
    seed: int
    progress: bool
    plots: bool
    _sources: dict = field(default_factory=dict)

    def source(self, spec: str):
        """The data source of ``spec``, opened (listed, fingerprinted) once per run."""
        from clipscope.data import open_source

        if spec not in self._sources:
            # --classnames names the folders of the run's --data (not of --ood-data or benchmarks)
            names = self.classnames if spec == self.data else None
            self._sources[spec] = open_source(spec, verify=self.verify, classnames=names)
        return self._sources[spec]

    def encoder(self, model=None, pretrained=None):
        """The run's encoder (``--model/--pretrained/--weights``), or another named one (drift)."""
        from clipscope.models import load_encoder

        if model is None:
            return load_encoder(self.model, self.pretrained, device=self.device, precision=self.precision,
                                weights=self.weights)
        return load_encoder(model, pretrained, device=self.device, precision=self.precision)

    def cache(self, path, *, model=None, pretrained=None, data=None, encoder=None):
        """A given cache file, or extraction on demand into the content-keyed cache."""
        from clipscope.cache import Cache

        if path is not None and (self.model or self.data) and not isinstance(path, Cache):
            raise UsageError("give either a CACHE or --model/--data, not both")
        if path is not None:
            return open_cache(path)
        if not (model or self.model or encoder):
            raise UsageError("give a CACHE file, or --model NAME (with --data SPEC) to extract first")
        from clipscope.extract import ensure_cache
        from clipscope.runtime import default_workers

        source = self.source(data or self.data or "probes")
        encoder = encoder or (self.encoder() if model is None else self.encoder(model, pretrained))
        workers = default_workers(encoder.device) if self.workers is None else self.workers
        return Cache.open(ensure_cache(encoder, source, batch_size=self.batch_size, workers=workers,
                                       progress=self.progress, decode=self.decode))

    def report(self, command, task, result, *, model, data, figures=None, extra_config=None) -> Report:
        specs, files = [], {}
        if self.plots and figures is not None:
            from clipscope.report.plots import FigureRecorder

            rec = FigureRecorder()
            files = {k: PurePosixPath(v).name for k, v in figures(rec, PurePosixPath("")).items()}
            specs = rec.specs
        data = {**data, "counts": {**data.get("counts", {}), **result.counts}}
        notes = list(result.notes)
        for name, m in result.metrics.items():  # a number that could not be computed is explained
            v = m.get("value")
            if (v is None or v != v or v in (float("inf"), float("-inf"))) and not any(name in n for n in notes):
                notes.append(f"{name} could not be computed on this data ({m.get('description', '')})")
        from clipscope.metric_specs import spec_of
        from clipscope.report import with_spec

        head = getattr(task, "SUMMARY", ())
        ordered = [k for k in head if k in result.metrics] + [k for k in result.metrics if k not in head]
        metrics = {k: Metric.from_dict(with_spec(result.metrics[k], spec_of(k))) for k in ordered}
        return Report(command, model, data, self.seed, {**result.config, **(extra_config or {})}, metrics,
                      result.tables, notes, specs, files, head)


def data_block(cache) -> dict:
    """The report's data provenance for a cache."""
    a = cache.attrs
    return {"spec": a.get("data_spec"), "fingerprint": a.get("data_fingerprint"), "cache": str(cache.path),
            "counts": {"images": cache.n_images, "texts": cache.n_texts, "pairs": int(len(cache.pairs)),
                       "failed": len(cache.failed)}}


def _geometry(command, ctx: _Context, cache, **options) -> Report:
    from clipscope.report import model_block
    from clipscope.runtime import resolve_device
    from clipscope.tasks import gap, title_of, uniformity

    task = gap if command == "gap" else uniformity
    figure_kw = {}
    if command == "gap":
        figure_kw["projection"] = options.pop("projection", "pca")
        if isinstance(options.get("shift_deltas"), str):
            options["shift_deltas"] = parse_deltas(options["shift_deltas"])
    else:
        options["device"] = resolve_device(ctx.device)
    want_crops = options.pop("subregions", False)
    max_crop_images = options.pop("subregion_max_images", 500)
    with ctx.cache(cache) as c:
        if command == "uniformity" and ctx.progress:
            _announce_exact_cost(c, options)
        prov = c.provenance
        result = task.evaluate(c, seed=ctx.seed, **options)
        if want_crops:
            # the cache's spec with its paths made absolute at extraction: the same images from any folder
            spec = ctx.data or prov.get("data_spec_resolved") or prov.get("data_spec")
            if not spec:
                raise UsageError("--subregions crops the images: give --data SPEC (the data the cache was made from)")
            source = ctx.source(spec)
            encoder = _cache_encoder(ctx, prov, "--subregions encodes the crops")
            extra, table, notes = gap.subregions(c, source, encoder, max_images=max_crop_images, seed=ctx.seed,
                                                 batch_size=ctx.batch_size, progress=ctx.progress)
            result.metrics.update(extra)
            result.tables["subregions"] = table
            result.notes.extend(notes)
            result.config.update(subregions=True, subregion_max_images=max_crop_images)
        title = title_of(prov, prov.get("data_spec"))
        return ctx.report(command, task, result, model=model_block(prov), data=data_block(c),
                          figures=lambda plots, d: task.figures(result, d, title, seed=ctx.seed, plots=plots,
                                                                **figure_kw))


def _announce_exact_cost(cache, options) -> None:
    """Say on stderr, before it starts, when exact uniformity will take more than a minute (timed
    on one tile of this machine), and how to get the sampled estimate instead."""
    import sys
    import time

    import numpy as np
    import torch

    from clipscope.analysis.pairwise import DEFAULT_MAX_PAIRS

    n_i, n_t = cache.n_images, cache.n_texts
    per_metric = (n_i * (n_i - 1) // 2, n_t * (n_t - 1) // 2, (n_i + n_t) * (n_i + n_t - 1) // 2, n_i * n_t)
    # Each pair mean is exact or sampled on its own: only the exact ones cost all their pairs.
    pairs = sum(p for p in per_metric if p <= options.get("max_pairs", DEFAULT_MAX_PAIRS))
    if pairs < 10**9:
        return
    d = cache.image_embeddings.shape[1]
    tile = torch.from_numpy(np.random.default_rng(0).normal(size=(2048, d)).astype(np.float32))
    t0 = time.perf_counter()
    (tile @ tile.T).mul_(4).sub_(4).exp_().sum(1)  # as the kernel sums do
    seconds = pairs / (2048 * 2048) * (time.perf_counter() - t0)  # pairs, at this tile's rate
    if seconds > 60:
        print(f"uniformity: exact mode over {pairs:.2e} pairs will take about {seconds / 60:.0f} min here; "
              f"--max-pairs {10**9} gives the sampled estimate with its interval in a fraction of that",
              file=sys.stderr, flush=True)


def parse_deltas(text: str) -> list[float]:
    """``START:STOP:STEP`` (numpy.arange, the reference's construction) or a comma list."""
    import numpy as np

    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            values = np.arange(start, stop, step).tolist()
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError("--shift-deltas: use START:STOP:STEP (e.g. -5:5:0.25) or a comma list") from None
    if not values:
        raise UsageError("--shift-deltas: no deltas in that range")
    return values


def _invert(ctx: _Context, cache, *, mode=None, tokens=None, steps=None, lr=None, weight_decay=None, template=None,
            inv_batch_size=None, inv_seed=None, gallery=None) -> Report:
    from clipscope.cache import Cache
    from clipscope.report import model_block
    from clipscope.tasks import invert, title_of

    if mode not in ("oti", "ovi"):
        raise UsageError("invert needs --mode oti (image to text) or ovi (text to image)")
    if not ctx.model:
        raise UsageError("invert optimises through the model: give --model (and --pretrained) matching the cache, "
                         "or --model with --data")
    config = invert.with_overrides(mode, tokens=tokens, steps=steps, lr=lr, weight_decay=weight_decay,
                                   template=template, batch_size=inv_batch_size, seed=inv_seed)
    if mode == "oti" and "{}" not in config.template:
        raise UsageError("--template must contain {} where the pseudo tokens go")
    encoder = ctx.encoder()
    if encoder.kind != "open_clip":
        raise ClipscopeError(f"invert optimises through open_clip's text and image towers; {encoder.provenance['model']} "
                             f"is a {encoder.kind} model: extract and analyse it with the other commands")
    c = open_cache(cache) if cache is not None else ctx.cache(None, encoder=encoder)
    g = None
    try:
        if gallery:
            g = open_cache(gallery) if isinstance(gallery, Cache) or Path(gallery).is_file() else \
                ctx.cache(None, data=gallery, encoder=encoder)
        result = invert.evaluate(c, encoder, mode=mode, config=config, gallery=g, progress=ctx.progress)
        prov = c.provenance
        title = title_of(prov, prov.get("data_spec"))
        return ctx.report("invert", invert, result, model=model_block(encoder.provenance), data=data_block(c),
                          figures=lambda plots, d: invert.figures(result, d, title, plots=plots))
    finally:
        c.close()
        if g is not None:
            g.close()


def _blindpairs(ctx: _Context, cache, *, reference=None, reference_pretrained=None, reference_cache=None,
                clip_threshold=0.95, ref_threshold=0.6, top=1000, benchmark=None) -> Report:
    from clipscope.report import model_block
    from clipscope.runtime import resolve_device
    from clipscope.tasks import blindpairs, title_of

    if benchmark:
        if not ctx.model:
            raise UsageError("--benchmark scores a model: give --model (and --pretrained)")
        from clipscope.data.mmvp import open_benchmark

        pairs = open_benchmark(benchmark)
        encoder = ctx.encoder()
        result = blindpairs.score_benchmark(encoder, pairs, benchmark=benchmark, batch_size=ctx.batch_size)
        title = title_of(encoder.provenance, benchmark)
        return ctx.report("blindpairs", blindpairs, result, model=model_block(encoder.provenance),
                          data={"spec": f"benchmark:{benchmark}", "counts": {"pairs": len(pairs)}},
                          figures=lambda plots, d: blindpairs.figures(result, d, title, plots=plots))
    if not reference and not reference_cache:
        raise UsageError("mining needs a reference: --reference ENCODER or --reference-cache REF.h5")
    with ctx.cache(cache) as c:
        source = None
        if reference_cache is not None:
            ref = open_cache(reference_cache)
        else:
            spec = ctx.data or c.attrs.get("data_spec")
            source = ctx.source(spec)  # opened once: the reference extraction and the contact sheet share it
            ref = ctx.cache(None, data=spec, encoder=ctx.encoder(reference, reference_pretrained))
        with ref:
            result = blindpairs.mine(c, ref, clip_threshold=clip_threshold, ref_threshold=ref_threshold, top=top,
                                     device=resolve_device(ctx.device), source=source)
            prov = c.provenance
            title = title_of(prov, prov.get("data_spec"))
            return ctx.report("blindpairs", blindpairs, result, model=model_block(prov), data=data_block(c),
                              figures=lambda plots, d: blindpairs.figures(result, d, title, plots=plots))


def _robustness(ctx: _Context, cache, *, corruptions="all", severities="1-5", templates=None, ood_data=None,
                max_images=1000, baseline=None, jpeg_round_trip=True, frost_dir=None, benchmark=()) -> Report:
    from clipscope.report import load_report, model_block
    from clipscope.tasks import robustness, title_of

    if cache is not None:
        raise UsageError("robustness runs the model on images: give --model and --data, not a cache")
    benchmarks = robustness.parse_benchmarks([benchmark] if isinstance(benchmark, str) else benchmark)
    if not ctx.model or not (ctx.data or benchmarks):
        raise UsageError("robustness runs a model on images: give --model and --data (labelled) and/or "
                         "--benchmark NAME:DIR")
    names = robustness.parse_corruptions(corruptions) if isinstance(corruptions, str) else list(corruptions)
    sevs = robustness.parse_severities(severities) if isinstance(severities, str) else list(severities)
    if baseline is not None and not isinstance(baseline, dict):
        path = baseline
        baseline = load_report(path, validate=True)
        if baseline["command"] != "robustness" or "accuracy_clean" not in baseline["metrics"]:
            raise ClipscopeError(f"--baseline {path} is not a robustness report; pass the robustness.json of the "
                                 "baseline model")
    source = ctx.source(ctx.data) if ctx.data else None
    tmpl, tmpl_name = robustness.read_templates(templates, imagenet=source is None or source.class_naming == "imagenet")
    ood = ctx.source(ood_data) if ood_data else None
    encoder = ctx.encoder()
    parts = []
    if source is not None:
        parts.append(robustness.evaluate(encoder, source, corruptions=names, severities=sevs, templates=tmpl,
                                         ood_source=ood, batch_size=ctx.batch_size, max_images=max_images,
                                         seed=ctx.seed, progress=ctx.progress, baseline=baseline,
                                         published=jpeg_round_trip, frost_dir=frost_dir))
    if benchmarks:
        parts.append(robustness.evaluate_published(encoder, benchmarks, templates=tmpl, batch_size=ctx.batch_size,
                                                   max_images=max_images, seed=ctx.seed, progress=ctx.progress))
    result = parts[0]
    for extra in parts[1:]:
        result.metrics.update(extra.metrics)
        result.tables.update(extra.tables)
        result.notes.extend(extra.notes)
        result.config.update(extra.config)
        result.counts.update(extra.counts)
        result.plot_data.update(extra.plot_data)
    result.config.update(template_set=tmpl_name, templates=tmpl,
                         class_names=(source.class_naming or source.kind) if source is not None else "imagenet")
    spec = source.spec if source is not None else ", ".join(f"{n}:{p}" for n, p in benchmarks)
    title = title_of(encoder.provenance, spec)
    data = ({"spec": source.spec, "fingerprint": source.fingerprint, "counts": source.counts()} if source is not None
            else {"spec": spec, "counts": {}})
    return ctx.report("robustness", robustness, result, model=model_block(encoder.provenance), data=data,
                      figures=lambda plots, d: robustness.figures(result, d, title, plots=plots))


def _direction(ctx: _Context, cache, *, a=None, b=None, text_a=None, text_b=None, top=20) -> Report:
    from clipscope.linalg import l2_normalize
    from clipscope.report import model_block
    from clipscope.tasks import direction, title_of

    if not a or not b:
        raise UsageError("give the two groups: --a SELECTION and --b SELECTION (label:N, class:NAME, ids:FILE, "
                         "text:PROMPT|PROMPT or prompts:FILE)")
    with ctx.cache(cache) as c:
        prov = c.provenance
        needs_model = direction.is_prompt_set(a) or direction.is_prompt_set(b) or text_a or text_b

        loaded = []  # the cache's model, loaded once for every prompt set

        def encode_texts(prompts):
            if not loaded:
                loaded.append(_cache_encoder(ctx, prov, "a prompt set is encoded"))
            return l2_normalize(loaded[0].encode_texts_batched(prompts, ctx.batch_size))

        result = direction.evaluate(c, a, b, encode_texts=encode_texts if needs_model else None, text_a=text_a,
                                    text_b=text_b, top=top)
        title = title_of(prov, prov.get("data_spec"))
        return ctx.report("direction", direction, result, model=model_block(prov), data=data_block(c),
                          figures=lambda plots, d: direction.figures(result, d, title, plots=plots))


def _cache_encoder(ctx: _Context, prov: dict, why: str):
    """The cache's own model (``--model`` when given), refused when it is not the one that made
    the cache: its rows and the new embeddings must share one space."""
    try:
        enc = ctx.encoder() if ctx.model else ctx.encoder(prov.get("model"), _tag_of(prov))
    except ClipscopeError as e:
        raise ClipscopeError(f"{why} with the cache's model {prov.get('model')} (pretrained: {prov.get('pretrained')}), "
                             f"which could not be loaded ({e}); give --model/--pretrained naming it") from None
    p = enc.provenance
    same = ("model", "weights_sha256", "init_seed")
    if [p.get(k) for k in same] != [prov.get(k) for k in same]:
        raise ClipscopeError(f"{why} with the cache's model ({prov.get('model')}, pretrained: {prov.get('pretrained')}); "
                             f"--model gave {p.get('model')} ({p.get('pretrained')})")
    return enc


def _tag_of(provenance: dict) -> str | None:
    """The --pretrained value that reloads a cache's model: its checkpoint file, else its tag."""
    return provenance.get("weights_file") or provenance.get("pretrained")


def _drift(ctx: _Context, cache, *, old_model=None, old_pretrained=None, new_model=None, new_pretrained=None,
           k=10, top=20) -> Report:
    from clipscope.report import model_block
    from clipscope.runtime import resolve_device
    from clipscope.tasks import drift, title_of

    if cache:
        if not isinstance(cache, (list, tuple)) or len(cache) != 2:
            raise UsageError("drift compares two caches: give OLD and NEW")
        old, new = open_cache(cache[0]), open_cache(cache[1])
    else:
        if not (old_model and new_model and ctx.data):
            raise UsageError("without caches, give --old-model, --new-model and --data")
        old = ctx.cache(None, model=old_model, pretrained=old_pretrained)
        new = ctx.cache(None, model=new_model, pretrained=new_pretrained)
    with old, new:
        result = drift.evaluate(old, new, k=k, top=top, device=resolve_device(ctx.device))
        po, pn = old.provenance, new.provenance
        title = f"{title_of(po, None).split(' on ')[0]} -> {title_of(pn, po.get('data_spec'))}"
        model = model_block(pn)
        model["old"] = model_block(po)
        data = {"spec": pn.get("data_spec"), "fingerprint": pn.get("data_fingerprint"), "cache": str(new.path),
                "counts": {}}
        return ctx.report("drift", drift, result, model=model, data=data,
                          figures=lambda plots, d: drift.figures(result, d, title, seed=ctx.seed, plots=plots))


def _compose(ctx: _Context, cache, *, benchmark=(), images=None, captions=None, top_failures=20) -> Report:
    from clipscope.report import model_block
    from clipscope.tasks import compose, title_of

    if cache is not None:
        raise UsageError("compose scores a model on benchmark files: give --model and --benchmark, not a cache")
    benchmarks = compose.parse_benchmarks([benchmark] if isinstance(benchmark, str) else benchmark)
    if not ctx.model:
        raise UsageError("compose scores a model: give --model (and --pretrained)")
    lines = None
    if captions is not None:  # a plain text file, one caption per line, for the text-side diagnostics
        try:
            lines = [t.strip() for t in Path(captions).read_text(encoding="utf-8").splitlines() if t.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ClipscopeError(f"--captions {captions}: cannot read it as UTF-8 text ({e})") from None
    if ctx.data:  # a data source's captions feed the text-side diagnostics as well
        lines = (lines or []) + list(ctx.source(ctx.data).texts or [])
    encoder = ctx.encoder()
    result = compose.evaluate(encoder, benchmarks, images=images, captions=lines, batch_size=ctx.batch_size,
                              top_failures=top_failures, seed=ctx.seed)
    title = title_of(encoder.provenance, ", ".join(k for k, _ in benchmarks))
    return ctx.report("compose", compose, result, model=model_block(encoder.provenance),
                      data={"spec": "; ".join(f"{k}:{p}" for k, p in benchmarks), "counts": {}},
                      figures=lambda plots, d: compose.figures(result, d, title, plots=plots))


_RUNNERS = {
    "gap": lambda ctx, cache, **o: _geometry("gap", ctx, cache, **o),
    "uniformity": lambda ctx, cache, **o: _geometry("uniformity", ctx, cache, **o),
    "invert": _invert, "blindpairs": _blindpairs, "robustness": _robustness, "drift": _drift, "compose": _compose,
    "direction": _direction,
}


def demo(out="demo-out", *, device: str = "auto", overwrite: bool = False, progress: bool = False, log=None) -> Path:
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
    for name, step in steps:
        t0 = time.time()
        step()
        if log:
            log(name, time.time() - t0)
    page = out / "report.html"
    atomic_write_text(page, render(out, "clipscope demo"))
    return page


__all__ = ["Metric", "OPTIONS", "Report", "data_block", "demo", "from_arrays", "open_cache", "run"]
