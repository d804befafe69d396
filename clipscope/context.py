"""What a command's ``run`` receives: the run's shared settings (model, data, encoding, seed) and
the mechanics every command uses the same way: opening data sources once, loading encoders,
resolving a cache (given, or extracted on demand into the content-keyed cache) and building the
:class:`clipscope.report.result.Report` from a task's result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from clipscope.errors import ClipscopeError, UsageError


@dataclass
class RunContext:
    command: str
    model: str | None = None
    pretrained: str | None = None
    weights: object = None
    data: str | None = None
    verify: bool = False
    classnames: str | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64
    workers: int | None = None
    decode: str = "auto"
    seed: int = 0
    progress: bool = False
    plots: bool = True
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
        """A given cache (a file, or an open :class:`clipscope.cache.Cache` the caller keeps open),
        or extraction on demand into the content-keyed cache."""
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

    def cache_encoder(self, provenance: dict, why: str):
        """The cache's own model (``--model`` when given), refused when it is not the one that made
        the cache: its rows and the new embeddings must share one space."""
        try:
            enc = self.encoder() if self.model else self.encoder(provenance.get("model"), tag_of(provenance))
        except ClipscopeError as e:
            raise ClipscopeError(f"{why} with the cache's model {provenance.get('model')} (pretrained: "
                                 f"{provenance.get('pretrained')}), which could not be loaded ({e}); give "
                                 "--model/--pretrained naming it") from None
        p = enc.provenance
        same = ("model", "weights_sha256", "init_seed")
        if [p.get(k) for k in same] != [provenance.get(k) for k in same]:
            raise ClipscopeError(f"{why} with the cache's model ({provenance.get('model')}, pretrained: "
                                 f"{provenance.get('pretrained')}); --model gave {p.get('model')} ({p.get('pretrained')})")
        return enc

    def say(self, line: str) -> None:
        """A one-line notice for the user on stderr (machine output stays on stdout)."""
        import sys

        print(line, file=sys.stderr, flush=True)

    def report(self, result, *, model, data, figures=None, extra_config=None):
        """The :class:`Report` of a task's result: metrics joined to their specs and ordered
        headline first, undefined numbers explained, figures laid out as specs."""
        from clipscope.metric_specs import computed_metrics
        from clipscope.report import with_spec
        from clipscope.report.result import Metric, Report

        specs, files = [], {}
        if self.plots and figures is not None:
            from clipscope.report.plots import FigureRecorder

            rec = FigureRecorder()
            files = {k: PurePosixPath(v).name for k, v in figures(rec, PurePosixPath("")).items()}
            specs = rec.specs
        result.metrics.update(computed_metrics(self.command, result.inputs))
        data = {**data, "counts": {**data.get("counts", {}), **result.counts}}
        notes = list(result.notes)
        metrics = {k: with_spec(k, m) for k, m in result.metrics.items()}
        for name, m in metrics.items():  # a number that could not be computed is explained
            v = m.get("value")
            if (v is None or v != v or v in (float("inf"), float("-inf"))) and not any(name in n for n in notes):
                notes.append(f"{name} could not be computed on this data ({m.get('description', '')})")
        from clipscope.registry import command

        head = command(self.command).summary
        ordered = [k for k in head if k in metrics] + [k for k in metrics if k not in head]
        metrics = {k: Metric.from_dict(metrics[k]) for k in ordered}
        return Report(self.command, model, data, self.seed, {**result.config, **(extra_config or {})}, metrics,
                      result.tables, notes, specs, files, head)


def open_cache(path):
    """Open an embedding cache read-only (see :class:`clipscope.cache.Cache`); an open Cache comes back
    as a borrowed view, so that closing it leaves the caller's cache open."""
    from clipscope.cache import Cache

    return path.borrowed() if isinstance(path, Cache) else Cache.open(path)


def data_block(cache) -> dict:
    """The report's data provenance for a cache."""
    a = cache.attrs
    return {"spec": a.get("data_spec"), "fingerprint": a.get("data_fingerprint"), "cache": str(cache.path),
            "counts": {"images": cache.n_images, "texts": cache.n_texts, "pairs": int(len(cache.pairs)),
                       "failed": len(cache.failed)}}


def tag_of(provenance: dict) -> str | None:
    """The --pretrained value that reloads a cache's model: its checkpoint file, else its tag."""
    return provenance.get("weights_file") or provenance.get("pretrained")
